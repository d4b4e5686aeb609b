"""Console pages of the analytics reports: the list, and each report with its filters (period,
store, RFM segment and the report's own), its chart (the route's SVG), its table and the CSV
export; the same calls and permission as GET /v1/analytics/<name>."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from center.access.permissions import Requirement
from center.analytics import queries
from center.analytics.api import build_report
from center.analytics.feeder import status
from center.errors import RequestError, StorageError
from center.reporting.queries import zone_of
from center.web.keys import ANALYTICS_KEY, CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
from center.web.pages import field_errors, render
from center.web.request import ID_PATTERN, in_db

__all__ = ["FILTERS", "PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/analytics"): "reports.read",
    ("GET", "/console/analytics/{name}"): "reports.read",
}
"""(method, canonical route path) -> the permission a caller needs."""

_COMMON = ("from", "to", "store_id")
FILTERS: Mapping[str, tuple[str, ...]] = {
    "receipt-sizes": (*_COMMON, "segment", "bin_minor"),
    "rfm": _COMMON,
    "rfm-movement": (*_COMMON, "compare_from", "compare_to"),
    "cohorts": (*_COMMON, "segment"),
    "lifecycle": (*_COMMON, "segment"),
    "abc": (*_COMMON, "segment", "level", "limit"),
    "margin": (*_COMMON, "segment", "level", "limit"),
    "associations": (*_COMMON, "segment", "min_receipts", "limit"),
    "cards": (*_COMMON, "segment"),
    "churn": _COMMON,
    "balances": ("from", "to", "wallet"),
    "effect": (*_COMMON, "rule_id"),
}
"""The filters each report's page offers (every one a query parameter of its route)."""
_ORDER = (
    "lifecycle", "rfm", "rfm-movement", "churn", "cohorts", "cards", "margin", "abc",
    "receipt-sizes", "associations", "effect", "balances",
)  # fmt: skip
"""What a director opens first, first."""
_MAX_TABLE = 500


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/analytics", index_page)
    app.router.add_get("/console/analytics/{name}", report_page)


async def index_page(request: web.Request) -> web.StreamResponse:
    """Every report, and how far the analytics store is fed."""
    fed: dict[str, Any] | None = None
    try:
        store = await asyncio.to_thread(request.app[ANALYTICS_KEY].get)
        engine = request.app[CONFIG_KEY].analytics.engine
        found = await in_db(request, status, request.app[STORAGE_KEY], store, engine)
        fed = {"lag_s": found.lag_s, "pending_sales": found.pending_sales, "fed_at": found.fed_at}
    except StorageError:
        fed = None  # shown as "not available"; the reports' own pages say why
    return render(request, "analytics/index.html", {"reports": _ORDER, "fed": fed})


async def report_page(request: web.Request) -> web.StreamResponse:
    """One report: the filters, the chart, the table (at most 500 rows shown) and the CSV."""
    name = request.match_info["name"]
    if name not in FILTERS:
        raise web.HTTPNotFound(text=f"no analytics report {name[:40]!r}")
    zone = zone_of(request.app[CONFIG_KEY].reports.timezone)
    today = request.app[CLOCK_KEY]().astimezone(UTC).astimezone(zone).date()
    values = {f: request.query.get(f, "")[:40] for f in FILTERS[name]}
    given = {f: v for f, v in values.items() if v}
    errors: dict[str, str] = {}
    store_id = given.get("store_id")
    if store_id is not None and not ID_PATTERN.match(store_id):
        errors["store_id"] = "expected a store id (letters, digits, . _ : -)"
        given.pop("store_id")
        store_id = None
    report: dict[str, Any] | None = None
    build: Callable[[Any], dict[str, Any]] | None = None
    try:
        build = build_report(name, given, today, store_id)
    except RequestError as exc:  # shown by its field; the report runs with the defaults
        errors.update(field_errors(exc))
        given = {}
        try:
            build = build_report(name, given, today, None)
        except RequestError:
            build = None  # a filter without a default (the reward scheme's rule id)
    try:
        if build is not None:
            store = await asyncio.to_thread(request.app[ANALYTICS_KEY].get)
            report = await asyncio.to_thread(build, store)
    except RequestError as exc:  # a rule only the report knows (churn needs 16 weeks)
        errors.update(field_errors(exc))
    except StorageError as exc:
        errors["store"] = str(exc)[:300]
    query = urlencode(given)
    table = queries.report_table(report) if report else []
    return render(
        request,
        "analytics/report.html",
        {
            "name": name,
            "filters": FILTERS[name],
            "values": values,
            "errors": errors,
            "report": report,
            "table": table[:_MAX_TABLE],
            "more": max(0, len(table) - _MAX_TABLE),
            "segments": queries.RFM_SEGMENTS,
            "levels": {"abc": queries.ABC_LEVELS, "margin": ("category", "product", "brand")},
            "chart": f"/v1/analytics/{name}.svg?{query}",
            "csv": f"/v1/analytics/{name}.csv?{query}",
            "json": f"/v1/analytics/{name}?{query}",
        },
    )
