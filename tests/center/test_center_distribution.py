"""The Citus plan holds against the real schema: every distributed table keys by its column."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from center.storage.distribution import PENDING, PLAN
from center.storage.postgres import PostgresStorage

KEYS = """
SELECT tc.table_name, tc.constraint_name, array_agg(kcu.column_name::text)
FROM information_schema.table_constraints tc
JOIN information_schema.key_column_usage kcu
  ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
 AND kcu.table_name = tc.table_name
WHERE tc.table_schema = current_schema() AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')
GROUP BY tc.table_name, tc.constraint_name
"""
TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""


@pytest.fixture
def schema(pg_dsn: str) -> Iterator[tuple[set[str], dict[str, list[list[str]]]]]:
    storage = PostgresStorage(pg_dsn)
    try:
        storage.migrate()
    finally:
        storage.close()
    with psycopg.connect(pg_dsn) as conn:
        tables = {r[0] for r in conn.execute(TABLES)}
        keys: dict[str, list[list[str]]] = {}
        for table, _, columns in conn.execute(KEYS):
            keys.setdefault(table, []).append(list(columns))
    yield tables, keys


def _keyed_by(keys: dict[str, list[list[str]]], table: str, column: str) -> bool:
    found = keys.get(table, [])
    return bool(found) and all(column in columns for columns in found)


def test_every_table_of_the_schema_has_a_placement(schema: tuple[set[str], dict]) -> None:
    tables, _ = schema
    assert sorted(tables - set(PLAN)) == [], "add the new table to center/storage/distribution.py"
    assert sorted(set(PLAN) - tables) == [], "the plan names tables the schema does not have"


def test_distributed_tables_carry_their_column_in_every_key(schema: tuple[set[str], dict]) -> None:
    _, keys = schema
    wrong = sorted(
        f"{table}: keys {keys.get(table)} lack {placement.column}"
        for table, placement in PLAN.items()
        if placement.kind == "distributed"
        and table not in PENDING
        and not _keyed_by(keys, table, placement.column)
    )
    assert wrong == []


def test_the_pending_list_is_exactly_what_is_still_missing(schema: tuple[set[str], dict]) -> None:
    _, keys = schema
    done = sorted(t for t in PENDING if _keyed_by(keys, t, PLAN[t].column))
    assert done == [], f"keys fixed: take {done} off PENDING in center/storage/distribution.py"
    assert all(PLAN[t].kind == "distributed" for t in PENDING)
