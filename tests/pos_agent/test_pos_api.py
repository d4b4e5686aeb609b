"""The register software's JSON API over real HTTP, on real SQLite files."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pos_agent import Config
from sync_protocol import LoyaltyMovement, Payment
from tests.pos_agent.pos_fakes import (
    BREAD,
    CARD,
    CARD_BALANCE,
    IdleUploader,
    make_config,
    open_journal,
    outbox_sales,
    running_agent,
    sell,
)


async def test_full_receipt_flow_prices_with_default_promotions_and_queues_the_sale(
    config: Config,
) -> None:
    uploader = IdleUploader()
    async with running_agent(config, uploader=uploader) as client:
        resp = await client.post("/v1/receipts", json={})
        assert resp.status == 201
        receipt_id = (await resp.json())["receipt_id"]

        resp = await client.post(
            f"/v1/receipts/{receipt_id}/lines",
            json={
                "lines": [
                    {"product_id": "milk", "qty_milli": 2000, "unit_price_minor": 3000},
                    {"product_id": "bread", "qty_milli": 1000, "unit_price_minor": 500},
                    {"product_id": "gum", "qty_milli": 1000, "unit_price_minor": 150},
                ]
            },
        )
        assert (await resp.json()) == {"line_nos": [1, 2, 3]}
        resp = await client.post(
            f"/v1/receipts/{receipt_id}/lines",
            json={
                "product_id": "apples",  # not in the replica: still sells
                "qty_milli": 1234,
                "unit_price_minor": 199,
                "amount_minor": 246,
                "weighed": True,
            },
        )
        assert (await resp.json()) == {"line_nos": [4]}
        resp = await client.delete(f"/v1/receipts/{receipt_id}/lines/3")
        assert (await resp.json()) == {"removed": 3}

        receipt = await (await client.get(f"/v1/receipts/{receipt_id}")).json()
        assert [line["line_no"] for line in receipt["lines"]] == [1, 2, 4]
        assert [line["amount_minor"] for line in receipt["lines"]] == [6000, 500, 246]

        resp = await client.post(f"/v1/receipts/{receipt_id}/card", json={"card_no": CARD})
        assert (await resp.json()) == {
            "card_no": CARD,
            "known": True,
            "bonus_balance": CARD_BALANCE,
            "wallets": {"bonus": CARD_BALANCE},
            "tier": "",
            "segments": [],
            "coupons": [],
            "personal_offers": [],
            "personal_messages": [],
        }

        resp = await client.post(
            f"/v1/receipts/{receipt_id}/calculate", json={"bonus_to_spend": 100}
        )
        calc = await resp.json()
        # threshold-5-10: subtotal 6746 >= 5000 -> 5 % = 337 (337.3), spread by amount.
        assert calc["subtotal_minor"] == 6746
        assert calc["discount_minor"] == 337
        assert calc["total_minor"] == 6746 - 337
        assert sum(line["discount_minor"] for line in calc["lines"]) == 337
        assert {d["rule_id"] for line in calc["lines"] for d in line["discounts"]} == {
            "threshold-5-10"
        }
        assert [line["known_product"] for line in calc["lines"]] == [True, True, False]
        # base-accrual-3: 3 % of (total - bonus paid) = 3 % of 6309 = 189.27 -> 189.
        assert calc["accrual"] == [
            {
                "wallet": "bonus",
                "amount": 189,
                "rule_id": "base-accrual-3",
                "active_from": None,
                "expires_at": calc["accrual"][0]["expires_at"],
            }
        ]
        # At most half the receipt, and no more than the card holds.
        assert calc["bonus_payable_max"] == CARD_BALANCE
        assert calc["bonus_to_spend"] == 100
        assert calc["to_pay_minor"] == 6409 - 100
        assert calc["promo_version"] == 1
        assert calc["messages"]["slip"]

        resp = await client.post(
            f"/v1/receipts/{receipt_id}/confirm",
            json={
                "payments": [
                    {"method": "cash", "amount_minor": 5000},
                    {"method": "card", "amount_minor": 1309},
                ],
                "bonus_to_spend": 100,
            },
        )
        assert resp.status == 200, await resp.text()
        confirmed = await resp.json()
        assert confirmed["seq"] == 1
        assert confirmed["total_minor"] == 6409
        assert uploader.wakes == 1

        # The receipt is closed now: every further operation is a conflict.
        resp = await client.get(f"/v1/receipts/{receipt_id}")
        assert resp.status == 409
        assert confirmed["sale_id"] in (await resp.json())["detail"]
        resp = await client.post(
            f"/v1/receipts/{receipt_id}/confirm",
            json={"payments": [{"method": "cash", "amount_minor": 6409}]},
        )
        assert resp.status == 409
        assert (await resp.json())["error"] == "conflict"

    [sale] = outbox_sales(config)
    assert sale.sale_id == confirmed["sale_id"]
    assert (sale.seq, sale.register_id, sale.store_id) == (1, "367-1", "367")
    assert (sale.subtotal_minor, sale.discount_minor, sale.total_minor) == (6746, 337, 6409)
    assert sale.subtotal_minor == sum(line.amount_minor for line in sale.lines)
    assert sale.discount_minor == sum(d.amount_minor for line in sale.lines for d in line.discounts)
    assert sum(p.amount_minor for p in sale.payments) == sale.total_minor
    assert sale.payments == (
        Payment("cash", 5000),
        Payment("card", 1309),
        Payment("bonus", 100),
    )
    assert sale.loyalty[0].kind == "accrue" and sale.loyalty[0].amount == 189
    assert sale.loyalty[1] == LoyaltyMovement(wallet="bonus", kind="spend", amount=100)
    assert sale.card_no == CARD
    assert [line.line_no for line in sale.lines] == [1, 2, 4]
    apples = sale.lines[2]
    assert (apples.weighed, apples.known_product, apples.amount_minor) == (True, False, 246)
    assert sale.promo_version == 1
    assert sale.closed_at > sale.opened_at
    assert sale.closed_at.utcoffset() is not None
    assert sale.messages == tuple(calc["messages"]["slip"])


async def test_register_without_master_data_still_sells(tmp_path: Path) -> None:
    config = make_config(tmp_path / "empty")  # no replica seeded at all
    async with running_agent(config, uploader=IdleUploader()) as client:
        answer = await sell(client, [BREAD], card_no="9999")
        health = await (await client.get("/health")).json()
    [sale] = outbox_sales(config)
    assert answer["total_minor"] == 250
    assert sale.lines[0].known_product is False
    assert sale.promo_version == 0
    assert health["master_version"] == 0
    assert health["queue_depth"] == 1


async def test_confirms_get_monotonic_gapless_seqs_even_when_concurrent(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        first = await sell(client, [BREAD])
        answers = await asyncio.gather(*(sell(client, [BREAD]) for _ in range(8)))
        summary = await (await client.get("/v1/sales/summary")).json()
    seqs = sorted([first["seq"], *(a["seq"] for a in answers)])
    assert seqs == list(range(1, 10))
    assert [sale.seq for sale in outbox_sales(config)] == list(range(1, 10))
    assert summary == {
        "register_id": "367-1",
        "receipts": 9,
        "lines": 9,
        "total_minor": 9 * 250,
        "max_seq": 9,
        "queued": 9,
    }


async def test_offline_bonus_spend_cannot_exceed_the_replica_balance(config: Config) -> None:
    big = {"product_id": "milk", "qty_milli": 10_000, "unit_price_minor": 3000}
    async with running_agent(config, uploader=IdleUploader()) as client:
        await sell(client, [big], card_no=CARD, bonus_to_spend=700)

        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(f"/v1/receipts/{rid}/lines", json=big)
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
        assert (await resp.json())["bonus_balance"] == CARD_BALANCE - 700
        resp = await client.post(f"/v1/receipts/{rid}/calculate", json={"bonus_to_spend": 301})
        assert resp.status == 409  # no store node: the offline limits refuse it
        assert (await resp.json())["field"] == "bonus_to_spend"
        assert "301 exceeds the 300 available offline" in (await resp.json())["detail"]
        # The total after the 10 % threshold discount is 27000.
        resp = await client.post(
            f"/v1/receipts/{rid}/confirm",
            json={"payments": [{"method": "cash", "amount_minor": 26699}], "bonus_to_spend": 301},
        )
        assert resp.status == 409
        assert "bonus_to_spend" in (await resp.json())["detail"]
        resp = await client.post(
            f"/v1/receipts/{rid}/confirm",
            json={"payments": [{"method": "cash", "amount_minor": 26700}], "bonus_to_spend": 300},
        )
        assert resp.status == 200, await resp.text()

        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(f"/v1/receipts/{rid}/lines", json=big)
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
        assert (await resp.json())["bonus_balance"] == 0
        resp = await client.post(f"/v1/receipts/{rid}/calculate", json={"bonus_to_spend": 1})
        assert resp.status == 409

    spent = [m.amount for sale in outbox_sales(config) for m in sale.loyalty if m.kind == "spend"]
    assert spent == [700, 300]


async def test_an_unknown_card_earns_accrual_with_a_zero_balance(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(f"/v1/receipts/{rid}/lines", json=BREAD)
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": "7777"})
        assert (await resp.json()) == {
            "card_no": "7777",
            "known": False,
            "bonus_balance": 0,
            "wallets": {},
            "tier": "",
            "segments": [],
            "coupons": [],
            "personal_offers": [],
            "personal_messages": [],
        }
        calc = await (await client.post(f"/v1/receipts/{rid}/calculate", json={})).json()
    # 3 % base + 1 % small basket (total 2.50 < 20.00) of 250.
    assert {a["rule_id"]: a["amount"] for a in calc["accrual"]} == {
        "base-accrual-3": 8,
        "small-basket-1": 2,
    }


async def test_cancel_closes_the_receipt_without_a_sale(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(f"/v1/receipts/{rid}/lines", json=BREAD)
        resp = await client.post(f"/v1/receipts/{rid}/cancel", json={})
        assert (await resp.json()) == {"cancelled": rid}
        resp = await client.post(f"/v1/receipts/{rid}/lines", json=BREAD)
        assert resp.status == 409
        assert "cancelled" in (await resp.json())["detail"]
    assert outbox_sales(config) == []


async def test_health_reports_the_register(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        await sell(client, [BREAD])
        health = await (await client.get("/health")).json()
    assert health["register_id"] == "367-1"
    assert health["store_id"] == "367"
    assert health["queue_depth"] == 1
    assert health["last_seq"] == 1
    assert health["master_version"] == 1
    assert health["oldest_queued_at"] is not None
    assert {"store_url", "last_upload_at", "last_error"} <= set(health)


# -- bad input: 4xx JSON naming the field, nothing written ---------------------------------

VALID = {"product_id": "milk", "qty_milli": 1000, "unit_price_minor": 100}

BAD_LINES: list[tuple[Any, int, str]] = [
    (b"{not json", 400, "body: not valid JSON"),
    (b'{"product_id": "milk", "qty_milli": NaN, "unit_price_minor": 1}', 400, "NaN"),
    (b"\xff\xfe", 400, "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "body"),
    ([VALID], 422, "body: expected a JSON object"),
    (
        {"lines": [VALID, VALID, {**VALID, "qty_milli": "3"}]},
        422,
        'lines[2].qty_milli: expected a positive integer, got "3"',
    ),
    ({**VALID, "qty_milli": 0}, 422, "qty_milli: expected a positive integer, got 0"),
    ({**VALID, "qty_milli": 1.5}, 422, "qty_milli: expected a positive integer, got 1.5"),
    ({**VALID, "qty_milli": True}, 422, "qty_milli: expected a positive integer, got true"),
    ({**VALID, "unit_price_minor": -1}, 422, "unit_price_minor: expected a non-negative"),
    ({**VALID, "amount_minor": "12"}, 422, "amount_minor: expected a non-negative integer"),
    ({**VALID, "weighed": "yes"}, 422, "weighed: expected true or false"),
    ({**VALID, "product_id": ""}, 422, "product_id: expected 1..64 printable"),
    ({**VALID, "product_id": 42}, 422, "product_id: expected a string, got 42"),
    ({"product_id": "milk", "qty": 1000, "unit_price_minor": 1}, 422, "qty: unknown field"),
    ({"qty_milli": 1000, "unit_price_minor": 1}, 422, "product_id: missing"),
    ({"lines": []}, 422, "lines: expected a non-empty list"),
    ({"lines": [VALID], "extra": 1}, 422, "extra: unknown field"),
    ({**VALID, "qty_milli": 10**12}, 422, "qty_milli: 1000000000000 is larger than the maximum"),
    (
        {**VALID, "qty_milli": 10**9, "unit_price_minor": 10**10},
        422,
        "qty_milli: 1000000000 milli-units at 10000000000 make a line larger",
    ),
]


@pytest.mark.parametrize(("body", "status", "detail"), BAD_LINES)
async def test_bad_lines_are_refused_and_nothing_is_written(
    config: Config, body: Any, status: int, detail: str
) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(f"/v1/receipts/{rid}/lines", json=BREAD)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = await client.post(
            f"/v1/receipts/{rid}/lines",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        answer = await resp.json()
        receipt = await (await client.get(f"/v1/receipts/{rid}")).json()
    assert resp.status == status, answer
    assert detail in answer["detail"]
    assert answer["error"] == ("malformed" if status == 400 else "invalid")
    assert [line["product_id"] for line in receipt["lines"]] == ["bread"]


async def test_oversized_and_wrong_content_type_bodies_are_refused(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        huge = json.dumps({"lines": [VALID] * 30_000}).encode()
        assert len(huge) > 1024 * 1024
        resp = await client.post(
            f"/v1/receipts/{rid}/lines",
            data=io.BytesIO(huge),
            headers={"Content-Type": "application/json"},
        )
        assert resp.status == 413
        assert (await resp.json())["error"] == "too_large"

        resp = await client.post(
            f"/v1/receipts/{rid}/lines",
            data=json.dumps(VALID),
            headers={"Content-Type": "text/plain"},
        )
        assert resp.status == 415
        assert "Content-Type" in (await resp.json())["detail"]

        receipt = await (await client.get(f"/v1/receipts/{rid}")).json()
    assert receipt["lines"] == []


async def test_unknown_receipts_lines_and_routes_are_404(config: Config) -> None:
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/v1/receipts/nope", None),
        ("POST", "/v1/receipts/nope/lines", VALID),
        ("POST", "/v1/receipts/nope/card", {"card_no": CARD}),
        ("POST", "/v1/receipts/nope/calculate", {}),
        ("POST", "/v1/receipts/nope/confirm", {"payments": []}),
        ("POST", "/v1/receipts/nope/cancel", {}),
        ("DELETE", "/v1/receipts/nope/lines/1", None),
    ]
    async with running_agent(config, uploader=IdleUploader()) as client:
        for method, path, body in calls:
            resp = await client.request(method, path, json=body)
            answer = await resp.json()
            assert resp.status == 404, (path, answer)
            assert answer == {"error": "not_found", "detail": "receipt_id: no receipt 'nope'"}

        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        resp = await client.delete(f"/v1/receipts/{rid}/lines/7")
        assert resp.status == 404
        assert "line_no" in (await resp.json())["detail"]
        resp = await client.delete(f"/v1/receipts/{rid}/lines/abc")
        assert resp.status == 422
        assert (await resp.json())["field"] == "line_no"
        resp = await client.get("/v1/nothing-here")
        assert resp.status == 404
        assert (await resp.json())["error"] == "not_found"


CONFIRM_CASES: list[tuple[Any, str]] = [
    (
        {"payments": [{"method": "cash", "amount_minor": 249}]},
        "payments: sum of amount_minor (249)",
    ),
    ({"payments": [{"method": "cash", "amount_minor": 251}]}, "does not equal total_minor (250)"),
    ({"payments": [{"method": "bonus", "amount_minor": 250}]}, "payments[0].method"),
    ({"payments": [{"method": "cash", "amount_minor": "250"}]}, "payments[0].amount_minor"),
    ({"payments": [{"method": "cash"}]}, "payments[0].amount_minor: missing"),
    ({"payments": {"cash": 250}}, "payments: expected a list"),
    ({}, "payments: missing"),
    (
        {"payments": [{"method": "cash", "amount_minor": 150}], "bonus_to_spend": 100},
        "bonus_to_spend: no card",
    ),
    ({"payments": [], "bonus_to_spend": -5}, "bonus_to_spend: expected a non-negative integer"),
]


@pytest.mark.parametrize(("body", "detail"), CONFIRM_CASES)
async def test_bad_confirms_are_422_and_write_nothing(
    config: Config, body: Any, detail: str
) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(f"/v1/receipts/{rid}/lines", json=BREAD)
        resp = await client.post(f"/v1/receipts/{rid}/confirm", json=body)
        answer = await resp.json()
        still_open = await client.get(f"/v1/receipts/{rid}")
        summary = await (await client.get("/v1/sales/summary")).json()
    assert resp.status == 422, answer
    assert detail in answer["detail"]
    assert still_open.status == 200
    assert summary["receipts"] == 0
    journal = open_journal(config)
    try:
        assert journal.stats().last_seq == 0  # no sequence number was used up
    finally:
        journal.close()


async def test_confirming_an_empty_receipt_is_refused(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        resp = await client.post(f"/v1/receipts/{rid}/confirm", json={"payments": []})
        assert resp.status == 422
        assert (await resp.json())["field"] == "lines"
        resp = await client.post("/v1/receipts", json={"cashier": "Ann"})
        assert resp.status == 422
        assert "cashier: unknown field" in (await resp.json())["detail"]
