"""Receipts partitioned by month on PostgreSQL; a sale is stored once whatever its partition."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from center.ingest.sales import ledger_movements
from center.ingest.store import PreparedSale, SalesRepository
from center.storage import Storage
from center.storage.postgres import POSTGRES_MIGRATIONS, PostgresStorage
from sync_protocol import Sale
from tests.center.center_factories import CARD, T0, make_sale

NOW = T0 + timedelta(days=1)
APRIL = datetime(2024, 4, 10, 9, 0, tzinfo=UTC)


def _in_april(seq: int, **kwargs: Any) -> Sale:
    closed = APRIL + timedelta(minutes=seq)
    return replace(
        make_sale(seq, **kwargs), opened_at=closed - timedelta(minutes=1), closed_at=closed
    )


def _partition_of(storage: PostgresStorage) -> dict[str, str]:
    rows = storage.db.execute("SELECT sale_id, tableoid::regclass::text FROM sales").fetchall()
    return {r[0]: r[1] for r in rows}


def test_sales_are_stored_once_across_months(storage: Storage) -> None:
    march = make_sale(1, card_no=CARD, accrue=10)
    april = _in_april(2, card_no=CARD, accrue=7)
    first = storage.sales.ingest([march, april], NOW)
    assert sorted(first.accepted) == sorted([march.sale_id, april.sale_id])
    again = storage.sales.ingest([april, march], NOW)
    assert sorted(again.duplicates) == sorted(first.accepted) and not again.accepted
    # The same id with another payload (another month) and a taken (register, seq) elsewhere.
    moved = _in_april(1, sale_id=march.sale_id, card_no=CARD, accrue=10)
    stolen = _in_april(2, card_no=CARD, accrue=3)
    third = storage.sales.ingest([moved, stolen], NOW)
    assert not third.accepted and len(third.rejected) == 2
    reasons = {r.sale_id: r.reason for r in third.rejected}
    assert "different payload" in reasons[march.sale_id]
    assert "already belongs to sale" in reasons[stolen.sale_id]
    counts = storage.counts()
    assert (counts.sales, counts.ledger_entries, counts.quarantined) == (2, 2, 2)
    assert storage.sales.load_sale(march.sale_id) is not None  # type: ignore[attr-defined]


def test_rows_land_in_their_month(pg_dsn: str) -> None:
    storage = PostgresStorage(pg_dsn)
    try:
        storage.migrate()
        assert "m014_sales_partitions" in storage.migrations_applied()
        kind = storage.db.execute("SELECT relkind FROM pg_class WHERE relname = 'sales'")
        assert kind.fetchone()[0] == "p"
        march, april = make_sale(1), _in_april(2)
        storage.sales.ingest([march, april], NOW)
        # 2024 is long before the partitions made at migration: both wait in the default.
        assert set(_partition_of(storage).values()) == {"sales_default"}
        created = storage.sales.ensure_partitions(T0, months_ahead=1)
        assert created == ["sales_p202403", "sales_p202404"]
        assert _partition_of(storage) == {
            march.sale_id: "sales_p202403",
            april.sale_id: "sales_p202404",
        }
        assert storage.sales.ensure_partitions(T0, months_ahead=1) == []
        later = make_sale(3)
        storage.sales.ingest([later, march], NOW)
        assert _partition_of(storage)[later.sale_id] == "sales_p202403"
        assert storage.counts().sales == 3
        children = storage.db.execute(
            "SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'sales'::regclass"
        ).fetchone()[0]
        now = datetime.now(UTC)
        assert f"sales_p{now.year:04d}{now.month:02d}" in {
            r[0]
            for r in storage.db.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            ).fetchall()
        }
        assert children >= 3 + 4  # default, two 2024 months, this month and 3 ahead
    finally:
        storage.close()


class _Version13Sales(SalesRepository):
    """Ingest before partitioning: claims by the unique keys of the plain `sales` table."""

    def ensure_partitions(self, now: datetime, *, months_ahead: int = 3) -> list[str]:
        return []


class _Version13(PostgresStorage):
    """The Center before partitioning: one plain `sales` table carrying its unique keys."""

    migrations = POSTGRES_MIGRATIONS.until("m013_master_feed")
    sales_repository = _Version13Sales


def _store_as_version13(storage: _Version13, sales: list[Sale]) -> None:
    """The rows that release's ingest wrote (no owner columns: m018_distribution_keys)."""
    db = storage.db
    columns = [c for c in SalesRepository.SALE_COLUMNS if c != "owner_id"]
    with db.transaction():
        for sale in sales:
            row = storage.sales._sale_row(PreparedSale(sale, None), db.ts(NOW), {})
            marks = ", ".join("?" for _ in columns)
            db.execute(f"INSERT INTO sales ({', '.join(columns)}) VALUES ({marks})", row[:-1])
            for line in sale.lines:
                db.execute(
                    "INSERT INTO sale_lines (sale_id, line_no, product_id, qty_milli, "
                    "unit_price_minor, amount_minor, discount_minor, weighed, known_product) "
                    "VALUES (?, ?, ?, ?, ?, ?, 0, 0, 1)",
                    (sale.sale_id, line.line_no, line.product_id, line.qty_milli,
                     line.unit_price_minor, line.amount_minor),
                )  # fmt: skip
            for m in ledger_movements(sale):
                db.execute(
                    "INSERT INTO ledger (card_no, wallet, kind, amount, rule_id, source, "
                    "active_from, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sale.card_no, m.wallet, m.kind, m.amount, m.rule_id, sale.sale_id,
                     m.active_from, m.expires_at, sale.closed_at),
                )  # fmt: skip


def test_migration_partitions_a_populated_table(pg_dsn: str) -> None:
    old = _Version13(pg_dsn)
    sales = [make_sale(i, card_no=CARD, accrue=5) for i in range(1, 6)] + [_in_april(9)]
    try:
        old.migrate()
        old.db.execute("CREATE INDEX sales_promo ON sales (promo_version)")  # any migration's
        _store_as_version13(old, sales)
        before = old.db.execute("SELECT sale_id, payload FROM sales ORDER BY sale_id").fetchall()
    finally:
        old.close()
    storage = PostgresStorage(pg_dsn)
    try:
        assert storage.migrate()[0] == "m014_sales_partitions"
        after = storage.db.execute("SELECT sale_id, payload FROM sales ORDER BY sale_id").fetchall()
        assert after == before
        keys = storage.db.execute("SELECT COUNT(*) FROM sale_ids").fetchone()[0]
        assert keys == 6
        indexes = {
            r[0]
            for r in storage.db.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'sales'"
            ).fetchall()
        }
        assert {"sales_card", "sales_store_register", "sales_promo"} <= indexes
        # migrate() also gave the months found in the data their own partitions.
        assert storage.sales.ensure_partitions(T0, months_ahead=1) == []
        assert set(_partition_of(storage).values()) == {"sales_p202403", "sales_p202404"}
        replay = storage.sales.ingest(sales, NOW)
        assert len(replay.duplicates) == 6 and not replay.accepted
        assert storage.counts().ledger_entries == 5
        clash = make_sale(2)  # (register, seq) held by a sale stored before the migration
        assert storage.sales.ingest([clash], NOW).rejected[0].reason.startswith("seq:")
    finally:
        storage.close()


def test_sqlite_has_no_partitions(storage: Storage) -> None:
    created = storage.sales.ensure_partitions(T0)
    if storage.backend == "sqlite":
        assert created == []
    else:
        assert "sales_p202403" in created
