"""Console pages of the call center that change who holds what: register a customer, bind a
card, replace a card (balance and history move, the old one is blocked) and merge two customers
with a reason. Each parses its form with the JSON API's parser and calls the same repository
method as the API route (center/crm/api.py, customers_api.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.crm.api import card_rule_of
from center.crm.model import (
    PROFILE_FIELDS,
    parse_card_issue,
    parse_customer,
    parse_merge,
    parse_reason,
    parse_replace,
)
from center.crm.pages import customer_page
from center.errors import RequestError, UnknownObject
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import field_errors, form_of, page_actor, render
from center.web.request import card_no_param, in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/customers/new"): "customers.write",
    ("POST", "/console/customers/new"): "customers.write",
    ("POST", "/console/customers/{customer_id}/cards"): "cards.write",
    ("POST", "/console/customers/{customer_id}/merge"): "customers.write",
    ("POST", "/console/cards/{card_no}/replace"): "cards.write",
}
"""(method, canonical route path) -> the permission a caller needs."""

MAX_FIELD = 500
"""What a form field may carry back into the page (the parsers check the real limits)."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes (before the {customer_id} page that would match "new")."""
    app.router.add_get("/console/customers/new", register_form)
    app.router.add_post("/console/customers/new", register)
    app.router.add_post("/console/customers/{customer_id}/cards", bind_card)
    app.router.add_post("/console/customers/{customer_id}/merge", merge)
    app.router.add_post("/console/cards/{card_no}/replace", replace_card)


def _to_card(customer_id: str, done: str) -> web.Response:
    return web.Response(
        status=303, headers={"Location": f"/console/customers/{customer_id}?done={done}"}
    )


async def register_form(request: web.Request) -> web.StreamResponse:
    """The empty registration form."""
    return render(request, "crm/register.html", {"fields": PROFILE_FIELDS})


async def register(request: web.Request) -> web.StreamResponse:
    """Create a customer (POST /v1/customers' parser and call); to their card to bind one."""
    form = await form_of(request)
    values = {name: str(form.get(name, ""))[:MAX_FIELD] for name in PROFILE_FIELDS}
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    try:
        parsed = parse_customer({k: v for k, v in values.items() if v.strip()})
        customer_id = await in_db(
            request, storage.customers.create_customer, parsed, page_actor(request), now
        )
    except RequestError as exc:
        errors = field_errors(exc)
        if not set(errors) & set(PROFILE_FIELDS):
            errors = {"form": str(exc)}
        context = {"fields": PROFILE_FIELDS, "errors": errors, "values": values}
        return render(request, "crm/register.html", context, status=exc.status)
    return _to_card(customer_id, "created")


async def bind_card(request: web.Request) -> web.StreamResponse:
    """Issue a card to the customer (POST /v1/cards' parser, with the chain's card rule)."""
    customer_id = request.match_info["customer_id"][:64]
    form = await form_of(request)
    values = {
        "bind_card_no": str(form.get("bind_card_no", ""))[:MAX_FIELD],
        "bind_type": str(form.get("bind_type", "electronic"))[:MAX_FIELD],
    }
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    body: dict[str, Any] = {"customer_id": customer_id, "type": values["bind_type"]}
    if values["bind_card_no"].strip():
        body["card_no"] = values["bind_card_no"]
    try:
        _, card_no, card_type = parse_card_issue(body, await card_rule_of(request))
        await in_db(
            request,
            storage.customers.issue_card,
            customer_id,
            card_no,
            card_type,
            page_actor(request),
            now,
        )
    except RequestError as exc:
        field = field_errors(exc)
        if "customer_id" in field:
            raise
        message = next(iter(field.values()))
        key = "bind_type" if "type" in field else "bind_card_no"
        return await customer_page(
            request, customer_id, errors={key: message}, values=values, status=exc.status
        )
    return _to_card(customer_id, "bound")


async def replace_card(request: web.Request) -> web.StreamResponse:
    """Replace a card (POST /v1/cards/{card_no}/replace): a new active card takes the balance
    and history, the old one is blocked as "replaced"."""
    card_no = card_no_param(request)
    form = await form_of(request)
    customer_id = str(form.get("customer_id", ""))[:64]
    wanted = str(form.get("new_card_no", ""))[:MAX_FIELD]
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    try:
        new_card_no = parse_replace(
            {"new_card_no": wanted} if wanted.strip() else {}, await card_rule_of(request)
        )
        done = await in_db(
            request, storage.customers.replace_card, card_no, new_card_no, page_actor(request), now
        )
    except RequestError as exc:
        if not customer_id or (isinstance(exc, UnknownObject) and exc.field == "card_no"):
            raise
        errors = {f"replace:{card_no}": next(iter(field_errors(exc).values()))}
        values = {f"new_card_no:{card_no}": wanted}
        return await customer_page(
            request, customer_id, errors=errors, values=values, status=exc.status
        )
    return _to_card(str(done["new"]["customer_id"]), "replaced")


async def merge(request: web.Request) -> web.StreamResponse:
    """Merge another customer into this one with a reason (POST /v1/customers/{id}/merge)."""
    survivor = request.match_info["customer_id"][:64]
    form = await form_of(request)
    values = {
        "merged_id": str(form.get("merged_id", "")).strip()[:MAX_FIELD],
        "merge_reason": str(form.get("merge_reason", ""))[:MAX_FIELD],
    }
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    try:
        # A page merge always says why: the block's reason rule (required, 1..200 characters).
        reason = parse_reason({"reason": values["merge_reason"]})
        merged, reason = parse_merge({"merged_id": values["merged_id"], "reason": reason})
        await in_db(
            request,
            lambda: storage.customers.merge_customers(survivor, merged, actor, now, reason=reason),
        )
    except RequestError as exc:
        field = field_errors(exc)
        if "customer_id" in field and isinstance(exc, UnknownObject):
            raise
        key = "merge_reason" if "reason" in field else "merged_id"
        return await customer_page(
            request,
            survivor,
            errors={key: next(iter(field.values()))},
            values=values,
            status=exc.status,
        )
    return _to_card(survivor, "merged")
