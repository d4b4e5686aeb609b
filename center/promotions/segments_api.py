"""HTTP routes of customer segments: create, list, members, recalculation."""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.errors import MalformedRequest, UnknownObject
from center.promotions.segments import parse_members, parse_segment
from center.promotions.segments_store import MAX_MEMBERS_PAGE
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import in_db, json_body, query_int

__all__ = ["MAX_JSON_BYTES", "PERMISSIONS", "add_routes"]

MAX_JSON_BYTES = 8 * 1024 * 1024
"""A static segment's upload may list many customers."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/v1/segments"): "segments.write",
    ("GET", "/v1/segments"): "segments.read",
    ("GET", "/v1/segments/{segment_id}"): "segments.read",
    ("POST", "/v1/segments/{segment_id}/members"): "segments.write",
    ("GET", "/v1/segments/{segment_id}/members"): "segments.read",
    ("POST", "/v1/segments/{segment_id}/recalculate"): "segments.write",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/segments", create_segment)
    app.router.add_get("/v1/segments", list_segments)
    app.router.add_get("/v1/segments/{segment_id}", segment)
    app.router.add_post("/v1/segments/{segment_id}/members", set_members)
    app.router.add_get("/v1/segments/{segment_id}/members", members)
    app.router.add_post("/v1/segments/{segment_id}/recalculate", recalculate)


def _segment_id(request: web.Request) -> str:
    segment_id = request.match_info["segment_id"]
    if not _ID.match(segment_id):
        raise MalformedRequest("segment_id", f"expected a segment id, got {segment_id[:80]!r}")
    return segment_id


async def create_segment(request: web.Request) -> web.Response:
    parsed = parse_segment(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    view = await in_db(request, storage.segments.create_segment, parsed, actor_of(request), now)
    return web.json_response(view, status=201)


async def list_segments(request: web.Request) -> web.Response:
    found = await in_db(request, request.app[STORAGE_KEY].segments.list_segments)
    return web.json_response({"segments": found})


async def segment(request: web.Request) -> web.Response:
    segment_id = _segment_id(request)
    found = await in_db(request, request.app[STORAGE_KEY].segments.segment, segment_id)
    if found is None:
        raise UnknownObject("segment_id", f"unknown segment {segment_id!r}")
    return web.json_response(found)


async def set_members(request: web.Request) -> web.Response:
    segment_id = _segment_id(request)
    parsed = parse_members(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(
        request, storage.segments.set_segment_members, segment_id, parsed, actor_of(request), now
    )
    return web.json_response(done)


async def members(request: web.Request) -> web.Response:
    segment_id = _segment_id(request)
    limit = query_int(request, "limit", default=1000)
    if not 1 <= limit <= MAX_MEMBERS_PAGE:
        raise MalformedRequest("limit", f"expected 1..{MAX_MEMBERS_PAGE}, got {limit}")
    storage = request.app[STORAGE_KEY]

    def read() -> list[str] | None:
        return storage.segments.segment_members(segment_id, limit=limit)

    found = await in_db(request, read)
    if found is None:
        raise UnknownObject("segment_id", f"unknown segment {segment_id!r}")
    return web.json_response({"segment_id": segment_id, "customer_ids": found})


async def recalculate(request: web.Request) -> web.Response:
    segment_id = _segment_id(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(
        request, storage.segments.recalculate_segment, segment_id, actor_of(request), now
    )
    return web.json_response(done)
