"""A confirmed sale records the customer context it was priced with (segments, offers)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

from sync_protocol import MasterSnapshot, SaleOffer
from tests.pos_agent.pos_fakes import (
    CARD,
    T0,
    IdleUploader,
    TickClock,
    demo_snapshot,
    make_config,
    open_journal,
    outbox_sales,
    running_agent,
    seed_replica,
    sell,
)

PERSONAL = {"promotion_id": "personal", "kind": "personal_offers", "status": "active"}
GOLD_ONLY = {
    "promotion_id": "GOLD5",
    "kind": "threshold_discount",
    "status": "active",
    "priority": 10,
    "segments": ["gold"],
    "steps": [{"min_total_minor": 1000, "percent": "5"}],
}
OFFERS = [
    {  # stored with a trailing zero: the sale records the plain text "12.5"
        "offer_id": "po-milk",
        "product_id": "milk",
        "percent": "12.50",
        "valid_from": None,
        "valid_to": (T0 + timedelta(days=1)).isoformat(),
        "source": "model",
    },
    {  # over before the register's clock: not priced with, so not recorded
        "offer_id": "po-bread",
        "product_id": "bread",
        "percent": "50",
        "valid_from": None,
        "valid_to": (T0 - timedelta(days=1)).isoformat(),
        "source": "manual",
    },
]
LINES = [
    {"product_id": "milk", "qty_milli": 1000, "unit_price_minor": 2000},
    {"product_id": "bread", "qty_milli": 1000, "unit_price_minor": 400},
]


def _snapshot() -> MasterSnapshot:
    base = demo_snapshot(promotions=[PERSONAL, GOLD_ONLY])
    card = {
        "card_no": CARD,
        "bonus_balance": 0,
        "segment": "regular",
        "segments": ["gold", "regular"],
        "personal_offers": OFFERS,
    }
    plain = {"card_no": "2000000000028", "bonus_balance": 0, "segments": []}
    return dataclasses.replace(base, tables={**base.tables, "cards": (card, plain)})


async def test_the_sale_records_the_segments_and_offers_it_was_priced_with(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path / "pos")
    seed_replica(config, _snapshot())
    async with running_agent(config, clock=TickClock(), uploader=IdleUploader()) as client:
        with_card: dict[str, Any] = await sell(client, LINES, card_no=CARD)
        plain: dict[str, Any] = await sell(client, LINES, card_no="2000000000028")
        anonymous: dict[str, Any] = await sell(client, LINES)
    journal = open_journal(config)
    try:
        sales = {sale.sale_id: sale for sale in journal.sales()}
    finally:
        journal.close()
    sale = sales[with_card["sale_id"]]
    # Both the gold-only promotion (5 % of 24.00) and the personal offer priced it: 12.5 % of
    # the milk left after its 1.00 off.
    assert [[(d.rule_id, d.amount_minor) for d in line.discounts] for line in sale.lines] == [
        [("GOLD5", 100), ("personal", 238)],
        [("GOLD5", 20)],
    ]
    assert sale.segments == ("regular", "gold")
    assert sale.personal_offers == (SaleOffer("po-milk", ("milk",), "12.5"),)
    for other in (plain["sale_id"], anonymous["sale_id"]):
        assert (sales[other].segments, sales[other].personal_offers) == ((), ())
        assert all(not line.discounts for line in sales[other].lines)
    # The outbox holds the same sale in its committed bytes: the context travels upstream.
    queued = {s.sale_id: s for s in outbox_sales(config)}
    assert queued[sale.sale_id] == sale
