"""HTTP routes of the models: their versions with metrics, and a training run on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import InvalidRequest, MalformedRequest, UnknownObject
from center.web.keys import ANALYTICS_KEY, CLOCK_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, json_body

__all__ = ["PERMISSIONS", "add_routes", "association_query", "parse_template", "train_now"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/v1/models"): "reports.read",
    ("GET", "/v1/models/segments"): "reports.read",
    ("GET", "/v1/models/associations"): "reports.read",
    # What the call center sees on the card: the preferred store and favourite categories.
    ("GET", "/v1/models/preferences/{customer_id}"): "customers.read",
    # Training publishes personal offers: the roles that may set offers may train.
    ("POST", "/v1/models/train"): "coupons.write",
}
"""(method, canonical route path) -> the permission a caller needs."""

_TEMPLATE_FIELDS = {"percent", "per_customer", "valid_days"}


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/models", _versions)
    app.router.add_get("/v1/models/segments", _segments)
    app.router.add_get("/v1/models/associations", _associations)
    app.router.add_get("/v1/models/preferences/{customer_id}", _preferences)
    app.router.add_post("/v1/models/train", _train)


def parse_template(body: Any) -> Any:
    """The offer template of a train request (every field optional); InvalidRequest naming the
    first bad field."""
    from center.models.training import OfferTemplate
    from center.promotions.offers import parse_offers

    body = {} if body is None else body
    if not isinstance(body, Mapping):
        raise InvalidRequest("body", f"expected a JSON object, got {type(body).__name__}")
    extra = sorted(set(body) - _TEMPLATE_FIELDS)
    if extra:
        raise InvalidRequest(
            f"body.{extra[0]}", f"unknown field; expected {sorted(_TEMPLATE_FIELDS)}"
        )
    percent = Decimal("10")
    if "percent" in body:
        # the personal offers' own rule for a percent (0 < p <= 100, two decimals)
        try:
            percent = parse_offers({"offers": [{"product_id": "x", "percent": body["percent"]}]})[
                0
            ].percent
        except InvalidRequest as exc:
            raise InvalidRequest("body.percent", str(exc).split(": ", 1)[-1]) from None
    counts = {}
    for name, default, top in (("per_customer", 5, 100), ("valid_days", 28, 366)):
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise InvalidRequest(f"body.{name}", f"expected an integer 1..{top}, got {value!r}")
        counts[name] = value
    return OfferTemplate(percent=percent, **counts)


async def _versions(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    return web.json_response({"versions": await in_db(request, storage.models.versions)})


async def _segments(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    return web.json_response({"segments": await in_db(request, storage.models.segments)})


def association_query(query: Mapping[str, str]) -> tuple[str | None, int]:
    """The segment (any text up to 64 characters, or none) and limit (1..1000, default 50) of
    an associations request; MalformedRequest naming the bad one."""
    segment = query.get("segment") or None
    if segment is not None and (len(segment) > 64 or not segment.isprintable()):
        raise MalformedRequest("segment", f"expected a segment name, got {segment[:40]!r}")
    raw = query.get("limit") or "50"
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise MalformedRequest("limit", f"expected an integer 1..1000, got {raw[:40]!r}")
    return segment, int(raw)


async def _associations(request: web.Request) -> web.Response:
    segment, limit = association_query(request.query)
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.models.associations, segment, limit)
    return web.json_response({"segment": segment, "associations": found})


async def _preferences(request: web.Request) -> web.Response:
    customer_id = request.match_info["customer_id"]
    if not ID_PATTERN.match(customer_id):
        raise MalformedRequest("customer_id", f"expected a customer id, got {customer_id[:40]!r}")
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.models.preferences, customer_id)
    if found is None:
        raise UnknownObject("customer_id", f"no preferences scored for {customer_id!r}")
    return web.json_response(found)


async def _train(request: web.Request) -> web.Response:
    template = parse_template(await json_body(request, max_bytes=4096, optional=True))
    return web.json_response(await train_now(request, template))


async def train_now(request: web.Request, template: Any) -> dict[str, Any]:
    """Train every model on the analytics store and publish them; the summary of the run."""
    from center.models.dataset import analytics_purchases
    from center.models.training import publish, train

    store = await asyncio.to_thread(request.app[ANALYTICS_KEY].get)
    year = await asyncio.to_thread(analytics_purchases, store)
    trained = await asyncio.to_thread(train, year)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    summary: dict[str, Any] = await in_db(
        request, publish, storage, trained, template, "model", now
    )
    return summary
