"""HTTP routes of fraud signals: list, one with its sales, review, scan now (docs/API.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.errors import MalformedRequest
from center.fraud.model import FraudSettings
from center.web.keys import CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
from center.web.request import in_db, json_body, query_id, query_int

__all__ = ["PERMISSIONS", "add_routes", "parse_review"]

MAX_JSON_BYTES = 16 * 1024

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/v1/fraud/signals"): "fraud.read",
    ("GET", "/v1/fraud/signals/{signal_id}"): "fraud.read",
    ("POST", "/v1/fraud/signals/{signal_id}/review"): "fraud.review",
    ("POST", "/v1/fraud/scan"): "fraud.review",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/fraud/signals", list_signals)
    app.router.add_get("/v1/fraud/signals/{signal_id}", one_signal)
    app.router.add_post("/v1/fraud/signals/{signal_id}/review", review)
    app.router.add_post("/v1/fraud/scan", scan)


def _signal_id(request: web.Request) -> int:
    raw = request.match_info["signal_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise MalformedRequest("signal_id", f"expected a signal id (digits), got {raw[:80]!r}")
    return int(raw)


def _subject(request: web.Request) -> str | None:
    # A subject is a card, register, person (may hold '@'), code or promotion id.
    value = request.query.get("subject")
    if value is None or value == "":
        return None
    if len(value) > 64 or not value.isprintable():
        raise MalformedRequest(
            "subject", f"expected 1..64 printable characters, got {value[:80]!r}"
        )
    return value


def parse_review(body: Any) -> tuple[str, str]:
    """(status, note) of POST .../review: {"status": "confirmed"|"dismissed"|"open", "note"?}."""
    if not isinstance(body, Mapping):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    extra = sorted(set(body) - {"status", "note"})
    if extra:
        raise MalformedRequest(f"body.{extra[0]}", "unknown field (known: status, note)")
    status, note = body.get("status"), body.get("note", "")
    if not isinstance(status, str):
        raise MalformedRequest("body.status", f"required text, got {status!r}")
    if not isinstance(note, str):
        raise MalformedRequest("body.note", f"expected text, got {note!r}")
    return status, note.strip()


async def list_signals(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    before = request.query.get("before")
    filters = {
        "status": query_id(request, "status", required=False),
        "detector": query_id(request, "detector", required=False),
        "severity": query_id(request, "severity", required=False),
        "subject": _subject(request),
        "before": None if before in (None, "") else query_int(request, "before", default=0),
        "limit": query_int(request, "limit", default=100),
    }

    def run() -> list[dict[str, Any]]:
        return storage.fraud.list_signals(**filters)

    return web.json_response({"signals": await in_db(request, run)})


async def one_signal(request: web.Request) -> web.Response:
    signal_id = _signal_id(request)
    storage = request.app[STORAGE_KEY]
    return web.json_response(await in_db(request, storage.fraud.signal, signal_id))


async def review(request: web.Request) -> web.Response:
    signal_id = _signal_id(request)
    status, note = parse_review(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = actor_of(request)
    done = await in_db(request, storage.fraud.review, signal_id, status, note, actor, now)
    return web.json_response(done)


async def scan(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    settings = FraudSettings(
        min_minutes_between_stores=request.app[CONFIG_KEY].fraud.min_minutes_between_stores
    )
    return web.json_response(await in_db(request, storage.fraud.scan, now, settings))
