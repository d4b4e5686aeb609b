"""Where the analytics SQL runs: embedded chDB (default) or a ClickHouse server, one interface.

Both speak the same ClickHouse SQL; an adapter only moves statements, rows in and rows out.
Values in are plain Python (str, int, date, aware datetime); rows out are dicts of JSON types
(queries format dates as strings themselves so both adapters return the same values).
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from center.errors import StorageError

__all__ = ["ChdbEngine", "Engine", "ServerEngine", "sql_literal"]


def sql_literal(value: Any) -> str:
    """A ClickHouse SQL expression of a str, int, date or aware datetime (quotes escaped)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return f"toDateTime64('{text}', 3, 'UTC')"
    if isinstance(value, date):
        return f"toDate('{value.isoformat()}')"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, date):
        return value.isoformat()
    return value


class Engine(ABC):
    """A ClickHouse SQL endpoint used by one caller at a time (a lock serialises calls)."""

    name: str

    def __init__(self, database: str) -> None:
        self.database = database
        self.lock = threading.Lock()

    @abstractmethod
    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT)."""

    @abstractmethod
    def rows(self, sql: str) -> list[dict[str, Any]]:
        """The rows of a SELECT as dicts, in the query's column order."""

    @abstractmethod
    def frame(self, sql: str) -> Any:
        """The rows of a SELECT as a pandas DataFrame (columnar: no Python object per row)."""

    @abstractmethod
    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows of plain Python values into `table` of this engine's database."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine; safe to call twice."""


class ChdbEngine(Engine):
    """ClickHouse in-process (chDB), persistent in a data folder."""

    name = "chdb"

    def __init__(self, path: Path, database: str) -> None:
        super().__init__(database)
        from chdb import session  # imported here: loading chDB takes seconds

        path.mkdir(parents=True, exist_ok=True)
        try:
            self._session: Any = session.Session(str(path))
        except Exception as exc:  # chDB raises bare RuntimeError-like errors
            raise StorageError(f"chdb: cannot open {path}: {exc}") from exc
        self.path = path

    def _query(self, sql: str, fmt: str = "CSV") -> Any:
        if self._session is None:
            raise StorageError(f"chdb: {self.path} is closed")
        with self.lock:
            try:
                return self._session.query(sql, fmt)
            except Exception as exc:
                raise StorageError(f"chdb: {exc}".strip()[:2000]) from exc

    def command(self, sql: str) -> None:
        self._query(sql)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        text = self._query(sql, "JSONEachRow").data()
        return [json.loads(line) for line in text.splitlines() if line]

    def frame(self, sql: str) -> Any:
        return self._query(sql, "DataFrame")

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        body = "\n".join(
            json.dumps(
                {c: _json_value(v) for c, v in zip(columns, row, strict=True)},
                ensure_ascii=False,
            )
            for row in rows
        )
        self._query(
            f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) FORMAT JSONEachRow\n"
            + body
        )

    def close(self) -> None:
        with self.lock:
            if self._session is not None:
                self._session.close()
                self._session = None


class ServerEngine(Engine):
    """A ClickHouse server or cluster over HTTP (clickhouse-connect)."""

    name = "clickhouse"

    def __init__(self, url: str, database: str) -> None:
        super().__init__(database)
        import clickhouse_connect

        try:
            self._client: Any = clickhouse_connect.get_client(dsn=url)
        except Exception as exc:
            raise StorageError(f"clickhouse: cannot connect: {exc}") from exc

    def command(self, sql: str) -> None:
        with self.lock:
            try:
                self._client.command(sql)
            except Exception as exc:
                raise StorageError(f"clickhouse: {exc}"[:2000]) from exc

    def rows(self, sql: str) -> list[dict[str, Any]]:
        with self.lock:
            try:
                result = self._client.query(sql)
            except Exception as exc:
                raise StorageError(f"clickhouse: {exc}"[:2000]) from exc
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def frame(self, sql: str) -> Any:
        with self.lock:
            try:
                return self._client.query_df(sql)
            except Exception as exc:
                raise StorageError(f"clickhouse: {exc}"[:2000]) from exc

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self.lock:
            try:
                self._client.insert(
                    table,
                    [list(r) for r in rows],
                    column_names=list(columns),
                    database=self.database,
                )
            except Exception as exc:
                raise StorageError(f"clickhouse: {exc}"[:2000]) from exc

    def close(self) -> None:
        with self.lock:
            self._client.close()
