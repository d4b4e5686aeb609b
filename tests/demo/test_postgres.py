"""The throwaway PostgreSQL cluster: its settings, its cleanup and its errors."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import demo.postgres
from demo.postgres import (
    PostgresNotInstalled,
    PostgresStartFailed,
    ThrowawayPostgres,
    find_binary,
)


@pytest.fixture
def installed() -> Iterator[None]:
    """Skip (fail under CI) where the PostgreSQL server binaries are missing."""
    if find_binary("initdb") is None or find_binary("pg_ctl") is None:
        message = "PostgreSQL server binaries not found: install PostgreSQL to run these tests"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    # pg_ctl returns once the pid file is gone; the postmaster (not our child) exits just after.
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.usefixtures("installed")
def test_a_cluster_serves_its_settings_then_is_gone() -> None:
    import psycopg

    with ThrowawayPostgres(prefix="pgtest-", settings={"work_mem": "7MB"}) as pg:
        base = pg.socket_dir
        assert base.name.startswith("pgtest-")
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE other")
            shown = {
                name: conn.execute(f"SHOW {name}").fetchone()
                for name in ("fsync", "synchronous_commit", "work_mem", "server_encoding")
            }
        assert shown == {
            "fsync": ("off",),
            "synchronous_commit": ("off",),
            "work_mem": ("7MB",),
            "server_encoding": ("UTF8",),
        }
        with psycopg.connect(pg.dsn("other")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("other",)
        server_pid = int((base / "data" / "postmaster.pid").read_text().split()[0])
        assert _alive(server_pid)
    assert not base.exists()
    assert _gone(server_pid)


def test_missing_binaries_are_named_and_leave_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo.postgres, "find_binary", lambda name: None)
    pg = ThrowawayPostgres()
    with pytest.raises(PostgresNotInstalled, match=r"\(initdb, pg_ctl\) not found"):
        pg.start()
    assert pg.base is None


@pytest.mark.usefixtures("installed")
def test_a_server_that_will_not_start_reports_its_log_and_is_removed() -> None:
    prefix = f"pgtest-{os.getpid()}-refused-"
    pg = ThrowawayPostgres(prefix=prefix, settings={"no_such_setting": "1"})
    with pytest.raises(PostgresStartFailed, match="no_such_setting") as raised:
        pg.start()
    assert "pg_ctl start failed" in str(raised.value)
    assert pg.base is None
    assert list(Path(tempfile.gettempdir()).glob(prefix + "*")) == []
