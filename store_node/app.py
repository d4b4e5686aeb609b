"""The store node's HTTP API (docs/API.md) and the lifecycles of its database, jobs and mDNS."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from store_node import master_api, reservations_api
from store_node.auth import (
    Forbidden,
    NonceCache,
    RegisterAuth,
    StoredNonces,
    Unauthorized,
    record_nonce,
    signature_headers,
    verify_signature,
)
from store_node.config import Config
from store_node.discovery import Advertiser
from store_node.errors import (
    InvalidRequest,
    MalformedRequest,
    RequestError,
    UnsupportedMediaType,
)
from store_node.forwarder import Forwarder
from store_node.keys import (
    ADVERTISER_KEY,
    AUTH_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
    FORWARDER_KEY,
    IDENTITY_KEY,
    WORKER_KEY,
)
from store_node.salesbox import BoxWorker, SalesBox
from sync_protocol import (
    CONTENT_TYPE,
    Heartbeat,
    PayloadTooLarge,
    ProtocolError,
    SaleBatch,
    UnexpectedMessageType,
    canonical_query,
    decode,
    decode_sale_batch,
    encode,
)

__all__ = [
    "ADVERTISER_KEY",
    "CLOCK_KEY",
    "CONFIG_KEY",
    "FORWARDER_KEY",
    "IDENTITY_KEY",
    "MAX_BODY_BYTES",
    "WORKER_KEY",
    "create_app",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024

_MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
_RUN_JOBS_KEY = web.AppKey("run_jobs", bool)
_NONCES_KEY = web.AppKey("nonces", NonceCache)
_STORED_NONCES_KEY = web.AppKey("stored_nonces", StoredNonces)
_KNOWN_KEY: web.AppKey[dict[str, tuple[str, str]]] = web.AppKey("register_credentials")

OPEN_PATHS = frozenset({"/health", "/v1/enrol", "/v1/sales/summary"})
"""Answered without a signature: liveness, enrolment (the token is the credential), totals."""
MAX_ENROL_BYTES = 4096

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _lag_s(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else round(max(0.0, (now - since).total_seconds()), 3)


def _error(status: int, kind: str, detail: str) -> web.Response:
    return web.json_response({"error": kind, "detail": detail}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every refusal to a JSON `{"error", "detail"}` answer; nothing was written before it."""
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(exc.status, exc.kind, str(exc))
    except PayloadTooLarge as exc:
        return _error(413, "too_large", f"body: {exc}")
    except UnexpectedMessageType as exc:
        return _error(422, "unexpected_type", str(exc))
    except ProtocolError as exc:
        return _error(400, "malformed", str(exc))
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[_MAX_BODY_KEY]
        return _error(413, "too_large", f"body: larger than the limit of {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = exc.reason.lower().replace(" ", "_")
        return _error(exc.status, kind, f"{request.method} {request.path}: {exc.reason}")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(500, "internal", "internal error; see the store node log")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Verify the register signature of every route but OPEN_PATHS (docs/API.md)."""
    request[IDENTITY_KEY] = None
    if request.path in OPEN_PATHS or request.match_info.http_exception is not None:
        return await handler(request)
    app = request.app
    found = signature_headers(request.headers)
    if found is None:
        if app[CONFIG_KEY].security.require_signatures:
            raise Unauthorized(
                "headers: this request is not signed; enrol the register "
                "(loyalty-pos enrol) and sign every request"
            )
        return await handler(request)
    node_id = found.get("X-Loyalty-Node", "")[:64]
    known = app[_KNOWN_KEY]
    credential = known.get(node_id)
    if credential is None and node_id:
        credential = await asyncio.to_thread(app[AUTH_KEY].credential, node_id)
        if credential is not None:
            known[node_id] = credential
    body = await request.read()
    now = app[CLOCK_KEY]()
    identity = verify_signature(
        found,
        credential=credential,
        method=request.method,
        path=request.path,
        query=canonical_query(list(request.query.items())),
        body=body,
        now_s=now.timestamp(),
        nonces=app[_NONCES_KEY],
    )
    # Memory refused a replay since this start; auth.db, one from before a restart.
    nonce = found["X-Loyalty-Nonce"]
    await asyncio.to_thread(record_nonce, app[_STORED_NONCES_KEY], identity.node_id, nonce, now)
    request[IDENTITY_KEY] = identity
    return await handler(request)


async def post_enrol(request: web.Request) -> web.StreamResponse:
    """Exchange a one-time register enrolment token for a node id and secret (shown once)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type: expected application/json, got {request.content_type or 'nothing'!r}"
        )
    data = await request.read()
    if len(data) > MAX_ENROL_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_ENROL_BYTES, actual_size=len(data))
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise MalformedRequest(f"body: not JSON: {exc}") from exc
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not 1 <= len(token) <= 256:
        raise MalformedRequest("body.token: expected the enrolment token string")
    app = request.app
    enrolment = await asyncio.to_thread(app[AUTH_KEY].enrol, token, app[CLOCK_KEY]())
    wanted = body.get("register_id")
    if wanted is not None and wanted != enrolment.register_id:
        raise Forbidden(
            f"body.register_id: the token was issued for register {enrolment.register_id!r}, "
            f"not {wanted!r} (the token is spent)"
        )
    log.info("enrolled register %s as node %s", enrolment.register_id, enrolment.node_id)
    return web.json_response(
        {
            "node_id": enrolment.node_id,
            "register_id": enrolment.register_id,
            "store_id": app[CONFIG_KEY].store.store_id,
            "secret": enrolment.secret,
        }
    )


