"""Fixtures for Center tests: a throwaway PostgreSQL cluster and storages of both backends."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from center.storage import Storage
from center.storage.postgres import PostgresStorage
from center.storage.sqlite import SqliteStorage
from demo.postgres import PostgresNotInstalled, PostgresStartFailed, ThrowawayPostgres

BACKENDS = ("sqlite", "postgresql")
PgCluster = ThrowawayPostgres  # the name the Center's PostgreSQL tests annotate the fixture with


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL cluster for the session, started as `postgres` when we are root."""
    cluster = ThrowawayPostgres(prefix="center-pg-")
    try:
        cluster.start()
    except PostgresNotInstalled as exc:
        message = f"{exc} to run the PostgreSQL storage tests"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    except PostgresStartFailed as exc:
        pytest.fail(f"could not start PostgreSQL: {exc}")
    with cluster:
        yield cluster


_db_numbers = itertools.count(1)


@pytest.fixture
def pg_dsn(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database in the session cluster."""
    import psycopg

    name = f"center_test_{os.getpid()}_{next(_db_numbers)}"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield pg_cluster.dsn(name)
    finally:
        with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


OpenStorage = Callable[[], Storage]


@pytest.fixture(params=BACKENDS)
def open_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStorage]:
    """Opens (and migrates) a new connection to this test's database; closes them all after."""
    opened: list[Storage] = []
    if request.param == "postgresql":
        dsn = request.getfixturevalue("pg_dsn")

        def make() -> Storage:
            return PostgresStorage(dsn)
    else:
        path = tmp_path / "center.db"

        def make() -> Storage:
            return SqliteStorage(path)

    def open_one() -> Storage:
        storage = make()
        opened.append(storage)
        storage.migrate()
        return storage

    yield open_one
    for storage in opened:
        storage.close()


@pytest.fixture
def storage(open_storage: OpenStorage) -> Storage:
    """A migrated storage of each backend."""
    return open_storage()
