"""The register prices with the customer state, the tenders and every wallet's spend; bad
tenders and spends are refused naming the field, with nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pos_agent import Config
from sync_protocol import LoyaltyMovement, SalePromotion
from tests.pos_agent.pos_fakes import (
    CARD,
    CARD_BALANCE,
    IdleUploader,
    demo_snapshot,
    make_config,
    open_journal,
    outbox_sales,
    running_agent,
    seed_replica,
)

PROMOTIONS: list[dict[str, Any]] = [
    {
        "promotion_id": "welcome",
        "kind": "counter_reward",
        "status": "active",
        "counter": "purchases",
        "at": 1,
        "points": 500,
    },
    {
        "promotion_id": "swap",
        "kind": "wallet_exchange",
        "status": "active",
        "goods": {"products": ["bread"]},
        "wallet": "stickers",
        "value_minor": 10,
    },
    {
        "promotion_id": "cash",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": ["gum"]},
        "percent": "10",
        "payment_types": ["cash"],
    },
    {
        "promotion_id": "gold",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": ["milk"]},
        "amount_off_minor": 100,
        "tiers": ["gold"],
        "attributes": {"city": "Moscow"},
    },
]
STATE = {"v": 1, "tier": "gold", "attributes": {"city": "Moscow"}, "wallets": {"stickers": 12}}
BREAD = {"product_id": "bread", "qty_milli": 1000, "unit_price_minor": 250}
GUM = {"product_id": "gum", "qty_milli": 1000, "unit_price_minor": 150}
MILK = {"product_id": "milk", "qty_milli": 1000, "unit_price_minor": 300}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A register whose replica holds CARD with stickers, tier gold and city Moscow."""
    cfg = make_config(tmp_path / "pos")
    snapshot = demo_snapshot(promotions=PROMOTIONS)
    cards = tuple(
        {**row, "state": STATE} if row["card_no"] == CARD else row
        for row in snapshot.tables["cards"]
    )
    seed_replica(cfg, type(snapshot)(snapshot.version, {**snapshot.tables, "cards": cards}))
    return cfg


async def _receipt(client: Any, *lines: dict[str, Any], card: bool = True) -> str:
    rid: str = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
    resp = await client.post(f"/v1/receipts/{rid}/lines", json={"lines": list(lines)})
    assert resp.status == 200, await resp.text()
    if card:
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
        assert resp.status == 200, await resp.text()
    return rid


def _by_rule(calc: dict[str, Any]) -> dict[str, int]:
    return {d["rule_id"]: d["amount_minor"] for line in calc["lines"] for d in line["discounts"]}


