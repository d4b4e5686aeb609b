"""The call-center search uses its indexes on PostgreSQL (prefix LIKE, not a scan)."""

from __future__ import annotations

import random

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
        storage.db.executemany(
            "INSERT INTO customer_index VALUES (?, ?, ?, ?, ?, ?)",
            [(f"c{i}", f"n{i}", f"f{i}", "", f"{i:09d}", f"e{i}@x") for i in range(5000)],
        )
        storage.db.execute("ANALYZE customer_index")
        plan = storage.db.execute_planned(
            f"EXPLAIN SELECT customer_id FROM customer_index WHERE {column} LIKE ? LIMIT 20",
            [pattern],
        ).fetchall()
        text = "\n".join(r[0] for r in plan)
        assert f"customer_index_{column.split('_')[0]}" in text, text
        assert "Seq Scan" not in text, text
    finally:
        storage.close()


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))


def test_misspelt_names_use_the_trigram_index(pg_dsn: str) -> None:
    rng = random.Random(5)
    storage = PostgresStorage(pg_dsn)
    try:
        storage.migrate()
        storage.db.executemany(
            "INSERT INTO customer_index VALUES (?, ?, ?, ?, ?, ?)",
            [(f"c{i}", _word(rng), "", "", "", "") for i in range(5000)],
        )
        storage.db.execute("ANALYZE customer_names")
        storage.db.execute("ANALYZE customer_index")
        plan = storage.db.execute_planned(
            "EXPLAIN SELECT c.customer_id FROM (SELECT name, similarity(name, ?) AS score "
            "FROM customer_names WHERE name %% ? ORDER BY score DESC LIMIT 5) AS n "
            "CROSS JOIN LATERAL (SELECT customer_id FROM customer_index "
            "WHERE last_name = n.name LIMIT 20) AS c",
            ["kuznecov", "kuznecov"],
        ).fetchall()
        text = "\n".join(r[0] for r in plan)
        # The distinct-names table may be scanned while small; the customers never are.
        assert "customer_index_last" in text and "Seq Scan on customer_index" not in text, text
    finally:
        storage.close()
