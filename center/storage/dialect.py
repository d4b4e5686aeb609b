"""What differs between SQLite and PostgreSQL, named once: every backend difference goes here.

Storage code asks the dialect (`self.dialect.for_update`, `self.dialect.json_text(...)`) instead
of testing which backend it runs on; each feature a backend lacks or does its own way is a named
attribute or method, decided once per backend (as apscheduler detects features once).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["POSTGRES", "SQLITE", "Dialect", "PostgresDialect", "SqliteDialect"]

Execute = Callable[[str, Sequence[Any]], Any]


@dataclass(frozen=True, slots=True)
class Dialect(ABC):
    """The SQL and capabilities of one backend."""

    name: str
    single_writer: bool
    """One writer at a time (SQLite): ingest may bump the master version like any master
    write. With concurrent writers (PostgreSQL) ingest takes no global lock and the feed
    finds ledger and coupon changes by transaction id instead."""
    partitions: bool
    """Receipts are range-partitioned by month (PostgreSQL declarative partitioning)."""
    trigram_search: bool
    """Typo-tolerant name search in the database (pg_trgm); otherwise difflib in Python."""
    zone_functions: bool
    """The database converts a timestamp to a time zone's calendar day itself."""
    bulk_staging: bool
    """Bulk inserts that skip existing keys go through COPY into a staging table."""
    for_update: str
    """Suffix of a SELECT locking its rows until commit."""
    skip_locked: str
    """Suffix after `for_update` skipping rows another transaction holds."""
    ledger_mark_sql: str
    """A position in the ledger: rows written from now on are at or above it."""
    ledger_since_sql: str
    """WHERE condition: ledger rows at or above a mark (one `?`)."""
    contains_sql: str
    """SQL template, `{column}` contains the bytes of one `?`."""
    json_text_sql: str
    """SQL template, the text of key `?` of the JSON object in `{column}`."""
    nonce_claim_prefix: str
    """INSERT ... VALUES/SELECT head of a nonce claim whose commit need not reach the disk."""

    def contains(self, column: str) -> str:
        """SQL true when `column` contains the one `?` parameter."""
        return self.contains_sql.format(column=column)

    def json_text(self, column: str) -> str:
        """SQL of the text value of the key given as one `?` parameter (see `json_key`)."""
        return self.json_text_sql.format(column=column)

    @abstractmethod
    def json_key(self, name: str) -> str:
        """The parameter that names the top-level key `name` for `json_text`."""

    @abstractmethod
    def any_of(self, column: str, values: Sequence[str]) -> tuple[str, Any]:
        """(SQL true when `column` is one of `values`, its one `?` parameter): the same text
        whatever their number, so the driver parses it once (an `IN (?, ?...)` list of a new
        length is parsed again every time)."""

    @abstractmethod
    def columns_of(self, execute: Execute, table: str) -> set[str]:
        """The column names of a table (empty when it does not exist)."""

    @abstractmethod
    def has_table(self, execute: Execute, name: str) -> bool:
        """True when the table exists."""

    @abstractmethod
    def relaxed_commit(self, execute: Execute) -> AbstractContextManager[None]:
        """Statements inside may commit without the fsync of their own commit: they survive
        the process (kill -9), not a power loss."""

    @abstractmethod
    def count_inserted(self, execute: Execute, run: Callable[[], Any]) -> int:
        """How many rows `run()` inserted (rows skipped by ON CONFLICT DO NOTHING excluded)."""


@dataclass(frozen=True, slots=True)
class SqliteDialect(Dialect):
    """SQLite 3.35+ in WAL mode."""

    def json_key(self, name: str) -> str:
        return f'$."{name}"'

    def any_of(self, column: str, values: Sequence[str]) -> tuple[str, Any]:
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(values))

    def columns_of(self, execute: Execute, table: str) -> set[str]:
        return {str(r[1]) for r in execute(f"PRAGMA table_info({table})", ()).fetchall()}

    def has_table(self, execute: Execute, name: str) -> bool:
        found = execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return found.fetchone() is not None

    @contextmanager
    def relaxed_commit(self, execute: Execute) -> Iterator[None]:
        # In WAL mode NORMAL still survives the process; only this commit's fsync is skipped.
        execute("PRAGMA synchronous = NORMAL", ())
        try:
            yield
        finally:
            execute("PRAGMA synchronous = FULL", ())

    def count_inserted(self, execute: Execute, run: Callable[[], Any]) -> int:
        before = int(execute("SELECT total_changes()", ()).fetchone()[0])
        run()
        return int(execute("SELECT total_changes()", ()).fetchone()[0]) - before


@dataclass(frozen=True, slots=True)
class PostgresDialect(Dialect):
    """PostgreSQL 15."""

    def json_key(self, name: str) -> str:
        return name

    def any_of(self, column: str, values: Sequence[str]) -> tuple[str, Any]:
        return f"{column} = ANY(?)", list(values)

    def columns_of(self, execute: Execute, table: str) -> set[str]:
        rows = execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        ).fetchall()
        return {str(r[0]) for r in rows}

    def has_table(self, execute: Execute, name: str) -> bool:
        return bool(execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0])

    @contextmanager
    def relaxed_commit(self, execute: Execute) -> Iterator[None]:
        yield  # relaxed per statement: see nonce_claim_prefix

    def count_inserted(self, execute: Execute, run: Callable[[], Any]) -> int:
        return int(run().rowcount)


SQLITE = SqliteDialect(
    name="sqlite",
    single_writer=True,
    partitions=False,
    trigram_search=False,
    zone_functions=False,
    bulk_staging=False,
    for_update="",
    skip_locked="",
    ledger_mark_sql="SELECT COALESCE(MAX(entry_id), 0) + 1 FROM ledger",
    ledger_since_sql="entry_id >= ?",
    contains_sql="instr({column}, ?)",
    json_text_sql="CAST(json_extract({column}, ?) AS TEXT)",
    nonce_claim_prefix="INSERT INTO request_nonces (node_id, nonce, seen_at) VALUES (?, ?, ?)",
)

POSTGRES = PostgresDialect(
    name="postgresql",
    single_writer=False,
    partitions=True,
    trigram_search=True,
    zone_functions=True,
    bulk_staging=True,
    for_update=" FOR UPDATE",
    skip_locked=" SKIP LOCKED",
    ledger_mark_sql=(
        "SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)"
    ),
    ledger_since_sql="feed_xid >= CAST(CAST(? AS TEXT) AS xid8)",
    contains_sql="position(? in {column}) > 0",
    json_text_sql="({column}::jsonb ->> ?)",
    # set_config(..., true) lasts for this statement's own transaction: one round trip, no fsync.
    nonce_claim_prefix=(
        "INSERT INTO request_nonces (node_id, nonce, seen_at) SELECT ?, ?, ? "
        "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
    ),
)