async def test_wallets_tenders_tier_and_attributes_reach_the_engine(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = await _receipt(client, BREAD, GUM, MILK)
        body = {"spend": {"stickers": 5}, "payments": [{"method": "cash", "amount_minor": 0}]}
        calc = await (await client.post(f"/v1/receipts/{rid}/calculate", json=body)).json()
        # 5 stickers x 0.10 off bread; 10 % of gum for cash; 1.00 off milk for gold in Moscow.
        assert _by_rule(calc) == {"swap": 50, "cash": 15, "gold": 100}
        assert [(a["rule_id"], a["amount"]) for a in calc["accrual"]] == [("welcome", 500)]
        by_card = await (
            await client.post(
                f"/v1/receipts/{rid}/calculate",
                json={
                    "spend": {"stickers": 5},
                    "payments": [{"method": "card", "amount_minor": 0}],
                },
            )
        ).json()
        assert _by_rule(by_card) == {"swap": 50, "gold": 100}  # no cash tender: no cash rule
        total = calc["total_minor"]
        assert total == 250 + 150 + 300 - 165
        resp = await client.post(
            f"/v1/receipts/{rid}/confirm",
            json={"payments": [{"method": "cash", "amount_minor": total}], "spend": body["spend"]},
        )
        assert resp.status == 200, await resp.text()
        (sale,) = outbox_sales(config)
        assert LoyaltyMovement("stickers", "spend", 5, "swap") in sale.loyalty
        assert set(sale.promotions) == {
            SalePromotion("swap", 1000),
            SalePromotion("cash", 1000),
            SalePromotion("gold", 1000),
            SalePromotion("welcome", 0),
        }

        # The next receipt counts the first: 7 stickers left, no second welcome.
        rid = await _receipt(client, BREAD)
        resp = await client.post(f"/v1/receipts/{rid}/calculate", json={"spend": {"stickers": 8}})
        answer = await resp.json()
        assert resp.status == 422, answer
        assert answer["field"] == "spend.stickers"
        assert "8 exceeds the 7" in answer["detail"]
        calc = await (
            await client.post(f"/v1/receipts/{rid}/calculate", json={"spend": {"stickers": 7}})
        ).json()
        assert _by_rule(calc) == {"swap": 70}
        assert calc["accrual"] == []


async def test_the_card_answer_shows_the_wallets_and_tier(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
        answer = await resp.json()
    assert answer["wallets"] == {"bonus": CARD_BALANCE, "stickers": 12}
    assert answer["tier"] == "gold"


async def test_bonus_is_spent_through_spend_or_bonus_to_spend(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = await _receipt(client, MILK)
        old = await (
            await client.post(f"/v1/receipts/{rid}/calculate", json={"bonus_to_spend": 50})
        ).json()
        new = await (
            await client.post(f"/v1/receipts/{rid}/calculate", json={"spend": {"bonus": 50}})
        ).json()
        assert old["bonus_to_spend"] == new["bonus_to_spend"] == 50
        assert old["to_pay_minor"] == new["to_pay_minor"] == 200 - 50


SPEND_CASES = [
    ({"spend": [1]}, "spend"),
    ({"spend": {"stickers": -1}}, "spend.stickers"),
    ({"spend": {"stickers": 1.5}}, "spend.stickers"),
    ({"spend": {"stickers": "2"}}, "spend.stickers"),
    ({"spend": {"": 2}}, "spend"),
    ({"spend": {"chips": 1}}, "spend.chips"),  # a wallet the card does not hold
    ({"spend": {"stickers": 13}}, "spend.stickers"),
    ({"spend": {"bonus": 5}, "bonus_to_spend": 6}, "spend.bonus"),
    ({"spend": {f"w{i}": 1 for i in range(17)}}, "spend"),
    ({"payments": {"method": "cash"}}, "payments"),
    ({"payments": [{"method": "cash"}]}, "payments[0].amount_minor"),
    ({"payments": [{"method": "bonus", "amount_minor": 1}]}, "payments[0].method"),
    ({"payments": [{"method": "cash", "amount_minor": -1}]}, "payments[0].amount_minor"),
]


@pytest.mark.parametrize(("extra", "field"), SPEND_CASES)
@pytest.mark.parametrize("step", ["calculate", "confirm"])
async def test_bad_tenders_and_spends_name_the_field_and_write_nothing(
    config: Config, extra: dict[str, Any], field: str, step: str
) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = await _receipt(client, BREAD)
        body = dict(extra)
        if step == "confirm":
            body.setdefault("payments", [{"method": "cash", "amount_minor": 250}])
        resp = await client.post(f"/v1/receipts/{rid}/{step}", json=body)
        answer = await resp.json()
        still_open = await client.get(f"/v1/receipts/{rid}")
        summary = await (await client.get("/v1/sales/summary")).json()
    assert resp.status == 422, answer
    assert answer["field"] == field, answer
    assert still_open.status == 200
    assert summary["receipts"] == 0
    journal = open_journal(config)
    try:
        assert journal.stats().last_seq == 0
    finally:
        journal.close()


async def test_spending_a_wallet_needs_a_card(config: Config) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = await _receipt(client, BREAD, card=False)
        resp = await client.post(f"/v1/receipts/{rid}/calculate", json={"spend": {"stickers": 1}})
        answer = await resp.json()
    assert resp.status == 422 and answer["field"] == "spend.stickers", answer
