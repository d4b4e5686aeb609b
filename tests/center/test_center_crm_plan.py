"""The call-center search uses its indexes on PostgreSQL (prefix LIKE, not a scan)."""

from __future__ import annotations

import pytest

from center.storage.postgres import PostgresStorage


@pytest.mark.parametrize(
    ("column", "pattern"),
    [("last_name", "ivan%"), ("phone_rev", "2211%"), ("email", "anna@%")],
)
def test_search_keys_are_indexed(pg_dsn: str, column: str, pattern: str) -> None:
    storage = PostgresStorage(pg_dsn)
    try:
        storage.migrate()
        storage._executemany(
            "INSERT INTO customer_index VALUES (?, ?, ?, ?, ?, ?)",
            [(f"c{i}", f"n{i}", f"f{i}", "", f"{i:09d}", f"e{i}@x") for i in range(5000)],
        )
        storage._execute("ANALYZE customer_index")
        plan = storage._execute_planned(
            f"EXPLAIN SELECT customer_id FROM customer_index WHERE {column} LIKE ? LIMIT 20",
            [pattern],
        ).fetchall()
        text = "\n".join(r[0] for r in plan)
        assert f"customer_index_{column.split('_')[0]}" in text, text
        assert "Seq Scan" not in text, text
    finally:
        storage.close()
