"""HTTP routes of the analytics store: its status, and each report as JSON, CSV or SVG."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, date
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.analytics import customer_base, effect, queries
from center.analytics.charts import ANALYTICS_SVG
from center.analytics.feeder import status
from center.analytics.store import AnalyticsStore
from center.errors import MalformedRequest
from center.reporting import reports
from center.reporting.queries import zone_of
from center.web.keys import ANALYTICS_KEY, CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, query_id

__all__ = ["PERMISSIONS", "add_routes", "build_report"]

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
    return build_report(name, request.query, today, query_id(request, "store_id", required=False))


def build_report(
    name: str, query: Mapping[str, str], today: date, store_id: str | None
) -> Callable[[AnalyticsStore], dict[str, Any]]:
    """The call of report `name` with the filters of `query` checked (MalformedRequest naming
    the first bad one): from, to, store_id, segment and the report's own."""
    start, end = reports.parse_period(
        query.get("from"), query.get("to"), today, default_days=365, max_days=MAX_DAYS
    )
    segment = queries.check_segment(query.get("segment"))

    def number(field: str, default: int, low: int, high: int) -> int:
        raw = query.get(field)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise MalformedRequest(field, f"expected an integer, got {raw[:40]!r}") from None
        if not low <= value <= high:
            raise MalformedRequest(field, f"expected {low}..{high}, got {value}")
        return value

    def level(allowed: tuple[str, ...]) -> str:
        found = query.get("level") or allowed[0]
        if found not in allowed:
            raise MalformedRequest(
                "level", f"expected one of {', '.join(allowed)}, got {found[:40]!r}"
            )
        return found

    scope: dict[str, Any] = {"store_id": store_id}
    if name == "receipt-sizes":
        bin_minor = number("bin_minor", 500, 1, 10**9)
        return _bind(
            queries.receipt_sizes_report, start, end, bin_minor=bin_minor, segment=segment, **scope
        )
    if name == "rfm":
        return _bind(queries.rfm_report, start, end, **scope)
    if name in ("cohorts", "lifecycle"):
        fn = queries.cohorts_report if name == "cohorts" else queries.lifecycle_report
        return _bind(fn, start, end, segment=segment, **scope)
    if name == "balances":
        wallet = query.get("wallet") or "bonus"
        if not ID_PATTERN.match(wallet):
            raise MalformedRequest("wallet", f"expected a wallet id, got {wallet[:40]!r}")
        return _bind(queries.balances_report, start, end, wallet)
    if name == "cards":
        return _bind(customer_base.cards_report, start, end, segment=segment, **scope)
    if name == "effect":
        rule_id = query.get("rule_id") or ""
        if not ID_PATTERN.match(rule_id):
            raise MalformedRequest("rule_id", f"expected a rule id, got {rule_id[:40]!r}")
        return _bind(effect.effect_report, start, end, rule_id=rule_id, **scope)
    if name == "churn":
        return _bind(customer_base.churn_report, start, end, **scope)
    if name == "rfm-movement":
        previous = None
        if query.get("compare_from") or query.get("compare_to"):
            try:
                previous = reports.parse_period(
                    query.get("compare_from"),
                    query.get("compare_to"),
                    today,
                    default_days=365,
                    max_days=MAX_DAYS,
                )
            except MalformedRequest as exc:
                raise MalformedRequest("compare_from", str(exc)) from None
        return _bind(customer_base.rfm_movement_report, start, end, previous=previous, **scope)
    limit = number("limit", 50 if name == "associations" else 0, 0, MAX_ROWS)
    if name == "abc":
        return _bind(
            queries.abc_report,
            start,
            end,
            level=level(queries.ABC_LEVELS),
            limit=limit,
            segment=segment,
            **scope,
        )
    if name == "margin":
        return _bind(
            customer_base.margin_report,
            start,
            end,
            level=level(customer_base.MARGIN_LEVELS),
            limit=limit,
            segment=segment,
            **scope,
        )
    min_receipts = number("min_receipts", 0, 0, 10**9) or None
    return _bind(
        queries.associations_report,
        start,
        end,
        min_receipts=min_receipts,
        limit=limit or 50,
        segment=segment,
        **scope,
    )


def _bind(
    fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any
) -> Callable[[AnalyticsStore], dict[str, Any]]:
    def run(store: AnalyticsStore) -> dict[str, Any]:
        return fn(store, *args, **kwargs)

    return run


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
