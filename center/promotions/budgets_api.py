"""HTTP routes of supplier budgets: store nodes ask for and give back budget leases; people
read a promotion's budget account (docs/API.md; the protocol in ARCHITECTURE.md "Supplier
budget leases")."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import UnknownObject
from center.promotions.budgets import parse_budget_lease_request, parse_budget_lease_returns
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import in_db, json_body, own_store

__all__ = ["PERMISSIONS", "add_routes"]

MAX_LEASE_BYTES = 64 * 1024

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/v1/budget-leases"): "node",
    ("POST", "/v1/budget-leases/return"): "node",
    ("GET", "/v1/promotions/{promotion_id}/budget"): "promotions.read",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/budget-leases", grant)
    app.router.add_post("/v1/budget-leases/return", give_back)
    app.router.add_get("/v1/promotions/{promotion_id}/budget", budget)


async def grant(request: web.Request) -> web.Response:
    """A store node's lease on a promotion's budget, sized now (it replaces the store's last)."""
    parsed = parse_budget_lease_request(await json_body(request, max_bytes=MAX_LEASE_BYTES))
    own_store(request, parsed.store_id, field="body.store_id")
    storage = request.app[STORAGE_KEY]
    granted = await in_db(request, storage.budgets.grant, parsed, request.app[CLOCK_KEY]())
    return web.json_response(granted)


async def give_back(request: web.Request) -> web.Response:
    """A store node is done with budget leases; each keeps what its unsent sales gave."""
    store_id, items = parse_budget_lease_returns(
        await json_body(request, max_bytes=MAX_LEASE_BYTES)
    )
    own_store(request, store_id, field="body.store_id")
    storage = request.app[STORAGE_KEY]
    done = await in_db(
        request, storage.budgets.give_back, store_id, items, request.app[CLOCK_KEY]()
    )
    return web.json_response(done)


async def budget(request: web.Request) -> web.Response:
    """The promotion's budget account: spent, left, the store leases, the sales behind."""
    promotion_id = request.match_info["promotion_id"]
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.budgets.budget, promotion_id, request.app[CLOCK_KEY]())
    if found is None:
        raise UnknownObject("promotion_id", f"no promotion {promotion_id!r}")
    return web.json_response(found)
