"""HTTP routes of the ledger: a card's balances (pending, burning, debt) and its movements."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import MalformedRequest, UnknownObject
from center.storage import LedgerEntry
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import card_no_param, in_db, iso, query_int

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/v1/customers/{card_no}/balance"): ("node", "ledger.read"),
    ("GET", "/v1/customers/{card_no}/history"): ("node", "ledger.read"),
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/customers/{card_no}/balance", balance)
    app.router.add_get("/v1/customers/{card_no}/history", history)


MAX_BURNING_DAYS = 3650
MAX_HISTORY = 1000


async def balance(request: web.Request) -> web.Response:
    card_no = card_no_param(request)
    days = query_int(request, "burning_days", default=30)
    if days > MAX_BURNING_DAYS:
        raise MalformedRequest("burning_days", f"at most {MAX_BURNING_DAYS}, got {days}")
    storage = request.app[STORAGE_KEY]

    def read() -> Any:
        return storage.ledger.balance(
            card_no, request.app[CLOCK_KEY](), burning_within=timedelta(days=days)
        )

    found = await in_db(request, read)
    if found is None:
        raise UnknownObject("card_no", f"unknown card {card_no!r}")
    return web.json_response(
        {
            "card_no": found.card_no,
            "customer_id": found.customer_id,
            "wallets": dict(found.wallets),
            "pending": [
                {"wallet": p.wallet, "amount": p.amount, "active_from": iso(p.active_from)}
                for p in found.pending
            ],
            "burning": [
                {"wallet": b.wallet, "amount": b.amount, "expires_at": iso(b.expires_at)}
                for b in found.burning
            ],
            "debt": dict(found.debt),
        }
    )


async def history(request: web.Request) -> web.Response:
    card_no = card_no_param(request)
    limit = query_int(request, "limit", default=100)
    if not 1 <= limit <= MAX_HISTORY:
        raise MalformedRequest("limit", f"expected 1..{MAX_HISTORY}, got {limit}")
    storage = request.app[STORAGE_KEY]

    def read() -> list[LedgerEntry] | None:
        return storage.ledger.history(card_no, limit=limit)

    found = await in_db(request, read)
    if found is None:
        raise UnknownObject("card_no", f"unknown card {card_no!r}")
    return web.json_response(
        {
            "card_no": card_no,
            "movements": [
                {
                    "at": iso(e.created_at),
                    "wallet": e.wallet,
                    "kind": e.kind,
                    "amount": e.amount,
                    "rule_id": e.rule_id,
                    "source": e.source,
                    "active_from": iso(e.active_from),
                    "expires_at": iso(e.expires_at),
                }
                for e in found
            ],
        }
    )
