"""Console pages of the loyalty manager: a manual balance adjustment with its reason, through
the same parser and ledger call as POST /v1/cards/{card_no}/adjustments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.crm.pages import customer_page
from center.errors import InvalidRequest, RequestError, UnknownObject
from center.ledger.returns_api import parse_adjustment
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import field_errors, form_of, page_actor
from center.web.request import ID_PATTERN, in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/console/adjustments"): "ledger.adjust",
}
"""(method, canonical route path) -> the permission a caller needs."""

FIELDS = ("card_no", "amount", "reason", "idempotency_key")


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/console/adjustments", adjust)


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
