"""HTTP routes of the head-office reports: JSON figures and the same report as an SVG chart."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date
from functools import partial
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import MalformedRequest
from center.reporting import queries as reports_sql
from center.reporting import reports
from center.web.keys import CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, query_id, query_int

__all__ = ["PERMISSIONS", "add_routes"]

SVG_TYPE = "image/svg+xml"
MAX_CATEGORIES = 100

_REPORTS = ("sales", "loyalty", "categories", "segments")
_PROMOTION = "/v1/reports/promotions/{promotion_id}"

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", f"{path}{suffix}"): "reports.read"
    for path in (*(f"/v1/reports/{name}" for name in _REPORTS), _PROMOTION)
    for suffix in ("", ".svg")
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    for name in _REPORTS:
        app.router.add_get(f"/v1/reports/{name}", _handler(name, svg=False))
        app.router.add_get(f"/v1/reports/{name}.svg", _handler(name, svg=True))
    # The .svg route first: the plain one would take "X.svg" as an id.
    app.router.add_get(_PROMOTION + ".svg", _promotion_handler(svg=True))
    app.router.add_get(_PROMOTION, _promotion_handler(svg=False))


def _zone(request: web.Request) -> str:
    return request.app[CONFIG_KEY].reports.timezone


def _period(request: web.Request, max_days: int = reports.MAX_DAYS) -> tuple[date, date]:
    zone = reports_sql.zone_of(_zone(request))
    today = request.app[CLOCK_KEY]().astimezone(UTC).astimezone(zone).date()
    query = request.query
    return reports.parse_period(query.get("from"), query.get("to"), today, max_days=max_days)


def _build(request: web.Request, name: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The report function and its arguments for one request (query checked here); days are
    those of the `[reports] timezone` setting."""
    date_from, date_to = _period(request)
    storage = request.app[STORAGE_KEY]
    zone = _zone(request)
    if name == "loyalty":
        wallet = query_id(request, "wallet", required=False) or "bonus"
        return partial(reports_sql.loyalty_report, zone=zone), (storage, date_from, date_to, wallet)
    if name == "segments":
        return partial(reports_sql.segments_report, zone=zone), (storage, date_from, date_to)
    store_id = query_id(request, "store_id", required=False)
    if name == "sales":
        return partial(reports_sql.sales_report, zone=zone), (storage, date_from, date_to, store_id)
    limit = query_int(request, "limit", default=15)
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
        found = await in_db(request, fn, *args)
        if not svg:
            return web.json_response(found)
        return web.Response(text=_SVG[name](found), content_type=SVG_TYPE, charset="utf-8")

    report.__name__ = f"{name}_{'svg' if svg else 'json'}"
    return report


def _promotion_handler(*, svg: bool) -> Callable[[web.Request], Any]:
    async def promotion_report(request: web.Request) -> web.Response:
        promotion_id = request.match_info["promotion_id"]
        if not ID_PATTERN.match(promotion_id):
            raise MalformedRequest(
                "promotion_id",
                f"expected 1..64 letters, digits or ._:- , got {promotion_id[:80]!r}",
            )
        date_from, date_to = _period(request, reports.PROMOTION_MAX_DAYS)
        wallet = query_id(request, "wallet", required=False) or "bonus"
        found = await in_db(
            request,
            partial(reports_sql.promotion_report, zone=_zone(request)),
            request.app[STORAGE_KEY],
            promotion_id,
            date_from,
            date_to,
            wallet,
        )
        if not svg:
            return web.json_response(found)
        return web.Response(
            text=reports.promotion_svg(found), content_type=SVG_TYPE, charset="utf-8"
        )

    promotion_report.__name__ = f"promotion_{'svg' if svg else 'json'}"
    return promotion_report
