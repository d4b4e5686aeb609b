"""HTTP routes of the tier programme, its review and a customer's level (docs/API.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.crm.api import MAX_JSON_BYTES
from center.errors import MalformedRequest, UnknownObject
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, json_body

__all__ = ["PERMISSIONS", "add_routes"]

MAX_REVIEW_IDS = 1000
"""Most customers one explicit review names (the scheduler reviews everyone due)."""
PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/v1/tiers"): "promotions.read",
    ("PUT", "/v1/tiers"): "promotions.write",
    ("POST", "/v1/tiers/review"): "promotions.write",
    ("GET", "/v1/customers/{customer_id}/tier"): "customers.read",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/tiers", get_tiers)
    app.router.add_put("/v1/tiers", put_tiers)
    app.router.add_post("/v1/tiers/review", review)
    app.router.add_get("/v1/customers/{customer_id}/tier", customer_tier)


async def get_tiers(request: web.Request) -> web.Response:
    """GET /v1/tiers: the programme (null when none) and the master version."""
    storage = request.app[STORAGE_KEY]
    return web.json_response(await in_db(request, storage.tiers.programme))


async def put_tiers(request: web.Request) -> web.Response:
    """PUT /v1/tiers {period_days | period_months, grace_days, levels}: replace the programme."""
    body = await json_body(request, max_bytes=MAX_JSON_BYTES)
    storage = request.app[STORAGE_KEY]
    actor, now = actor_of(request), request.app[CLOCK_KEY]()
    done = await in_db(request, lambda: storage.tiers.set_programme(body, actor=actor, now=now))
    return web.json_response(done)


def _review_ids(body: Any) -> list[str] | None:
    if not isinstance(body, Mapping):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    extra = sorted(set(body) - {"customer_ids"}, key=str)
    if extra:
        raise MalformedRequest(f"body.{extra[0]}", "unknown field (known: customer_ids)")
    ids = body.get("customer_ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or len(ids) > MAX_REVIEW_IDS:
        raise MalformedRequest(
            "body.customer_ids", f"expected a list of at most {MAX_REVIEW_IDS} customer ids"
        )
    for i, cid in enumerate(ids):
        if not isinstance(cid, str) or not ID_PATTERN.match(cid):
            raise MalformedRequest(f"body.customer_ids[{i}]", f"expected an id, got {cid!r}")
    return list(ids)


async def review(request: web.Request) -> web.Response:
    """POST /v1/tiers/review {customer_ids?}: apply upgrades and downgrades due up to today
    (the named customers, or everyone with new sales or a decision due); {reviewed, changed}."""
    ids = _review_ids(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    return web.json_response(await in_db(request, lambda: storage.tiers.review(now, ids)))


async def customer_tier(request: web.Request) -> web.Response:
    """GET /v1/customers/{id}/tier: level, progress to the next, kept-until date, history."""
    customer_id = request.match_info["customer_id"]
    if not ID_PATTERN.match(customer_id):
        raise MalformedRequest("customer_id", f"expected an id, got {customer_id[:80]!r}")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    known = await in_db(request, storage.customers.customer_view, customer_id, now)
    if known is None:
        raise UnknownObject("customer_id", f"unknown customer {customer_id[:80]!r}")
    view = await in_db(request, storage.tiers.customer_tier, customer_id, now)
    if view is None:
        raise UnknownObject("tiers", "no tier programme is defined (PUT /v1/tiers)")
    return web.json_response(view)
