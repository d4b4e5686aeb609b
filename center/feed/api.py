"""HTTP routes of the master-data feed: store deltas and the online card lookup (docs/API.md)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.config import Config
from center.errors import UnknownObject
from center.feed.store import FeedSettings
from center.web.keys import CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
from center.web.request import card_no_param, in_db, own_store, query_id, query_int
from sync_protocol import CONTENT_TYPE, encode

__all__ = ["PERMISSIONS", "add_routes", "feed_settings", "master_feed"]

PERMISSIONS: Mapping[tuple[str, str], str] = {
    ("GET", "/v1/master"): "node",
    ("GET", "/v1/cards/{card_no}/lookup"): "node",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/master", master_feed)
    app.router.add_get("/v1/cards/{card_no}/lookup", lookup_card)


def feed_settings(config: Config) -> FeedSettings:
    """The feed's knobs from the [master] config section."""
    return FeedSettings(
        scope_days=config.master.card_scope_days,
        max_rows=config.master.delta_max_rows,
        checksum_every_s=config.master.checksum_every_s,
    )


async def master_feed(request: web.Request) -> web.Response:
    """GET /v1/master?store_id=S&since=V: a MasterSnapshot or a MasterDelta for the store."""
    store_id = own_store(request, query_id(request, "store_id"))
    since = query_int(request, "since", default=0)
    storage = request.app[STORAGE_KEY]
    config = request.app[CONFIG_KEY]
    settings = feed_settings(config)

    def build() -> bytes | None:
        # Runs on the database thread: a snapshot is megabytes to read and encode.
        message = storage.feed.master_feed(store_id, since, request.app[CLOCK_KEY](), settings)
        if message is None:
            return None
        return encode(message, sender=config.center.node_id)

    body = await in_db(request, build)
    if body is None:
        raise UnknownObject("store_id", f"unknown store {store_id!r}")
    return web.Response(body=body, content_type=CONTENT_TYPE)


async def lookup_card(request: web.Request) -> web.Response:
    """GET /v1/cards/{card_no}/lookup?store_id=S: the card row; the store now holds the card."""
    card_no = card_no_param(request)
    store_id = own_store(request, query_id(request, "store_id"))
    storage = request.app[STORAGE_KEY]
    row = await in_db(
        request, storage.feed.lookup_card, store_id, card_no, request.app[CLOCK_KEY]()
    )
    if row is None:
        raise UnknownObject("card_no", f"unknown card {card_no!r}")
    return web.json_response(row)
