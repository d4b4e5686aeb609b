"""The migration runner kept by the register and the store node: one code, two copies."""

from __future__ import annotations

import ast
import difflib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pos_agent.migrations
import store_node.migrations

ROOT = Path(__file__).parent.parent
COPIES = [pos_agent.migrations, store_node.migrations]
COPIES_PATHS = [Path("pos_agent/migrations.py"), Path("store_node/migrations.py")]


def test_the_two_copies_are_the_same_code() -> None:
    register, store = ((ROOT / p).read_text() for p in COPIES_PATHS)
    diff = "".join(
        difflib.unified_diff(
            register.splitlines(keepends=True),
            store.splitlines(keepends=True),
            *(str(p) for p in COPIES_PATHS),
        )
    )
    assert register == store, f"copy the change to both files:\n{diff}"
    assert ast.dump(ast.parse(register)) == ast.dump(ast.parse(store))


class OldFile(Exception):
    """Stands for a database's own error class."""


@pytest.fixture(params=COPIES, ids=["pos_agent", "store_node"])
def runner(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "local.db", isolation_level=None)
    yield connection
    connection.close()


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [str(name) for (name,) in rows]


def _two_steps(runner: ModuleType, migration_set: str = "box") -> Any:
    migrations = runner.Migrations(migration_set, error=OldFile)

    @migrations
    def m001_things(conn: sqlite3.Connection) -> None:
        migrations.create_or_adopt(conn, "CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY)")

    @migrations
    def m002_thing_colour(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE things ADD COLUMN colour TEXT NOT NULL DEFAULT 'red'")

    return migrations


def test_applies_in_order_once_and_records_each_by_name(
    runner: ModuleType, conn: sqlite3.Connection
) -> None:
    migrations = _two_steps(runner)
    assert migrations.pending(conn) == ["m001_things", "m002_thing_colour"]
    assert migrations.apply(conn) == ["m001_things", "m002_thing_colour"]
    recorded = list(conn.execute("SELECT migration_set, name, applied_at FROM _migrations"))
    assert [(s, n) for s, n, _ in recorded] == [
        ("box", "m001_things"),
        ("box", "m002_thing_colour"),
    ]
    conn.execute("INSERT INTO things (id) VALUES ('a')")

    assert migrations.apply(conn) == []
    assert list(conn.execute("SELECT migration_set, name, applied_at FROM _migrations")) == recorded
    assert list(conn.execute("SELECT id, colour FROM things")) == [("a", "red")]


def test_a_migration_unknown_here_is_refused_by_name_before_anything_runs(
    runner: ModuleType, conn: sqlite3.Connection
) -> None:
    newer = _two_steps(runner)

    @newer
    def m003_thing_size(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE things ADD COLUMN size INTEGER")

    newer.apply(conn)
    schema = list(conn.execute("SELECT sql FROM sqlite_master"))

    older = runner.Migrations("box", error=OldFile)

    @older
    def m001_things(conn: sqlite3.Connection) -> None:
        raise AssertionError("must not run")

    with pytest.raises(OldFile, match=r"box migration m002_thing_colour, m003_thing_size was"):
        older.apply(conn)
    assert list(conn.execute("SELECT sql FROM sqlite_master")) == schema


def test_a_failing_migration_leaves_the_file_at_the_step_before(
    runner: ModuleType, conn: sqlite3.Connection
) -> None:
    migrations = _two_steps(runner)

    @migrations
    def m003_half(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (id INTEGER)")
        conn.execute("INSERT INTO things (id) VALUES ('written by the failing step')")
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        migrations.apply(conn)
    assert not conn.in_transaction
    assert _tables(conn) == ["_migrations", "things"]
    assert list(conn.execute("SELECT * FROM things")) == []
    assert migrations.pending(conn) == ["m003_half"]


def test_a_migration_that_commits_on_its_own_is_caught(
    runner: ModuleType, conn: sqlite3.Connection
) -> None:
    migrations = runner.Migrations("box", error=OldFile)

    @migrations
    def m001_script(conn: sqlite3.Connection) -> None:
        conn.executescript("CREATE TABLE t (id INTEGER);")

    with pytest.raises(RuntimeError, match="m001_script committed on its own"):
        migrations.apply(conn)
    assert migrations.pending(conn) == ["m001_script"]


def test_sets_sharing_a_file_do_not_see_each_other(
    runner: ModuleType, conn: sqlite3.Connection
) -> None:
    box = _two_steps(runner, "box")
    book = runner.Migrations("book", error=OldFile)

    @book
    def m001_things(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE holds (id TEXT)")

    box.apply(conn)
    assert book.apply(conn) == ["m001_things"]  # the same name in another set is not applied
    assert box.apply(conn) == []
    assert sorted(conn.execute("SELECT migration_set, name FROM _migrations")) == [
        ("book", "m001_things"),
        ("box", "m001_things"),
        ("box", "m002_thing_colour"),
    ]


def test_a_second_connection_finds_the_work_done(runner: ModuleType, tmp_path: Path) -> None:
    first = sqlite3.connect(tmp_path / "local.db", isolation_level=None)
    second = sqlite3.connect(tmp_path / "local.db", isolation_level=None)
    try:
        migrations = _two_steps(runner)
        assert migrations.pending(second) == ["m001_things", "m002_thing_colour"]
        migrations.apply(first)
        assert migrations.apply(second) == []
    finally:
        first.close()
        second.close()


def test_adopting_refuses_a_table_without_the_expected_columns(
    runner: ModuleType, conn: sqlite3.Connection
) -> None:
    migrations = runner.Migrations("box", error=OldFile)
    schema = "CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY, colour TEXT)"

    @migrations
    def m001_things(conn: sqlite3.Connection) -> None:
        migrations.create_or_adopt(conn, schema)

    conn.execute("CREATE TABLE things (id TEXT PRIMARY KEY, size INTEGER)")
    with pytest.raises(OldFile, match=r"table things lacks column\(s\) colour"):
        migrations.apply(conn)
    assert _tables(conn) == ["things"]

    conn.execute("ALTER TABLE things ADD COLUMN colour TEXT")  # extra columns are fine
    conn.execute("INSERT INTO things VALUES ('a', 3, 'red')")
    assert migrations.apply(conn) == ["m001_things"]
    assert list(conn.execute("SELECT * FROM things")) == [("a", 3, "red")]


def test_a_connection_in_a_transaction_is_not_migrated(
    runner: ModuleType, conn: sqlite3.Connection
) -> None:
    conn.execute("BEGIN")
    with pytest.raises(RuntimeError, match="outside a transaction"):
        _two_steps(runner).apply(conn)
    conn.execute("ROLLBACK")


def test_a_name_is_registered_once(runner: ModuleType) -> None:
    migrations = _two_steps(runner)

    def m001_things(conn: sqlite3.Connection) -> None:
        pass

    with pytest.raises(ValueError, match="m001_things"):
        migrations(m001_things)
