"""HTTP routes of a customer's personal offers (docs/API.md)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.errors import MalformedRequest, UnknownObject
from center.promotions.offers import parse_offers
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, json_body

__all__ = ["MAX_JSON_BYTES", "PERMISSIONS", "add_routes"]

MAX_JSON_BYTES = 256 * 1024
"""At most 100 offers of a few hundred bytes each."""
_OFFERS = "/v1/customers/{customer_id}/offers"

# Offers are a marketing tool: the roles that issue coupons (marketer, loyalty manager,
# administrator) set them; whoever sees customers or coupons may read them.
PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", _OFFERS): ("customers.read", "coupons.read"),
    ("PUT", _OFFERS): "coupons.write",
    ("DELETE", _OFFERS + "/{offer_id}"): "coupons.write",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get(_OFFERS, offers)
    app.router.add_put(_OFFERS, set_offers)
    app.router.add_delete(_OFFERS + "/{offer_id}", delete_offer)


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise MalformedRequest(name, f"expected 1..64 letters, digits or ._:-, got {value[:80]!r}")
    return value


async def offers(request: web.Request) -> web.Response:
    customer_id = _path_id(request, "customer_id")
    view = await in_db(request, request.app[STORAGE_KEY].offers.personal_offers, customer_id)
    if view is None:
        raise UnknownObject("customer_id", f"unknown customer {customer_id!r}")
    return web.json_response(view)


async def set_offers(request: web.Request) -> web.Response:
    customer_id = _path_id(request, "customer_id")
    parsed = parse_offers(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(
        request, storage.offers.set_personal_offers, customer_id, parsed, actor_of(request), now
    )
    return web.json_response(done)


async def delete_offer(request: web.Request) -> web.Response:
    customer_id = _path_id(request, "customer_id")
    offer_id = _path_id(request, "offer_id")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(
        request, storage.offers.delete_personal_offer, customer_id, offer_id, actor_of(request), now
    )
    return web.json_response(done)
