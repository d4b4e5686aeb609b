"""The Center's HTTP API (docs/API.md): ingest, master data, heartbeats, reconciliation."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from center.auth import (
    NodeIdentity,
    NonceCache,
    enrol_node,
    record_nonce,
    signature_headers,
    verify_signature,
)
from center.config import Config
from center.errors import (
    Forbidden,
    InvalidRequest,
    MalformedRequest,
    RequestError,
    StorageError,
    Unauthorized,
    UnknownObject,
    UnsupportedContentType,
)
from center.storage import LedgerEntry, Storage, open_storage
from sync_protocol import (
    CONTENT_TYPE,
    Heartbeat,
    Limits,
    PayloadTooLarge,
    ProtocolError,
    SaleBatch,
    canonical_query,
    decode,
    encode,
)

__all__ = [
    "CONFIG_KEY",
    "IDENTITY_KEY",
    "MAX_BODY_BYTES",
    "PERMISSIONS",
    "STORAGE_KEY",
    "create_app",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest accepted request body; the same bound the decoder enforces on a message."""

LIMITS = Limits(max_bytes=MAX_BODY_BYTES)
MAX_ID_LEN = 64
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

CONFIG_KEY = web.AppKey("center_config", Config)
STORAGE_KEY = web.AppKey("center_storage", Storage)
EXECUTOR_KEY = web.AppKey("center_executor", ThreadPoolExecutor)
CLOCK_KEY: web.AppKey[Callable[[], datetime]] = web.AppKey("center_clock")
NONCES_KEY = web.AppKey("center_nonces", NonceCache)
CREDENTIALS_KEY: web.AppKey[dict[str, tuple[str, str]]] = web.AppKey("center_credentials")
IDENTITY_KEY: web.RequestKey[NodeIdentity | None] = web.RequestKey("center_identity")
"""The enrolled node that signed the request; None for an unsigned one (signatures optional)."""

PERMISSIONS: dict[tuple[str, str], str | tuple[str, ...]] = {
    # Liveness, and enrolment (the enrolment token is the credential): no credentials.
    ("GET", "/health"): "public",
    ("POST", "/v1/enrol"): "public",
    ("POST", "/v1/ingest"): "node",
    ("GET", "/v1/master"): "node",
    ("POST", "/v1/heartbeat"): "node",
    ("GET", "/v1/reconciliation"): ("node", "reports.read"),
    ("GET", "/v1/customers/{card_no}/balance"): ("node", "ledger.read"),
    ("GET", "/v1/customers/{card_no}/history"): ("node", "ledger.read"),
}
"""(method, canonical route path) -> the permission a caller needs (center/permissions.py)."""
MAX_ENROL_BYTES = 4096

