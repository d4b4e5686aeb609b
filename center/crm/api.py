"""HTTP routes of the call center: customers, cards, search and audit (docs/API.md)."""

from __future__ import annotations

import logging

from aiohttp import web

from center.crm.model import (
    parse_card_issue,
    parse_customer,
    parse_reason,
    parse_replace,
    parse_search,
)
from center.errors import UnknownObject
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import card_no_param, in_db, json_body, query_id
from sync_protocol import CARD_RULE_SETTING, DEFAULT_CARD_RULE, CardRule, parse_card_rule

__all__ = ["MAX_JSON_BYTES", "PERMISSIONS", "add_routes", "card_rule_of"]

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 64 * 1024

PERMISSIONS: dict[tuple[str, str], str | tuple[str, ...]] = {
    ("POST", "/v1/customers"): "customers.write",
    ("GET", "/v1/customers/search"): "customers.read",
    ("GET", "/v1/customers/{customer_id}"): "customers.read",
    ("POST", "/v1/cards"): "cards.write",
    ("POST", "/v1/cards/{card_no}/activate"): "cards.write",
    ("POST", "/v1/cards/{card_no}/block"): "cards.write",
    ("POST", "/v1/cards/{card_no}/unblock"): "cards.write",
    ("POST", "/v1/cards/{card_no}/replace"): "cards.write",
    ("GET", "/v1/audit"): "audit.read",
}
"""(method, canonical route path) -> the permission a caller needs (center/permissions.py)."""


def add_routes(app: web.Application) -> None:
    """Register the call-center routes (search before the customer id it would shadow)."""
    app.router.add_post("/v1/customers", create_customer)
    app.router.add_get("/v1/customers/search", search)
    app.router.add_get("/v1/customers/{customer_id}", customer)
    app.router.add_post("/v1/cards", issue_card)
    app.router.add_post("/v1/cards/{card_no}/activate", activate_card)
    app.router.add_post("/v1/cards/{card_no}/block", block_card)
    app.router.add_post("/v1/cards/{card_no}/unblock", unblock_card)
    app.router.add_post("/v1/cards/{card_no}/replace", replace_card)
    app.router.add_get("/v1/audit", audit)


def _actor(request: web.Request) -> str:
    from center.access.api import actor_of

    return actor_of(request)


async def card_rule_of(request: web.Request) -> CardRule:
    """The chain's card format (setting card_number_rule) a new card number must have."""
    settings = await in_db(request, request.app[STORAGE_KEY].promotions.promotion_settings)
    try:
        return parse_card_rule(settings.get(CARD_RULE_SETTING))
    except ValueError as exc:
        log.warning("chain setting %s ignored: %s", CARD_RULE_SETTING, exc)
        return DEFAULT_CARD_RULE


async def create_customer(request: web.Request) -> web.Response:
    parsed = parse_customer(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    customer_id = await in_db(
        request, storage.customers.create_customer, parsed, _actor(request), now
    )
    view = await in_db(request, storage.customers.customer_view, customer_id, now)
    return web.json_response(view, status=201)


async def customer(request: web.Request) -> web.Response:
    customer_id = request.match_info["customer_id"]
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    view = await in_db(request, storage.customers.customer_view, customer_id, now)
    if view is None:
        raise UnknownObject("customer_id", f"unknown customer {customer_id[:80]!r}")
    tier = await in_db(request, storage.tiers.customer_tier, customer_id, now)
    if tier is not None:  # a tier programme is defined: level, progress, history
        view["tier"] = tier
    # The churn model's latest score (center/models), None until a training has scored them.
    view["churn"] = await in_db(request, storage.models.churn_risk, customer_id)
    return web.json_response(view)


async def search(request: web.Request) -> web.Response:
    query = parse_search(request.query.get("q"))
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.customers.search_customers, query)
    return web.json_response({"customers": found})


async def issue_card(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    customer_id, card_no, card_type = parse_card_issue(
        await json_body(request, max_bytes=MAX_JSON_BYTES), await card_rule_of(request)
    )
    card = await in_db(
        request,
        storage.customers.issue_card,
        customer_id,
        card_no,
        card_type,
        _actor(request),
        request.app[CLOCK_KEY](),
    )
    return web.json_response(card, status=201)


async def activate_card(request: web.Request) -> web.Response:
    card_no = card_no_param(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    card = await in_db(request, storage.customers.activate_card, card_no, _actor(request), now)
    return web.json_response(card)


async def block_card(request: web.Request) -> web.Response:
    card_no = card_no_param(request)
    reason = parse_reason(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    card = await in_db(request, storage.customers.block_card, card_no, reason, _actor(request), now)
    return web.json_response(card)


async def unblock_card(request: web.Request) -> web.Response:
    card_no = card_no_param(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    card = await in_db(request, storage.customers.unblock_card, card_no, _actor(request), now)
    return web.json_response(card)


async def replace_card(request: web.Request) -> web.Response:
    card_no = card_no_param(request)
    wanted = parse_replace(
        await json_body(request, max_bytes=MAX_JSON_BYTES, optional=True),
        await card_rule_of(request),
    )
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(
        request, storage.customers.replace_card, card_no, wanted, _actor(request), now
    )
    return web.json_response(done)


async def audit(request: web.Request) -> web.Response:
    kind = query_id(request, "kind")
    object_id = query_id(request, "id")
    storage = request.app[STORAGE_KEY]
    rows = await in_db(request, storage.audit.audit_history, kind, object_id)
    return web.json_response({"kind": kind, "id": object_id, "changes": rows})
