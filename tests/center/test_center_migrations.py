"""The Center's named migrations: databases of the previous release upgraded in place, a
newer release's database refused, two workers migrating once, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import itertools
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from center.errors import StorageError
from center.storage.migrations import NAMED_MARK
from center.storage.postgres import POSTGRES_MIGRATIONS, PostgresStorage
from center.storage.sql import SqlStorage
from center.storage.sqlite import SQLITE_MIGRATIONS, SqliteStorage
from demo.postgres import find_binary
from sync_protocol import decode_sale
from tests.center.conftest import PgCluster
from tests.center.fixtures import build_previous_release as old

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2024, 6, 1, tzinfo=UTC)
Opener = Callable[[], SqlStorage]


@contextmanager
def _database(cluster: PgCluster, name: str) -> Iterator[str]:
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield cluster.dsn(name)
    finally:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _restore(dsn: str, dump: Path) -> None:
    psql = find_binary("psql")
    if psql is None:
        pytest.fail("psql not found: install PostgreSQL to restore the previous release's dump")
    done = subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn],
        input=gzip.decompress(dump.read_bytes()),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


_db_numbers = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def openers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Opener, Opener]]:
    """(backend, opener of a database of the previous release, opener of a fresh database)."""
    opened: list[SqlStorage] = []

    def keep(storage: SqlStorage) -> SqlStorage:
        opened.append(storage)
        return storage

    with ExitStack() as stack:
        if request.param == "sqlite":
            previous = tmp_path / "previous.db"
            previous.write_bytes(gzip.decompress((FIXTURES / "center.db.gz").read_bytes()))
            fresh = tmp_path / "fresh.db"
            openers = (lambda: keep(SqliteStorage(previous)), lambda: keep(SqliteStorage(fresh)))
        else:
            cluster: PgCluster = request.getfixturevalue("pg_cluster")
            number = f"{os.getpid()}_{next(_db_numbers)}"
            previous_dsn = stack.enter_context(_database(cluster, f"center_previous_{number}"))
            fresh_dsn = stack.enter_context(_database(cluster, f"center_fresh_{number}"))
            _restore(previous_dsn, FIXTURES / "center.sql.gz")
            openers = (
                lambda: keep(PostgresStorage(previous_dsn)),
                lambda: keep(PostgresStorage(fresh_dsn)),
            )
        try:
            yield (request.param, *openers)
        finally:
            for storage in opened:  # before the databases are dropped
                storage.close()


def _rows(storage: SqlStorage, sql: str) -> list[tuple[Any, ...]]:
    with storage.db.snapshot():
        return sorted(tuple(r) for r in storage.db.execute(sql).fetchall())


# Monthly partitions depend on the day the database was made: left out of the comparison.
_PG_SCHEMA = (
    "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, "
    "COALESCE(column_default, '') FROM information_schema.columns WHERE table_schema = 'public' "
    "AND table_name !~ '^sales_p[0-9]+$'",
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
    "AND tablename !~ '^sales_p[0-9]+$'",
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = 'public'::regnamespace "
    "AND conrelid::regclass::text !~ '^sales_p[0-9]+$'",
    "SELECT event_object_table, trigger_name, event_manipulation, action_statement "
    "FROM information_schema.triggers WHERE trigger_schema = 'public'",
    "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE n.nspname = 'public' AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = "
    "'plpgsql')",
    "SELECT c.relname, c.relkind, c.relpersistence FROM pg_class c JOIN pg_namespace n "
    "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') "
    "AND c.relname !~ '^sales_p[0-9]+$'",
)
_SQLITE_SCHEMA = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' "
    "ESCAPE '\\'",
)


def _schema(backend: str, storage: SqlStorage) -> list[list[tuple[Any, ...]]]:
    return [_rows(storage, q) for q in (_PG_SCHEMA if backend == "postgresql" else _SQLITE_SCHEMA)]


def test_previous_release_database_is_upgraded_in_place(
    openers: tuple[str, Opener, Opener],
) -> None:
    backend, open_previous, open_fresh = openers
    storage = open_previous()
    numbered = _rows(storage, "SELECT version, applied_at FROM schema_version")
    assert [v for v, _ in numbered] == list(range(1, 18))  # the fixture is what it says

    ran = storage.migrate()
    names = storage.migrations.names()
    assert ran == names[storage.migrations.numbered :]  # nothing the old release ran is re-run
    fresh = open_fresh()
    assert fresh.migrate() == names
    assert storage.migrations_applied() == fresh.migrations_applied() == names
    recorded = _rows(storage, "SELECT seq, name, applied_at FROM _migrations")
    # The adopted records keep the times the previous release applied them.
    assert [(seq, at) for seq, _, at in recorded[:17]] == numbered
    assert _schema(backend, storage) == _schema(backend, fresh)
    # A release from before names reads a version beyond its own and refuses the database.
    top = _rows(storage, "SELECT MAX(version) FROM schema_version")[0][0]
    assert top == NAMED_MARK > 17

    # The data of the previous release are all there and keep working.
    assert storage.counts().sales == len(old.SALES)
    for sale in old.SALES:
        stored = storage.sales.load_sale(sale.sale_id)
        assert stored is not None and decode_sale(stored) == sale
    balance = storage.ledger.balance(old.CARD, NOW)
    assert balance is not None and balance.wallets == {"bonus": old.ACCRUED}
    view = storage.customers.customer_view(old.NEW_CUSTOMER_ID, NOW)
    assert view is not None and old.NEW_CARD in {c["card_no"] for c in view["cards"]}
    promotion = storage.promotions.get_promotion(old.PROMOTION_ID)
    assert promotion is not None and promotion["status"] == "active"
    user = storage.users.user_by_token_hash(old.token_hash(old.TOKEN))
    assert user is not None and (user.username, user.role) == (old.USERNAME, "marketer")
    again = storage.sales.ingest(list(old.SALES), NOW)
    assert sorted(again.duplicates) == sorted(old.SALE_IDS) and not again.accepted
    later = old.sale(3, "00000000-0000-4000-8000-0000000000c3", card_no=old.CARD, accrue=5)
    assert storage.sales.ingest([later], NOW).accepted == (later.sale_id,)
    assert storage.ledger.balance(old.CARD, NOW).wallets == {"bonus": old.ACCRUED + 5}  # type: ignore[union-attr]

    reopened = open_previous()  # the next start: nothing to do, nothing recorded twice
    assert reopened.migrate() == []
    assert _rows(reopened, "SELECT seq, name, applied_at FROM _migrations") == recorded


def _open(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Opener:
    if backend == "postgresql":
        dsn = request.getfixturevalue("pg_dsn")
        return lambda: PostgresStorage(dsn)
    return lambda: SqliteStorage(tmp_path / "center.db")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_unknown_recorded_migration_is_refused_before_any_change(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    storage = _open(backend, tmp_path, request)()
    try:
        storage.migrations = storage.migrations.until("m003_node_enrolment")
        storage.migrate()
        with storage.db.transaction():
            storage.db.execute(
                "INSERT INTO _migrations (seq, name, applied_at) VALUES (?, ?, ?)",
                (4, "m004_from_a_newer_release", "2099-01-01T00:00:00+00:00"),
            )
        storage.migrations = type(storage).migrations
        with pytest.raises(
            StorageError, match="migration m004_from_a_newer_release was applied by a newer"
        ):
            storage.migrate()
        # Refused before anything was written: m004 did not run.
        assert "m004_ledger_lots" not in storage.migrations_applied()
        with pytest.raises(storage.db.driver_errors()):
            storage.db.execute("SELECT COUNT(*) FROM lots")
    finally:
        storage.close()


def _as_previous_release(storage: SqlStorage, version: int) -> None:
    """Turn the records of a database into the bookkeeping of the release before names."""
    with storage.db.transaction():
        storage.db.execute("DROP TABLE _migrations")
        storage.db.execute("DELETE FROM schema_version")
        for number in range(1, version + 1):
            storage.db.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (number, f"2024-01-{number:02d}T00:00:00+00:00"),
            )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_numbered_version_is_adopted_and_the_rest_applied(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    storage = _open(backend, tmp_path, request)()
    try:
        full = storage.migrations
        storage.migrations = full.until("m003_node_enrolment")
        storage.migrate()
        _as_previous_release(storage, 3)
        storage.migrations = full
        assert storage.migrate() == full.names()[3:]
        assert storage.migrations_applied() == full.names()
        adopted = _rows(storage, "SELECT seq, applied_at FROM _migrations WHERE seq <= 3")
        assert adopted == [(n, f"2024-01-{n:02d}T00:00:00+00:00") for n in (1, 2, 3)]
        assert storage.counts().sales == 0
    finally:
        storage.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_numbered_version_beyond_the_known_ones_is_refused(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    storage = _open(backend, tmp_path, request)()
    try:
        storage.migrate()
        _as_previous_release(storage, 18)
        with pytest.raises(StorageError, match="schema version 18 is newer than this Center"):
            storage.migrate()
    finally:
        storage.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_starting_together_migrate_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    make = _open(backend, tmp_path, request)
    workers = [make(), make()]
    start = threading.Barrier(len(workers))
    ran: list[list[str]] = [[] for _ in workers]
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            start.wait(timeout=30)
            ran[n] = workers[n].migrate()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(workers))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=100)
        assert not errors, errors
        names = workers[0].migrations.names()
        assert sorted(ran[0] + ran[1]) == sorted(names)  # each migration ran exactly once
        assert workers[1].migrations_applied() == names
    finally:
        for worker in workers:
            worker.close()


def test_the_backends_list_the_same_migrations_in_the_same_order() -> None:
    names = SQLITE_MIGRATIONS.names()
    assert POSTGRES_MIGRATIONS.names() == names
    assert SQLITE_MIGRATIONS.numbered == POSTGRES_MIGRATIONS.numbered == 17
    # Numbers increase; parallel branches reserve theirs (m020 may land before m018 merges).
    numbers = []
    for name in names:
        found = re.fullmatch(r"m(\d{3})_[a-z0-9_]+", name)
        assert found, name
        numbers.append(int(found.group(1)))
    assert numbers[:17] == list(range(1, 18))
    assert numbers == sorted(set(numbers)), names


def test_a_duplicate_name_is_refused_when_the_list_is_made() -> None:
    with pytest.raises(ValueError, match="m006_users"):
        type(SQLITE_MIGRATIONS)(
            (*SQLITE_MIGRATIONS.migrations, SQLITE_MIGRATIONS.migrations[5]), 17
        )
