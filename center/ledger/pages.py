"""Console pages of the loyalty manager: a manual balance adjustment with its reason, through
the same parser and ledger call as POST /v1/cards/{card_no}/adjustments; the workstation's
index, overdrafts, double redemptions of coupons and a card's spending leases (the reads of
the JSON reports)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.crm.pages import customer_page
from center.errors import InvalidRequest, RequestError, UnknownObject
from center.ledger.returns_api import parse_adjustment
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import field_errors, form_of, page_actor, render
from center.web.request import ID_PATTERN, card_no_param, in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/console/adjustments"): "ledger.adjust",
    ("GET", "/console/loyalty"): "ledger.read",
    ("GET", "/console/overdrafts"): "ledger.read",
    ("GET", "/console/double-redemptions"): "reports.read",
    ("GET", "/console/cards/{card_no}/leases"): "ledger.read",
}
"""(method, canonical route path) -> the permission a caller needs."""

FIELDS = ("card_no", "amount", "reason", "idempotency_key")
DOUBLE_SHOWN = 200
"""Most double-redeemed codes one page lists."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/console/adjustments", adjust)
    app.router.add_get("/console/loyalty", loyalty)
    app.router.add_get("/console/overdrafts", overdrafts)
    app.router.add_get("/console/double-redemptions", double_redemptions)
    app.router.add_get("/console/cards/{card_no}/leases", leases)


async def loyalty(request: web.Request) -> web.StreamResponse:
    """The loyalty manager's workstation: where each of its screens is."""
    return render(request, "ledger/loyalty.html")


async def overdrafts(request: web.Request) -> web.StreamResponse:
    """Cards whose balance is negative (a debt), per wallet (GET /v1/reports/overdrafts)."""
    found = await in_db(request, request.app[STORAGE_KEY].returns.overdrafts)
    return render(request, "ledger/overdrafts.html", {"found": found})


async def double_redemptions(request: web.Request) -> web.StreamResponse:
    """Single-use coupons redeemed more than once (GET /v1/reports/coupon-double-redemptions)."""
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.coupons.coupon_double_redemptions, DOUBLE_SHOWN)
    return render(request, "ledger/double_redemptions.html", {"coupons": found})


async def leases(request: web.Request) -> web.StreamResponse:
    """A card's offline spending leases per store (GET /v1/cards/{card_no}/leases)."""
    card_no = card_no_param(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    balance = await in_db(request, storage.ledger.balance, card_no, now)
    if balance is None:
        raise UnknownObject("card_no", f"unknown card {card_no!r}")
    found = await in_db(request, storage.leases.of_card, card_no, now)
    return render(
        request,
        "ledger/leases.html",
        {"found": found, "customer_id": balance.customer_id, "wallets": balance.wallets},
    )


def _amount(text: str) -> int:
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "").replace("+", "")
    if not cleaned.lstrip("-").isdigit() or len(cleaned) > 12:
        raise InvalidRequest("amount", f"expected a whole number of points, got {text[:40]!r}")
    return int(cleaned)


async def adjust(request: web.Request) -> web.StreamResponse:
    """Adjust a card's balance; the customer card again, with the errors next to the fields."""
    form = await form_of(request)
    values = {name: str(form.get(name, ""))[:500] for name in FIELDS}
    customer_id = str(form.get("customer_id", ""))[:64]
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    try:
        if not ID_PATTERN.match(values["card_no"]):
            raise InvalidRequest("card_no", "choose a card")
        parsed = parse_adjustment(
            {
                "wallet": "bonus",
                "amount": _amount(values["amount"]),
                "reason": values["reason"],
                "idempotency_key": values["idempotency_key"],
            }
        )

        def run() -> dict[str, Any]:
            return storage.returns.adjust(
                values["card_no"],
                parsed["wallet"],
                parsed["amount"],
                parsed["reason"],
                actor,
                now,
                expires_at=parsed["expires_at"],
                idempotency_key=parsed["idempotency_key"],
            )

        await in_db(request, run)
    except RequestError as exc:
        if not customer_id or (isinstance(exc, UnknownObject) and exc.field != "card_no"):
            raise
        errors = field_errors(exc)
        if not set(errors) & set(FIELDS):
            errors = {"form": str(exc)}
        return await customer_page(
            request, customer_id, errors=errors, values=values, status=exc.status
        )
    return web.Response(
        status=303, headers={"Location": f"/console/customers/{customer_id}?done=adjusted"}
    )