T = TypeVar("T")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: Config,
    storage: Storage | None = None,
    *,
    clock: Callable[[], datetime] = _utcnow,
) -> web.Application:
    """The Center app; opens (and later closes) the configured storage unless one is given."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[error_middleware, auth_middleware]
    )
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[NONCES_KEY] = NonceCache()
    app[CREDENTIALS_KEY] = {}

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # One database thread: SQLite and a single psycopg connection are used serially,
        # and the event loop never waits on the disk.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="center-db")
        loop = asyncio.get_running_loop()
        app[EXECUTOR_KEY] = executor
        owned = storage is None
        try:
            opened = (
                await loop.run_in_executor(executor, open_storage, config.storage)
                if storage is None
                else storage
            )
        except BaseException:
            executor.shutdown(wait=True)
            raise
        app[STORAGE_KEY] = opened
        log.info("center %s: storage %s ready", config.center.node_id, opened.backend)

        async def expire_job() -> None:
            try:
                burnt = await loop.run_in_executor(executor, opened.expire_lots, app[CLOCK_KEY]())
            except StorageError as exc:
                log.warning("expiring bonus lots failed (next run retries): %s", exc)
                return
            if burnt:
                log.info("expired %d bonus lots", burnt)
            try:  # the same cadence keeps next months' receipt partitions ready (PostgreSQL)
                made = await loop.run_in_executor(
                    executor, opened.ensure_partitions, app[CLOCK_KEY]()
                )
            except StorageError as exc:
                log.warning("creating receipt partitions failed (next run retries): %s", exc)
                return
            if made:
                log.info("created receipt partitions %s", ", ".join(made))

        async def segments_job() -> None:
            now = app[CLOCK_KEY]()
            try:
                done = await loop.run_in_executor(
                    executor, opened.recalculate_segments, "scheduler", now
                )
            except (StorageError, RequestError) as exc:
                log.warning("recalculating segments failed (next run retries): %s", exc)
                return
            for result in done:
                if result["added"] or result["removed"]:
                    log.info(
                        "segment %s: %d members (+%d -%d)",
                        result["segment_id"],
                        result["members"],
                        result["added"],
                        result["removed"],
                    )

        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=loop)
        scheduler.add_job(
            segments_job,
            "interval",
            seconds=config.segments.recalc_interval_s,
            id="recalculate_segments",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        scheduler.add_job(
            expire_job,
            "interval",
            seconds=config.ledger.expire_interval_s,
            id="expire_lots",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        scheduler.start()
        try:
            yield
        finally:
            scheduler.shutdown(wait=False)
            if owned:
                await loop.run_in_executor(executor, opened.close)
            executor.shutdown(wait=True)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/enrol", enrol)
    app.router.add_post("/v1/ingest", ingest)
    app.router.add_get("/v1/master", master)
    app.router.add_post("/v1/heartbeat", heartbeat)
    app.router.add_get("/v1/reconciliation", reconciliation)
    app.router.add_get("/v1/customers/{card_no}/balance", balance)
    app.router.add_get("/v1/customers/{card_no}/history", history)
    # Imported here: the feature routes reuse this module's keys and helpers.
    from center import (
        coupons_api,
        customers_api,
        feed_api,
        offers_api,
        promotions_api,
        reports_api,
        returns_api,
        segments_api,
        users_api,
    )
    from center.crm_api import add_crm_routes

    add_crm_routes(app)
    for module in (
        users_api,
        promotions_api,
        coupons_api,
        segments_api,
        returns_api,
        customers_api,
        offers_api,
        feed_api,
        reports_api,
    ):
        module.add_routes(app)
    from center.permissions import route_permissions

    app[users_api.ROUTE_PERMISSIONS_KEY] = route_permissions(app)
    return app


# -- handlers ------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    counts = await _in_db(request, storage.counts)
    return web.json_response(
        {
            "status": "ok",
            "storage": storage.backend,
            "sales": counts.sales,
            "quarantined": counts.quarantined,
            "master_version": counts.master_version,
        }
    )


async def ingest(request: web.Request) -> web.Response:
    data = await _msgpack_body(request)
    envelope = decode(data, limits=LIMITS, expect=SaleBatch)
    batch = envelope.message
    assert isinstance(batch, SaleBatch)
    identity = request[IDENTITY_KEY]
    if identity is not None:
        for sale in batch.sales:
            if sale.store_id != identity.store_id:
                raise Forbidden(
                    "body.sales.store_id",
                    f"node {identity.node_id} may submit sales of store {identity.store_id!r} "
                    f"only, got sale {sale.sale_id} of store {sale.store_id!r}; nothing stored",
                )
    storage = request.app[STORAGE_KEY]
    ack = await _in_db(request, storage.ingest, batch.sales, datetime.now(UTC))
    if ack.accepted or ack.rejected:
        log.info(
            "ingest from %s: %d accepted, %d duplicates, %d rejected",
            envelope.sender,
            len(ack.accepted),
            len(ack.duplicates),
            len(ack.rejected),
        )
    for rejection in ack.rejected:
        log.warning(
            "ingest from %s: sale %s quarantined: %s",
            envelope.sender,
            rejection.sale_id,
            rejection.reason,
        )
    body = encode(ack, sender=request.app[CONFIG_KEY].center.node_id)
    return web.Response(body=body, content_type=CONTENT_TYPE)


async def master(request: web.Request) -> web.Response:
    from center.feed_api import master_feed  # the change feed lives with its routes

    return await master_feed(request)


async def heartbeat(request: web.Request) -> web.Response:
    data = await _msgpack_body(request)
    envelope = decode(data, limits=LIMITS, expect=Heartbeat)
    beat = envelope.message
    assert isinstance(beat, Heartbeat)
    for name in ("node_id", "store_id"):
        value = getattr(beat, name)
        if not value or len(value) > MAX_ID_LEN:
            raise InvalidRequest(
                f"body.{name}", f"must be 1..{MAX_ID_LEN} characters, got {value!r}"
            )
    _own_store(request, beat.store_id, field="body.store_id")
    storage = request.app[STORAGE_KEY]
    await _in_db(request, storage.record_heartbeat, beat, datetime.now(UTC))
    return web.json_response({"ok": True})


async def reconciliation(request: web.Request) -> web.Response:
    store_id = _own_store(request, _query_id(request, "store_id"))
    register_id = _query_id(request, "register_id", required=False)
    storage = request.app[STORAGE_KEY]
    rows = await _in_db(request, storage.reconciliation, store_id, register_id)
    return web.json_response(
        {
            "registers": [
                {
                    "store_id": r.store_id,
                    "register_id": r.register_id,
                    "receipts": r.receipts,
                    "lines": r.lines,
                    "total_minor": r.total_minor,
                    "discount_minor": r.discount_minor,
                    "min_seq": r.min_seq,
                    "max_seq": r.max_seq,
                    "gaps": [[start, end] for start, end in r.gaps],
                    "chain_breaks": list(r.chain_breaks),
                }
                for r in rows
            ]
        }
    )


def _card_no(request: web.Request) -> str:
    card_no = request.match_info["card_no"]
    if not _ID.match(card_no):
        raise MalformedRequest(
            "card_no", f"expected 1..{MAX_ID_LEN} letters or digits, got {card_no!r}"
        )
    return card_no


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


MAX_BURNING_DAYS = 3650
MAX_HISTORY = 1000


async def balance(request: web.Request) -> web.Response:
    card_no = _card_no(request)
    days = _query_int(request, "burning_days", default=30)
    if days > MAX_BURNING_DAYS:
        raise MalformedRequest("burning_days", f"at most {MAX_BURNING_DAYS}, got {days}")
    storage = request.app[STORAGE_KEY]

    def read() -> Any:
        return storage.balance(
            card_no, request.app[CLOCK_KEY](), burning_within=timedelta(days=days)
        )

    found = await _in_db(request, read)
    if found is None:
        raise UnknownObject("card_no", f"unknown card {card_no!r}")
    return web.json_response(
        {
            "card_no": found.card_no,
            "customer_id": found.customer_id,
            "wallets": dict(found.wallets),
            "pending": [
                {"wallet": p.wallet, "amount": p.amount, "active_from": _iso(p.active_from)}
                for p in found.pending
            ],
            "burning": [
                {"wallet": b.wallet, "amount": b.amount, "expires_at": _iso(b.expires_at)}
                for b in found.burning
            ],
            "debt": dict(found.debt),
        }
    )


async def history(request: web.Request) -> web.Response:
    card_no = _card_no(request)
    limit = _query_int(request, "limit", default=100)
    if not 1 <= limit <= MAX_HISTORY:
        raise MalformedRequest("limit", f"expected 1..{MAX_HISTORY}, got {limit}")
    storage = request.app[STORAGE_KEY]

    def read() -> list[LedgerEntry] | None:
        return storage.history(card_no, limit=limit)

    found = await _in_db(request, read)
    if found is None:
        raise UnknownObject("card_no", f"unknown card {card_no!r}")
    return web.json_response(
        {
            "card_no": card_no,
            "movements": [
                {
                    "at": _iso(e.created_at),
                    "wallet": e.wallet,
                    "kind": e.kind,
                    "amount": e.amount,
                    "rule_id": e.rule_id,
                    "source": e.source,
                    "active_from": _iso(e.active_from),
                    "expires_at": _iso(e.expires_at),
                }
                for e in found
            ],
        }
    )


async def enrol(request: web.Request) -> web.Response:
    """Exchange a one-time enrolment token for a node id and secret (shown only this once)."""
    if request.content_type != "application/json":
        raise UnsupportedContentType(
            "content-type", f"expected application/json, got {request.content_type!r}"
        )
    if request.content_length is not None and request.content_length > MAX_ENROL_BYTES:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_ENROL_BYTES, actual_size=request.content_length
        )
    data = await request.read()
    if len(data) > MAX_ENROL_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_ENROL_BYTES, actual_size=len(data))
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise MalformedRequest("body", f"not JSON: {exc}") from exc
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not 1 <= len(token) <= 256:
        raise MalformedRequest("body.token", "expected the enrolment token string")
    storage = request.app[STORAGE_KEY]
    enrolment = await _in_db(request, enrol_node, storage, token, request.app[CLOCK_KEY]())
    wanted = body.get("store_id")
    if wanted is not None and wanted != enrolment.store_id:
        # The token is spent either way: a node configured for another store must not use it.
        log.warning(
            "enrolment of %s refused: token is for store %s, node asked for %r",
            enrolment.node_id,
            enrolment.store_id,
            wanted,
        )
        raise Forbidden(
            "body.store_id",
            f"the token was issued for store {enrolment.store_id!r}, not {wanted!r}",
        )
    log.info("enrolled node %s for store %s", enrolment.node_id, enrolment.store_id)
    return web.json_response(
        {
            "node_id": enrolment.node_id,
            "store_id": enrolment.store_id,
            "secret": enrolment.secret,
        }
    )


def _own_store(request: web.Request, store_id: Any, *, field: str = "store_id") -> Any:
    """`store_id` if the signing node may act for it; Forbidden otherwise."""
    identity = request[IDENTITY_KEY]
    if identity is not None and store_id != identity.store_id:
        raise Forbidden(
            field,
            f"node {identity.node_id} acts for store {identity.store_id!r} only, got {store_id!r}",
        )
    return store_id


# -- input ---------------------------------------------------------------------------------------


async def _msgpack_body(request: web.Request) -> bytes:
    if request.content_type != CONTENT_TYPE:
        raise UnsupportedContentType(
            "content-type", f"expected {CONTENT_TYPE}, got {request.content_type!r}"
        )
    return await request.read()


async def json_body(request: web.Request, *, max_bytes: int, optional: bool = False) -> Any:
    """The request's JSON body: 415 for another content type, 413 above ``max_bytes``, 400 for
    text that is not JSON; ``optional`` makes a missing or empty body ``{}``."""
    if optional and not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise UnsupportedContentType(
            "content-type", f"expected application/json, got {request.content_type!r}"
        )
    data = await request.read()
    if len(data) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(data))
    if optional and not data:
        return {}
    try:
        return json.loads(data)
    except ValueError as exc:
        raise MalformedRequest("body", f"not JSON: {exc}") from exc


def _query_id(request: web.Request, name: str, *, required: bool = True) -> Any:
    value = request.query.get(name)
    if value is None or value == "":
        if required:
            raise MalformedRequest(name, "required query parameter is missing")
        return None
    if not _ID.match(value):
        raise MalformedRequest(
            name, f"expected 1..{MAX_ID_LEN} letters or digits, got {value[:80]!r}"
        )
    return value


def _query_int(request: web.Request, name: str, *, default: int) -> int:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise MalformedRequest(name, f"expected a non-negative integer, got {value[:80]!r}")
    return int(value)


async def _in_db(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[EXECUTOR_KEY], fn, *args)


# -- authentication --------------------------------------------------------------------------


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Authenticate (user bearer token or node signature) and authorize every request."""
    request[IDENTITY_KEY] = None
    if request.match_info.http_exception is not None:
        return await handler(request)
    from center.users_api import authorize

    await authorize(request, _verify_node)
    return await handler(request)


