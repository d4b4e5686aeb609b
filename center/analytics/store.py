"""The analytics store: its tables on one engine, the feeder's watermarks, row counts.

Apart from the ingest database: reports and models read only this.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from center.analytics.engines import ChdbEngine, Engine, ServerEngine, sql_literal
from center.analytics.model import ADDED_COLUMNS, TABLES, table_ddl

if TYPE_CHECKING:
    from center.config import AnalyticsSettings

__all__ = ["AnalyticsStore", "LazyAnalytics", "open_analytics"]

_IN_CHUNK = 2000


class AnalyticsStore:
    """The analytics tables of one database on one engine (chDB or a ClickHouse server)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.db = engine.database

    def migrate(self) -> None:
        """Create the database and every table that is missing."""
        self.engine.command(f"CREATE DATABASE IF NOT EXISTS {self.db}")
        for name in TABLES:
            self.engine.command(table_ddl(self.db, name))
        for name, column in ADDED_COLUMNS:
            self.engine.command(f"ALTER TABLE {self.db}.{name} ADD COLUMN IF NOT EXISTS {column}")

    def close(self) -> None:
        """Release the engine."""
        self.engine.close()

    def table(self, name: str) -> str:
        """The qualified name of one table, read deduplicated (FINAL)."""
        if name not in TABLES:
            raise KeyError(name)
        return f"{self.db}.{name} FINAL"

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a SELECT written against `table(...)` names."""
        return self.engine.rows(sql)

    def frame(self, sql: str) -> Any:
        """The rows of a SELECT as a pandas DataFrame (for the models: large reads)."""
        return self.engine.frame(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows into one table."""
        self.engine.insert(table, columns, rows)

    def command(self, sql: str) -> None:
        """Run one statement (INSERT ... SELECT, OPTIMIZE)."""
        self.engine.command(sql)

    def existing(self, table: str, column: str, keys: Iterable[Any]) -> set[Any]:
        """Those of `keys` already present in `table.column`."""
        wanted = list(keys)
        found: set[Any] = set()
        for i in range(0, len(wanted), _IN_CHUNK):
            chunk = ", ".join(sql_literal(k) for k in wanted[i : i + _IN_CHUNK])
            for row in self.rows(
                f"SELECT DISTINCT {column} AS k FROM {self.db}.{table} WHERE {column} IN ({chunk})"
            ):
                found.add(int(row["k"]) if isinstance(wanted[0], int) else row["k"])
        return found

    def state(self) -> dict[str, str]:
        """The feeder's watermarks by name."""
        return {
            r["name"]: r["value"]
            for r in self.rows(f"SELECT name, value FROM {self.table('feed_state')}")
        }

    def save_state(self, values: dict[str, str], now: datetime, version: int) -> None:
        """Record watermarks (a newer version replaces the older row)."""
        self.insert(
            "feed_state",
            ("name", "value", "updated_at", "version"),
            [(name, value, now, version) for name, value in values.items()],
        )

    def counts(self) -> dict[str, int]:
        """Rows per table, duplicates not yet merged counted once."""
        return {
            name: int(self.rows(f"SELECT count() AS n FROM {self.table(name)}")[0]["n"])
            for name in TABLES
            if name != "feed_state"
        }

    def truncate(self) -> None:
        """Empty every table (a rebuild re-feeds from scratch)."""
        for name in TABLES:
            self.engine.command(f"TRUNCATE TABLE IF EXISTS {self.db}.{name}")


def open_analytics(settings: AnalyticsSettings) -> AnalyticsStore:
    """The configured analytics store, migrated."""
    engine: Engine
    if settings.engine == "clickhouse":
        engine = ServerEngine(settings.url, settings.database)
    else:
        engine = ChdbEngine(Path(settings.path), settings.database)
    store = AnalyticsStore(engine)
    store.migrate()
    return store


class LazyAnalytics:
    """The app's analytics store, opened on first use (loading chDB takes seconds, and a Center
    that never asks for analytics never pays it); one owner closes it."""

    def __init__(self, settings: AnalyticsSettings) -> None:
        self.settings = settings
        self._store: AnalyticsStore | None = None
        self._lock = threading.Lock()

    def get(self) -> AnalyticsStore:
        """The open store (opened and migrated now if it is not yet)."""
        with self._lock:
            if self._store is None:
                self._store = open_analytics(self.settings)
            return self._store

    def close(self) -> None:
        """Close the store if it was opened."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
