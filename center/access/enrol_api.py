"""POST /v1/enrol: a store node trades a one-time token for its id and secret."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from center.access.nodes import enrol_node
from center.access.permissions import Requirement
from center.errors import Forbidden, MalformedRequest, UnsupportedContentType
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import in_db, parse_json

__all__ = ["PERMISSIONS", "add_routes"]

log = logging.getLogger(__name__)

MAX_ENROL_BYTES = 4096

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    # The enrolment token is the credential.
    ("POST", "/v1/enrol"): "public",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/enrol", enrol)


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
    body = parse_json(data)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not 1 <= len(token) <= 256:
        raise MalformedRequest("body.token", "expected the enrolment token string")
    storage = request.app[STORAGE_KEY]
    enrolment = await in_db(request, enrol_node, storage, token, request.app[CLOCK_KEY]())
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
