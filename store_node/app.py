"""The store node's HTTP API (docs/API.md) and the lifecycles of its database, jobs and mDNS."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from aiohttp import web

from store_node import (
    admin_page,
    budgets_api,
    certificates_api,
    enrol_api,
    master_api,
    reservations_api,
    sales_api,
)
from store_node.auth import (
    NonceCache,
    RegisterAuth,
    StoredNonces,
)
from store_node.config import Config
from store_node.discovery import Advertiser
from store_node.forwarder import Forwarder
from store_node.keys import (
    ADVERTISER_KEY,
    AUTH_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
    FORWARDER_KEY,
    IDENTITY_KEY,
    KNOWN_KEY,
    MAX_BODY_KEY,
    NONCES_KEY,
    RUN_JOBS_KEY,
    STORED_NONCES_KEY,
    WORKER_KEY,
)
from store_node.middleware import auth_middleware, error_middleware
from store_node.salesbox import BoxWorker, SalesBox

__all__ = [
    "ADVERTISER_KEY",
    "CLOCK_KEY",
    "CONFIG_KEY",
    "FORWARDER_KEY",
    "IDENTITY_KEY",
    "MAX_BODY_BYTES",
    "WORKER_KEY",
    "create_app",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024

ROUTE_MODULES = (
    sales_api,
    enrol_api,
    master_api,
    reservations_api,
    budgets_api,
    certificates_api,
    admin_page,
)
"""Every module with `add_routes(app)`, in registration order (reservations also own their
database lifecycle, after the sales box's)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    worker = app[WORKER_KEY]
    await worker.open()
    enrolled = await asyncio.to_thread(app[AUTH_KEY].register_ids)
    now = app[CLOCK_KEY]()

    def check(box: SalesBox) -> str | None:
        box.expect_registers(enrolled)
        if not (box.created and enrolled):
            return None
        # Registers were enrolled here before, so they may hold sales this file never saw.
        reason = (
            f"store.db was created at this start although {len(enrolled)} registers are "
            "enrolled here: an emptied or replaced database"
        )
        return reason if box.begin_recovery(reason, now=now) else None

    reason = await worker.run(check)
    if reason is not None:
        log.warning("%s; recovering acknowledged sales from the registers' journals", reason)
    yield
    await worker.close()


async def _nonces_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await asyncio.to_thread(app[STORED_NONCES_KEY].close)


async def _forwarder_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[FORWARDER_KEY].start(schedule=app[RUN_JOBS_KEY])
    yield
    await app[FORWARDER_KEY].stop()


async def _advertiser_ctx(app: web.Application) -> AsyncIterator[None]:
    advertiser = app[ADVERTISER_KEY]
    if advertiser is not None:
        await advertiser.start()
    yield
    if advertiser is not None:
        await advertiser.stop()


def create_app(
    config: Config,
    *,
    clock: Callable[[], datetime] = _utcnow,
    rng: random.Random | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    run_jobs: bool = True,
    advertise: bool | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> web.Application:
    """Build the store node app; the database, jobs and mDNS start and stop with it.

    `run_jobs=False` leaves the Center link idle (tests drive `app[FORWARDER_KEY]` by hand);
    `advertise` overrides `config.store.advertise`.
    """
    app = web.Application(
        client_max_size=max_body_bytes, middlewares=[error_middleware, auth_middleware]
    )
    worker = BoxWorker(config.db_path, store_id=config.store.store_id)
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[WORKER_KEY] = worker
    app[FORWARDER_KEY] = Forwarder(config, worker, clock=clock, rng=rng, monotonic=monotonic)
    app[RUN_JOBS_KEY] = run_jobs
    app[MAX_BODY_KEY] = max_body_bytes
    app[AUTH_KEY] = RegisterAuth(config.store.data_dir)
    app[NONCES_KEY] = NonceCache()
    app[STORED_NONCES_KEY] = StoredNonces(config.store.data_dir)
    app[KNOWN_KEY] = {}
    do_advertise = config.store.advertise if advertise is None else advertise
    app[ADVERTISER_KEY] = (
        Advertiser(
            store_id=config.store.store_id,
            node_id=config.store.node_id,
            listen_host=config.store.listen_host,
            port=config.store.listen_port,
            scheme="https" if config.tls.enabled else "http",
        )
        if do_advertise
        else None
    )
    # Order matters: cleanup runs in reverse, so the jobs stop before the database closes.
    app.cleanup_ctx.extend([_storage_ctx, _nonces_ctx, _forwarder_ctx, _advertiser_ctx])
    for module in ROUTE_MODULES:
        module.add_routes(app)
    return app
