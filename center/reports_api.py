"""HTTP routes of the head-office reports: JSON figures and the same report as an SVG chart."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date
from functools import partial
from typing import Any

from aiohttp import web

from center import reports, reports_sql
from center.app import CLOCK_KEY, CONFIG_KEY, STORAGE_KEY, _in_db, _query_id, _query_int
from center.errors import MalformedRequest
from center.permissions import Requirement

__all__ = ["PERMISSIONS", "add_routes"]

SVG_TYPE = "image/svg+xml"
MAX_CATEGORIES = 100

_REPORTS = ("sales", "loyalty", "categories", "segments")

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", f"/v1/reports/{name}{suffix}"): "reports.read"
    for name in _REPORTS
    for suffix in ("", ".svg")
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    for name in _REPORTS:
        app.router.add_get(f"/v1/reports/{name}", _handler(name, svg=False))
        app.router.add_get(f"/v1/reports/{name}.svg", _handler(name, svg=True))


def _zone(request: web.Request) -> str:
    return request.app[CONFIG_KEY].reports.timezone


def _period(request: web.Request) -> tuple[date, date]:
    zone = reports_sql.zone_of(_zone(request))
    today = request.app[CLOCK_KEY]().astimezone(UTC).astimezone(zone).date()
    return reports.parse_period(request.query.get("from"), request.query.get("to"), today)


def _build(request: web.Request, name: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The report function and its arguments for one request (query checked here); days are
    those of the `[reports] timezone` setting."""
    date_from, date_to = _period(request)
    storage = request.app[STORAGE_KEY]
    zone = _zone(request)
    if name == "loyalty":
        wallet = _query_id(request, "wallet", required=False) or "bonus"
        return partial(reports_sql.loyalty_report, zone=zone), (storage, date_from, date_to, wallet)
    if name == "segments":
        return partial(reports_sql.segments_report, zone=zone), (storage, date_from, date_to)
    store_id = _query_id(request, "store_id", required=False)
    if name == "sales":
        return partial(reports_sql.sales_report, zone=zone), (storage, date_from, date_to, store_id)
    limit = _query_int(request, "limit", default=15)
    if not 1 <= limit <= MAX_CATEGORIES:
        raise MalformedRequest("limit", f"expected 1..{MAX_CATEGORIES}, got {limit}")

    def top(storage: Any, start: date, end: date, store: str | None) -> dict[str, Any]:
        return reports_sql.categories_report(storage, start, end, store, limit=limit, zone=zone)

    return top, (storage, date_from, date_to, store_id)


_SVG: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "sales": reports.sales_svg,
    "loyalty": reports.loyalty_svg,
    "categories": reports.categories_svg,
    "segments": reports.segments_svg,
}


def _handler(name: str, *, svg: bool) -> Callable[[web.Request], Any]:
    async def report(request: web.Request) -> web.Response:
        fn, args = _build(request, name)
        found = await _in_db(request, fn, *args)
        if not svg:
            return web.json_response(found)
        return web.Response(text=_SVG[name](found), content_type=SVG_TYPE, charset="utf-8")

    report.__name__ = f"{name}_{'svg' if svg else 'json'}"
    return report