async def _msgpack_body(request: web.Request) -> bytes:
    if request.content_type != CONTENT_TYPE:
        raise UnsupportedMediaType(
            f"Content-Type: expected {CONTENT_TYPE}, got {request.content_type or 'nothing'!r}"
        )
    body = await request.read()
    if not body:
        raise MalformedRequest("body: empty; expected a msgpack envelope")
    return body


def _msgpack(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=CONTENT_TYPE)


async def post_sales(request: web.Request) -> web.StreamResponse:
    """Store a register's sale batch and answer with an ack after the commit."""
    app = request.app
    config = app[CONFIG_KEY]
    envelope, payloads = decode_sale_batch(await _msgpack_body(request))
    batch = envelope.message
    assert isinstance(batch, SaleBatch)
    identity = request[IDENTITY_KEY]
    if identity is not None:
        for sale in batch.sales:
            if sale.register_id != identity.register_id:
                raise Forbidden(
                    f"body.sales.register_id: node {identity.node_id} may submit sales of "
                    f"register {identity.register_id!r} only, got sale {sale.sale_id} of "
                    f"register {sale.register_id!r}; nothing stored"
                )
    now = app[CLOCK_KEY]()
    ack = await app[WORKER_KEY].run(lambda box: box.accept(batch.sales, now=now, payloads=payloads))
    if ack.accepted:
        log.info(
            "stored %d new sales from %s (%d duplicates, %d rejected)",
            len(ack.accepted),
            envelope.sender,
            len(ack.duplicates),
            len(ack.rejected),
        )
    for rejection in ack.rejected:
        log.warning(
            "rejected sale %s from %s: %s", rejection.sale_id, envelope.sender, rejection.reason
        )
    return _msgpack(encode(ack, sender=config.store.node_id, sent_at=now))


async def post_heartbeat(request: web.Request) -> web.StreamResponse:
    """Record a register's heartbeat (queue depth, devices, master version)."""
    app = request.app
    config = app[CONFIG_KEY]
    heartbeat = decode(await _msgpack_body(request), expect=Heartbeat).message
    assert isinstance(heartbeat, Heartbeat)
    if heartbeat.role != "register":
        raise InvalidRequest(f"body.role: expected 'register', got {heartbeat.role!r}")
    if heartbeat.store_id != config.store.store_id:
        raise InvalidRequest(
            f"body.store_id: this node serves store {config.store.store_id!r}, "
            f"got {heartbeat.store_id!r}"
        )
    if not heartbeat.node_id:
        raise InvalidRequest("body.node_id: must name the register")
    identity = request[IDENTITY_KEY]
    if identity is not None and heartbeat.node_id != identity.register_id:
        raise Forbidden(
            f"body.node_id: node {identity.node_id} acts for register "
            f"{identity.register_id!r} only, got {heartbeat.node_id!r}"
        )
    now = app[CLOCK_KEY]()
    await app[WORKER_KEY].run(lambda box: box.record_heartbeat(heartbeat, now=now))
    return web.json_response({"ok": True})


def _health(box: SalesBox, config: Config, now: datetime) -> dict[str, Any]:
    outbox = box.outbox()
    center = box.center_status()
    master = box.master_state()
    return {
        "store_id": config.store.store_id,
        "node_id": config.store.node_id,
        "registers": [
            {
                "register_id": state.register_id,
                "last_seen_at": _iso(state.last_seen_at),
                "queue_depth": state.queue_depth,
                "oldest_queued_at": _iso(state.oldest_queued_at),
                "last_seq": state.last_seq,
                "pending_to_center": state.pending,
                "sync_lag_s": _lag_s(now, state.oldest_pending_at),
                "master_version": state.master_version,
                "devices": state.devices,
            }
            for state in box.registers()
        ],
        "pending_to_center": outbox.pending,
        "oldest_pending_at": _iso(outbox.oldest_pending_at),
        "center_lag_s": _lag_s(now, outbox.oldest_pending_at),
        "rejected_by_center": outbox.rejected_by_center,
        "quarantined": outbox.quarantined,
        "last_center_ok_at": _iso(center.last_ok_at),
        "last_center_error": center.last_error,
        "last_center_error_at": _iso(center.last_error_at),
        "master_version": master.version if master else 0,
        "alerts": _alerts(config, now, outbox.pending, outbox.oldest_pending_at),
    }


