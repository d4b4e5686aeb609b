"""The Center's database: one connection, its lock, transactions, and the backend's Dialect.

Every repository (one per aggregate: ledger, sales, customers and cards, promotions...) is given
the same `Database` and talks SQL through it; nothing else owns a connection. Statements use `?`
placeholders on both backends.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from center.errors import StorageError
from center.storage.dialect import SQLITE, Dialect

__all__ = ["Database", "SqliteDatabase"]

_T = TypeVar("_T")


class Database(ABC):
    """One connection used by one thread at a time, with the SQL helpers every repository uses."""

    dialect: Dialect

    def __init__(self) -> None:
        # The app runs storage calls on one database thread; the lock keeps direct callers
        # (importer, CLI, tests) safe too.
        self.lock = threading.RLock()

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.dialect.name

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement, return a cursor."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows."""

    def execute_planned(self, sql: str, params: Sequence[Any]) -> Any:
        """Run a statement planned for these values (a prefix LIKE needs its pattern to use an
        index; PostgreSQL's generic plan of a prepared statement would scan)."""
        return self.execute(sql, params)

    def bulk_insert(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Insert many rows into `table` (PostgreSQL: COPY)."""
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        self.executemany(sql, rows if isinstance(rows, Sequence) else list(rows))

    @abstractmethod
    def transaction(self) -> Any:
        """A write transaction (context manager): commit on success, roll back on error."""

    @abstractmethod
    def snapshot(self) -> Any:
        """A read-only transaction in which every statement sees the same data."""

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Hold the connection lock; driver errors become StorageError naming `what`."""
        with self.lock:
            try:
                yield
            except self.driver_errors() as exc:
                raise StorageError(f"{self.backend}: {what} failed: {exc}") from exc

    @abstractmethod
    def driver_errors(self) -> tuple[type[BaseException], ...]:
        """The driver's exceptions, translated into StorageError at the boundary."""

    @abstractmethod
    def ts(self, value: datetime | None) -> Any:
        """An aware datetime as the database stores it."""

    @abstractmethod
    def dt(self, value: Any) -> datetime:
        """A stored timestamp as an aware UTC datetime."""

    def lock_cards(self, card_nos: Iterable[str]) -> None:
        """Serialise ledger writers per card (inside the write transaction), in one global order.

        A single-writer database needs nothing: its write transaction is the lock."""
        return None

    def lock_schema(self) -> None:
        """Serialise concurrent migrations (inside the migration transaction)."""
        return None

    def retry_transient(self, attempt: Callable[[], _T]) -> _T:
        """Run `attempt` (one whole transaction), again if the server aborted it as a deadlock
        victim or a serialisation failure."""
        return attempt()

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        with self.lock:
            self._close()

    @abstractmethod
    def _close(self) -> None:
        """Close the connection."""


class SqliteDatabase(Database):
    """One SQLite file: WAL, synchronous=FULL, BEGIN IMMEDIATE for writes."""

    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly, BEGIN IMMEDIATE for writes.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"sqlite: cannot open {self.path}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection; StorageError once closed."""
        if self._conn is None:
            raise StorageError(f"sqlite: {self.path} is closed")
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def ts(self, value: datetime | None) -> Any:
        # One fixed ISO form in UTC, so text order is time order.
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def dt(self, value: Any) -> datetime:
        return datetime.fromisoformat(value).astimezone(UTC)

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
