"""create_app: the POS agent's aiohttp application and the lifecycle of what it owns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from pos_agent.api import CONFIG, DEVICES, UPLOADER, WORKER, add_routes, error_middleware
from pos_agent.config import Config
from pos_agent.dbthread import DbThread
from pos_agent.devices import DeviceHub
from pos_agent.inputs import MAX_BODY_BYTES
from pos_agent.journal import Journal
from pos_agent.register import Clock, Register, utc_now
from pos_agent.replica import Replica
from pos_agent.storelink import StoreLink
from pos_agent.uploader import Uploader, Uploads

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    config: Config,
    *,
    clock: Clock = utc_now,
    uploader: Uploads | None = None,
    devices: DeviceHub | None = None,
) -> web.Application:
    """The agent's app; the uploader defaults to the real one talking to the store node."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[error_middleware])
    app[CONFIG] = config
    hub = devices if devices is not None else DeviceHub(config, clock=clock)
    app[DEVICES] = hub
    app[UPLOADER] = (
        uploader if uploader is not None else Uploader(config, clock=clock, devices=hub.heartbeat)
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        register_cfg = config.register
        register_cfg.data_dir.mkdir(parents=True, exist_ok=True)
        uploader = app[UPLOADER]
        # The configured store node, else the one the uploader found over zeroconf.
        link = StoreLink(
            config,
            lambda: config.store_node.url or uploader.status().store_url,
            clock=clock,
        )

        def open_register() -> Register:
            journal = Journal(
                register_cfg.journal_path,
                register_id=register_cfg.register_id,
                store_id=register_cfg.store_id,
            )
            try:
                replica = Replica(register_cfg.replica_path)
            except BaseException:
                journal.close()
                raise
            return Register(
                config,
                journal,
                replica,
                clock=clock,
                on_sale=uploader.wake,
                on_lines=hub.lines_added,
                on_confirmed=hub.sale_confirmed,
                on_message=hub.show_message,
                link=link,
            )

        # One thread owns the API's SQLite connections, so receipt operations never interleave.
        worker = DbThread(register_cfg.journal_path, open_register, thread_name="pos-register")
        register = await worker.open()
        app[WORKER] = worker
        hub.names = register.replica.product_names
        # Called on the register's thread (on_confirmed), which owns the replica connection.
        hub.titles = lambda: {
            promotion.promotion_id: promotion.title
            for promotion in register.promotion_set().promotions
            if promotion.title
        }
        (stats, master_version), open_receipts = await worker.run(
            lambda r: (r.stats(), len(r.journal.open_receipt_ids()))
        )
        log.info(
            "register %s of store %s: %d sales queued, last seq %d, master data v%d, "
            "%d receipts open",
            register_cfg.register_id,
            register_cfg.store_id,
            stats.queue_depth,
            stats.last_seq,
            master_version,
            open_receipts,
        )
        hub.start()
        uploader.start()
        try:
            yield
        finally:
            await asyncio.to_thread(uploader.stop)
            await asyncio.to_thread(hub.stop)
            await worker.close()

    app.cleanup_ctx.append(lifecycle)
    add_routes(app)
    return app
