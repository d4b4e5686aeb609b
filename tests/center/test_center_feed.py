"""The master-data change feed on both backends: deltas, tombstones, checksums, card scope."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from center.feed.store import FeedSettings
from center.storage import LedgerEntry, Storage
from sync_protocol import MasterDelta, MasterSnapshot, encode, replica_checksum
from tests.center.center_factories import CARD, OTHER_CARD, T0, make_sale, master_tables

NOW = T0 + timedelta(days=1)
FAST = FeedSettings(tick_every_s=0, checksum_every_s=0)
KEYS = {
    "products": "product_id",
    "stores": "store_id",
    "promotions": "promotion_id",
    "settings": "name",
    "cards": "card_no",
}

Replica = dict[str, dict[str, dict[str, Any]]]

# The customer state the Center derives for CARD from its one sale at 367 (4.49, 40 accrued by
# base-accrual-3 on 2024-03-01) and the customer's attributes (center/crm/state.py).
CARD_STATE = {
    "v": 1,
    "attributes": {"age": "65+"},
    "purchases": 1,
    "visits": 1,
    "spend_minor": 449,
    "wallets": {"bonus": 40},
    "fired_total": {"base-accrual-3": 1},
    "seen": {"367-1": 1},
    "days": {
        "2024-03-01": {
            "purchases": 1,
            "spend_minor": 449,
            "fired": {"base-accrual-3": 1},
            "accrued": {"bonus": 40},
        }
    },
}


def apply(replica: Replica, message: MasterSnapshot | MasterDelta | None) -> int:
    """Apply a message as a store would; check its checksum; return the new version."""
    assert message is not None
    if isinstance(message, MasterSnapshot):
        replica.clear()
        for table, rows in message.tables.items():
            replica[table] = {row[KEYS[table]]: copy.deepcopy(row) for row in rows}
        version = message.version
    else:
        for table, keys in message.deletes.items():
            for key in keys:
                replica.get(table, {}).pop(key, None)
        for table, rows in message.upserts.items():
            held = replica.setdefault(table, {})
            for row in rows:
                held[row[KEYS[table]]] = copy.deepcopy(row)
        version = message.to_version
    if message.checksum:
        assert replica_checksum({t: list(r.values()) for t, r in replica.items()}) == (
            message.checksum
        ), "replica drifted from the Center"
    return version


def sync(storage: Storage, store: str, replica: Replica, since: int, **kw: Any) -> int:
    """Poll until up to date (following pages); the final version."""
    settings = FeedSettings(**{"tick_every_s": 0, "checksum_every_s": 0, **kw})
    for _ in range(100):
        message = storage.feed.master_feed(store, since, NOW, settings)
        version = apply(replica, message)
        if isinstance(message, MasterDelta) and message.from_version == message.to_version:
            return version
        since = version
    raise AssertionError("feed never settled")


@pytest.fixture
def loaded(storage: Storage) -> Storage:
    storage.feed.upsert_master(master_tables())
    storage.sales.ingest([make_sale(1, card_no=CARD, accrue=40)], NOW)
    return storage


def test_snapshot_holds_the_store_scope_with_checksum(loaded: Storage) -> None:
    message = loaded.feed.master_feed("367", 0, NOW, FAST)
    assert isinstance(message, MasterSnapshot)
    tables = message.tables
    assert [p["product_id"] for p in tables["products"]] == ["1000", "1002"]
    assert tables["products"][1]["weighed"] is True
    assert [s["store_id"] for s in tables["stores"]] == ["367"]
    # Only the card with a sale at 367 lately; the blocked card never shopped here.
    assert tables["cards"] == (
        {
            "card_no": CARD,
            "customer_id": "hh-1",
            "status": "active",
            "bonus_balance": 40,
            "segments": [],
            "state": CARD_STATE,
        },
    )
    assert message.checksum == replica_checksum(tables)
    assert loaded.feed.master_feed("999", 0, NOW, FAST) is None


def test_delta_of_one_changed_promotion_is_small(loaded: Storage) -> None:
    replica: Replica = {}
    version = sync(loaded, "367", replica, 0)
    snapshot = loaded.feed.master_feed("367", 0, NOW, FAST)
    doc = {"promotion_id": "base-accrual-3", "x": 2}
    loaded.feed.upsert_master({"promotions": [{"promotion_id": "base-accrual-3", "doc": doc}]})
    delta = loaded.feed.master_feed("367", version, NOW, FAST)
    assert isinstance(delta, MasterDelta)
    assert delta.from_version == version and delta.to_version > version
    assert set(delta.upserts) == {"promotions"} and not delta.deletes
    assert delta.upserts["promotions"][0]["doc"] == doc
    apply(replica, delta)
    assert len(encode(delta, sender="c")) < len(encode(snapshot, sender="c")) / 2  # type: ignore[arg-type]
    same = loaded.feed.master_feed("367", delta.to_version, NOW, FAST)
    assert same == MasterDelta(delta.to_version, delta.to_version, checksum=delta.checksum)


def test_checksum_is_stable_and_detects_drift(loaded: Storage) -> None:
    first = loaded.feed.master_feed("367", 0, NOW, FAST)
    second = loaded.feed.master_feed("367", 0, NOW, FAST)
    assert isinstance(first, MasterSnapshot) and isinstance(second, MasterSnapshot)
    assert first.checksum == second.checksum
    replica: Replica = {}
    apply(replica, first)
    replica["products"]["1000"]["price_minor"] = 1  # a replica that drifted
    loaded.feed.upsert_master({"settings": [{"name": "bonus_max_share", "value": "0.4"}]})
    delta = loaded.feed.master_feed("367", first.version, NOW, FAST)
    with pytest.raises(AssertionError, match="drifted"):
        apply(replica, delta)


def test_deletes_by_any_code_path_leave_tombstones(loaded: Storage) -> None:
    replica: Replica = {}
    version = sync(loaded, "367", replica, 0)
    sql = loaded.db.execute
    with loaded.db.transaction():  # type: ignore[attr-defined]
        sql("DELETE FROM promotions WHERE promotion_id = ?", ("base-accrual-3",))
        sql("DELETE FROM store_products WHERE store_id = ? AND product_id = ?", ("367", "1002"))
        sql("DELETE FROM store_products WHERE store_id = ? AND product_id = ?", ("406", "1001"))
    delta = loaded.feed.master_feed("367", version, NOW, FAST)
    assert isinstance(delta, MasterDelta)
    assert delta.deletes == {"promotions": ("base-accrual-3",), "products": ("1002",)}
    apply(replica, delta)
    assert set(replica["products"]) == {"1000"} and not replica.get("promotions")


def test_balance_changes_reach_the_store_as_card_upserts(loaded: Storage) -> None:
    replica: Replica = {}
    version = sync(loaded, "367", replica, 0)
    loaded.sales.ingest([make_sale(2, card_no=CARD, accrue=25)], NOW)
    version = sync(loaded, "367", replica, version)
    assert replica["cards"][CARD]["bonus_balance"] == 65
    loaded.ledger.add_ledger_entries([LedgerEntry(CARD, "bonus", "adjust", -15, "", "adj-1", NOW)])
    delta = loaded.feed.master_feed("367", version, NOW, FAST)
    assert isinstance(delta, MasterDelta)
    assert [c["bonus_balance"] for c in delta.upserts["cards"]] == [50]
    apply(replica, delta)


def test_card_scope_recent_sales_and_lookups(loaded: Storage) -> None:
    old = make_sale(3, card_no=OTHER_CARD, store_id="406", register_id="406-1")
    loaded.sales.ingest([old], NOW)
    late = NOW + timedelta(days=400)
    assert _cards(loaded.feed.master_feed("406", 0, NOW, FAST)) == {OTHER_CARD}
    assert _cards(loaded.feed.master_feed("406", 0, late, FAST)) == set()  # older than 365 days
    assert _cards(
        loaded.feed.master_feed("406", 0, late, FeedSettings(scope_days=500, tick_every_s=0))
    ) == {OTHER_CARD}
    replica: Replica = {}
    version = sync(loaded, "406", replica, 0)
    assert set(replica["cards"]) == {OTHER_CARD}
    row = loaded.feed.lookup_card("406", CARD, NOW)
    assert row == {
        "card_no": CARD,
        "customer_id": "hh-1",
        "status": "active",
        "bonus_balance": 40,
        "segments": [],
        "state": CARD_STATE,
    }
    assert loaded.feed.lookup_card("406", "0000000000000", NOW) is None
    sync(loaded, "406", replica, version)
    assert set(replica["cards"]) == {CARD, OTHER_CARD}


def test_unknown_card_sale_is_credited_and_enters_scope(loaded: Storage) -> None:
    replica: Replica = {}
    version = sync(loaded, "406", replica, 0)
    assert CARD not in replica.get("cards", {})
    # Sold offline at 406 to a card its registers did not hold: the Center credits it.
    sale = make_sale(7, card_no=CARD, store_id="406", register_id="406-1", accrue=30)
    assert loaded.sales.ingest([sale], NOW).accepted == (sale.sale_id,)
    balance = loaded.ledger.balance(CARD, NOW)
    assert balance is not None and balance.wallets["bonus"] == 70
    sync(loaded, "406", replica, version)
    assert replica["cards"][CARD]["bonus_balance"] == 70


def test_big_change_is_paged_at_version_boundaries(loaded: Storage) -> None:
    replica: Replica = {}
    version = sync(loaded, "406", replica, 0)  # 406 has no assortment: every product
    for batch in range(3):
        loaded.feed.upsert_master(
            {
                "products": [
                    {"product_id": f"p{batch}-{i:03d}", "name": f"P {i}", "price_minor": i}
                    for i in range(60)
                ]
            }
        )
    first = loaded.feed.master_feed(
        "406", version, NOW, FeedSettings(max_rows=100, tick_every_s=0, checksum_every_s=0)
    )
    assert isinstance(first, MasterDelta)
    assert len(first.upserts["products"]) == 60 and first.checksum == ""
    sync(loaded, "406", replica, version, max_rows=100)
    assert len(replica["products"]) == 3 + 180


def test_too_old_or_future_version_gets_a_snapshot(loaded: Storage) -> None:
    current = loaded.feed.master_version()
    assert isinstance(loaded.feed.master_feed("367", current + 5, NOW, FAST), MasterSnapshot)
    assert isinstance(loaded.feed.master_feed("367", 0, NOW, FAST), MasterSnapshot)


def test_segments_come_with_cards_when_the_table_exists(loaded: Storage) -> None:
    sql = loaded.db.execute
    with loaded.db.transaction():  # type: ignore[attr-defined]
        exists = loaded.db.dialect.has_table(loaded.db.execute, "segment_members")
        if not exists:
            sql("CREATE TABLE segment_members (segment_id TEXT, customer_id TEXT)")
        sql("INSERT INTO segment_members (segment_id, customer_id) VALUES ('vip', 'hh-1')")
        sql("INSERT INTO segment_members (segment_id, customer_id) VALUES ('aa', 'hh-1')")
    message = loaded.feed.master_feed("367", 0, NOW, FAST)
    assert isinstance(message, MasterSnapshot)
    assert message.tables["cards"][0]["segments"] == ["aa", "vip"]


def _cards(message: MasterSnapshot | MasterDelta | None) -> set[str]:
    assert isinstance(message, MasterSnapshot)
    return {c["card_no"] for c in message.tables.get("cards", ())}


def test_delta_checksums_are_periodic(loaded: Storage) -> None:
    hourly = FeedSettings(tick_every_s=0, checksum_every_s=3600)
    snapshot = loaded.feed.master_feed("367", 0, NOW, hourly)
    assert isinstance(snapshot, MasterSnapshot) and snapshot.checksum
    loaded.feed.upsert_master({"settings": [{"name": "bonus_max_share", "value": "0.4"}]})
    delta = loaded.feed.master_feed("367", snapshot.version, NOW, hourly)
    assert isinstance(delta, MasterDelta) and delta.upserts and delta.checksum == ""
    current = loaded.feed.master_feed("367", delta.to_version, NOW, hourly)
    assert current == MasterDelta(delta.to_version, delta.to_version, checksum="")
    due = loaded.feed.master_feed("367", snapshot.version, NOW, FAST)
    assert isinstance(due, MasterDelta) and due.checksum


def test_points_activated_by_time_alone_reach_the_store(loaded: Storage) -> None:
    replica: Replica = {}
    later = make_sale(2, card_no=CARD, accrue=25, active_from=NOW + timedelta(days=1))
    loaded.sales.ingest([later], NOW)
    version = sync(loaded, "367", replica, 0)
    assert replica["cards"][CARD]["bonus_balance"] == 40  # 25 still pending
    # No write at all: the lot's active_from passes. The next poll must bring the new balance.
    message = loaded.feed.master_feed("367", version, NOW + timedelta(days=2), FAST)
    assert isinstance(message, MasterDelta)
    assert [c["bonus_balance"] for c in message.upserts["cards"]] == [65]


def test_a_store_away_longer_than_the_retention_gets_a_snapshot(loaded: Storage) -> None:
    # Real time: the marks made by the migration carry the wall clock.
    start = datetime.now(UTC)
    replica: Replica = {}
    first = loaded.feed.master_feed("367", 0, start, FAST)
    version = apply(replica, first)
    loaded.sales.ingest([make_sale(2, card_no=CARD, accrue=5)], start)
    away = start + timedelta(days=8)
    fresh = loaded.feed.master_feed(
        "367", 0, away, FAST
    )  # ticks and prunes marks older than 7 days
    assert isinstance(fresh, MasterSnapshot) and fresh.version > version
    assert isinstance(loaded.feed.master_feed("367", version, away, FAST), MasterSnapshot)
    current = loaded.feed.master_feed("367", fresh.version, away, FAST)
    assert isinstance(current, MasterDelta) and current.from_version == fresh.version


def test_cards_that_leave_the_scope_are_deleted(loaded: Storage) -> None:
    replica: Replica = {}
    version = sync(loaded, "367", replica, 0)
    assert set(replica["cards"]) == {CARD}
    a_year_on = NOW + timedelta(days=365)
    loaded.feed.upsert_master({"settings": [{"name": "bonus_max_share", "value": "0.4"}]})
    delta = loaded.feed.master_feed("367", version, a_year_on, FAST)
    assert isinstance(delta, MasterDelta)
    assert delta.deletes == {"cards": (CARD,)}
    apply(replica, delta)  # and the checksum agrees: no repair needed
    assert not replica.get("cards")
