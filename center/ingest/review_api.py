"""HTTP routes of the review queue: sales the Center did not book as claimed (docs/API.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.errors import MalformedRequest
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import in_db, json_body, query_id, query_int

__all__ = ["PERMISSIONS", "add_routes", "parse_decision"]

MAX_JSON_BYTES = 16 * 1024

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/v1/review/cases"): "loyalty.review",
    ("GET", "/v1/review/cases/{case_id}"): "loyalty.review",
    ("POST", "/v1/review/cases/{case_id}/approve"): "loyalty.review",
    ("POST", "/v1/review/cases/{case_id}/reject"): "loyalty.review",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/review/cases", list_cases)
    app.router.add_get("/v1/review/cases/{case_id}", one_case)
    app.router.add_post("/v1/review/cases/{case_id}/approve", approve)
    app.router.add_post("/v1/review/cases/{case_id}/reject", reject)


def _case_id(request: web.Request) -> int:
    raw = request.match_info["case_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise MalformedRequest("case_id", f"expected a case id (digits), got {raw[:80]!r}")
    return int(raw)


def parse_decision(body: Any) -> str:
    """The note of POST .../approve or .../reject: {"note"?: text}."""
    if not isinstance(body, Mapping):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    extra = sorted(set(body) - {"note"})
    if extra:
        raise MalformedRequest(f"body.{extra[0]}", "unknown field (known: note)")
    note = body.get("note", "")
    if not isinstance(note, str):
        raise MalformedRequest("body.note", f"expected text, got {note!r}")
    return note.strip()


async def list_cases(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    before = request.query.get("before")
    filters = {
        "state": query_id(request, "state", required=False),
        "store_id": query_id(request, "store_id", required=False),
        "before": None if before in (None, "") else query_int(request, "before", default=0),
        "limit": query_int(request, "limit", default=100),
    }

    def run() -> list[dict[str, Any]]:
        return storage.reviews.list_cases(**filters)

    return web.json_response({"cases": await in_db(request, run)})


async def one_case(request: web.Request) -> web.Response:
    case_id = _case_id(request)
    storage = request.app[STORAGE_KEY]
    return web.json_response(await in_db(request, storage.reviews.case, case_id))


async def _decide(request: web.Request, decision: str) -> web.Response:
    case_id = _case_id(request)
    note = parse_decision(await json_body(request, max_bytes=MAX_JSON_BYTES, optional=True))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = actor_of(request)
    done = await in_db(request, storage.reviews.decide, case_id, decision, note, actor, now)
    return web.json_response(done)


async def approve(request: web.Request) -> web.Response:
    return await _decide(request, "approved")


async def reject(request: web.Request) -> web.Response:
    return await _decide(request, "rejected")