async def _verify_node(request: web.Request) -> NodeIdentity:
    """The node whose signature headers this request carries (docs/API.md); Unauthorized."""
    found = signature_headers(request.headers)
    if found is None:
        raise Unauthorized(
            "headers", "this request is not signed; enrol the node and sign every request"
        )
    app = request.app
    node_id = found.get("X-Loyalty-Node", "")
    known = app[CREDENTIALS_KEY]
    credential = known.get(node_id)
    if credential is None and node_id:
        credential = await _in_db(request, app[STORAGE_KEY].node_credential, node_id[:64])
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
        nonces=app[NONCES_KEY],
    )
    # Memory refused a replay to this worker since its start; the database, any other.
    nonce = found["X-Loyalty-Nonce"]
    await _in_db(request, record_nonce, app[STORAGE_KEY], identity.node_id, nonce, now)
    request[IDENTITY_KEY] = identity
    return identity


# -- errors --------------------------------------------------------------------------------------


def _error(status: int, kind: str, detail: str) -> web.Response:
    return web.json_response({"error": kind, "detail": detail}, status=status)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every refusal becomes `{"error": kind, "detail": message}` with its status."""
    try:
        return await handler(request)
    except PayloadTooLarge as exc:
        return _error(413, "too_large", f"body: {exc}")
    except ProtocolError as exc:
        return _error(400, _snake(type(exc).__name__), str(exc))
    except RequestError as exc:
        return _error(exc.status, exc.kind, str(exc))
    except StorageError as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return _error(503, "storage_unavailable", str(exc))
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "too_large", f"body: larger than {MAX_BODY_BYTES} bytes")
    except web.HTTPNotFound:
        return _error(404, "not_found", f"path: no route for {request.path[:200]!r}")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return _error(
            405, "method_not_allowed", f"method: {request.method} not allowed here (use {allowed})"
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, _snake(type(exc).__name__.removeprefix("HTTP")), exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal", "internal error; see the Center's log")
