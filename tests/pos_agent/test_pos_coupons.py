"""Coupon entry at the register: offline validation, pricing, single use per register."""

from __future__ import annotations

import gc
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from loyalty_engine import Calculation, default_promotions, default_settings, make_code
from loyalty_engine.coupons import serial_for
from pos_agent import Config
from pos_agent.journal import Journal
from pos_agent.receipts import LineInput, PaymentInput
from pos_agent.register import Register
from pos_agent.replica import Replica
from store_node.reservations_api import RESERVATIONS_KEY
from sync_protocol import Sale
from tests.pos_agent.pos_fakes import (
    REGISTER_ID,
    STORE_ID,
    T0,
    IdleUploader,
    TickClock,
    demo_snapshot,
    free_port,
    make_config,
    open_journal,
    outbox_sales,
    running_agent,
    seed_replica,
)
from tests.store_node.store_fakes import Clock, running_node
from tests.store_node.store_fakes import make_config as store_config

KEY = default_settings()["coupon_key"]
CODE = make_code(KEY, "NEXT5", "0123456789")  # as another register of the chain issued it
# 30.00 + 25.00: threshold 5 % (1.50 + 1.25), then the coupon's 5 % of 52.25 = 2.61
# (1.42 + 1.19): total 55.00 - 5.36 = 49.64.
BASKET = [
    {"product_id": "milk", "qty_milli": 1000, "unit_price_minor": 3000},
    {"product_id": "bread", "qty_milli": 1000, "unit_price_minor": 2500},
]

Client = TestClient[web.Request, web.Application]


async def _open(client: Client, lines: list[dict[str, Any]]) -> str:
    resp = await client.post("/v1/receipts", json={})
    receipt_id: str = (await resp.json())["receipt_id"]
    resp = await client.post(f"/v1/receipts/{receipt_id}/lines", json={"lines": lines})
    assert resp.status == 200, await resp.text()
    return receipt_id


async def _confirm(client: Client, receipt_id: str) -> Any:
    calc = await (await client.post(f"/v1/receipts/{receipt_id}/calculate", json={})).json()
    return await client.post(
        f"/v1/receipts/{receipt_id}/confirm",
        json={"payments": [{"method": "cash", "amount_minor": calc["total_minor"]}]},
    )


