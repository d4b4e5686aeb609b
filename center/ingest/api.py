"""HTTP routes of sale ingest: sale batches, heartbeats and per-register reconciliation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import Forbidden, InvalidRequest
from center.web.keys import CLOCK_KEY, CONFIG_KEY, IDENTITY_KEY, STORAGE_KEY
from center.web.request import (
    MAX_BODY_BYTES,
    MAX_ID_LEN,
    in_db,
    msgpack_body,
    own_store,
    query_id,
)
from sync_protocol import (
    CONTENT_TYPE,
    Heartbeat,
    Limits,
    SaleBatch,
    decode,
    decode_sale_batch,
    encode,
)

__all__ = ["PERMISSIONS", "add_routes"]

log = logging.getLogger(__name__)

LIMITS = Limits(max_bytes=MAX_BODY_BYTES)

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/v1/ingest"): "node",
    ("POST", "/v1/heartbeat"): "node",
    ("GET", "/v1/reconciliation"): ("node", "reports.read"),
    ("GET", "/v1/nodes/health"): ("reports.read", "stores.admin"),
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/ingest", ingest)
    app.router.add_post("/v1/heartbeat", heartbeat)
    app.router.add_get("/v1/reconciliation", reconciliation)
    app.router.add_get("/v1/nodes/health", nodes_health)


async def ingest(request: web.Request) -> web.Response:
    data = await msgpack_body(request)
    # One decode; each sale's canonical bytes are kept as they arrived and stored as they are.
    envelope, payloads = decode_sale_batch(data, limits=LIMITS)
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
    ack = await in_db(
        request,
        partial(storage.sales.ingest, payloads=payloads),
        batch.sales,
        request.app[CLOCK_KEY](),
    )
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


async def heartbeat(request: web.Request) -> web.Response:
    data = await msgpack_body(request)
    envelope = decode(data, limits=LIMITS, expect=Heartbeat)
    beat = envelope.message
    assert isinstance(beat, Heartbeat)
    for name in ("node_id", "store_id"):
        value = getattr(beat, name)
        if not value or len(value) > MAX_ID_LEN:
            raise InvalidRequest(
                f"body.{name}", f"must be 1..{MAX_ID_LEN} characters, got {value!r}"
            )
    own_store(request, beat.store_id, field="body.store_id")
    storage = request.app[STORAGE_KEY]
    await in_db(request, storage.nodes.record_heartbeat, beat, request.app[CLOCK_KEY]())
    return web.json_response({"ok": True})


async def reconciliation(request: web.Request) -> web.Response:
    store_id = own_store(request, query_id(request, "store_id"))
    register_id = query_id(request, "register_id", required=False)
    storage = request.app[STORAGE_KEY]
    rows = await in_db(request, storage.sales.reconciliation, store_id, register_id)
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


ALERT_PREFIX = "alert:"
"""Heartbeat `devices` keys that carry a store node's alerts (e.g. alert:store_db_recovery)."""


async def nodes_health(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    beats = await in_db(request, storage.nodes.heartbeats)
    nodes = []
    for beat in beats:
        devices = dict(beat["devices"])
        alerts = [v for k, v in sorted(devices.items()) if k.startswith(ALERT_PREFIX)]
        nodes.append(
            {
                **{
                    k: beat[k]
                    for k in ("node_id", "role", "store_id", "queue_depth", "master_version")
                },
                "alerts": alerts,
                "devices": {k: v for k, v in devices.items() if not k.startswith(ALERT_PREFIX)},
            }
        )
    return web.json_response({"nodes": nodes})
