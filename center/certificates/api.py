"""HTTP routes of gift certificates: batches and codes for head office, holds for store nodes
(the Center is the one authority of a certificate's balance; center/certificates/model.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.certificates.model import (
    code_of,
    hold_id_of,
    parse_batch,
    parse_block,
    parse_commit,
    parse_hold,
    parse_release,
)
from center.errors import MalformedRequest, UnknownObject
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import in_db, json_body, own_store, query_id

__all__ = ["MAX_JSON_BYTES", "PERMISSIONS", "add_routes"]

MAX_JSON_BYTES = 16 * 1024
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/v1/certificate-batches"): "certificates.write",
    ("GET", "/v1/certificate-batches"): "certificates.read",
    ("GET", "/v1/certificate-batches/{batch_id}"): "certificates.read",
    ("GET", "/v1/certificates/{code}"): ("certificates.read", "node"),
    ("POST", "/v1/certificates/{code}/block"): "certificates.write",
    ("GET", "/v1/certificate-holders"): "node",
    ("POST", "/v1/certificate-holds"): "node",
    ("POST", "/v1/certificate-holds/{hold_id}/commit"): "node",
    ("POST", "/v1/certificate-holds/{hold_id}/release"): "node",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/certificate-batches", create_batch)
    app.router.add_get("/v1/certificate-batches", list_batches)
    app.router.add_get("/v1/certificate-batches/{batch_id}", batch)
    app.router.add_get("/v1/certificates/{code}", certificate)
    app.router.add_post("/v1/certificates/{code}/block", block)
    app.router.add_get("/v1/certificate-holders", holders)
    app.router.add_post("/v1/certificate-holds", hold)
    app.router.add_post("/v1/certificate-holds/{hold_id}/commit", commit_hold)
    app.router.add_post("/v1/certificate-holds/{hold_id}/release", release_hold)


async def create_batch(request: web.Request) -> web.Response:
    """Make a batch of codes of one nominal (or free amount), each `issued` until sold."""
    parsed = parse_batch(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    view = await in_db(request, storage.certificates.create_batch, parsed, actor_of(request), now)
    return web.json_response(view, status=201)


async def list_batches(request: web.Request) -> web.Response:
    """Every certificate batch."""
    found = await in_db(request, request.app[STORAGE_KEY].certificates.batches)
    return web.json_response({"batches": found})


async def batch(request: web.Request) -> web.Response:
    """A batch, its codes and how many are in each state."""
    batch_id = request.match_info["batch_id"]
    if not _ID.match(batch_id):
        raise MalformedRequest("batch_id", f"expected a batch id, got {batch_id[:80]!r}")
    storage = request.app[STORAGE_KEY]
    view = await in_db(request, storage.certificates.batch, batch_id, request.app[CLOCK_KEY]())
    if view is None:
        raise UnknownObject("batch_id", f"unknown certificate batch {batch_id!r}")
    return web.json_response(view)


async def certificate(request: web.Request) -> web.Response:
    """A code's state, balance, holder store, holds and movements linked to sales."""
    code = code_of(request.match_info["code"], "code")
    storage = request.app[STORAGE_KEY]
    view = await in_db(request, storage.certificates.certificate, code, request.app[CLOCK_KEY]())
    if view is None:
        raise UnknownObject("code", f"no certificate {code}")
    return web.json_response(view)


async def block(request: web.Request) -> web.Response:
    """Block a code: no store may redeem it online any more."""
    code = code_of(request.match_info["code"], "code")
    reason = parse_block(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    view = await in_db(request, storage.certificates.block, code, reason, actor_of(request), now)
    return web.json_response(view)


async def holders(request: web.Request) -> web.Response:
    """The certificates a store holds: it refreshes its offline rights from this."""
    store_id = query_id(request, "store_id")
    own_store(request, store_id)
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.certificates.held_by, store_id, request.app[CLOCK_KEY]())
    return web.json_response({"store_id": store_id, "certificates": found})


async def hold(request: web.Request) -> web.Response:
    """A store node holds certificate amounts for a receipt (all or none; 409 naming the code)."""
    parsed = parse_hold(await json_body(request, max_bytes=MAX_JSON_BYTES))
    own_store(request, parsed.store_id, field="body.store_id")
    storage = request.app[STORAGE_KEY]
    held = await in_db(request, storage.certificates.hold, parsed, request.app[CLOCK_KEY]())
    return web.json_response(held)


async def commit_hold(request: web.Request) -> web.Response:
    """The hold's sale was confirmed: the amounts stay held until the sale is ingested."""
    hold_id = hold_id_of(request.match_info["hold_id"])
    store_id, sale_id = parse_commit(await json_body(request, max_bytes=MAX_JSON_BYTES))
    own_store(request, store_id, field="body.store_id")
    storage = request.app[STORAGE_KEY]
    done = await in_db(
        request, storage.certificates.commit, hold_id, store_id, sale_id, request.app[CLOCK_KEY]()
    )
    return web.json_response(done)


async def release_hold(request: web.Request) -> web.Response:
    """The receipt was cancelled: its live holds go."""
    hold_id = hold_id_of(request.match_info["hold_id"])
    store_id = parse_release(await json_body(request, max_bytes=MAX_JSON_BYTES))
    own_store(request, store_id, field="body.store_id")
    done = await in_db(request, request.app[STORAGE_KEY].certificates.release, hold_id, store_id)
    return web.json_response(done)
