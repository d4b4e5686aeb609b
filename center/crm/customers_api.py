"""HTTP routes of customer merges, deactivation, questionnaires and the customer card view
(docs/API.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.crm.api import MAX_JSON_BYTES
from center.crm.customers_store import MAX_RECEIPTS_PAGE, RECEIPTS_PAGE
from center.crm.model import parse_merge
from center.errors import MalformedRequest, UnknownObject
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, card_no_param, in_db, json_body, query_int

__all__ = ["PERMISSIONS", "add_routes"]

_ONE = "/v1/customers/{customer_id}"
PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", _ONE + "/merge"): "customers.write",
    ("POST", _ONE + "/deactivate"): "customers.write",
    ("POST", _ONE + "/questionnaires/{questionnaire_id}"): "customers.write",
    ("GET", _ONE + "/card-view"): "customers.read",
    ("GET", _ONE + "/receipts"): "customers.read",
    ("POST", "/v1/cards/{card_no}/deactivate"): "cards.write",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post(_ONE + "/merge", merge)
    app.router.add_post(_ONE + "/deactivate", deactivate_customer)
    app.router.add_post(_ONE + "/questionnaires/{questionnaire_id}", set_answers)
    app.router.add_get(_ONE + "/card-view", card_view)
    app.router.add_get(_ONE + "/receipts", receipts)
    app.router.add_post("/v1/cards/{card_no}/deactivate", deactivate_card)


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise MalformedRequest(name, f"expected 1..64 letters, digits or ._:-, got {value[:80]!r}")
    return value


def _object(body: Any, known: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    extra = sorted(set(body) - set(known))
    if extra:
        raise MalformedRequest(f"body.{extra[0]}", f"unknown field (known: {', '.join(known)})")
    return body


async def merge(request: web.Request) -> web.Response:
    survivor = _path_id(request, "customer_id")
    merged, reason = parse_merge(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = actor_of(request)
    done = await in_db(
        request,
        lambda: storage.customers.merge_customers(survivor, merged, actor, now, reason=reason),
    )
    return web.json_response(done)


async def deactivate_customer(request: web.Request) -> web.Response:
    customer_id = _path_id(request, "customer_id")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(
        request, storage.customers.deactivate_customer, customer_id, actor_of(request), now
    )
    return web.json_response(done)


async def deactivate_card(request: web.Request) -> web.Response:
    card_no = card_no_param(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    card = await in_db(request, storage.customers.deactivate_card, card_no, actor_of(request), now)
    return web.json_response(card)


async def set_answers(request: web.Request) -> web.Response:
    customer_id = _path_id(request, "customer_id")
    questionnaire_id = _path_id(request, "questionnaire_id")
    body = _object(await json_body(request, max_bytes=MAX_JSON_BYTES), ("answers",))
    if "answers" not in body:
        raise MalformedRequest("body.answers", "required")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(
        request,
        storage.customers.set_answers,
        customer_id,
        questionnaire_id,
        body["answers"],
        actor_of(request),
        now,
    )
    return web.json_response(done, status=201 if done["changed"] else 200)


async def card_view(request: web.Request) -> web.Response:
    customer_id = _path_id(request, "customer_id")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    view = await in_db(request, storage.customers.customer_card_view, customer_id, now)
    if view is None:
        raise UnknownObject("customer_id", f"unknown customer {customer_id!r}")
    return web.json_response(view)


async def receipts(request: web.Request) -> web.Response:
    """A page of the customer's receipts and returns, newest first, with its totals."""
    customer_id = _path_id(request, "customer_id")
    limit = query_int(request, "limit", default=RECEIPTS_PAGE)
    if not 1 <= limit <= MAX_RECEIPTS_PAGE:
        raise MalformedRequest("limit", f"expected 1..{MAX_RECEIPTS_PAGE}, got {limit}")
    cursor = request.query.get("cursor") or None
    if cursor is not None and len(cursor) > 200:
        raise MalformedRequest("cursor", "longer than 200 characters")
    storage = request.app[STORAGE_KEY]

    def page() -> dict[str, object] | None:
        return storage.customers.customer_receipts(customer_id, limit=limit, cursor=cursor)

    found = await in_db(request, page)
    if found is None:
        raise UnknownObject("customer_id", f"unknown customer {customer_id!r}")
    return web.json_response(found)
