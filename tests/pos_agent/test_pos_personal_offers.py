"""Personal offers and issued coupons carried by the replica's card rows, at the register."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pos_agent.errors import ReplicaError
from pos_agent.replica import Replica
from sync_protocol import MasterDelta, MasterSnapshot, replica_checksum
from tests.pos_agent.pos_fakes import (
    CARD,
    T0,
    IdleUploader,
    TickClock,
    demo_snapshot,
    make_config,
    running_agent,
    seed_replica,
)

PERSONAL = {"promotion_id": "personal", "kind": "personal_offers", "status": "active"}
OFFERS = [
    {
        "offer_id": "milk",
        "product_id": "milk",
        "percent": "25",
        "valid_from": None,
        "valid_to": (T0 + timedelta(days=1)).isoformat(),
        "source": "model",
    },
    {  # over before the register's clock: never applied, even from a stale replica
        "offer_id": "bread",
        "product_id": "bread",
        "percent": "50",
        "valid_from": None,
        "valid_to": (T0 - timedelta(days=1)).isoformat(),
        "source": "manual",
    },
]
COUPONS = [
    {
        "code": "SPR-LIVE",
        "batch_id": "cb-1",
        "promotion_id": "spring",
        "single_use": True,
        "valid_from": None,
        "valid_to": "2024-05-31",
    },
    {
        "code": "SPR-OLD",
        "batch_id": "cb-0",
        "promotion_id": "spring",
        "single_use": False,
        "valid_from": None,
        "valid_to": "2024-05-01",
    },
]


def _snapshot(card: dict[str, Any]) -> MasterSnapshot:
    base = demo_snapshot(promotions=[PERSONAL])
    return dataclasses.replace(base, tables={**base.tables, "cards": (card,)})


def _card_row(**extra: Any) -> dict[str, Any]:
    return {"card_no": CARD, "bonus_balance": 0, "segments": [], **extra}


async def test_offers_price_the_sale_and_the_card_answer_lists_coupons(tmp_path: Path) -> None:
    config = make_config(tmp_path / "pos")
    seed_replica(config, _snapshot(_card_row(personal_offers=OFFERS, coupons=COUPONS)))
    async with running_agent(config, clock=TickClock(), uploader=IdleUploader()) as client:
        receipt_id = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        lines = [
            {"product_id": "milk", "qty_milli": 1000, "unit_price_minor": 1000},
            {"product_id": "bread", "qty_milli": 1000, "unit_price_minor": 400},
        ]
        await client.post(f"/v1/receipts/{receipt_id}/lines", json={"lines": lines})
        resp = await client.post(f"/v1/receipts/{receipt_id}/card", json={"card_no": CARD})
        answer = await resp.json()
        assert answer["personal_offers"] == [
            {
                "offer_id": "milk",
                "product_id": "milk",
                "percent": "25",
                "valid_from": None,
                "valid_to": OFFERS[0]["valid_to"],
            }
        ]
        assert [c["code"] for c in answer["coupons"]] == ["SPR-LIVE"]
        calc = await (await client.post(f"/v1/receipts/{receipt_id}/calculate", json={})).json()
        assert [line["discount_minor"] for line in calc["lines"]] == [250, 0]
        assert calc["total_minor"] == 1150


def test_a_delta_without_offers_removes_them_and_checksums_agree(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "replica.db")
    try:
        snapshot = _snapshot(_card_row(personal_offers=OFFERS, coupons=COUPONS))
        replica.apply_snapshot(snapshot)
        card = replica.card(CARD)
        assert card is not None
        assert [o.offer_id for o in card.offers_at(T0)] == ["milk"]
        assert [c.code for c in card.coupons_at(T0)] == ["SPR-LIVE"]
        assert replica.checksum() == replica_checksum(snapshot.tables)
        plain = _card_row()
        replica.apply_delta(MasterDelta(1, 2, upserts={"cards": (plain,)}))
        card = replica.card(CARD)
        assert card is not None and card.personal_offers == () and card.coupons == ()
        assert replica.checksum() == replica_checksum({**snapshot.tables, "cards": (plain,)})
    finally:
        replica.close()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"personal_offers": [{**OFFERS[0], "percent": "150"}]}, "personal_offers[0].percent"),
        ({"personal_offers": [{**OFFERS[0], "valid_to": "tomorrow"}]}, "[0].valid_to"),
        ({"coupons": [{"batch_id": "cb-1"}]}, "tables.cards[0].coupons[0]"),
        ({"coupons": "SPR-LIVE"}, "tables.cards[0].coupons"),
    ],
)
def test_malformed_rows_are_refused_naming_the_field(
    tmp_path: Path, extra: dict[str, Any], field: str
) -> None:
    replica = Replica(tmp_path / "replica.db")
    try:
        with pytest.raises(ReplicaError, match=field.replace("[", r"\[").replace("]", r"\]")):
            replica.apply_snapshot(_snapshot(_card_row(**extra)))
        assert replica.master_version() == 0
    finally:
        replica.close()
