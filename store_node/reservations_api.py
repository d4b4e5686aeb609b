"""HTTP routes of register reservations (bonus and single-use coupons; /work/notes/api_pos.md).

Kept out of app.py so that the reservation routes are one `add_routes(app)` call there. A
reservation holding single-use codes first asks the Center to hold them (signed
`POST /v1/coupon-holds`, the hold id is the reservation id); its commit or release is passed on
to the Center right away and, if the Center cannot be reached, retried every
`RETRY_CENTER_S` with the coupon types' offline policies refreshed (`GET /v1/coupon-policies`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from store_node import leases_center
from store_node.bodies import json_body
from store_node.errors import Forbidden, MalformedRequest
from store_node.keys import (
    CLOCK_KEY,
    CONFIG_KEY,
    FORWARDER_KEY,
    IDENTITY_KEY,
    RUN_JOBS_KEY,
    WORKER_KEY,
)
from store_node.reservations import (
    MAX_CODES,
    CardBalance,
    CenterOp,
    CouponTaken,
    Grant,
    Reservation,
    ReservationBook,
    ReservationRequest,
    ReservationWorker,
    Verdict,
    normalize_code,
    parse_request,
)
from store_node.salesbox import SalesBox

__all__ = [
    "COUPONS_LOCK_KEY",
    "RESERVATIONS_KEY",
    "add_routes",
    "center_hold",
    "center_verdict",
    "fetch_policies",
    "send_center_ops",
]

log = logging.getLogger(__name__)

RESERVATIONS_KEY = web.AppKey("reservations", ReservationWorker)
COUPONS_LOCK_KEY = web.AppKey("coupon_reservations_lock", asyncio.Lock)
"""One reservation with coupon codes at a time: the Center lets this store take over its own
holds, which is safe only while this node's check and the Center's hold happen together."""
MAX_RESERVATION_BYTES = 16 * 1024
RETRY_CENTER_S = 5.0
"""How often undelivered commits/releases of Center holds are sent again."""
POLICIES_EVERY = 12
"""Offline policies are fetched again every this many retry rounds (one minute)."""

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


def _signed(app: web.Application, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    forwarder = app[FORWARDER_KEY]
    headers = {"Content-Type": "application/json"} if body else {}
    if forwarder.credentials is not None:
        headers.update(forwarder.credentials.headers(method, path, None, body))
    return headers


async def center_hold(
    app: web.Application, hold_id: str, codes: Sequence[str]
) -> dict[str, Verdict] | None:
    """Ask the Center to hold exactly ``codes`` for reservation ``hold_id`` (its other codes go).

    Each code's verdict: "held", or "unreachable" (the offline policy decides); CouponTaken
    naming the code when the Center says another store holds or redeemed it. None: the Center
    is of an older release without holds (the caller asks the old way).
    """
    config = app[CONFIG_KEY]
    path = "/v1/coupon-holds"
    body = json.dumps(
        {
            "store_id": config.store.store_id,
            "hold_id": hold_id,
            "codes": list(codes),
            "ttl_s": int(max(1, min(3600, config.reservations.ttl_s))),
        }
    ).encode()
    timeout = aiohttp.ClientTimeout(total=config.reservations.center_timeout_s)
    unreachable: dict[str, Verdict] = dict.fromkeys(codes, "unreachable")
    try:
        async with app[FORWARDER_KEY].session.post(
            config.center.url + path,
            data=body,
            headers=_signed(app, "POST", path, body),
            timeout=timeout,
        ) as response:
            status = response.status
            try:
                answer = await response.json(content_type=None)
            except ValueError:
                answer = {}
    except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
        log.info("cannot ask the Center to hold coupons %s: %r", ",".join(codes), exc)
        return unreachable
    detail = str(answer.get("detail", "")) if isinstance(answer, dict) else ""
    if status == 409:
        raise CouponTaken(f"coupon_codes: the Center says: {detail}")
    if status in (404, 405):
        return None  # no such route: a Center from before holds
    if status != 200:
        log.warning("POST %s: HTTP %d %s; coupons %s unchecked", path, status, detail, codes)
        return unreachable
    return dict.fromkeys(codes, "held")


async def _deliver(app: web.Application, op: CenterOp) -> bool:
    """Send one commit or release to the Center; True once it has it (or needs it no more)."""
    config = app[CONFIG_KEY]
    store_id = config.store.store_id
    base = f"/v1/coupon-holds/{quote(op.reservation_id, safe='')}"
    if op.op == "commit":
        path = f"{base}/commit"
        body = json.dumps(
            {"store_id": store_id, "sale_id": op.sale_id, "codes": list(op.codes)}
        ).encode()
    else:
        path = f"{base}/release"
        body = json.dumps({"store_id": store_id}).encode()
    method = "POST"
    timeout = aiohttp.ClientTimeout(total=config.reservations.center_timeout_s)
    try:
        async with app[FORWARDER_KEY].session.request(
            method,
            config.center.url + path,
            data=body,
            headers=_signed(app, method, path, body),
            timeout=timeout,
        ) as response:
            status = response.status
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
        log.info("%s of Center hold %s not delivered: %r", op.op, op.reservation_id, exc)
        return False
    if status in (200, 404):
        # 404: the Center never held it or forgot it (expired): nothing left to tell.
        return True
    log.warning("%s %s: HTTP %d %s", method, path, status, text[:200])
    return status < 500 and status not in (401, 403, 429)


async def send_center_ops(app: web.Application) -> int:
    """Deliver the queued commits and releases of Center holds; how many were delivered."""
    book = app[RESERVATIONS_KEY]
    done = 0
    for op in await book.run(lambda b: b.center_ops()):
        if not await _deliver(app, op):
            break
        await book.run(partial(_done, op))
        done += 1
    return done


def _done(op: CenterOp, book: ReservationBook) -> None:
    book.center_op_done(op.reservation_id, op.op)


async def fetch_policies(app: web.Application) -> int | None:
    """Refresh the coupon types' offline policies from the Center; how many (None: not now)."""
    config = app[CONFIG_KEY]
    path = "/v1/coupon-policies"
    timeout = aiohttp.ClientTimeout(total=config.center.timeout_s)
    try:
        async with app[FORWARDER_KEY].session.get(
            config.center.url + path, headers=_signed(app, "GET", path), timeout=timeout
        ) as response:
            if response.status != 200:
                log.info("GET %s: HTTP %d; offline coupon policies kept", path, response.status)
                return None
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
        log.info("offline coupon policies not refreshed: %r", exc)
        return None
    rows = answer.get("policies") if isinstance(answer, dict) else None
    if not isinstance(rows, list):
        return None
    policies = [
        (str(r["prefix"]), str(r.get("origin", "")), str(r["offline"]))
        for r in rows
        if isinstance(r, dict) and isinstance(r.get("prefix"), str) and "offline" in r
    ]
    now = app[CLOCK_KEY]()
    return await app[RESERVATIONS_KEY].run(lambda b: b.save_policies(policies, now=now))


