"""HTTP routes of master data for registers: deltas from the cache and the online card lookup.

Kept out of app.py so that app.py only delegates (docs: /work/notes/api_feed.md).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from store_node.bodies import card_no_value
from store_node.errors import MalformedRequest, NotReady, UnknownCard
from store_node.keys import CLOCK_KEY, CONFIG_KEY, FORWARDER_KEY, WORKER_KEY
from store_node.leases_center import renew_soon
from sync_protocol import CONTENT_TYPE, encode

__all__ = ["CENTER_LOOKUP_TIMEOUT_S", "add_routes", "get_card", "get_master"]

log = logging.getLogger(__name__)

CENTER_LOOKUP_TIMEOUT_S = 3.0
"""A register waits on a card lookup with a customer at the till: fail fast to offline."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/master", get_master)
    app.router.add_get("/v1/cards/{card_no}", get_card)


async def get_master(request: web.Request) -> web.StreamResponse:
    """GET /v1/master?since=V: a snapshot (since 0 or unknown) or a delta from the cache."""
    raw = request.query.get("since", "0")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise MalformedRequest(f"since: expected a non-negative integer, got {raw[:40]!r}")
    since = int(raw)
    app = request.app
    node_id = app[CONFIG_KEY].store.node_id

    def build(box: Any) -> bytes | None:
        # On the database thread: a snapshot can be megabytes to read and encode.
        message = box.serve_master(since)
        return None if message is None else encode(message, sender=node_id)

    body = await app[WORKER_KEY].run(build)
    if body is None:
        raise NotReady("no master data yet: the store node has not reached the Center")
    return web.Response(body=body, content_type=CONTENT_TYPE)


async def get_card(request: web.Request) -> web.StreamResponse:
    """GET /v1/cards/{card_no}: the replica's card, else the Center's answer (cached)."""
    card_no = card_no_value(request.match_info["card_no"])
    app = request.app
    worker = app[WORKER_KEY]
    held = await worker.run(lambda box: box.master_card(card_no))
    renew_soon(app, card_no)  # a card identified here: renewal follows use
    if held is not None:
        return web.json_response(held)
    row = await _ask_center(app, card_no)
    now = app[CLOCK_KEY]()
    await worker.run(lambda box: box.remember_card(row, now=now))
    return web.json_response(row)


async def _ask_center(app: web.Application, card_no: str) -> dict[str, Any]:
    config = app[CONFIG_KEY]
    forwarder = app[FORWARDER_KEY]
    path = f"/v1/cards/{quote(card_no, safe='')}/lookup"
    query = {"store_id": config.store.store_id}
    headers: dict[str, str] = {}
    if forwarder.credentials is not None:
        headers = forwarder.credentials.headers("GET", path, query)
    timeout = aiohttp.ClientTimeout(total=CENTER_LOOKUP_TIMEOUT_S)
    try:
        async with forwarder.session.get(
            config.center.url + path, params=query, headers=headers, timeout=timeout
        ) as response:
            if response.status == 404:
                raise UnknownCard(f"card_no: unknown card {card_no!r}")
            if response.status == 400:
                # The Center's card rule refused it: the same answer for every register.
                detail = (await response.text())[:200]
                raise MalformedRequest(f"card_no: refused by the Center: {detail}")
            if response.status != 200:
                text = (await response.text())[:200]
                raise NotReady(
                    f"card_no: card {card_no!r} is not held here and the Center answered "
                    f"HTTP {response.status}: {text}"
                )
            body = await response.json(content_type=None)
    except MalformedRequest:
        raise
    except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
        log.info("cannot ask the Center about card %s: %r", card_no, exc)
        raise NotReady(
            f"card_no: card {card_no!r} is not held here and the Center is unreachable"
        ) from exc
    if not isinstance(body, dict) or body.get("card_no") != card_no:
        raise NotReady(f"card_no: the Center answered an unexpected body for card {card_no!r}")
    return body
