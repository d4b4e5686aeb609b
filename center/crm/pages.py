"""Console pages of the call center: search (results as you type), the customer card, blocking a
card. The same repository calls and checks as the JSON routes of `center/crm/api.py`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.crm.model import PROFILE_FIELDS, parse_reason, parse_search
from center.errors import RequestError, UnknownObject
from center.ledger.model import Balance
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import field_errors, form_of, page_actor, render
from center.web.request import card_no_param, in_db

__all__ = ["NOTICES", "PERMISSIONS", "add_routes", "customer_page", "display_name"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/customers"): "customers.read",
    ("GET", "/console/customers/{customer_id}"): "customers.read",
    ("POST", "/console/cards/{card_no}/block"): "cards.write",
    ("POST", "/console/cards/{card_no}/unblock"): "cards.write",
}
"""(method, canonical route path) -> the permission a caller needs."""

NOTICES = ("blocked", "unblocked", "adjusted", "created", "bound", "replaced", "merged")
"""The `?done=` outcomes the customer card announces."""
BURNING_SHOWN = timedelta(days=30)
"""How far ahead the card shows points that will burn (as GET .../balance's default)."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/customers", search_page)
    app.router.add_get("/console/customers/{customer_id}", customer)
    app.router.add_post("/console/cards/{card_no}/block", block_card)
    app.router.add_post("/console/cards/{card_no}/unblock", unblock_card)


def display_name(attributes: Mapping[str, Any]) -> str:
    """Last, first and middle name, as far as known."""
    return " ".join(
        str(attributes[k]) for k in ("last_name", "first_name", "middle_name") if attributes.get(k)
    )


async def search_page(request: web.Request) -> web.StreamResponse:
    """The search box; with `q`, the customers found (only the results for htmx)."""
    q = request.query.get("q", "")
    found: list[dict[str, Any]] = []
    error = ""
    if q.strip():
        try:
            query = parse_search(q)
        except RequestError as exc:
            error = field_errors(exc).get("q", str(exc))
        else:
            found = await in_db(request, request.app[STORAGE_KEY].customers.search_customers, query)
    context = {
        "q": q,
        "found": [{**c, "name": display_name(c["attributes"])} for c in found],
        "errors": {"q": error} if error else {},
        "searched": bool(q.strip()),
    }
    partial = request.headers.get("HX-Request") and request.headers.get("HX-Target") == "results"
    return render(request, "crm/results.html" if partial else "crm/search.html", context)


async def customer_page(
    request: web.Request,
    customer_id: str,
    *,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    notice: str = "",
    status: int = 200,
) -> web.Response:
    """The customer card page (also re-rendered by the forms on it, with their errors)."""
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    view = await in_db(request, storage.customers.customer_card_view, customer_id[:64], now)
    if view is None:
        raise UnknownObject("customer_id", f"unknown customer {customer_id[:80]!r}")
    tier = await in_db(request, storage.tiers.customer_tier, customer_id[:64], now)
    churn = await in_db(request, storage.models.churn_risk, customer_id[:64])
    balances = []
    for card in view["cards"]:
        found = await in_db(request, _card_balance, storage, card["card_no"], now)
        if found is not None:
            balances.append(found)
    offers = await in_db(request, storage.offers.personal_offers, customer_id[:64])
    sale_ids = [r["sale_id"] for r in view["receipts"]]
    certificates = await in_db(request, storage.certificates.of_sales, sale_ids, now)
    profile = [(k, view["attributes"][k]) for k in PROFILE_FIELDS if view["attributes"].get(k)]
    other = sorted(
        (k, v) for k, v in view["attributes"].items() if k not in PROFILE_FIELDS and v is not None
    )
    return render(
        request,
        "crm/customer.html",
        {
            "view": view,
            "name": display_name(view["attributes"]) or view["customer_id"],
            "profile": profile,
            "other": other,
            "tier": tier,
            "churn": churn,
            "balances": balances,
            "offers": [] if offers is None else offers["offers"],
            "certificates": certificates,
            "errors": dict(errors or {}),
            "values": dict(values or {}),
            "notice": notice,
            # A new key per rendering: a form posted twice adjusts once.
            "adjust_key": str(uuid.uuid4()),
        },
        status=status,
    )


def _card_balance(storage: Any, card_no: str, now: datetime) -> Balance | None:
    found: Balance | None = storage.ledger.balance(card_no, now, burning_within=BURNING_SHOWN)
    return found


async def customer(request: web.Request) -> web.StreamResponse:
    """The customer card: profile, cards, balances, history, receipts, coupons."""
    done = request.query.get("done", "")
    notice = done if done in NOTICES else ""
    return await customer_page(request, request.match_info["customer_id"], notice=notice)


async def _card_action(request: web.Request, action: str) -> web.StreamResponse:
    card_no = card_no_param(request)
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    customer_id = str(form.get("customer_id", ""))[:64]
    try:
        if action == "block":
            reason = parse_reason({"reason": str(form.get("reason", "")).strip()})
            card = await in_db(request, storage.customers.block_card, card_no, reason, actor, now)
        else:
            card = await in_db(request, storage.customers.unblock_card, card_no, actor, now)
    except RequestError as exc:
        if not customer_id or isinstance(exc, UnknownObject):
            raise
        errors = {f"{action}:{card_no}": field_errors(exc).popitem()[1]}
        values = {f"reason:{card_no}": str(form.get("reason", ""))}
        return await customer_page(
            request, customer_id, errors=errors, values=values, status=exc.status
        )
    done = "blocked" if action == "block" else "unblocked"
    return web.Response(
        status=303,
        headers={"Location": f"/console/customers/{card['customer_id']}?done={done}"},
    )


async def block_card(request: web.Request) -> web.StreamResponse:
    """Block a card with a reason (the same rule as POST /v1/cards/{card_no}/block)."""
    return await _card_action(request, "block")


async def unblock_card(request: web.Request) -> web.StreamResponse:
    """Lift a card's block."""
    return await _card_action(request, "unblock")
