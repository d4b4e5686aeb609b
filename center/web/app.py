"""The Center's aiohttp app: state, lifecycle (database thread, scheduled jobs), routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from center.access.nodes import NonceCache
from center.analytics.cli import feed_from
from center.analytics.store import LazyAnalytics
from center.config import NEEDS_DSN, Config, redact_dsn
from center.crm.tiers_store import REVIEW_EVERY_S as TIER_REVIEW_EVERY_S
from center.errors import RequestError, StorageError
from center.fraud.model import FraudSettings
from center.ingest.verify import VerifyPolicy
from center.storage import Storage, open_storage
from center.suppliers.cabinet import follow_live_campaigns
from center.web.dbthread import DbThread
from center.web.keys import (
    ANALYTICS_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
    CREDENTIALS_KEY,
    EXECUTOR_KEY,
    NONCES_KEY,
    ROUTE_PERMISSIONS_KEY,
    STORAGE_KEY,
)
from center.web.middleware import auth_middleware, error_middleware
from center.web.pages import setup_pages
from center.web.request import MAX_BODY_BYTES
from center.web.routes import add_routes, route_permissions

__all__ = ["create_app"]

log = logging.getLogger(__name__)
PRICE_CHANGES_EVERY_S = 60.0
"""How often price changes that came due are applied (center/feed/master_store.py)."""
SESSIONS_PURGE_EVERY_S = 600.0
"""How often console sessions that ended are deleted (center/access/people_store.py)."""
SUPPLIER_SPEND_EVERY_S = 60.0
"""How often the spend of live supplier campaigns is booked on their accounts."""


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
    app[ANALYTICS_KEY] = LazyAnalytics(config.analytics)

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
        checks = config.verify
        # Every sale is verified before its loyalty counts (center/ingest/verify.py).
        opened.verifier.configure(
            VerifyPolicy(
                feed_lag=timedelta(seconds=checks.feed_lag_s),
                future_skew=timedelta(seconds=checks.future_skew_s),
                max_age=timedelta(days=checks.max_age_days),
            )
            if checks.enabled
            else None
        )
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

        async def prices_job() -> None:
            now = app[CLOCK_KEY]()
            try:
                changed = await db.run(lambda store: store.master.apply_due_prices(now))
            except StorageError as exc:
                log.warning("applying price changes failed (next run retries): %s", exc)
                return
            if changed:
                log.info("price changes applied to %d products", changed)

        async def sessions_job() -> None:
            now = app[CLOCK_KEY]()
            try:
                gone = await db.run(lambda store: store.people.purge_sessions(now))
            except StorageError as exc:
                log.warning("purging ended console sessions failed (next run retries): %s", exc)
                return
            if gone:
                log.info("purged %d ended console sessions", gone)

        fraud_settings = FraudSettings(
            min_minutes_between_stores=config.fraud.min_minutes_between_stores
        )

        async def fraud_job() -> None:
            now = app[CLOCK_KEY]()
            try:
                done = await db.run(lambda store: store.fraud.scan(now, fraud_settings))
            except StorageError as exc:
                log.warning("fraud scan failed (next run retries): %s", exc)
                return
            if done["new"] or done["updated"]:
                log.info("fraud scan: %d new signals, %d updated", done["new"], done["updated"])

        async def tiers_job() -> None:
            now = app[CLOCK_KEY]()
            try:
                done = await db.run(lambda store: store.tiers.review(now))
            except StorageError as exc:
                log.warning("reviewing customer tiers failed (next run retries): %s", exc)
                return
            if done["changed"]:
                log.info("tiers: %d of %d customers changed", done["changed"], done["reviewed"])

        async def analytics_job() -> None:
            def run() -> None:
                store = app[ANALYTICS_KEY].get()
                done = feed_from(
                    app[STORAGE_KEY], store, config.reports.timezone, db_executor=db.executor
                )
                if done.sales or done.movements:
                    log.info("analytics: fed %d sales, %d movements", done.sales, done.movements)

            try:
                await asyncio.to_thread(run)
            except StorageError as exc:
                log.warning("feeding the analytics store failed (next run retries): %s", exc)

        async def models_job() -> None:
            from center.models.dataset import analytics_purchases
            from center.models.training import (
                OfferTemplate,
                TrainedModels,
                publish,
                retrain_due,
                train_with_history,
            )

            every_s = config.models.retrain_every_s

            def fit() -> TrainedModels | str:
                return train_with_history(analytics_purchases(app[ANALYTICS_KEY].get()))

            try:
                latest = await db.run(lambda store: store.models.versions(None, 1))
                if not retrain_due(latest, app[CLOCK_KEY](), every_s):
                    return
                trained = await asyncio.to_thread(fit)
                if isinstance(trained, str):
                    log.info("models: retraining skipped: %s", trained)
                    return
                now = app[CLOCK_KEY]()
                done = await db.run(
                    lambda store: publish(store, trained, OfferTemplate(), "model", now)
                )
            except (StorageError, RequestError) as exc:
                log.warning("retraining the models failed (next run retries): %s", exc)
                return
            log.info("models: retrained, %d offers published", done["offers_published"])

        async def suppliers_job() -> None:
            now = app[CLOCK_KEY]()
            try:
                await db.run(lambda store: follow_live_campaigns(store, now))
            except (StorageError, RequestError) as exc:
                log.warning("following supplier campaigns failed (next run retries): %s", exc)

        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())

        def every(seconds: float, job: Callable[[], Awaitable[None]], job_id: str) -> None:
            # One run at a time; a run missed while the previous one was busy is dropped.
            scheduler.add_job(
                job,
                "interval",
                seconds=seconds,
                id=job_id,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )

        every(PRICE_CHANGES_EVERY_S, prices_job, "apply_price_changes")
        every(SESSIONS_PURGE_EVERY_S, sessions_job, "purge_people_sessions")
        every(config.segments.recalc_interval_s, segments_job, "recalculate_segments")
        every(config.ledger.expire_interval_s, expire_job, "expire_lots")
        every(config.fraud.scan_interval_s, fraud_job, "fraud_scan")
        every(TIER_REVIEW_EVERY_S, tiers_job, "review_tiers")
        every(SUPPLIER_SPEND_EVERY_S, suppliers_job, "follow_supplier_campaigns")
        if config.analytics.feed_interval_s:
            every(config.analytics.feed_interval_s, analytics_job, "feed_analytics")
        if config.models.retrain_every_s:
            # Checked hourly against the newest version: a restart does not restart the week.
            every(min(config.models.retrain_every_s, 3600), models_job, "retrain_models")
        scheduler.start()
        try:
            yield
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.to_thread(app[ANALYTICS_KEY].close)
            await db.close()

    app.cleanup_ctx.append(lifecycle)
    setup_pages(app)
    add_routes(app)
    app[ROUTE_PERMISSIONS_KEY] = route_permissions(app)
    return app
