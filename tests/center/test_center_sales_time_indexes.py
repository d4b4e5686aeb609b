"""m025_sales_time_indexes: the sales' closed_at and received_at are indexed on both backends,
and the analytics feeder's and the closed_at range queries use them on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from center.analytics.feeder import Cursor, read_batch
from center.storage import Storage
from center.storage.postgres import POSTGRES_MIGRATIONS
from center.storage.sqlite import SQLITE_MIGRATIONS, SqliteStorage
from tests.center.center_factories import make_sale

D0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _plan(storage: SqliteStorage, sql: str, params: Any) -> str:
    rows = storage.db.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return " | ".join(str(r[3]) for r in rows)


def _sales_index_names(storage: Storage) -> set[str]:
    db = storage.db  # type: ignore[attr-defined]
    if isinstance(storage, SqliteStorage):
        rows = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sales'"
        )
    else:
        rows = db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'sales'")
    return {str(r[0]) for r in rows.fetchall()}


def test_m025_is_the_same_step_on_both_backends_and_indexes_the_sales_times(
    storage: Storage,
) -> None:
    assert "m025_sales_time_indexes" in SQLITE_MIGRATIONS.names()
    assert POSTGRES_MIGRATIONS.names() == SQLITE_MIGRATIONS.names()
    assert {"sales_closed_at", "sales_received_at"} <= _sales_index_names(storage)


def test_the_feeders_sales_query_searches_the_received_at_index(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "center.db")
    try:
        storage.migrate()
        sales = [make_sale(seq) for seq in range(1, 31)]
        for i in range(0, 30, 10):
            storage.sales.ingest(sales[i : i + 10], D0 + timedelta(minutes=i))
        seen: list[tuple[str, Any]] = []
        execute = storage.db.execute

        def recording(sql: str, params: Any = ()) -> Any:
            seen.append((sql, params))
            return execute(sql, params)

        storage.db.execute = recording  # type: ignore[method-assign]
        first = read_batch(storage, Cursor(), limit=12)
        batch = read_batch(storage, first.cursor, limit=12)
        storage.db.execute = execute  # type: ignore[method-assign]

        # The watermark query still returns the next sales in (received_at, sale_id) order.
        assert len(batch.sales) == 12
        queries = [
            (sql, params) for sql, params in seen if "ORDER BY s.received_at, s.sale_id" in sql
        ]
        assert len(queries) == 2
        sql, params = queries[-1]
        assert params[0], "the second pass starts from a watermark"
        plan = _plan(storage, sql, params)
        # A range search on the index, not a walk of every sale (nor a sort of them all).
        assert "SEARCH s USING INDEX sales_received_at (received_at>?)" in plan, plan
        assert "SCAN s" not in plan and "TEMP B-TREE" not in plan, plan

        closed = _plan(
            storage,
            "SELECT payload FROM sales WHERE closed_at >= ? AND closed_at < ?",
            ("2026-03-01", "2026-03-02"),
        )
        assert "USING INDEX sales_closed_at (closed_at>? AND closed_at<?)" in closed, closed
    finally:
        storage.close()