async def _center_loop(app: web.Application) -> None:
    rounds = 0
    while True:
        try:
            if rounds % POLICIES_EVERY == 0:
                await fetch_policies(app)
            await send_center_ops(app)
        except Exception:
            log.exception("coupon hold sync with the Center failed; retried")
        rounds += 1
        await asyncio.sleep(RETRY_CENTER_S)


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
    if not wanted.coupon_codes:
        grant = await _reserve(app, wanted, card)
    else:
        async with app[COUPONS_LOCK_KEY]:
            grant = await _reserve(app, wanted, card)
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


async def _reserve(app: web.Application, wanted: ReservationRequest, card: CardBalance) -> Grant:
    """The node's checks, the Center's hold on the codes, then the node's hold."""
    book = app[RESERVATIONS_KEY]
    now = app[CLOCK_KEY]()
    rid, held_before = await book.run(lambda b: b.prepare(wanted, now=now))
    verdicts: dict[str, Verdict] | None = {}
    center: bool | None = None
    if wanted.coupon_codes or held_before:
        verdicts = await center_hold(app, rid, wanted.coupon_codes)
        if verdicts is None:  # an older Center: ask about the codes never seen here
            verdicts = {}
            for code in await book.run(lambda b: b.unseen_codes(wanted.coupon_codes)):
                verdicts[code] = await center_verdict(app, code)
        elif all(v == "held" for v in verdicts.values()):
            center = bool(wanted.coupon_codes)
    assert verdicts is not None
    chosen = verdicts
    if wanted.amount and wanted.card_no is not None:
        # Spend only within this store's lease: raised first while the Center answers.
        receipt = (wanted.register_id, wanted.receipt_id)
        await app[leases_center.LEASES_KEY].cover(wanted.card_no, wanted.amount, receipt)
    now = app[CLOCK_KEY]()
    try:
        grant = await book.run(
            lambda b: b.reserve(wanted, card, chosen, now=now, new_id=rid, center=center)
        )
    except Exception:
        if center and not held_before:
            await _deliver(app, CenterOp(rid, "release", None, ()))
        raise
    return grant


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
    codes = _redeemed(body)
    now = app[CLOCK_KEY]()
    register_id = _register_of(request)
    done = await app[RESERVATIONS_KEY].run(
        lambda b: b.commit(rid, sale_id, now=now, register_id=register_id, codes=codes)
    )
    await _pass_on(app)
    return web.json_response(_view(done))


