"""A throwaway PostgreSQL cluster for tests, benchmarks and the chaos harness.

initdb and pg_ctl in a fresh folder under the system temp dir, run as `postgres` when we are
root (the server refuses to run as root), started on a free port with durability off (the
server itself is never killed, and its data dies with it), stopped with `-m immediate` and
removed on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from types import TracebackType

from demo.errors import DemoError

__all__ = [
    "DEFAULT_SETTINGS",
    "PostgresNotInstalled",
    "PostgresStartFailed",
    "PostgresStopFailed",
    "ThrowawayPostgres",
    "find_binary",
]

# Durability off: a throwaway cluster is never recovered, so fsync buys nothing but time.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
_LOG_TAIL = 2000


class PostgresNotInstalled(DemoError):
    """initdb or pg_ctl is neither on PATH nor under /usr/lib/postgresql/*/bin."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"PostgreSQL server binaries ({', '.join(missing)}) not found: install PostgreSQL "
            "(e.g. apt-get install postgresql)"
        )
        self.missing = missing


class PostgresStartFailed(DemoError):
    """initdb or pg_ctl start failed or timed out; the message carries its stderr and the log."""


class PostgresStopFailed(DemoError):
    """pg_ctl stop failed; the folder is removed anyway, a server may be left running."""


def find_binary(name: str) -> str | None:
    """The path of a PostgreSQL program: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        data = data.decode(errors="replace")
    return (data or "")[-_LOG_TAIL:]


class ThrowawayPostgres(AbstractContextManager["ThrowawayPostgres"]):
    """One PostgreSQL cluster in a temporary folder: start(), dsn(dbname), stop(), or `with`.

    `settings` are server settings (`-c name=value`) laid over DEFAULT_SETTINGS.
    """

    def __init__(
        self, prefix: str = "throwaway-pg-", settings: Mapping[str, str] | None = None
    ) -> None:
        self.prefix = prefix
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.base: Path | None = None
        self.port = 0
        self._as: list[str] = []
        self._pg_ctl = ""

    @property
    def socket_dir(self) -> Path:
        if self.base is None:
            raise DemoError("the throwaway PostgreSQL cluster is not started")
        return self.base

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq DSN for `dbname` as the superuser `postgres`, over the Unix socket."""
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def start(self) -> ThrowawayPostgres:
        """initdb and start the server; raise PostgresNotInstalled or PostgresStartFailed."""
        if self.base is not None:
            raise DemoError(f"the throwaway PostgreSQL cluster in {self.base} is already started")
        binaries = {name: find_binary(name) for name in ("initdb", "pg_ctl")}
        missing = [name for name, path in binaries.items() if path is None]
        if missing:
            raise PostgresNotInstalled(missing)
        initdb, self._pg_ctl = str(binaries["initdb"]), str(binaries["pg_ctl"])
        # The system temp dir itself, not a 0700 tree (pytest's), so `postgres` can reach it.
        base = Path(tempfile.mkdtemp(prefix=self.prefix))
        self._as = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(base, "postgres", "postgres")
        self.base, self.port = base, _free_port()
        data, log_file = str(base / "data"), base / "server.log"
        options = " ".join(
            [f"-p {self.port} -k {base}", *(f"-c {k}={v}" for k, v in self.settings.items())]
        )
        try:
            self._run(
                "initdb",
                [initdb, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
                120,
                log_file,
            )
            self._run(
                "pg_ctl start",
                [
                    self._pg_ctl,
                    "-D",
                    data,
                    "-l",
                    str(log_file),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ],
                90,
                log_file,
            )
        except BaseException:
            self._stop_quietly()
            raise
        return self

    def _run(self, what: str, command: list[str], timeout_s: float, log_file: Path) -> None:
        try:
            done = subprocess.run(
                [*self._as, *command], capture_output=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            log = _tail(log_file.read_text()) if log_file.exists() else ""
            raise PostgresStartFailed(
                f"{what} timed out after {timeout_s:.0f} s: {_tail(exc.stderr)}\n{log}"
            ) from exc
        if done.returncode != 0:
            log = _tail(log_file.read_text()) if log_file.exists() else ""
            raise PostgresStartFailed(
                f"{what} failed with exit code {done.returncode}: {_tail(done.stderr)}\n{log}"
            )

    def stop(self) -> None:
        """Stop the server (`-m immediate`) and remove its folder; raise PostgresStopFailed."""
        base = self.base
        if base is None:
            return
        command = [self._pg_ctl, "-D", str(base / "data"), "-m", "immediate", "-w", "stop"]
        try:
            done = subprocess.run(
                [*self._as, *command],
                capture_output=True,
                timeout=60,
                check=False,
            )
        finally:
            shutil.rmtree(base, ignore_errors=True)
            self.base = None
        if done.returncode != 0:
            raise PostgresStopFailed(f"pg_ctl stop failed: {_tail(done.stderr)}")

    def _stop_quietly(self) -> None:
        # After a failed start there may be no server to stop: only the folder must go.
        with suppress(PostgresStopFailed, subprocess.TimeoutExpired):
            self.stop()

    def __enter__(self) -> ThrowawayPostgres:
        # A caller that started it first (to tell a missing install from a failure) still
        # hands its stop to the `with` block.
        return self if self.base is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