def _alerts(
    config: Config, now: datetime, pending: int, oldest_pending_at: datetime | None
) -> list[str]:
    """Conditions an operator must act on; empty when the node is healthy."""
    alerts = []
    limit_h = config.center.alert_unsynced_h
    if pending and oldest_pending_at is not None:
        age_h = (now - oldest_pending_at).total_seconds() / 3600
        if age_h >= limit_h:
            alerts.append(
                f"center_unsynced: {pending} sales have waited for the Center for "
                f"{age_h:.1f} h (center.alert_unsynced_h = {limit_h:g}); they are kept"
            )
    return alerts


async def get_health(request: web.Request) -> web.StreamResponse:
    """Registers seen, their queues and lag, and this node's own lag to the Center (JSON)."""
    app = request.app
    now = app[CLOCK_KEY]()
    config = app[CONFIG_KEY]
    return web.json_response(await app[WORKER_KEY].run(lambda box: _health(box, config, now)))


async def get_sales_summary(request: web.Request) -> web.StreamResponse:
    """Per-register reconciliation totals of the sales held by this node (JSON)."""
    app = request.app
    rows = await app[WORKER_KEY].run(lambda box: box.summary())
    return web.json_response(
        {
            "store_id": app[CONFIG_KEY].store.store_id,
            "registers": [
                {
                    "register_id": row.register_id,
                    "receipts": row.receipts,
                    "lines": row.lines,
                    "total_minor": row.total_minor,
                    "max_seq": row.max_seq,
                    "pending_to_center": row.pending,
                }
                for row in rows
            ],
        }
    )


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    worker = app[WORKER_KEY]
    await worker.open()
    yield
    await worker.close()


async def _nonces_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await asyncio.to_thread(app[_STORED_NONCES_KEY].close)


async def _forwarder_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[FORWARDER_KEY].start(schedule=app[_RUN_JOBS_KEY])
    yield
    await app[FORWARDER_KEY].stop()


async def _advertiser_ctx(app: web.Application) -> AsyncIterator[None]:
    advertiser = app[ADVERTISER_KEY]
    if advertiser is not None:
        await advertiser.start()
    yield
    if advertiser is not None:
        await advertiser.stop()


def create_app(
    config: Config,
    *,
    clock: Callable[[], datetime] = _utcnow,
    rng: random.Random | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    run_jobs: bool = True,
    advertise: bool | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> web.Application:
    """Build the store node app; the database, jobs and mDNS start and stop with it.

    `run_jobs=False` leaves the Center link idle (tests drive `app[FORWARDER_KEY]` by hand);
    `advertise` overrides `config.store.advertise`.
    """
    app = web.Application(
        client_max_size=max_body_bytes, middlewares=[error_middleware, auth_middleware]
    )
    worker = BoxWorker(config.db_path, store_id=config.store.store_id)
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[WORKER_KEY] = worker
    app[FORWARDER_KEY] = Forwarder(config, worker, clock=clock, rng=rng, monotonic=monotonic)
    app[_RUN_JOBS_KEY] = run_jobs
    app[_MAX_BODY_KEY] = max_body_bytes
    app[AUTH_KEY] = RegisterAuth(config.store.data_dir)
    app[_NONCES_KEY] = NonceCache()
    app[_STORED_NONCES_KEY] = StoredNonces(config.store.data_dir)
    app[_KNOWN_KEY] = {}
    do_advertise = config.store.advertise if advertise is None else advertise
    app[ADVERTISER_KEY] = (
        Advertiser(
            store_id=config.store.store_id,
            node_id=config.store.node_id,
            listen_host=config.store.listen_host,
            port=config.store.listen_port,
            scheme="https" if config.tls.enabled else "http",
        )
        if do_advertise
        else None
    )
    # Order matters: cleanup runs in reverse, so the jobs stop before the database closes.
    app.cleanup_ctx.extend([_storage_ctx, _nonces_ctx, _forwarder_ctx, _advertiser_ctx])
    app.router.add_get("/health", get_health)
    app.router.add_post("/v1/enrol", post_enrol)
    app.router.add_post("/v1/sales", post_sales)
    app.router.add_get("/v1/master", master_api.get_master)
    app.router.add_post("/v1/heartbeat", post_heartbeat)
    app.router.add_get("/v1/sales/summary", get_sales_summary)
    reservations_api.add_routes(app)
    master_api.add_routes(app)
    return app
