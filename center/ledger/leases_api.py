"""HTTP routes of offline spending leases: store nodes ask for and give back leases; people
read a card's (docs/API.md; the protocol in ARCHITECTURE.md "Offline spending leases")."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from aiohttp import web

from center.access.permissions import Requirement
from center.ledger.leases import parse_lease_request, parse_lease_returns
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import card_no_param, card_no_value, in_db, json_body, own_store

__all__ = ["PERMISSIONS", "add_routes"]

MAX_LEASE_BYTES = 64 * 1024

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/v1/leases"): "node",
    ("POST", "/v1/leases/return"): "node",
    ("GET", "/v1/cards/{card_no}/leases"): ("ledger.read", "node"),
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/leases", grant)
    app.router.add_post("/v1/leases/return", give_back)
    app.router.add_get("/v1/cards/{card_no}/leases", of_card)


async def grant(request: web.Request) -> web.Response:
    """A store node's lease on a card's wallet, sized now (it replaces the store's last one)."""
    parsed = parse_lease_request(await json_body(request, max_bytes=MAX_LEASE_BYTES))
    own_store(request, parsed.store_id, field="body.store_id")
    parsed = dataclasses.replace(parsed, card_no=card_no_value(parsed.card_no, "body.card_no"))
    storage = request.app[STORAGE_KEY]
    granted = await in_db(request, storage.leases.grant, parsed, request.app[CLOCK_KEY]())
    return web.json_response(granted)


async def give_back(request: web.Request) -> web.Response:
    """A store node is done with leases; each keeps what its unsent sales spent."""
    store_id, items = parse_lease_returns(await json_body(request, max_bytes=MAX_LEASE_BYTES))
    own_store(request, store_id, field="body.store_id")
    items = tuple(
        dataclasses.replace(item, card_no=card_no_value(item.card_no, f"body.leases[{i}].card_no"))
        for i, item in enumerate(items)
    )
    storage = request.app[STORAGE_KEY]
    done = await in_db(request, storage.leases.give_back, store_id, items, request.app[CLOCK_KEY]())
    return web.json_response(done)


async def of_card(request: web.Request) -> web.Response:
    """The card's leases, per wallet and store, and what they hold together."""
    card_no = card_no_param(request)
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.leases.of_card, card_no, request.app[CLOCK_KEY]())
    return web.json_response(found)
