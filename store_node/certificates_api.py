"""HTTP routes of gift certificate holds (a register paying with a certificate; certificates.py).

A hold asks the Center first (signed `POST /v1/certificate-holds`); a refusal is passed on to
the register (409 naming the code), no answer means the offline single-holder rule decides.
Commits (when the sale arrives here) and releases reach the Center through a queue retried
every `RETRY_CENTER_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from store_node.bodies import json_body
from store_node.certificates import (
    CertificateBook,
    CertificateGrant,
    CertificateRefused,
    CertificateRequest,
    CertificateWorker,
    center_hold_id,
    parse_hold,
    parse_release,
)
from store_node.errors import Forbidden
from store_node.keys import CLOCK_KEY, CONFIG_KEY, FORWARDER_KEY, IDENTITY_KEY, RUN_JOBS_KEY

__all__ = ["CERTIFICATES_KEY", "add_routes", "refresh_holders", "send_center_ops"]

log = logging.getLogger(__name__)

CERTIFICATES_KEY = web.AppKey("certificates", CertificateWorker)
MAX_BYTES = 4 * 1024
RETRY_CENTER_S = 1.0
"""How often arriving sales commit their holds and the queue is sent to the Center."""
HOLDERS_EVERY = 5
"""The certificates this store holds are asked again every this many rounds (5 s)."""


def _signed(app: web.Application, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    forwarder = app[FORWARDER_KEY]
    headers = {"Content-Type": "application/json"} if body else {}
    if forwarder.credentials is not None:
        headers.update(forwarder.credentials.headers(method, path, None, body))
    return headers


async def _center(
    app: web.Application, path: str, doc: dict[str, Any]
) -> tuple[int, dict[str, Any]] | None:
    """POST a signed JSON body to the Center: (status, answer), or None when it cannot be asked."""
    config = app[CONFIG_KEY]
    body = json.dumps(doc).encode()
    timeout = aiohttp.ClientTimeout(total=config.reservations.center_timeout_s)
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
        log.info("cannot reach the Center for %s: %r", path, exc)
        return None
    return status, answer if isinstance(answer, dict) else {}


async def _hold(app: web.Application, wanted: CertificateRequest) -> CertificateGrant:
    config = app[CONFIG_KEY]
    book = app[CERTIFICATES_KEY]
    now = app[CLOCK_KEY]()
    answer = await _center(
        app,
        "/v1/certificate-holds",
        {
            "store_id": config.store.store_id,
            "hold_id": center_hold_id(wanted.receipt_id, wanted.code),
            "amounts": {wanted.code: wanted.amount},
            "ttl_s": int(max(1, min(3600, config.reservations.ttl_s))),
        },
    )
    if answer is not None:
        status, doc = answer
        detail = str(doc.get("detail", ""))
        if status == 200:
            entries = doc.get("certificates")
            entry = entries[0] if isinstance(entries, list) and entries else {}
            return await book.run(lambda b: b.grant_online(wanted, entry, now))
        if status in (404, 409, 422):
            # The Center's word: no store may take it now (unknown, blocked, expired, used up,
            # above the balance); this store loses any offline right to it.
            await book.run(lambda b: b.forget_holder(wanted.code, now))
            raise CertificateRefused(f"code: the Center says: {detail}")
        log.warning("POST /v1/certificate-holds: HTTP %d %s; offline rule", status, detail)
    return await book.run(lambda b: b.grant_offline(wanted, now))


def _register_of(request: web.Request) -> str | None:
    identity = request[IDENTITY_KEY]
    return None if identity is None else identity.register_id


def _own(request: web.Request, register_id: str) -> None:
    signer = _register_of(request)
    if signer is not None and signer != register_id:
        raise Forbidden(f"body.register_id: this register signs as {signer!r}, got {register_id!r}")


async def post_hold(request: web.Request) -> web.Response:
    """Hold a certificate amount for a register's open receipt (201), or 409 naming why."""
    wanted = parse_hold(await json_body(request, max_bytes=MAX_BYTES, empty={}))
    _own(request, wanted.register_id)
    grant = await _hold(request.app, wanted)
    log.info(
        "certificate %s: %d held for register %s receipt %s (%s, %d before)",
        grant.code,
        grant.amount,
        wanted.register_id,
        wanted.receipt_id,
        "online" if grant.online else "offline",
        grant.balance,
    )
    return web.json_response(
        {
            "code": grant.code,
            "amount_minor": grant.amount,
            "mode": "online" if grant.online else "offline",
            "balance_minor": grant.balance,
            "remaining_minor": grant.remaining,
            "expires_at": grant.expires_at.isoformat(),
        },
        status=201,
    )


