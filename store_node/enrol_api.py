"""POST /v1/enrol: a register trades a one-time token for its id and secret."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from store_node.auth import (
    Forbidden,
)
from store_node.bodies import json_body
from store_node.errors import MalformedRequest
from store_node.keys import (
    AUTH_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
)

__all__ = ["add_routes"]

log = logging.getLogger(__name__)

MAX_ENROL_BYTES = 4096


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/enrol", post_enrol)


async def post_enrol(request: web.Request) -> web.StreamResponse:
    """Exchange a one-time register enrolment token for a node id and secret (shown once)."""
    body = await json_body(request, max_bytes=MAX_ENROL_BYTES)
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