def _redeemed(body: dict[str, Any]) -> tuple[str, ...] | None:
    """The commit's ``coupon_codes`` (the codes the sale redeemed); None from older registers."""
    raw = body.get("coupon_codes")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > MAX_CODES:
        raise MalformedRequest(f"body.coupon_codes: expected a list of at most {MAX_CODES} codes")
    for index, code in enumerate(raw):
        if not isinstance(code, str) or not 0 < len(code.strip()) <= 128:
            raise MalformedRequest(f"body.coupon_codes[{index}]: expected a coupon code string")
    return tuple(normalize_code(code) for code in raw)


async def _pass_on(app: web.Application) -> None:
    """Tell the Center now; what it does not hear is retried by the loop."""
    with contextlib.suppress(Exception):
        await send_center_ops(app)


async def delete_reservation(request: web.Request) -> web.StreamResponse:
    """Give the held points and codes back (idempotent)."""
    app = request.app
    rid = request.match_info["reservation_id"]
    now = app[CLOCK_KEY]()
    register_id = _register_of(request)
    await app[RESERVATIONS_KEY].run(lambda b: b.release(rid, now=now, register_id=register_id))
    await _pass_on(app)
    return web.json_response({"released": rid})


async def _reservations_ctx(app: web.Application) -> AsyncIterator[None]:
    worker = app[RESERVATIONS_KEY]
    await worker.open()
    task = asyncio.create_task(_center_loop(app)) if app[RUN_JOBS_KEY] else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await worker.close()


def add_routes(app: web.Application) -> None:
    """Register the reservation routes and the lifecycle of their tables (after the sales box)."""
    config = app[CONFIG_KEY]
    app[RESERVATIONS_KEY] = ReservationWorker(config.db_path, ttl_s=config.reservations.ttl_s)
    app[COUPONS_LOCK_KEY] = asyncio.Lock()
    app.cleanup_ctx.append(_reservations_ctx)
    leases_center.add_lifecycle(app, app[RESERVATIONS_KEY])
    app.router.add_post("/v1/reservations", post_reservation)
    app.router.add_get("/v1/reservations/{reservation_id}", get_reservation)
    app.router.add_post("/v1/reservations/{reservation_id}/commit", commit_reservation)
    app.router.add_delete("/v1/reservations/{reservation_id}", delete_reservation)
