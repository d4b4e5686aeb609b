"""The store node serves a card's customer state current for its own registers' sales."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store_node.salesbox import SalesBox
from sync_protocol import (
    LoyaltyMovement,
    MasterSnapshot,
    SalePromotion,
    read_state,
    replica_checksum,
)
from tests.store_node.store_fakes import T0, make_sale

# The Center counted register 367-1 up to seq 1 (one purchase, welcome fired, 10 stickers).
CENTER_STATE = {
    "v": 1,
    "attributes": {"city": "Moscow"},
    "purchases": 1,
    "visits": 1,
    "spend_minor": 1150,
    "wallets": {"stickers": 10},
    "fired_total": {"welcome": 1},
    "seen": {"367-1": 1},
    "days": {T0.date().isoformat(): {"purchases": 1, "spend_minor": 1150, "fired": {"welcome": 1}}},
}
CARD = {"card_no": "29", "customer_id": "c1", "status": "active", "bonus_balance": 5}


@pytest.fixture
def box(tmp_path: Path) -> Iterator[SalesBox]:
    opened = SalesBox(tmp_path / "store.db", store_id="367")
    tables = {
        "cards": ({**CARD, "state": CENTER_STATE},),
        "settings": ({"name": "timezone", "value": "UTC"},),
    }
    snapshot = MasterSnapshot(version=3, tables=tables, checksum=replica_checksum(tables))
    opened.apply_master(snapshot, now=T0)
    yield opened
    opened.close()


def test_the_served_card_counts_the_store_sales_the_center_has_not(box: SalesBox) -> None:
    counted = make_sale(1, card_no="29")  # already in the Center's state (seen 367-1: 1)
    other = make_sale(
        1,
        card_no="29",
        register_id="367-2",
        promotions=(SalePromotion("cap", 2000),),
        loyalty=(LoyaltyMovement("stickers", "spend", 4, "swap"),),
    )
    mine = make_sale(2, card_no="29")
    stranger = make_sale(3, card_no="30")
    ack = box.accept([counted, other, mine, stranger], now=T0)
    assert len(ack.accepted) == 4
    row = box.master_card("29")
    assert row is not None
    state = read_state(row["state"])
    assert (state.purchases, state.visits, state.spend_minor) == (3, 1, 3450)
    assert state.fired_total == {"welcome": 1, "cap": 1, "promo-10pct": 1}
    assert state.wallets == {"stickers": 6}
    assert state.seen == {"367-1": 2, "367-2": 1}
    assert state.days[T0.date().isoformat()].qty_milli == {"cap": 2000, "promo-10pct": 2000}
    assert state.attributes == {"city": "Moscow"}  # the Center's fields pass through
    # The cached row itself is the Center's, unchanged (its checksum is the Center's).
    assert box.serve_master(0).tables["cards"][0]["state"] == CENTER_STATE  # type: ignore[union-attr]


def test_a_card_without_store_sales_is_served_as_the_center_sent_it(box: SalesBox) -> None:
    assert box.master_card("29") == {**CARD, "state": CENTER_STATE}
