"""Storage contract, run identically against SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from center.errors import StorageError
from center.storage import LedgerEntry, Storage
from center.storage.sql import SqlStorage
from sync_protocol import (
    Heartbeat,
    Sale,
    chain_hash,
    classify_sale,
    decode_sale,
    encode_sale,
    sale_fingerprint,
)
from tests.center.center_factories import CARD, OTHER_CARD, T0, make_sale, master_tables

NOW = T0 + timedelta(days=1)


def _sql(storage: Storage) -> SqlStorage:
    assert isinstance(storage, SqlStorage)
    return storage


def _store_node_reason(sale: Sale, held: Sale | None, *, seq_holder: str = "?") -> str:
    """What the store node answers for the same conflict (one rule: classify_sale)."""
    return classify_sale(
        sale_id=sale.sale_id,
        register_id=sale.register_id,
        seq=sale.seq,
        fingerprint=sale_fingerprint(sale),
        held_fingerprint=None if held is None else sale_fingerprint(held),
        seq_holder=seq_holder,
    ).reason


def _welcome(card_no: str = CARD, amount: int = 1000) -> LedgerEntry:
    return LedgerEntry(
        card_no=card_no,
        wallet="bonus",
        kind="welcome",
        amount=amount,
        rule_id="welcome",
        source=f"welcome:{card_no}",
        created_at=T0,
    )


def test_migrate_is_idempotent_and_recorded(open_storage: Any) -> None:
    first = open_storage()  # opening migrates
    names = _sql(first).migrations.names()
    assert _sql(first).migrations_applied() == names
    assert first.migrate() == []
    second = open_storage()  # opening again migrates again: still one row per migration
    assert second.migrate() == []
    rows = _sql(second).db.execute("SELECT name FROM _migrations ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == names
    assert second.counts().sales == 0


def test_database_newer_than_code_is_refused(storage: Storage) -> None:
    sql = _sql(storage)
    with sql.db.transaction():
        sql.db.execute(
            "INSERT INTO _migrations (seq, name, applied_at) VALUES (?, ?, ?)",
            (999, "m999_from_the_future", "2099-01-01T00:00:00+00:00"),
        )
    with pytest.raises(StorageError, match="m999_from_the_future was applied by a newer release"):
        storage.migrate()


def test_new_batch_is_accepted_and_stored_whole(storage: Storage) -> None:
    sales = [make_sale(1, card_no=CARD, accrue=13), make_sale(2, discount=20)]
    ack = storage.sales.ingest(sales, NOW)
    assert ack.accepted == tuple(s.sale_id for s in sales)
    assert ack.duplicates == () and ack.rejected == ()
    counts = storage.counts()
    assert counts.sales == 2 and counts.ledger_entries == 1
    stored = _sql(storage).sales.load_sale(sales[1].sale_id)
    assert stored is not None and decode_sale(stored) == sales[1]
    lines = (
        _sql(storage)
        .db.execute(
            "SELECT line_no, amount_minor, discount_minor FROM sale_lines WHERE sale_id = ? "
            "ORDER BY line_no",
            (sales[1].sale_id,),
        )
        .fetchall()
    )
    assert [tuple(r) for r in lines] == [(1, 250, 20), (2, 199, 0)]


def test_same_batch_twice_is_duplicates_and_changes_nothing(storage: Storage) -> None:
    sales = [make_sale(1, card_no=CARD, accrue=13), make_sale(2)]
    storage.sales.ingest(sales, NOW)
    before = storage.counts()
    again = storage.sales.ingest(sales, NOW + timedelta(hours=1))
    assert again.accepted == () and again.rejected == ()
    assert set(again.duplicates) == {s.sale_id for s in sales}
    assert storage.counts() == before


def test_same_sale_twice_in_one_batch(storage: Storage) -> None:
    sale = make_sale(1)
    ack = storage.sales.ingest([sale, sale], NOW)
    assert ack.accepted == (sale.sale_id,) and ack.duplicates == (sale.sale_id,)
    assert storage.counts().sales == 1


def test_conflicting_payload_is_rejected_and_quarantined(storage: Storage) -> None:
    original = make_sale(1, amounts=(100,))
    storage.sales.ingest([original], NOW)
    forged = make_sale(1, sale_id=original.sale_id, amounts=(999,))
    ack = storage.sales.ingest([forged, make_sale(2)], NOW)
    assert len(ack.accepted) == 1
    assert [r.sale_id for r in ack.rejected] == [original.sale_id]
    assert ack.rejected[0].reason == _store_node_reason(forged, original)
    assert _sql(storage).sales.quarantined() == [(original.sale_id, ack.rejected[0].reason)]
    kept = _sql(storage).sales.load_sale(original.sale_id)
    assert kept is not None and decode_sale(kept).total_minor == 100  # never merged
    # The same bad payload again is rejected again but quarantined once.
    again = storage.sales.ingest([forged], NOW)
    assert [r.sale_id for r in again.rejected] == [original.sale_id]
    assert storage.counts().quarantined == 1
    assert storage.counts().sales == 2


def test_register_seq_conflict_is_rejected_and_quarantined(storage: Storage) -> None:
    first = make_sale(5)
    storage.sales.ingest([first], NOW)
    intruder = make_sale(5)  # same register and seq, another sale_id
    ack = storage.sales.ingest([intruder], NOW)
    assert ack.accepted == ()
    assert [r.sale_id for r in ack.rejected] == [intruder.sale_id]
    assert ack.rejected[0].reason == _store_node_reason(intruder, None, seq_holder=first.sale_id)
    assert storage.counts().sales == 1
    assert [q[0] for q in _sql(storage).sales.quarantined()] == [intruder.sale_id]
    # The same seq at another register is a different receipt.
    other = storage.sales.ingest([make_sale(5, register_id="367-2")], NOW)
    assert len(other.accepted) == 1


def test_loyalty_without_card_is_quarantined(storage: Storage) -> None:
    sale = make_sale(1, accrue=10)  # no card_no
    ack = storage.sales.ingest([sale], NOW)
    assert [r.sale_id for r in ack.rejected] == [sale.sale_id]
    assert ack.rejected[0].reason.startswith("card_no:")
    assert storage.counts().sales == 0 and storage.counts().quarantined == 1


def test_ledger_is_not_double_credited(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    assert storage.ledger.add_ledger_entries([_welcome()]) == 1
    assert storage.ledger.add_ledger_entries([_welcome()]) == 0
    sale = make_sale(1, card_no=CARD, accrue=30, spend=100)
    storage.sales.ingest([sale], NOW)
    balance = storage.ledger.balance(CARD, NOW)
    assert balance is not None
    assert balance.wallets["bonus"] == 1000 + 30 - 100
    assert balance.customer_id == "hh-1"
    # Replays through another route (the same sale's movements) never credit twice.
    storage.sales.ingest([sale], NOW)
    sql = _sql(storage)
    with sql.db.transaction():
        sql.ledger.apply_entries(
            [
                LedgerEntry(CARD, "bonus", "accrue", 30, "base-accrual-3", sale.sale_id, T0),
            ]
        )
    again = storage.ledger.balance(CARD, NOW)
    assert again is not None and again.wallets["bonus"] == 930
    assert storage.counts().ledger_entries == 3


def test_balance_counts_only_active_unexpired_points(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    later = make_sale(1, card_no=CARD, accrue=50, active_from=NOW + timedelta(days=7))
    gone = make_sale(2, card_no=CARD, accrue=40, expires_at=NOW - timedelta(seconds=1))
    live = make_sale(3, card_no=CARD, accrue=7, expires_at=NOW + timedelta(days=365))
    storage.sales.ingest([later, gone, live], NOW)
    now = storage.ledger.balance(CARD, NOW)
    assert now is not None and now.wallets == {"bonus": 7}
    week = storage.ledger.balance(CARD, NOW + timedelta(days=8))
    assert week is not None and week.wallets == {"bonus": 57}
    assert storage.ledger.balance("0000000000000", NOW) is None
    blocked = storage.ledger.balance(OTHER_CARD, NOW)
    assert blocked is not None and blocked.wallets == {"bonus": 0}


def test_reconciliation_counts_and_gaps(storage: Storage) -> None:
    a = [make_sale(s, amounts=(100, 50), discount=10) for s in (1, 2, 4, 7)]
    b = [make_sale(s, register_id="367-2", amounts=(300,)) for s in (3, 4, 5)]
    elsewhere = [make_sale(1, register_id="406-1", store_id="406")]
    storage.sales.ingest([*a, *b, *elsewhere], NOW)
    rows = {r.register_id: r for r in storage.sales.reconciliation("367")}
    assert set(rows) == {"367-1", "367-2"}
    one = rows["367-1"]
    assert (one.receipts, one.lines, one.total_minor, one.discount_minor) == (4, 8, 560, 40)
    assert (one.min_seq, one.max_seq) == (1, 7)
    assert one.gaps == ((3, 3), (5, 6))
    two = rows["367-2"]
    assert (two.receipts, two.lines, two.total_minor, two.gaps) == (3, 3, 900, ((1, 2),))
    only = storage.sales.reconciliation("367", "367-2")
    assert [r.register_id for r in only] == ["367-2"]
    assert storage.sales.reconciliation("999") == []


def test_master_snapshot_contents_and_versions(storage: Storage) -> None:
    assert storage.feed.master_version() == 0
    assert storage.feed.master_snapshot("367", NOW) is None
    change = storage.feed.upsert_master(master_tables())
    assert change.version == 1
    assert change.changed["products"] == 3 and change.changed["store_products"] == 2
    storage.ledger.add_ledger_entries([_welcome(amount=1000)])

    snap = storage.feed.master_snapshot("367", NOW)
    assert snap is not None
    version, tables = snap
    assert version == 1
    assert set(tables) == {"products", "cards", "stores", "promotions", "settings"}
    # 367 has an assortment: only its products; 406 has none: the whole catalogue.
    assert [p["product_id"] for p in tables["products"]] == ["1000", "1002"]
    assert tables["products"][1] == {
        "product_id": "1002",
        "name": "Apples",
        "department": "",
        "category": "",
        "brand": "",
        "weighed": True,
        "price_minor": None,
    }
    assert tables["stores"] == (
        {"store_id": "367", "name": "Store 367", "format": "", "timezone": "America/Chicago"},
    )
    assert tables["cards"] == (
        {"card_no": CARD, "customer_id": "hh-1", "status": "active", "bonus_balance": 1000},
        {"card_no": OTHER_CARD, "customer_id": "hh-2", "status": "blocked", "bonus_balance": 0},
    )
    assert tables["promotions"] == (
        {
            "promotion_id": "base-accrual-3",
            "version": 1,
            "doc": {"promotion_id": "base-accrual-3", "x": 1},
        },
    )
    assert tables["settings"] == ({"name": "bonus_max_share", "value": "0.5"},)
    other = storage.feed.master_snapshot("406", NOW)
    assert other is not None and len(other[1]["products"]) == 3
    # Current version asked: same version, no tables.
    assert storage.feed.master_snapshot("367", NOW, since=1) == (1, {})

    # The same data again changes nothing and keeps the version.
    same = storage.feed.upsert_master(master_tables())
    assert same.version == 1 and not any(same.changed.values())
    # One changed rule: one new version, and the row carries it.
    tables2 = master_tables()
    tables2["promotions"][0]["doc"] = {"promotion_id": "base-accrual-3", "x": 2}
    moved = storage.feed.upsert_master(tables2)
    assert moved.version == 2 and moved.changed["promotions"] == 1
    assert sum(moved.changed.values()) == 1
    snap2 = storage.feed.master_snapshot("367", NOW, since=1)
    assert snap2 is not None
    assert snap2[1]["promotions"][0]["version"] == 2
    assert snap2[1]["promotions"][0]["doc"]["x"] == 2


def test_upsert_master_refuses_bad_rows_and_writes_nothing(storage: Storage) -> None:
    with pytest.raises(StorageError, match="nope: not a master table"):
        storage.feed.upsert_master({"nope": []})
    bad = master_tables()
    bad["cards"].append({"card_no": "123"})  # customer_id is required
    with pytest.raises(StorageError, match=r"cards\[2\]\.customer_id: required"):
        storage.feed.upsert_master(bad)
    bad = master_tables()
    bad["products"][0]["colour"] = "red"
    with pytest.raises(StorageError, match=r"products\[0\]: unknown columns \['colour'\]"):
        storage.feed.upsert_master(bad)
    assert storage.feed.master_version() == 0
    assert storage.feed.master_snapshot("367", NOW) is None


def test_heartbeat_keeps_latest_per_node(storage: Storage) -> None:
    storage.nodes.record_heartbeat(
        Heartbeat(node_id="store-367", role="store", store_id="367", sent_at=T0, queue_depth=5),
        NOW,
    )
    storage.nodes.record_heartbeat(
        Heartbeat(
            node_id="store-367",
            role="store",
            store_id="367",
            sent_at=T0 + timedelta(seconds=2),
            queue_depth=1,
            last_seq=9,
            master_version=3,
            devices={"printer": "online"},
        ),
        NOW,
    )
    assert _sql(storage).nodes.heartbeats() == [
        {
            "node_id": "store-367",
            "role": "store",
            "store_id": "367",
            "last_seq": 9,
            "queue_depth": 1,
            "master_version": 3,
            "devices": {"printer": "online"},
        }
    ]


def test_acknowledged_sales_survive_close_and_reopen(open_storage: Any) -> None:
    first = open_storage()
    sales = [make_sale(s, card_no=CARD, accrue=5) for s in (1, 2, 3)]
    ack = first.sales.ingest(sales, NOW)
    assert len(ack.accepted) == 3
    first.close()
    first.close()  # closing twice is harmless
    with pytest.raises(StorageError):
        first.counts()
    second = open_storage()
    assert second.counts().sales == 3
    replay = second.sales.ingest(sales, NOW)
    assert set(replay.duplicates) == {s.sale_id for s in sales}
    assert second.counts().ledger_entries == 3
    payload = _sql(second).sales.load_sale(sales[0].sale_id)
    assert payload == encode_sale(sales[0])


def test_failed_batch_writes_nothing(storage: Storage) -> None:
    good = make_sale(1)
    broken: Any = object()  # not a Sale: the batch fails half-way and must roll back
    with pytest.raises(AttributeError):
        storage.sales.ingest([good, broken], NOW)
    assert storage.counts().sales == 0


def test_concurrent_writers_never_double_store(open_storage: Any) -> None:
    writers = [open_storage(), open_storage()]
    sales = [make_sale(s, card_no=CARD, accrue=3) for s in range(1, 41)]
    acks: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(writers))

    def run(storage: Storage) -> None:
        try:
            start.wait()
            for i in range(0, len(sales), 8):
                acks.append(storage.sales.ingest(sales[i : i + 8], NOW))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    accepted = [sid for a in acks for sid in a.accepted]
    duplicates = [sid for a in acks for sid in a.duplicates]
    assert sorted(accepted) == sorted(s.sale_id for s in sales)
    assert sorted(duplicates) == sorted(s.sale_id for s in sales)
    assert writers[0].counts().sales == 40 and writers[0].counts().ledger_entries == 40


def _chain(sales: list[Sale]) -> list[Sale]:
    """Link the sales as a register journal does."""
    linked: list[Sale] = []
    for sale in sales:
        prev = chain_hash(linked[-1]) if linked else ""
        linked.append(replace(sale, prev_hash=prev))
    return linked


def test_an_intact_chain_has_no_breaks_even_across_batches(storage: Storage) -> None:
    sales = _chain([make_sale(s) for s in (1, 2, 3, 4)])
    storage.sales.ingest(sales[2:], NOW)
    storage.sales.ingest(sales[:2], NOW)
    (row,) = storage.sales.reconciliation("367")
    assert row.gaps == () and row.chain_breaks == ()


def test_a_sale_that_does_not_link_to_its_predecessor_is_a_chain_break(storage: Storage) -> None:
    sales = _chain([make_sale(s) for s in (1, 2, 3, 4, 5)])
    # Seq 3 was replaced by another sale made after seq 4 had linked onto the real one.
    forged = replace(make_sale(3, amounts=(1,)), prev_hash=sales[2].prev_hash)
    storage.sales.ingest([sales[0], sales[1], forged, sales[3]], NOW)
    (row,) = storage.sales.reconciliation("367")
    assert row.chain_breaks == (4,)
    assert row.gaps == ()
    # A missing predecessor is a gap, not a break: seq 5 alone after a hole.
    other = _chain([make_sale(s, register_id="367-2") for s in (1, 2, 3)])
    storage.sales.ingest([other[0], other[2]], NOW)
    two = storage.sales.reconciliation("367", "367-2")[0]
    assert two.gaps == ((2, 2),) and two.chain_breaks == ()
    # A first sale must start the chain.
    bad_start = replace(make_sale(1, register_id="367-3"), prev_hash="ab" * 32)
    storage.sales.ingest([bad_start], NOW)
    assert storage.sales.reconciliation("367", "367-3")[0].chain_breaks == (1,)


def test_sales_from_before_the_chain_are_not_breaks(storage: Storage) -> None:
    legacy = [make_sale(s) for s in (1, 2, 3)]
    linked = replace(make_sale(4), prev_hash=chain_hash(legacy[-1]))
    storage.sales.ingest([*legacy, linked], NOW)
    (row,) = storage.sales.reconciliation("367")
    assert row.chain_breaks == ()
    stripped = make_sale(5)  # "" after a linked sale: the link was stripped
    storage.sales.ingest([stripped], NOW)
    assert storage.sales.reconciliation("367")[0].chain_breaks == (5,)


def test_deduplication_is_permanent(storage: Storage) -> None:
    sale = make_sale(1, card_no=CARD, accrue=7)
    storage.sales.ingest([sale], NOW)
    before = storage.counts()
    # Years later (no time-limited window), the same sale is still a duplicate...
    again = storage.sales.ingest([sale], NOW + timedelta(days=3650))
    assert again.duplicates == (sale.sale_id,) and again.accepted == ()
    # ...and the same id with another payload is still refused, never merged.
    forged = replace(sale, payments=(*sale.payments[:-1], replace(sale.payments[-1], method="x")))
    refused = storage.sales.ingest([forged], NOW + timedelta(days=3650))
    assert [r.sale_id for r in refused.rejected] == [sale.sale_id]
    assert storage.counts().sales == before.sales
    assert storage.counts().ledger_entries == before.ledger_entries