async def post_release(request: web.Request) -> web.Response:
    """Release a receipt's certificate holds (all, or one code); idempotent."""
    register_id, receipt_id, code = parse_release(
        await json_body(request, max_bytes=MAX_BYTES, empty={})
    )
    _own(request, register_id)
    book = request.app[CERTIFICATES_KEY]
    released = await book.run(lambda b: b.release(register_id, receipt_id, code))
    return web.json_response({"released": released})


async def send_center_ops(app: web.Application) -> int:
    """Commit the holds of sales that arrived and tell the Center the queued commits and
    releases; how many it took."""
    book = app[CERTIFICATES_KEY]
    now = app[CLOCK_KEY]()
    await book.run(lambda b: b.settle(now))
    store_id = app[CONFIG_KEY].store.store_id
    done = 0
    for hold_id, op, sale_id in await book.run(lambda b: b.center_ops()):
        base = f"/v1/certificate-holds/{quote(hold_id, safe='')}"
        doc: dict[str, Any] = {"store_id": store_id}
        if op == "commit":
            doc["sale_id"] = sale_id
        answer = await _center(app, f"{base}/{op}", doc)
        if answer is None or answer[0] >= 500 or answer[0] in (401, 403, 429):
            break
        await book.run(partial(_op_done, hold_id, op))
        done += 1
    return done


def _op_done(hold_id: str, op: str, book: CertificateBook) -> None:
    book.center_op_done(hold_id, op)


async def refresh_holders(app: web.Application) -> int | None:
    """Ask the Center which certificates this store holds (its offline rights); how many
    (None: the Center cannot be asked now, the rights stay as they were)."""
    config = app[CONFIG_KEY]
    store_id = config.store.store_id
    path = "/v1/certificate-holders"
    query = {"store_id": store_id}
    forwarder = app[FORWARDER_KEY]
    headers = {}
    if forwarder.credentials is not None:
        headers = forwarder.credentials.headers("GET", path, query)
    timeout = aiohttp.ClientTimeout(total=config.center.timeout_s)
    try:
        async with forwarder.session.get(
            config.center.url + path, params=query, headers=headers, timeout=timeout
        ) as response:
            if response.status != 200:
                log.info("GET %s: HTTP %d; certificate rights kept", path, response.status)
                return None
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
        log.info("certificate rights not refreshed: %r", exc)
        return None
    items = answer.get("certificates") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        return None
    rows = [
        (str(i["code"]), int(i["available_minor"]), i.get("expires_at"))
        for i in items
        if isinstance(i, dict)
        and isinstance(i.get("code"), str)
        and type(i.get("available_minor")) is int
        and (i.get("expires_at") is None or isinstance(i.get("expires_at"), str))
    ]
    now = app[CLOCK_KEY]()
    return await app[CERTIFICATES_KEY].run(lambda b: b.refresh_holders(rows, now))


async def _center_loop(app: web.Application) -> None:
    rounds = 0
    while True:
        try:
            await send_center_ops(app)
            if rounds % HOLDERS_EVERY == 0:
                await refresh_holders(app)
        except Exception:
            log.exception("certificate hold sync with the Center failed; retried")
        rounds += 1
        await asyncio.sleep(RETRY_CENTER_S)


async def _certificates_ctx(app: web.Application) -> AsyncIterator[None]:
    worker = app[CERTIFICATES_KEY]
    await worker.open()
    task = asyncio.create_task(_center_loop(app)) if app[RUN_JOBS_KEY] else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await worker.close()


def add_routes(app: web.Application) -> None:
    """Register the certificate routes and the lifecycle of their tables (after the sales box)."""
    config = app[CONFIG_KEY]
    app[CERTIFICATES_KEY] = CertificateWorker(
        config.db_path, store_id=config.store.store_id, ttl_s=config.reservations.ttl_s
    )
    app.cleanup_ctx.append(_certificates_ctx)
    app.router.add_post("/v1/certificate-holds", post_hold)
    app.router.add_post("/v1/certificate-holds/release", post_release)
