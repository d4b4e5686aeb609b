"""HTTP routes of the analytics store: its status, and each report as JSON, CSV or SVG."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC
from functools import partial
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.analytics import queries
from center.analytics.charts import ANALYTICS_SVG
from center.analytics.feeder import status
from center.analytics.store import AnalyticsStore
from center.errors import MalformedRequest
from center.reporting import reports
from center.reporting.queries import zone_of
from center.web.keys import ANALYTICS_KEY, CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
from center.web.request import in_db, query_id, query_int

__all__ = ["PERMISSIONS", "add_routes"]

MAX_DAYS = 3 * 366
MAX_ROWS = 100_000
_SUFFIXES = {"": "json", ".csv": "csv", ".svg": "svg"}

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/v1/analytics/status"): "reports.read",
    **{
        ("GET", f"/v1/analytics/{name}{suffix}"): "reports.read"
        for name in queries.REPORTS
        for suffix in _SUFFIXES
    },
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/analytics/status", _status)
    for name in queries.REPORTS:
        for suffix, kind in _SUFFIXES.items():
            app.router.add_get(f"/v1/analytics/{name}{suffix}", _handler(name, kind))


async def _store(request: web.Request) -> AnalyticsStore:
    return await asyncio.to_thread(request.app[ANALYTICS_KEY].get)


async def _status(request: web.Request) -> web.Response:
    store = await _store(request)
    engine = request.app[CONFIG_KEY].analytics.engine
    found = await in_db(request, status, request.app[STORAGE_KEY], store, engine)
    return web.json_response(asdict(found))


def _build(request: web.Request, name: str) -> Callable[[AnalyticsStore], dict[str, Any]]:
    """The report call of one request, its query checked here."""
    zone = zone_of(request.app[CONFIG_KEY].reports.timezone)
    today = request.app[CLOCK_KEY]().astimezone(UTC).astimezone(zone).date()
    query = request.query
    start, end = reports.parse_period(
        query.get("from"), query.get("to"), today, default_days=365, max_days=MAX_DAYS
    )
    store_id = query_id(request, "store_id", required=False)
    if name == "receipt-sizes":
        bin_minor = query_int(request, "bin_minor", default=500)
        if not 1 <= bin_minor <= 10**9:
            raise MalformedRequest("bin_minor", f"expected 1..1000000000, got {bin_minor}")
        return lambda s: queries.receipt_sizes_report(s, start, end, store_id, bin_minor=bin_minor)
    if name == "rfm":
        return lambda s: queries.rfm_report(s, start, end, store_id)
    if name == "cohorts":
        return lambda s: queries.cohorts_report(s, start, end, store_id)
    if name == "balances":
        wallet = query_id(request, "wallet", required=False) or "bonus"
        return lambda s: queries.balances_report(s, start, end, wallet)
    if name == "lifecycle":
        return lambda s: queries.lifecycle_report(s, start, end, store_id)
    limit = query_int(request, "limit", default=50 if name == "associations" else 0)
    if limit > MAX_ROWS:
        raise MalformedRequest("limit", f"expected 0..{MAX_ROWS}, got {limit}")
    if name == "abc":
        level = query.get("level", "category")
        if level not in queries.ABC_LEVELS:
            raise MalformedRequest(
                "level", f"expected one of {', '.join(queries.ABC_LEVELS)}, got {level[:40]!r}"
            )
        return partial(_abc, start=start, end=end, store_id=store_id, level=level, limit=limit)
    min_receipts = query_int(request, "min_receipts", default=0) or None
    return lambda s: queries.associations_report(
        s, start, end, store_id, min_receipts=min_receipts, limit=limit or 50
    )


def _abc(store: AnalyticsStore, **kwargs: Any) -> dict[str, Any]:
    return queries.abc_report(store, kwargs.pop("start"), kwargs.pop("end"), **kwargs)


def _handler(name: str, kind: str) -> Callable[[web.Request], Any]:
    async def report(request: web.Request) -> web.Response:
        build = _build(request, name)
        store = await _store(request)
        found = await asyncio.to_thread(build, store)
        if kind == "csv":
            return web.Response(
                text=queries.report_csv(found),
                content_type="text/csv",
                charset="utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
            )
        if kind == "svg":
            return web.Response(
                text=ANALYTICS_SVG[name](found), content_type="image/svg+xml", charset="utf-8"
            )
        return web.json_response(found)

    report.__name__ = f"analytics_{name.replace('-', '_')}_{kind}"
    return report