async def test_a_signed_coupon_is_priced_and_refused_the_second_time(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        receipt_id = await _open(client, BASKET)
        resp = await client.post(
            f"/v1/receipts/{receipt_id}/coupons", json={"code": f" {CODE.lower()} "}
        )
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {
            "receipt_id": receipt_id,
            "code": CODE,
            "rule_id": "next-visit-redeem",
            "title": "5 % off with a NEXT5 coupon from a 30.00 receipt",
            "multi_use": False,
        }
        # Entering it again on the same receipt changes nothing.
        resp = await client.post(f"/v1/receipts/{receipt_id}/coupons", json={"code": CODE})
        assert resp.status == 200
        receipt = await (await client.get(f"/v1/receipts/{receipt_id}")).json()
        assert receipt["coupon_codes"] == [CODE]

        calc = await (await client.post(f"/v1/receipts/{receipt_id}/calculate", json={})).json()
        assert (calc["discount_minor"], calc["total_minor"]) == (536, 4964)
        assert calc["coupon_codes"] == [CODE] and calc["coupons_consumed"] == [CODE]
        assert [line["discounts"] for line in calc["lines"]] == [
            [
                {"rule_id": "threshold-5-10", "amount_minor": 150},
                {"rule_id": "next-visit-redeem", "amount_minor": 142},
            ],
            [
                {"rule_id": "threshold-5-10", "amount_minor": 125},
                {"rule_id": "next-visit-redeem", "amount_minor": 119},
            ],
        ]
        resp = await _confirm(client, receipt_id)
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
        sale_id = answer["sale_id"]
        assert (answer["coupons_redeemed"], answer["coupons_issued"]) == ([CODE], [])

        again = await _open(client, BASKET)
        resp = await client.post(f"/v1/receipts/{again}/coupons", json={"code": CODE})
        assert resp.status == 409
        body = await resp.json()
        assert body["error"] == "conflict"
        assert CODE in body["detail"] and sale_id in body["detail"]
        receipt = await (await client.get(f"/v1/receipts/{again}")).json()
        assert receipt["coupon_codes"] == []

    (sale,) = outbox_sales(config)
    assert sale.total_minor == 4964
    # The redemption travels with the sale, so the Center can price it again (49.64 < 60.00:
    # no coupon issued).
    assert (sale.coupons_redeemed, sale.coupons_issued) == ((CODE,), ())
    assert {d.rule_id for line in sale.lines for d in line.discounts} == {
        "threshold-5-10",
        "next-visit-redeem",
    }


async def test_unknown_forged_and_malformed_codes_are_refused(config: Config) -> None:
    forged = CODE[:-1] + ("0" if CODE[-1] != "0" else "1")
    async with running_agent(config, uploader=IdleUploader()) as client:
        receipt_id = await _open(client, BASKET)
        url = f"/v1/receipts/{receipt_id}/coupons"
        for code in (forged, "SPRING", "NEXT5-0123456789X-ABCDEF12"):
            resp = await client.post(url, json={"code": code})
            assert resp.status == 422, code
            body = await resp.json()
            assert (body["error"], body["field"]) == ("invalid", "code")
            assert "not a valid coupon" in body["detail"]
        for bad in ({}, {"code": 5}, {"code": ""}, {"code": "x" * 65}, {"code": "A", "n": 1}):
            resp = await client.post(url, json=bad)
            assert resp.status in (400, 422), bad
        # Signed with a last valid day before the register's day (T0): refused at entry.
        expired = make_code(KEY, "NEXT5", "0123456789", (T0 - timedelta(days=1)).date())
        resp = await client.post(url, json={"code": expired})
        assert resp.status == 422
        last_day = (T0 - timedelta(days=1)).date().isoformat()
        assert (await resp.json())["detail"] == f"code: coupon {expired} expired on {last_day}"
        resp = await client.post("/v1/receipts/nope/coupons", json={"code": CODE})
        assert resp.status == 404
        receipt = await (await client.get(f"/v1/receipts/{receipt_id}")).json()
        assert receipt["coupon_codes"] == []


async def test_two_receipts_holding_one_code_redeem_it_once(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        first = await _open(client, BASKET)
        second = await _open(client, BASKET)
        for receipt_id in (first, second):
            resp = await client.post(f"/v1/receipts/{receipt_id}/coupons", json={"code": CODE})
            assert resp.status == 200
        assert (await _confirm(client, first)).status == 200
        resp = await _confirm(client, second)
        assert resp.status == 409
        assert CODE in (await resp.json())["detail"]
        # Nothing was committed: the receipt is still open; without the coupon it sells.
        resp = await client.delete(f"/v1/receipts/{second}/coupons/{CODE.lower()}")
        assert await resp.json() == {"removed": CODE}
        resp = await client.delete(f"/v1/receipts/{second}/coupons/{CODE}")
        assert resp.status == 404
        resp = await _confirm(client, second)
        assert resp.status == 200, await resp.text()

    sales = outbox_sales(config)
    assert [s.total_minor for s in sales] == [4964, 5225]
    assert [s.seq for s in sales] == [1, 2]
    assert [s.coupons_redeemed for s in sales] == [(CODE,), ()]


async def test_a_multi_use_promo_code_sells_again_and_again(config: Config) -> None:
    spring = {
        "promotion_id": "spring",
        "title": "SPRING: 1.00 off",
        "kind": "coupon",
        "status": "active",
        "priority": 30,
        "codes": ["SPRING"],
        "multi_use": True,
        "amount_minor": 100,
    }
    seed_replica(config, demo_snapshot(version=2, promotions=[*default_promotions(), spring]))
    async with running_agent(config, uploader=IdleUploader()) as client:
        for _ in range(2):
            receipt_id = await _open(client, BASKET[1:])  # 25.00: below the threshold
            resp = await client.post(f"/v1/receipts/{receipt_id}/coupons", json={"code": "spring"})
            assert (await resp.json())["multi_use"] is True
            assert (await _confirm(client, receipt_id)).status == 200
    assert [s.total_minor for s in outbox_sales(config)] == [2400, 2400]


def test_an_issued_coupon_is_made_from_the_sale_so_the_center_can_make_it_again(
    config: Config,
) -> None:
    seen: list[tuple[Sale, Calculation]] = []
    gc.unfreeze()  # earlier tests in this process may have frozen objects already
    journal = Journal(config.register.journal_path, register_id=REGISTER_ID, store_id=STORE_ID)
    replica = Replica(config.register.replica_path)
    try:
        register = Register(
            config,
            journal,
            replica,
            clock=TickClock(),
            on_confirmed=lambda sale, _balance, calc: seen.append((sale, calc)),
        )
        receipt = register.open_receipt()
        register.add_lines(receipt.receipt_id, [LineInput("milk", 3000, 3000)])
        # 90.00 - 5 % = 85.50 >= 60.00: a NEXT5 coupon.
        sale = register.confirm(receipt.receipt_id, [PaymentInput("cash", 8550)])
        assert gc.get_freeze_count() > 0  # the loaded promotion set is out of the GC's way
    finally:
        journal.close()
        replica.close()
    ((confirmed, calc),) = seen
    assert confirmed == sale
    serial = serial_for(STORE_ID, sale.sale_id, "next-visit-coupon", sale.closed_at.isoformat())
    # closed_at 2024-05-17 ~09:30 UTC + 14 days = 2024-05-31 04:30 in Chicago: the last day.
    last_day = date(2024, 5, 31)
    assert [c.code for c in calc.coupons_issued] == [make_code(KEY, "NEXT5", serial, last_day)]
    assert sale.coupons_issued == (make_code(KEY, "NEXT5", serial, last_day),)
    assert sale.coupons_redeemed == ()
    assert any(m.startswith("Купон: 5 % на следующую покупку") for m in sale.messages)


async def test_a_coupon_held_by_a_receipt_under_its_minimum_is_free_for_the_next(
    tmp_path: Path,
) -> None:
    """The hold / unused / release race, driven step by step (issue 12: the demo once stopped
    with coupon_unavailable). Receipt 1 holds the code at the real store node but is under
    the coupon's 30.00 minimum, so its sale does not redeem it; the uploader is idle, so no
    commit or release reaches the node in between. Receipt 2 must still get the code."""
    node_config = store_config(tmp_path / "store")
    async with running_node(node_config, run_jobs=False, clock=Clock()) as node:
        # The Center is away in this test: NEXT5 codes may be redeemed offline anywhere.
        await node.app[RESERVATIONS_KEY].run(
            lambda b: b.save_policies([("NEXT5", "register", "any_store")], now=T0)
        )
        config = make_config(tmp_path / "pos", node.url)
        seed_replica(config)
        async with running_agent(config, uploader=IdleUploader()) as client:
            small = await _open(client, BASKET[1:])  # 25.00: under the coupon's minimum
            resp = await client.post(f"/v1/receipts/{small}/coupons", json={"code": CODE})
            assert resp.status == 200, await resp.text()
            # Held at the node now: another receipt is refused while receipt 1 is open.
            other = await _open(client, BASKET)
            resp = await client.post(f"/v1/receipts/{other}/coupons", json={"code": CODE})
            assert resp.status == 409
            assert (await resp.json())["error"] == "coupon_unavailable"
            resp = await _confirm(client, small)
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["coupons_redeemed"] == []
            # No uploader ran: the code is free because confirm released it, not consumed.
            resp = await client.post(f"/v1/receipts/{other}/coupons", json={"code": CODE})
            assert resp.status == 200, await resp.text()
            resp = await _confirm(client, other)
            assert resp.status == 200, await resp.text()
            redeemed_by = (await resp.json())["sale_id"]
            assert (await resp.json())["coupons_redeemed"] == [CODE]
            # Receipt 1's queued release went with receipt 2's hold; receipt 2's commit, still
            # queued, carries only the code its sale redeemed.
            journal = open_journal(config)
            try:
                ops = journal.reservation_ops()
                assert [op.op for op in ops] == ["commit"]
                assert journal.coupons_of_sale(redeemed_by) == (CODE,)
            finally:
                journal.close()
        third = make_config(tmp_path / "pos3", node.url)
        third = replace(third, register=replace(third.register, register_id="367-3"))
        seed_replica(third)
        async with running_agent(third, uploader=IdleUploader()) as client:
            receipt = await _open(client, BASKET)
            resp = await client.post(f"/v1/receipts/{receipt}/coupons", json={"code": CODE})
            assert resp.status == 409, await resp.text()
            assert "held by register 367-1" in (await resp.json())["detail"]


async def test_a_release_queued_while_the_node_was_away_goes_before_the_next_hold(
    tmp_path: Path,
) -> None:
    """Receipt 1 holds the code, then the store node goes away and receipt 1 is sold without
    it (the release is only queued; no uploader runs). The node comes back still holding the
    code for receipt 1: the register delivers its queued release before asking again."""
    port = free_port()
    node_config = store_config(tmp_path / "store", port=port)
    config = make_config(tmp_path / "pos", f"http://127.0.0.1:{port}")
    seed_replica(config)
    policies = [("NEXT5", "register", "any_store")]
    async with running_agent(config, uploader=IdleUploader()) as client:
        async with running_node(node_config, run_jobs=False, clock=Clock()) as node:
            await node.app[RESERVATIONS_KEY].run(lambda b: b.save_policies(policies, now=T0))
            small = await _open(client, BASKET[1:])
            resp = await client.post(f"/v1/receipts/{small}/coupons", json={"code": CODE})
            assert resp.status == 200, await resp.text()
        resp = await _confirm(client, small)  # the node is away: sold offline, release queued
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["coupons_redeemed"] == []
        async with running_node(node_config, run_jobs=False, clock=Clock()) as node:
            other = await _open(client, BASKET)
            resp = await client.post(f"/v1/receipts/{other}/coupons", json={"code": CODE})
            assert resp.status == 200, await resp.text()
            health = await (await client.get("/health")).json()
            assert health["reservations_pending"] == 0
