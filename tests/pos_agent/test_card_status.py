"""Card rows from the Center: a blocked or deactivated card is refused, segments price rules."""

from __future__ import annotations

from pathlib import Path

from pos_agent import Config
from tests.pos_agent.pos_fakes import (
    IdleUploader,
    demo_snapshot,
    make_config,
    running_agent,
    seed_replica,
)

GOLD_ONLY = {
    "promotion_id": "GOLD5",
    "kind": "threshold_discount",
    "status": "active",
    "priority": 10,
    "segments": ["gold"],
    "steps": [{"min_total_minor": 1000, "percent": "5"}],
}
MILK = {"product_id": "milk", "qty_milli": 1000, "unit_price_minor": 2000}


def _config(tmp_path: Path) -> Config:
    config = make_config(tmp_path / "pos")
    snapshot = demo_snapshot(promotions=[GOLD_ONLY])
    cards = (
        {"card_no": "1001", "bonus_balance": 50, "segments": ["silver", "gold"]},
        {"card_no": "1002", "bonus_balance": 50, "segments": ["silver"]},
        {"card_no": "1003", "bonus_balance": 900, "status": "blocked"},
        {"card_no": "1004", "bonus_balance": 900, "status": "inactive"},
        {"card_no": "1005", "bonus_balance": 0, "status": "issued"},
    )
    seed_replica(config, type(snapshot)(version=1, tables={**snapshot.tables, "cards": cards}))
    return config


async def test_a_blocked_or_inactive_card_is_refused_and_not_kept(tmp_path: Path) -> None:
    async with running_agent(_config(tmp_path), uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        for card_no, status in (("1003", "blocked"), ("1004", "inactive")):
            resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": card_no})
            body = await resp.json()
            assert resp.status == 409
            assert body["error"] == "card_refused"
            assert body["detail"].startswith(f"card_no: card {card_no} is {status}")
        receipt = await (await client.get(f"/v1/receipts/{rid}")).json()
        assert receipt["card_no"] is None
        # A physical card issued but not yet activated still earns.
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": "1005"})
        assert resp.status == 200


async def test_any_of_the_cards_segments_prices_a_segment_rule(tmp_path: Path) -> None:
    async with running_agent(_config(tmp_path), uploader=IdleUploader()) as client:
        discounts = {}
        for card_no in ("1001", "1002"):
            rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
            await client.post(f"/v1/receipts/{rid}/lines", json=MILK)
            view = await (
                await client.post(f"/v1/receipts/{rid}/card", json={"card_no": card_no})
            ).json()
            assert view["known"] is True
            calc = await (await client.post(f"/v1/receipts/{rid}/calculate", json={})).json()
            discounts[card_no] = (view["segments"], calc["discount_minor"])
    assert discounts == {"1001": (["silver", "gold"], 100), "1002": (["silver"], 0)}
