"""The registers' sales and heartbeats, the node's health and its sales summary."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from store_node.auth import (
    Forbidden,
)
from store_node.config import Config
from store_node.errors import (
    InvalidRequest,
    MalformedRequest,
    UnsupportedMediaType,
)
from store_node.keys import (
    CLOCK_KEY,
    CONFIG_KEY,
    IDENTITY_KEY,
    WORKER_KEY,
)
from store_node.recovery import Recovery
from store_node.salesbox import SalesBox
from sync_protocol import (
    CONTENT_TYPE,
    Heartbeat,
    SaleBatch,
    decode,
    encode,
    split_sale_batch,
)

__all__ = ["add_routes", "health_of"]

log = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/health", get_health)
    app.router.add_post("/v1/sales", post_sales)
    app.router.add_post("/v1/heartbeat", post_heartbeat)
    app.router.add_get("/v1/sales/summary", get_sales_summary)
    app.router.add_post("/v1/recovery", post_recovery)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _lag_s(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else round(max(0.0, (now - since).total_seconds()), 3)


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
    # A sale that does not decode but names its sale_id is refused in the ack (and quarantined)
    # instead of failing the batch: a register of an older release resends a refused batch
    # forever, and the good sales behind the bad one would never arrive.
    envelope, payloads, refused = split_sale_batch(await _msgpack_body(request))
    batch = envelope.message
    assert isinstance(batch, SaleBatch)
    identity = request[IDENTITY_KEY]
    if identity is not None:
        named = [(s.sale_id, s.register_id) for s in batch.sales]
        # A refused sale whose register_id is unreadable ("") came from this register all the same.
        named += [(r.sale_id, r.register_id or identity.register_id) for r in refused]
        for sale_id, register_id in named:
            if register_id != identity.register_id:
                raise Forbidden(
                    f"body.sales.register_id: node {identity.node_id} may submit sales of "
                    f"register {identity.register_id!r} only, got sale {sale_id} of "
                    f"register {register_id!r}; nothing stored"
                )
    now = app[CLOCK_KEY]()
    ack = await app[WORKER_KEY].run(
        lambda box: box.accept(batch.sales, now=now, payloads=payloads, refused=refused)
    )
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


def _recovery_json(state: Recovery | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "since": _iso(state.since),
        "reason": state.reason,
        "center_checked": state.center_checked,
        "waiting_for": list(state.waiting_for),
        "missing": {r: [list(pair) for pair in ranges] for r, ranges in state.missing.items()},
    }


def health_of(box: SalesBox, config: Config, now: datetime) -> dict[str, Any]:
    """What GET /health answers (and the admin page shows)."""
    outbox = box.outbox()
    center = box.center_status()
    master = box.master_state()
    recovery = box.recovery(now)
    alerts = _alerts(config, now, outbox.pending, outbox.oldest_pending_at)
    if recovery is not None:
        alerts.append(recovery.alert())
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
        "quarantined_sales": box.quarantined(),
        "last_center_ok_at": _iso(center.last_ok_at),
        "last_center_error": center.last_error,
        "last_center_error_at": _iso(center.last_error_at),
        "master_version": master.version if master else 0,
        "db_id": box.db_id,
        "recovery": _recovery_json(recovery),
        "alerts": alerts,
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
    return web.json_response(await app[WORKER_KEY].run(lambda box: health_of(box, config, now)))


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


def _count(body: dict[str, Any], name: str, *, required: bool = True) -> int:
    value = body.get(name, None if required else 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise InvalidRequest(f"body.{name}: expected an integer 0..2^53, got {value!r}")
    return value


async def post_recovery(request: web.Request) -> web.StreamResponse:
    """A register reports how far its sales were acknowledged; answer what to re-send (JSON)."""
    app = request.app
    try:
        body = await request.json()
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"body: not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("body: expected a JSON object")
    register_id = body.get("register_id")
    if not isinstance(register_id, str) or not 0 < len(register_id) <= 64:
        raise InvalidRequest(f"body.register_id: expected 1..64 characters, got {register_id!r}")
    last_seq = _count(body, "last_seq")
    acked_seq = _count(body, "acked_seq")
    if acked_seq > last_seq:
        raise InvalidRequest(
            f"body.acked_seq: {acked_seq} is above the register's last_seq {last_seq}"
        )
    identity = request[IDENTITY_KEY]
    if identity is not None and register_id != identity.register_id:
        raise Forbidden(
            f"body.register_id: node {identity.node_id} acts for register "
            f"{identity.register_id!r} only, got {register_id!r}"
        )
    now = app[CLOCK_KEY]()
    answer = await app[WORKER_KEY].run(
        lambda box: box.report_journal(register_id, last_seq=last_seq, acked_seq=acked_seq, now=now)
    )
    if answer.started is not None:
        log.warning("%s; recovering from the registers' journals", answer.started)
    if answer.resend:
        log.warning(
            "asking register %s to re-send %d acknowledged sales this node lost: seqs %s",
            register_id,
            sum(last - first + 1 for first, last in answer.resend),
            answer.resend[:5],
        )
    return web.json_response(
        {
            "db_id": answer.db_id,
            "recovering": answer.recovering,
            "resend": [list(pair) for pair in answer.resend],
        }
    )
