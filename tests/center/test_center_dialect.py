"""Backend differences live in one Dialect object, never in `if backend == ...` branches."""

from __future__ import annotations

import re
from pathlib import Path

from center.storage import Storage
from center.storage.dialect import POSTGRES, SQLITE, Dialect
from center.storage.postgres_database import PostgresDatabase
from center.storage.sqlite import SqliteStorage

CENTER = Path(__file__).resolve().parents[2] / "center"
BRANCH = re.compile(r"""\bbackend\s*[!=]=|==\s*["'](sqlite|postgresql)["']""")


def test_no_center_module_branches_on_the_backend_name() -> None:
    found = [
        f"{path.relative_to(CENTER)}:{n}: {line.strip()}"
        for path in sorted(CENTER.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if BRANCH.search(line)
    ]
    assert found == [], "ask the Dialect (center/storage/dialect.py) instead:\n" + "\n".join(found)


def test_each_backend_has_its_dialect(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "c.db")
    try:
        assert storage.dialect is SQLITE
        assert storage.db.dialect.for_update == ""
    finally:
        storage.close()
    assert PostgresDatabase.dialect is POSTGRES
    assert POSTGRES.for_update == " FOR UPDATE"


def test_dialects_answer_the_same_questions() -> None:
    for dialect in (SQLITE, POSTGRES):
        assert isinstance(dialect, Dialect)
        assert "{column}" not in dialect.contains("s.payload")
        assert "attributes" in dialect.json_text("attributes")
    assert SQLITE.json_key("city") == '$."city"'
    assert POSTGRES.json_key("city") == "city"
    assert SQLITE.single_writer and not POSTGRES.single_writer
    assert POSTGRES.partitions and not SQLITE.partitions


def test_sqlite_dialect_reads_the_schema_and_counts_inserts(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "c.db")
    try:
        storage.migrate()
        run = storage.db.execute
        assert SQLITE.has_table(run, "sales") and not SQLITE.has_table(run, "nope")
        assert {"sale_id", "store_id"} <= SQLITE.columns_of(run, "sales")
        storage.db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        insert = "INSERT INTO t (k) VALUES (?) ON CONFLICT DO NOTHING"
        assert (
            SQLITE.count_inserted(run, lambda: storage.db.executemany(insert, [("a",), ("b",)]))
            == 2
        )
        assert (
            SQLITE.count_inserted(run, lambda: storage.db.executemany(insert, [("a",), ("c",)]))
            == 1
        )
    finally:
        storage.close()


def test_any_of_selects_the_listed_values_with_one_statement_text(storage: Storage) -> None:
    db = storage.db  # type: ignore[attr-defined]
    db.execute("CREATE TABLE any_of_t (k TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO any_of_t (k) VALUES (?)", [(f"k{i}",) for i in range(700)])
    texts = set()
    for wanted in ([], ["k3"], ["k1", "nope", "k'2", "k699"], [f"k{i}" for i in range(0, 700, 2)]):
        where, param = db.dialect.any_of("k", wanted)
        texts.add(where)
        found = {r[0] for r in db.execute(f"SELECT k FROM any_of_t WHERE {where}", (param,))}
        assert found == {w for w in wanted if w in {f"k{i}" for i in range(700)}}
    assert len(texts) == 1  # whatever the number of values
