"""Fixtures for Center tests: a throwaway PostgreSQL cluster and storages of both backends."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from center.storage import Storage
from center.storage.postgres import PostgresStorage
from center.storage.sqlite import SqliteStorage

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class PgCluster:
    socket_dir: str
    port: int

    def dsn(self, dbname: str) -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL cluster for the session, started as `postgres` when we are root."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        message = (
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL "
            "(e.g. apt-get install postgresql) to run the PostgreSQL storage tests"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    as_postgres: list[str] = []
    # /tmp itself, not pytest's 0700 tmp tree, so the postgres user can reach the folder.
    base = Path(tempfile.mkdtemp(prefix="center-pg-"))
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    port = _free_port()
    try:
        subprocess.run(
            [
                *as_postgres,
                initdb,
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *as_postgres,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(base / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        out = getattr(exc, "stderr", b"") or b""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc}\n{out.decode(errors='replace')}\n{log}")
    try:
        yield PgCluster(socket_dir=str(base), port=port)
    finally:
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


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
