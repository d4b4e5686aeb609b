"""Console page of the data analyst and the directors: the period's key figures and the charts,
from the same report queries as GET /v1/reports/* (the charts are those routes' SVGs)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from functools import partial
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import RequestError
from center.reporting import queries as reports_sql
from center.reporting import reports
from center.web.keys import CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
from center.web.pages import field_errors, render
from center.web.request import ID_PATTERN, in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/reports"): "reports.read",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/reports", dashboard)


async def dashboard(request: web.Request) -> web.StreamResponse:
    """Sales and loyalty figures of a period (default: the last 28 days), with the charts."""
    zone = request.app[CONFIG_KEY].reports.timezone
    today = request.app[CLOCK_KEY]().astimezone(UTC).astimezone(reports_sql.zone_of(zone)).date()
    query = request.query
    values = {name: query.get(name, "")[:40] for name in ("from", "to", "store_id")}
    errors: dict[str, str] = {}
    try:
        start, end = reports.parse_period(values["from"] or None, values["to"] or None, today)
    except RequestError as exc:
        errors = field_errors(exc)
        start, end = reports.parse_period(None, None, today)
    store_id = values["store_id"] or None
    if store_id is not None and not ID_PATTERN.match(store_id):
        errors["store_id"] = "expected a store id (letters, digits, . _ : -)"
        store_id = None
    storage = request.app[STORAGE_KEY]
    sales: dict[str, Any] = await in_db(
        request, partial(reports_sql.sales_report, zone=zone), storage, start, end, store_id
    )
    loyalty: dict[str, Any] = await in_db(
        request, partial(reports_sql.loyalty_report, zone=zone), storage, start, end, "bonus"
    )
    period = {"from": start.isoformat(), "to": end.isoformat()}
    scoped = {**period, **({"store_id": store_id} if store_id else {})}
    return render(
        request,
        "reporting/dashboard.html",
        {
            "sales": sales,
            "loyalty": loyalty,
            "period": period,
            "errors": errors,
            "values": values,
            "charts": {
                "sales": "/v1/reports/sales.svg?" + urlencode(scoped),
                "loyalty": "/v1/reports/loyalty.svg?" + urlencode(period),
                "categories": "/v1/reports/categories.svg?" + urlencode(scoped),
            },
            "json": "/v1/reports/sales?" + urlencode(scoped),
        },
    )
