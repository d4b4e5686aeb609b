"""Time partitions of receipts (PostgreSQL): `sales` by month of `closed_at`, plus a default.

A unique constraint of a partitioned table must contain the partition key, so the uniqueness
of `sale_id` and of `(register_id, seq)` across partitions lives in small tables of their own
(`sale_ids`; since m018 the seq in `register_seqs`): ingest claims a sale there (INSERT ... ON
CONFLICT DO NOTHING) before storing its row, in the same transaction, so a sale is stored once
whatever partition its row lands in. SQLite keeps one
`sales` table (its m014_sales_partitions is empty).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from center.storage.database import Database
from center.storage.migrations import Migration

if TYPE_CHECKING:
    from center.storage.sql import SqlStorage

__all__ = [
    "MONTHS_AHEAD",
    "POSTGRES_MIGRATION",
    "SQLITE_MIGRATION",
    "create_partitions",
    "partition_sales",
]

MONTHS_AHEAD = 3
"""Monthly partitions kept ready beyond the current month."""
MONTHS_BACK = 24
"""On conversion, older receipts than this stay in the default partition."""


def _month(at: datetime) -> tuple[int, int]:
    at = at.astimezone(UTC)
    return at.year, at.month


def _add(month: tuple[int, int], n: int) -> tuple[int, int]:
    index = month[0] * 12 + month[1] - 1 + n
    return index // 12, index % 12 + 1


def _bound(month: tuple[int, int]) -> str:
    return f"'{month[0]:04d}-{month[1]:02d}-01 00:00:00+00'"


def _name(month: tuple[int, int]) -> str:
    return f"sales_p{month[0]:04d}{month[1]:02d}"


def create_partitions(db: Database, now: datetime, months_ahead: int) -> list[str]:
    """Create the missing monthly partitions (in the caller's transaction); the names created."""
    # The migration lock: concurrent maintenance calls and migrations create each table once.
    db.execute("SELECT pg_advisory_xact_lock(1079831)")
    if db.execute("SELECT to_regclass('sales_default')").fetchone()[0] is None:
        return []  # a schema older than version 14
    existing = {
        r[0]
        for r in db.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'sales'::regclass"
        ).fetchall()
    }
    current = _month(now)
    wanted = {_add(current, n) for n in range(months_ahead + 1)}
    # Months parked in the default partition get their own partition too (rows are moved).
    for (start,) in db.execute(
        "SELECT DISTINCT date_trunc('month', closed_at AT TIME ZONE 'UTC') FROM sales_default "
        "WHERE closed_at >= ? LIMIT 120",
        (datetime(current[0] - MONTHS_BACK // 12, 1, 1, tzinfo=UTC),),
    ).fetchall():
        wanted.add((start.year, start.month))
    created: list[str] = []
    for month in sorted(wanted):
        name = _name(month)
        if name in existing:
            continue
        low, high = _bound(month), _bound(_add(month, 1))
        db.execute(f"CREATE TABLE {name} (LIKE sales INCLUDING DEFAULTS)")
        db.execute(
            f"WITH moved AS (DELETE FROM sales_default WHERE closed_at >= {low} "
            f"AND closed_at < {high} RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        )
        db.execute(f"ALTER TABLE sales ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")
        created.append(name)
    return created


def partition_sales(storage: SqlStorage) -> None:
    """Migration step: turn a populated `sales` into a monthly-partitioned one, same rows and
    indexes; its unique keys move to `sale_ids`."""
    execute = storage.db.execute
    execute(
        """CREATE TABLE sale_ids (
            sale_id TEXT PRIMARY KEY,
            register_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            fingerprint TEXT NOT NULL,
            closed_at TIMESTAMPTZ NOT NULL,
            UNIQUE (register_id, seq)
        )"""
    )
    execute(
        "INSERT INTO sale_ids (sale_id, register_id, seq, fingerprint, closed_at) "
        "SELECT sale_id, register_id, seq, fingerprint, closed_at FROM sales"
    )
    # Non-unique indexes (any migration's) are rebuilt on the partitioned table.
    indexes = [
        r[0]
        for r in execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = 'sales'::regclass AND NOT indisunique"
        ).fetchall()
    ]
    bounds = execute("SELECT MIN(closed_at), MAX(closed_at) FROM sales").fetchone()
    execute("ALTER TABLE sales RENAME TO sales_unpartitioned")
    execute(
        "CREATE TABLE sales (LIKE sales_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        "PARTITION BY RANGE (closed_at)"
    )
    execute("ALTER TABLE sales ADD PRIMARY KEY (sale_id, closed_at)")
    execute("CREATE TABLE sales_default PARTITION OF sales DEFAULT")
    now = datetime.now(UTC)
    first = _month(now)
    if bounds[0] is not None:
        first = max(min(_month(bounds[0]), first), _add(_month(now), -MONTHS_BACK))
    last = _add(_month(now), MONTHS_AHEAD)
    if bounds[1] is not None:
        last = max(last, min(_month(bounds[1]), _add(_month(now), MONTHS_AHEAD + 12)))
    month = first
    while month <= last:
        low, high = _bound(month), _bound(_add(month, 1))
        execute(
            f"CREATE TABLE {_name(month)} PARTITION OF sales FOR VALUES FROM ({low}) TO ({high})"
        )
        month = _add(month, 1)
    execute("INSERT INTO sales SELECT * FROM sales_unpartitioned")
    execute("DROP TABLE sales_unpartitioned")
    for definition in indexes:
        execute(definition)


SQLITE_MIGRATION = Migration("m014_sales_partitions")
"""Nothing on SQLite: one `sales` table."""
POSTGRES_MIGRATION = Migration("m014_sales_partitions", (partition_sales,))
"""Receipts partitioned by month, on PostgreSQL."""
