"""The Center's aiohttp app: state, lifecycle (database thread, scheduled jobs), routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from center.access.nodes import NonceCache
from center.config import NEEDS_DSN, Config, redact_dsn
from center.errors import RequestError, StorageError
from center.storage import Storage, open_storage
from center.web.keys import (
    CLOCK_KEY,
    CONFIG_KEY,
    CREDENTIALS_KEY,
    EXECUTOR_KEY,
    NONCES_KEY,
    ROUTE_PERMISSIONS_KEY,
    STORAGE_KEY,
)
from center.web.middleware import auth_middleware, error_middleware
from center.web.request import MAX_BODY_BYTES
from center.web.routes import add_routes, route_permissions

__all__ = ["DbThread", "create_app"]

log = logging.getLogger(__name__)

# DbThread is the same code as store_node/dbthread.py and pos_agent/dbthread.py (the tiers never
# import each other); tests/test_service_shell.py checks that the copies agree.


class _Closable(Protocol):
    def close(self) -> None: ...


_O = TypeVar("_O", bound=_Closable)
_T = TypeVar("_T")


class DbThread(Generic[_O]):
    """Makes the object with `make` on its thread at `open()`; `run` calls into it there.

    `where` names the database in messages (a path, or a DSN without its password); `owned=False`
    leaves the object open at `close()`, for one its caller made and will close.
    """

    def __init__(
        self,
        where: Path | str,
        make: Callable[[], _O],
        *,
        thread_name: str,
        owned: bool = True,
    ) -> None:
        self.where = where
        self._make = make
        self._owned = owned
        self._obj: _O | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The one thread, for code that submits plain functions to it."""
        return self._executor

    async def open(self) -> _O:
        """Make the object on the thread and return it; if that fails, the thread stops."""
        try:
            obj = await asyncio.get_running_loop().run_in_executor(self._executor, self._make)
        except BaseException:
            self._executor.shutdown(wait=True)
            raise
        self._obj = obj
        return obj

    async def run(self, call: Callable[[_O], _T]) -> _T:
        """Run `call(obj)` on the thread and return its result."""
        obj = self._obj
        if obj is None:
            raise RuntimeError(f"{self.where}: {type(self).__name__}.open() was not called")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, obj)

    async def close(self) -> None:
        """Let the call in progress finish, then close the object (if owned) and the thread."""
        obj, self._obj = self._obj, None
        if obj is not None and self._owned:
            await asyncio.get_running_loop().run_in_executor(self._executor, obj.close)
        self._executor.shutdown(wait=True)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: Config,
    storage: Storage | None = None,
    *,
    clock: Callable[[], datetime] = _utcnow,
) -> web.Application:
    """The Center app; opens (and later closes) the configured storage unless one is given."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[error_middleware, auth_middleware]
    )
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[NONCES_KEY] = NonceCache()
    app[CREDENTIALS_KEY] = {}

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # One database thread: SQLite and a single psycopg connection are used serially,
        # and the event loop never waits on the disk.
        where = (
            redact_dsn(config.storage.dsn)
            if config.storage.backend in NEEDS_DSN
            else config.storage.sqlite_path
        )
        given = storage

        def make() -> Storage:
            return open_storage(config.storage) if given is None else given

        db = DbThread(where, make, thread_name="center-db", owned=given is None)
        app[EXECUTOR_KEY] = db.executor
        opened = await db.open()
        app[STORAGE_KEY] = opened
        log.info("center %s: storage %s ready", config.center.node_id, opened.backend)

        async def expire_job() -> None:
            try:
                now = app[CLOCK_KEY]()
                burnt = await db.run(lambda store: store.ledger.expire_lots(now))
            except StorageError as exc:
                log.warning("expiring bonus lots failed (next run retries): %s", exc)
                return
            if burnt:
                log.info("expired %d bonus lots", burnt)
            try:  # the same cadence keeps next months' receipt partitions ready (PostgreSQL)
                now = app[CLOCK_KEY]()
                made = await db.run(lambda store: store.sales.ensure_partitions(now))
            except StorageError as exc:
                log.warning("creating receipt partitions failed (next run retries): %s", exc)
                return
            if made:
                log.info("created receipt partitions %s", ", ".join(made))

        async def segments_job() -> None:
            now = app[CLOCK_KEY]()
            try:
                done = await db.run(
                    lambda store: store.segments.recalculate_segments("scheduler", now)
                )
            except (StorageError, RequestError) as exc:
                log.warning("recalculating segments failed (next run retries): %s", exc)
                return
            for result in done:
                if result["added"] or result["removed"]:
                    log.info(
                        "segment %s: %d members (+%d -%d)",
                        result["segment_id"],
                        result["members"],
                        result["added"],
                        result["removed"],
                    )

        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        scheduler.add_job(
            segments_job,
            "interval",
            seconds=config.segments.recalc_interval_s,
            id="recalculate_segments",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        scheduler.add_job(
            expire_job,
            "interval",
            seconds=config.ledger.expire_interval_s,
            id="expire_lots",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        scheduler.start()
        try:
            yield
        finally:
            scheduler.shutdown(wait=False)
            await db.close()

    app.cleanup_ctx.append(lifecycle)
    add_routes(app)
    app[ROUTE_PERMISSIONS_KEY] = route_permissions(app)
    return app
