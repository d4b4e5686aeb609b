"""Reservations at the store node over real HTTP: bonus holds, expiry, single-use coupons."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from store_node.app import WORKER_KEY
from store_node.config import parse_config
from store_node.errors import ConfigError
from store_node.reservations_api import RESERVATIONS_KEY
from sync_protocol import LoyaltyMovement, MasterSnapshot, Payment, encode
from tests.store_node.store_fakes import (
    T0,
    Clock,
    RunningNode,
    free_port,
    make_config,
    make_sale,
    running_node,
)

CARD = "2000000000017"


async def _seed_master(node: RunningNode, balance: int, *, card: str = CARD) -> None:
    snapshot = MasterSnapshot(
        version=7,
        tables={"cards": ({"card_no": card, "customer_id": "c1", "bonus_balance": balance},)},
    )
    payload = encode(snapshot, sender="center")
    await node.app[WORKER_KEY].run(lambda box: box.save_master(7, payload, now=T0))


async def _call(
    node: RunningNode, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else io.BytesIO(json.dumps(body).encode())
    headers = {"Content-Type": "application/json"} if body is not None else {}
    async with node.session.request(
        method, node.url + path, data=data, headers=headers
    ) as response:
        return response.status, await response.json()


def _reserve(
    receipt: str, amount: int, *, register: str = "367-1", codes: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receipt_id": receipt,
        "register_id": register,
        "card_no": CARD,
        "wallet": "bonus",
        "amount": amount,
    }
    if codes is not None:
        body["coupon_codes"] = codes
    return body


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def node(tmp_path: Path, clock: Clock) -> AsyncIterator[RunningNode]:
    config = make_config(tmp_path)
    async with running_node(config, run_jobs=False, clock=clock) as running:
        await _seed_master(running, 1000)
        yield running


async def test_reserve_within_balance_then_shortfall_is_named(node: RunningNode) -> None:
    status, grant = await _call(node, "POST", "/v1/reservations", _reserve("r1", 600))
    assert status == 201, grant
    assert grant["amount"] == 600 and grant["available"] == 1000
    assert grant["expires_at"] == "2024-05-17T09:35:00+00:00"  # T0 + ttl_s 300
    status, refused = await _call(node, "POST", "/v1/reservations", _reserve("r2", 500))
    assert status == 409
    assert refused["error"] == "insufficient_balance"
    assert "400 available" in refused["detail"] and "short by 100" in refused["detail"]


async def test_same_receipt_is_idempotent_and_amendable(node: RunningNode) -> None:
    _, first = await _call(node, "POST", "/v1/reservations", _reserve("r1", 600))
    status, again = await _call(node, "POST", "/v1/reservations", _reserve("r1", 600))
    assert status == 201 and again["reservation_id"] == first["reservation_id"]
    # The receipt's own hold does not count against its new amount.
    status, bigger = await _call(node, "POST", "/v1/reservations", _reserve("r1", 1000))
    assert status == 201 and bigger["reservation_id"] == first["reservation_id"]
    status, _ = await _call(node, "POST", "/v1/reservations", _reserve("r2", 1))
    assert status == 409


async def test_concurrent_registers_never_get_more_than_the_balance(node: RunningNode) -> None:
    requests = [
        _call(node, "POST", "/v1/reservations", _reserve(f"r{i}", 300, register=f"367-{i % 3}"))
        for i in range(12)
    ]
    answers = await asyncio.gather(*requests)
    granted = [body["amount"] for status, body in answers if status == 201]
    assert sum(granted) == 900  # three holds of 300 fit into 1000, a fourth does not
    assert all(status in (201, 409) for status, _ in answers)


async def test_release_and_expiry_give_the_points_back(node: RunningNode, clock: Clock) -> None:
    _, held = await _call(node, "POST", "/v1/reservations", _reserve("r1", 1000))
    assert (await _call(node, "POST", "/v1/reservations", _reserve("r2", 1)))[0] == 409
    status, released = await _call(node, "DELETE", f"/v1/reservations/{held['reservation_id']}")
    assert status == 200 and released == {"released": held["reservation_id"]}
    assert (await _call(node, "DELETE", f"/v1/reservations/{held['reservation_id']}"))[0] == 200
    status, second = await _call(node, "POST", "/v1/reservations", _reserve("r2", 1000))
    assert status == 201
    assert (await _call(node, "POST", "/v1/reservations", _reserve("r3", 1)))[0] == 409
    clock.advance(301)
    status, view = await _call(node, "GET", f"/v1/reservations/{second['reservation_id']}")
    assert status == 200 and view["state"] == "released"
    status, third = await _call(node, "POST", "/v1/reservations", _reserve("r3", 1000))
    assert status == 201, third


async def test_commit_counts_until_the_sale_is_at_the_center(
    node: RunningNode, clock: Clock
) -> None:
    _, held = await _call(node, "POST", "/v1/reservations", _reserve("r1", 400))
    rid = held["reservation_id"]
    sale = make_sale(
        1,
        card_no=CARD,
        payments=(Payment("cash", 750), Payment("bonus", 400)),
        loyalty=(LoyaltyMovement("bonus", "spend", 400),),
    )
    status, done = await _call(
        node, "POST", f"/v1/reservations/{rid}/commit", {"sale_id": sale.sale_id}
    )
    assert status == 200 and done["state"] == "committed" and done["sale_id"] == sale.sale_id
    # Same commit again is fine; another sale for the same hold is not; nor a release.
    assert (await _call(node, "POST", f"/v1/reservations/{rid}/commit", {"sale_id": sale.sale_id}))[
        0
    ] == 200
    other = {"sale_id": "00000000-0000-4000-8000-000000000000"}
    assert (await _call(node, "POST", f"/v1/reservations/{rid}/commit", other))[0] == 409
    assert (await _call(node, "DELETE", f"/v1/reservations/{rid}"))[0] == 409
    clock.advance(3600)  # committed holds do not expire: the points are spent
    assert (await _call(node, "POST", "/v1/reservations", _reserve("r2", 601)))[0] == 409
    # Once the sale is here, it counts (once) until the Center acknowledges it.
    await node.send(sale)
    assert (await _call(node, "POST", "/v1/reservations", _reserve("r2", 601)))[0] == 409
    status, _ = await _call(node, "POST", "/v1/reservations", _reserve("r2", 600))
    assert status == 201


async def test_offline_spends_in_held_sales_reduce_what_is_available(node: RunningNode) -> None:
    spend = make_sale(
        1,
        card_no=CARD,
        payments=(Payment("cash", 950), Payment("bonus", 200)),
        loyalty=(LoyaltyMovement("bonus", "spend", 200),),
    )
    await node.send(spend)
    status, refused = await _call(node, "POST", "/v1/reservations", _reserve("r1", 801))
    assert status == 409 and "200 spent in sales not yet at the Center" in refused["detail"]
    # Acknowledged by the Center before the master cache was fetched: in the balance already.
    await node.app[WORKER_KEY].run(
        lambda box: box.settle([spend.sale_id], [], now=T0.replace(hour=8))
    )
    status, _ = await _call(node, "POST", "/v1/reservations", _reserve("r1", 1000))
    assert status == 201


async def test_unknown_card_cannot_reserve(node: RunningNode) -> None:
    body = _reserve("r1", 1) | {"card_no": "9999"}
    status, refused = await _call(node, "POST", "/v1/reservations", body)
    assert status == 409 and "not in this store's master data" in refused["detail"]


async def test_bad_bodies_are_refused_naming_the_field(node: RunningNode) -> None:
    for body, field in (
        (_reserve("r1", -5), "body.amount"),
        (_reserve("r1", 5) | {"wallet": "cash"}, "body.wallet"),
        (_reserve("r1", 0), "body.amount"),
        (_reserve("r1", 5) | {"extra": 1}, "body.extra"),
        ({"register_id": "367-1", "amount": 5, "card_no": CARD}, "body.receipt_id"),
    ):
        status, answer = await _call(node, "POST", "/v1/reservations", body)
        assert status == 422, body
        assert answer["detail"].startswith(field), answer
    status, answer = await _call(node, "GET", "/v1/reservations/nope")
    assert status == 404 and answer["error"] == "not_found"


class CouponCenter:
    """A fake Center answering GET /v1/coupons/{code} only."""

    def __init__(self, redeemed: set[str]) -> None:
        self.redeemed = redeemed
        self.asked: list[str] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def _coupon(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        self.asked.append(code)
        if code in self.redeemed:
            return web.json_response({"code": code, "status": "redeemed"})
        return web.json_response({"error": "unknown_object", "detail": code}, status=404)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/coupons/{code}", self._coupon)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class HoldingCenter(CouponCenter):
    """A fake Center that holds codes (POST /v1/coupon-holds) and records commits/releases."""

    def __init__(self) -> None:
        super().__init__(set())
        self.holds: dict[str, str] = {}
        self.ops: list[tuple[str, str, list[str]]] = []

    async def _hold(self, request: web.Request) -> web.Response:
        body = await request.json()
        for code in body["codes"]:
            if self.holds.get(code, body["hold_id"]) != body["hold_id"]:
                return web.json_response(
                    {"error": "coupon_unavailable", "detail": f"codes: {code} is held"},
                    status=409,
                )
        for code, hold in list(self.holds.items()):
            if hold == body["hold_id"]:
                del self.holds[code]
        self.holds.update(dict.fromkeys(body["codes"], body["hold_id"]))
        return web.json_response({"hold_id": body["hold_id"]})

    async def _op(self, request: web.Request) -> web.Response:
        body = await request.json()
        hold_id, op = request.match_info["hold_id"], request.match_info["op"]
        self.ops.append((hold_id, op, body.get("codes", [])))
        for code, hold in list(self.holds.items()):
            if hold == hold_id and code not in body.get("codes", []):
                del self.holds[code]
        return web.json_response({"hold_id": hold_id})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/coupon-holds", self._hold)
        app.router.add_post("/v1/coupon-holds/{hold_id}/{op}", self._op)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


@pytest.fixture
async def holding() -> AsyncIterator[HoldingCenter]:
    center = HoldingCenter()
    await center.start()
    yield center
    await center.stop()


@pytest.fixture
async def online(tmp_path: Path, holding: HoldingCenter) -> AsyncIterator[RunningNode]:
    config = make_config(tmp_path, center_url=f"http://127.0.0.1:{holding.port}")
    async with running_node(config, run_jobs=False, clock=Clock()) as running:
        await _seed_master(running, 1000)
        yield running


async def test_single_use_coupon_is_held_for_one_receipt_only(tmp_path: Path) -> None:
    center = CouponCenter(redeemed={"PAPER-USED"})
    await center.start()
    try:
        config = make_config(tmp_path, center_url=f"http://127.0.0.1:{center.port}")
        async with running_node(config, run_jobs=False, clock=Clock()) as node:
            await _seed_master(node, 1000)
            status, held = await _call(
                node, "POST", "/v1/reservations", _reserve("r1", 0, codes=["paper-1"])
            )
            assert status == 201 and held["coupon_codes"] == ["PAPER-1"]
            assert center.asked == ["PAPER-1"]
            status, refused = await _call(
                node,
                "POST",
                "/v1/reservations",
                _reserve("r9", 0, register="367-2", codes=["PAPER-1"]),
            )
            assert status == 409 and refused["error"] == "coupon_unavailable"
            assert "held by register 367-1" in refused["detail"]
            status, refused = await _call(
                node, "POST", "/v1/reservations", _reserve("r2", 0, codes=["PAPER-USED"])
            )
            assert status == 409 and "the Center says" in refused["detail"]
            # Released: another receipt may take it (the Center is asked again: it may have
            # been redeemed in another store meanwhile).
            await _call(node, "DELETE", f"/v1/reservations/{held['reservation_id']}")
            status, _ = await _call(
                node,
                "POST",
                "/v1/reservations",
                _reserve("r9", 0, register="367-2", codes=["PAPER-1"]),
            )
            assert status == 201
            assert center.asked == ["PAPER-1", "PAPER-USED", "PAPER-1"]
    finally:
        await center.stop()


async def test_center_unreachable_the_offline_policy_decides(node: RunningNode) -> None:
    signed = "GIFT-12345678903-ABCDEF12"
    body = _reserve("r1", 0, codes=["PAPER-2"])
    status, refused = await _call(node, "POST", "/v1/reservations", body)
    assert status == 409 and "PAPER-2" in refused["detail"]
    assert "not redeemable offline" in refused["detail"]
    # A register-issued code is redeemable offline only where a sale of this store issued it.
    status, refused = await _call(
        node,
        "POST",
        "/v1/reservations",
        _reserve("r1", 0, codes=[signed]) | {"signed_codes": [signed]},
    )
    assert status == 409 and signed in refused["detail"]
    assert "only in the store that issued it" in refused["detail"]
    await node.send(make_sale(1, coupons_issued=(signed,)))
    status, held = await _call(
        node,
        "POST",
        "/v1/reservations",
        _reserve("r1", 0, codes=[signed]) | {"signed_codes": [signed]},
    )
    assert status == 201 and held["coupon_codes"] == [signed]
    # A head-office batch whose policy (fetched from the Center) is any_store goes offline too.
    await node.app[RESERVATIONS_KEY].run(
        lambda b: b.save_policies([("PAPER", "head_office", "any_store")], now=T0)
    )
    status, held = await _call(node, "POST", "/v1/reservations", body)
    assert status == 201 and held["coupon_codes"] == ["PAPER-2"]


async def test_a_code_held_but_not_redeemed_is_free_after_the_commit(
    online: RunningNode, holding: HoldingCenter
) -> None:
    """The demo's race: a receipt under the coupon's minimum holds the code, the sale does not
    redeem it; the commit (with the codes the sale redeemed) frees it for the next receipt."""
    status, first = await _call(
        online, "POST", "/v1/reservations", _reserve("r1", 0, codes=["NEXT5-1"])
    )
    assert status == 201
    # Meanwhile another receipt is refused: the code is held.
    status, refused = await _call(
        online, "POST", "/v1/reservations", _reserve("r2", 0, codes=["NEXT5-1"])
    )
    assert status == 409 and "held by register 367-1 for receipt r1" in refused["detail"]
    unused = make_sale(1)  # below the minimum: coupons_redeemed is empty
    status, done = await _call(
        online,
        "POST",
        f"/v1/reservations/{first['reservation_id']}/commit",
        {"sale_id": unused.sale_id, "coupon_codes": []},
    )
    assert status == 200 and done["coupon_codes"] == []
    # The Center heard at once: the hold of r1 is gone there as well.
    assert holding.ops == [(first["reservation_id"], "commit", [])]
    assert "NEXT5-1" not in holding.holds
    status, second = await _call(
        online, "POST", "/v1/reservations", _reserve("r2", 0, codes=["NEXT5-1"])
    )
    assert status == 201, second
    redeeming = make_sale(2, coupons_redeemed=("NEXT5-1",))
    status, done = await _call(
        online,
        "POST",
        f"/v1/reservations/{second['reservation_id']}/commit",
        {"sale_id": redeeming.sale_id, "coupon_codes": ["next5-1"]},
    )
    assert status == 200 and done["coupon_codes"] == ["NEXT5-1"]
    assert holding.ops[-1] == (second["reservation_id"], "commit", ["NEXT5-1"])
    status, refused = await _call(
        online, "POST", "/v1/reservations", _reserve("r3", 0, codes=["NEXT5-1"])
    )
    assert status == 409 and f"redeemed by sale {redeeming.sale_id}" in refused["detail"]


async def test_an_older_registers_commit_frees_the_unused_code_once_its_sale_is_here(
    node: RunningNode,
) -> None:
    # The Center is away and C- codes may go offline: only this store's own records decide.
    await node.app[RESERVATIONS_KEY].run(
        lambda b: b.save_policies([("C", "head_office", "any_store")], now=T0)
    )
    _, first = await _call(node, "POST", "/v1/reservations", _reserve("r1", 0, codes=["C-1"]))
    unused = make_sale(1)
    status, _ = await _call(
        node,
        "POST",
        f"/v1/reservations/{first['reservation_id']}/commit",
        {"sale_id": unused.sale_id},  # no coupon_codes: a register of the release before
    )
    assert status == 200
    status, refused = await _call(
        node, "POST", "/v1/reservations", _reserve("r2", 0, codes=["C-1"])
    )
    assert status == 409 and unused.sale_id in refused["detail"]
    await node.send(unused)  # the sale arrives: it did not redeem C-1
    status, second = await _call(node, "POST", "/v1/reservations", _reserve("r2", 0, codes=["C-1"]))
    assert status == 201, second


async def test_coupon_redeemed_in_a_sale_held_here_is_refused(node: RunningNode) -> None:
    sale = make_sale(1, coupons_redeemed=("PAPER-3",))
    await node.send(sale)
    status, refused = await _call(
        node, "POST", "/v1/reservations", _reserve("r1", 0, codes=["PAPER-3"])
    )
    assert status == 409 and sale.sale_id in refused["detail"]


def test_reservations_config_defaults_and_problems(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert config.reservations.ttl_s == 300.0
    assert config.reservations.center_timeout_s == 1.0
    doc: dict[str, Any] = {
        "store": {"store_id": "367", "data_dir": "store", "advertise": False},
        "center": {"url": "http://127.0.0.1:9"},
        "reservations": {"ttl_s": 0, "center_timeout_s": "x", "max": 1},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, base_dir=tmp_path)
    problems = "\n".join(caught.value.problems)
    assert "reservations.ttl_s" in problems
    assert "reservations.center_timeout_s" in problems
    assert "reservations.max: unknown key" in problems
    doc["reservations"] = {"ttl_s": 60}
    assert parse_config(doc, base_dir=tmp_path).reservations.ttl_s == 60.0
