"""HTTP routes of register reservations (bonus and single-use coupons; /work/notes/api_pos.md).

Kept out of app.py so that the reservation routes are one `add_routes(app)` call there.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from store_node.bodies import json_body
from store_node.errors import Forbidden, MalformedRequest
from store_node.keys import CLOCK_KEY, CONFIG_KEY, FORWARDER_KEY, IDENTITY_KEY, WORKER_KEY
from store_node.reservations import (
    CardBalance,
    Grant,
    Reservation,
    ReservationWorker,
    Verdict,
    parse_request,
)
from store_node.salesbox import SalesBox

__all__ = ["RESERVATIONS_KEY", "add_routes", "center_verdict"]

log = logging.getLogger(__name__)

RESERVATIONS_KEY = web.AppKey("reservations", ReservationWorker)
MAX_RESERVATION_BYTES = 16 * 1024

# What a Center coupon record may say about a code that is no longer usable.
_USED_STATES = frozenset({"redeemed", "void", "used", "revoked", "cancelled", "blocked", "expired"})


async def _json(request: web.Request) -> Any:
    return await json_body(request, max_bytes=MAX_RESERVATION_BYTES, empty={})


def _register_of(request: web.Request) -> str | None:
    identity = request[IDENTITY_KEY]
    return None if identity is None else identity.register_id


def _card_balance(box: SalesBox, card_no: str) -> CardBalance:
    """The card's balance in the master cache (or as looked up online) and the cache's age."""
    state = box.master_state()
    if state is None:
        return CardBalance(None, None)
    row = box.master_card(card_no)
    balance = None if row is None else row.get("bonus_balance", 0)
    if isinstance(balance, bool) or not isinstance(balance, int):
        balance = None
    return CardBalance(balance, state.fetched_at)


async def center_verdict(app: web.Application, code: str) -> Verdict:
    """Ask the Center whether a single-use coupon code was redeemed (GET /v1/coupons/{code})."""
    config = app[CONFIG_KEY]
    forwarder = app[FORWARDER_KEY]
    path = f"/v1/coupons/{quote(code, safe='')}"
    headers: dict[str, str] = {}
    if forwarder.credentials is not None:
        headers = forwarder.credentials.headers("GET", path)
    timeout = aiohttp.ClientTimeout(total=config.reservations.center_timeout_s)
    try:
        async with forwarder.session.get(
            config.center.url + path, headers=headers, timeout=timeout
        ) as response:
            if response.status in (400, 404, 422):
                # Not a code the Center's coupon registry holds (or can hold): nothing there
                # says it was redeemed.
                return "free"
            if response.status != 200:
                log.warning("GET %s: HTTP %d; coupon %s unchecked", path, response.status, code)
                return "unreachable"
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
        log.info("cannot ask the Center about coupon %s: %r", code, exc)
        return "unreachable"
    if not isinstance(body, dict):
        return "unreachable"
    status = str(body.get("status", "")).lower()
    if (
        status in _USED_STATES
        or body.get("redeemed") is True
        or body.get("redeemed_at")
        or body.get("redeemed_by_sale")
        or body.get("usable") is False
    ):
        return "used"
    return "free"


def _grant_view(grant: Grant) -> dict[str, Any]:
    return {
        "reservation_id": grant.reservation_id,
        "expires_at": grant.expires_at.isoformat(),
        "amount": grant.amount,
        "available": grant.available,
        "coupon_codes": list(grant.coupon_codes),
    }


def _view(reservation: Reservation) -> dict[str, Any]:
    return {
        "reservation_id": reservation.reservation_id,
        "register_id": reservation.register_id,
        "receipt_id": reservation.receipt_id,
        "card_no": reservation.card_no,
        "wallet": reservation.wallet,
        "amount": reservation.amount,
        "state": reservation.state,
        "sale_id": reservation.sale_id,
        "expires_at": reservation.expires_at.isoformat(),
        "coupon_codes": list(reservation.coupon_codes),
    }


async def post_reservation(request: web.Request) -> web.StreamResponse:
    """Hold bonus and single-use coupons for a register's open receipt (201), or 409."""
    app = request.app
    wanted = parse_request(await _json(request))
    register_id = _register_of(request)
    if register_id is not None and wanted.register_id != register_id:
        raise Forbidden(
            f"body.register_id: this register signs as {register_id!r}, got {wanted.register_id!r}"
        )
    card = CardBalance(None, None)
    card_no = wanted.card_no
    if card_no is not None:
        card = await app[WORKER_KEY].run(lambda box: _card_balance(box, card_no))
    book = app[RESERVATIONS_KEY]
    verdicts: dict[str, Verdict] = {}
    for code in await book.run(lambda b: b.unseen_codes(wanted.coupon_codes)):
        verdicts[code] = await center_verdict(app, code)
    now = app[CLOCK_KEY]()
    grant = await book.run(lambda b: b.reserve(wanted, card, verdicts, now=now))
    log.info(
        "reservation %s: register %s receipt %s card %s amount %d codes %s",
        grant.reservation_id,
        wanted.register_id,
        wanted.receipt_id,
        card_no or "-",
        grant.amount,
        ",".join(grant.coupon_codes) or "-",
    )
    return web.json_response(_grant_view(grant), status=201)


async def get_reservation(request: web.Request) -> web.StreamResponse:
    """One reservation as of now (an expired hold reads as released)."""
    app = request.app
    rid = request.match_info["reservation_id"]
    now = app[CLOCK_KEY]()
    register_id = _register_of(request)
    found = await app[RESERVATIONS_KEY].run(lambda b: b.get(rid, now=now, register_id=register_id))
    return web.json_response(_view(found))


async def commit_reservation(request: web.Request) -> web.StreamResponse:
    """Mark the hold as spent by a confirmed sale (idempotent for the same sale_id)."""
    app = request.app
    rid = request.match_info["reservation_id"]
    body = await _json(request)
    sale_id = body.get("sale_id") if isinstance(body, dict) else None
    if not isinstance(sale_id, str) or not 0 < len(sale_id) <= 64:
        raise MalformedRequest("body.sale_id: expected the confirmed sale's id")
    now = app[CLOCK_KEY]()
    register_id = _register_of(request)
    done = await app[RESERVATIONS_KEY].run(
        lambda b: b.commit(rid, sale_id, now=now, register_id=register_id)
    )
    return web.json_response(_view(done))


async def delete_reservation(request: web.Request) -> web.StreamResponse:
    """Give the held points and codes back (idempotent)."""
    app = request.app
    rid = request.match_info["reservation_id"]
    now = app[CLOCK_KEY]()
    register_id = _register_of(request)
    await app[RESERVATIONS_KEY].run(lambda b: b.release(rid, now=now, register_id=register_id))
    return web.json_response({"released": rid})


async def _reservations_ctx(app: web.Application) -> AsyncIterator[None]:
    worker = app[RESERVATIONS_KEY]
    await worker.open()
    yield
    await worker.close()


def add_routes(app: web.Application) -> None:
    """Register the reservation routes and the lifecycle of their tables (after the sales box)."""
    config = app[CONFIG_KEY]
    app[RESERVATIONS_KEY] = ReservationWorker(config.db_path, ttl_s=config.reservations.ttl_s)
    app.cleanup_ctx.append(_reservations_ctx)
    app.router.add_post("/v1/reservations", post_reservation)
    app.router.add_get("/v1/reservations/{reservation_id}", get_reservation)
    app.router.add_post("/v1/reservations/{reservation_id}/commit", commit_reservation)
    app.router.add_delete("/v1/reservations/{reservation_id}", delete_reservation)
