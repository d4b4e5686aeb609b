"""HTTP routes of advertising blocks: the marketers' JSON face of what the console's pages do,
and the selection a customer would get (to check a campaign's targeting)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.advertising.model import CHANNELS, parse_block
from center.errors import InvalidRequest, UnknownObject
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, json_body, query_id

__all__ = ["MAX_JSON_BYTES", "PERMISSIONS", "add_routes", "block_id_of"]

MAX_JSON_BYTES = 64 * 1024
_ONE = "/v1/advertising/blocks/{block_id}"
PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/v1/advertising/blocks"): "advertising.read",
    ("POST", "/v1/advertising/blocks"): "advertising.write",
    ("GET", _ONE): "advertising.read",
    ("PUT", _ONE): "advertising.write",
    ("GET", "/v1/advertising/selection"): "advertising.read",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/advertising/blocks", list_blocks)
    app.router.add_post("/v1/advertising/blocks", create_block)
    app.router.add_get("/v1/advertising/selection", selection)
    app.router.add_get(_ONE, get_block)
    app.router.add_put(_ONE, replace_block)


def block_id_of(request: web.Request) -> str:
    """The path's block id; UnknownObject when it cannot be one."""
    value = request.match_info["block_id"]
    if not ID_PATTERN.match(value):
        raise UnknownObject("block_id", f"unknown advertising block {value[:80]!r}")
    return value


async def list_blocks(request: web.Request) -> web.Response:
    """Every block."""
    found = await in_db(request, request.app[STORAGE_KEY].advertising.blocks)
    return web.json_response({"blocks": [b.to_doc() for b in found]})


async def create_block(request: web.Request) -> web.Response:
    """A new block, checked field by field; 409 when its id exists."""
    body = await json_body(request, max_bytes=MAX_JSON_BYTES)
    repo = request.app[STORAGE_KEY].advertising
    data = parse_block(body, media_hosts=await in_db(request, repo.media_hosts))
    now = request.app[CLOCK_KEY]()
    block = await in_db(request, repo.create_block, data, actor_of(request), now)
    return web.json_response(block.to_doc(), status=201)


async def get_block(request: web.Request) -> web.Response:
    """One block."""
    block_id = block_id_of(request)
    found = await in_db(request, request.app[STORAGE_KEY].advertising.block, block_id)
    if found is None:
        raise UnknownObject("block_id", f"unknown advertising block {block_id!r}")
    return web.json_response(found.to_doc())


async def replace_block(request: web.Request) -> web.Response:
    """The block's new content (a new revision when anything changed)."""
    block_id = block_id_of(request)
    body = await json_body(request, max_bytes=MAX_JSON_BYTES)
    repo = request.app[STORAGE_KEY].advertising
    data = parse_block(body, block_id=block_id, media_hosts=await in_db(request, repo.media_hosts))
    now = request.app[CLOCK_KEY]()
    block = await in_db(request, repo.update_block, data, actor_of(request), now)
    return web.json_response(block.to_doc())


async def selection(request: web.Request) -> web.Response:
    """The blocks a customer (or an anonymous visitor) sees at a placement and channel now."""
    placement = query_id(request, "placement")
    channel = request.query.get("channel", "portal")
    if channel not in CHANNELS:
        raise InvalidRequest("channel", f"expected one of {', '.join(CHANNELS)}")
    customer_id = query_id(request, "customer_id", required=False)
    now = request.app[CLOCK_KEY]()
    repo = request.app[STORAGE_KEY].advertising
    found = await in_db(request, repo.blocks_for, customer_id, placement, channel, now)
    return web.json_response(
        {
            "placement": placement,
            "channel": channel,
            "customer_id": customer_id,
            "blocks": [b.to_doc() for b in found],
        }
    )
