"""HTTP routes of the chain's own master data: loads (JSON rows, CSV files), reads, the chain
settings (docs/API.md)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.errors import MalformedRequest, UnknownObject, UnsupportedContentType
from center.feed.loaders import KINDS
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import MAX_BODY_BYTES, in_db, json_body, query_int

__all__ = ["MAX_ROWS", "PERMISSIONS", "add_routes"]

MAX_ROWS = 10_000
"""Most rows one JSON load or one read takes (bigger files: the CSV import or the CLI)."""
_KIND = "/v1/master/{kind}"

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", _KIND): "master.read",
    ("POST", _KIND): "master.write",
    ("POST", _KIND + "/import"): "master.write",
    ("GET", "/v1/settings"): "master.read",
    ("PATCH", "/v1/settings"): "master.write",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get(_KIND, list_rows)
    app.router.add_post(_KIND, load_rows)
    app.router.add_post(_KIND + "/import", import_csv)
    app.router.add_get("/v1/settings", get_settings)
    app.router.add_patch("/v1/settings", patch_settings)


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise UnknownObject("kind", f"expected one of {', '.join(KINDS)}, got {kind[:40]!r}")
    return kind


async def list_rows(request: web.Request) -> web.Response:
    """GET /v1/master/{kind}?after=KEY&limit=N: rows in key order."""
    kind = _kind(request)
    limit = query_int(request, "limit", default=1000)
    if not 1 <= limit <= MAX_ROWS:
        raise MalformedRequest("limit", f"expected 1..{MAX_ROWS}, got {limit}")
    after = request.query.get("after", "")[:128]
    storage = request.app[STORAGE_KEY]
    rows = await in_db(request, lambda: storage.master.rows(kind, limit=limit, after=after))
    return web.json_response({"kind": kind, "rows": rows})


async def load_rows(request: web.Request) -> web.Response:
    """POST /v1/master/{kind} {"rows": [...]}: upsert rows (all or none)."""
    kind = _kind(request)
    body = await json_body(request, max_bytes=MAX_BODY_BYTES)
    if not isinstance(body, dict) or set(body) != {"rows"}:
        raise MalformedRequest("body", 'expected {"rows": [...]}')
    rows = body["rows"]
    if isinstance(rows, list) and len(rows) > MAX_ROWS:
        raise MalformedRequest("rows", f"at most {MAX_ROWS} rows, got {len(rows)}")
    storage = request.app[STORAGE_KEY]
    actor, now = actor_of(request), request.app[CLOCK_KEY]()
    report = await in_db(
        request, lambda: storage.master.load_rows(kind, rows, actor=actor, now=now)
    )
    return web.json_response(report.to_json())


async def import_csv(request: web.Request) -> web.Response:
    """POST /v1/master/{kind}/import (text/csv, UTF-8, a header row): load a file."""
    kind = _kind(request)
    if request.content_type != "text/csv":
        raise UnsupportedContentType(
            "content-type", f"expected text/csv, got {request.content_type!r}"
        )
    data = await request.read()
    name = request.query.get("file", "")[:200]
    storage = request.app[STORAGE_KEY]
    actor, now = actor_of(request), request.app[CLOCK_KEY]()
    report = await in_db(
        request,
        lambda: storage.master.load_csv(kind, data, actor=actor, now=now, source=name),
    )
    return web.json_response(report.to_json())


async def get_settings(request: web.Request) -> web.Response:
    """GET /v1/settings: the chain settings and the master version."""
    storage = request.app[STORAGE_KEY]
    return web.json_response(await in_db(request, storage.master.settings))


async def patch_settings(request: web.Request) -> web.Response:
    """PATCH /v1/settings {name: value | null}: change chain settings (all or none)."""
    body = await json_body(request, max_bytes=64 * 1024)
    storage = request.app[STORAGE_KEY]
    actor, now = actor_of(request), request.app[CLOCK_KEY]()
    done = await in_db(request, lambda: storage.master.set_settings(body, actor=actor, now=now))
    return web.json_response(done)
