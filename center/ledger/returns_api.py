"""HTTP routes of manual adjustments, head-office returns and the ledger reports (docs/API.md)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.crm.api import MAX_JSON_BYTES
from center.errors import InvalidRequest, MalformedRequest
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import card_no_param, in_db, json_body

__all__ = ["PERMISSIONS", "add_routes", "parse_adjustment", "parse_return"]

MAX_RETURN_LINES = 500

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/v1/cards/{card_no}/adjustments"): "ledger.adjust",
    ("GET", "/v1/reports/overdrafts"): ("reports.read", "ledger.read"),
    ("GET", "/v1/reports/returns-exceptions"): "reports.read",
    ("POST", "/v1/returns"): "ledger.adjust",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/cards/{card_no}/adjustments", adjust)
    app.router.add_get("/v1/reports/overdrafts", overdrafts)
    app.router.add_get("/v1/reports/returns-exceptions", returns_exceptions)
    app.router.add_post("/v1/returns", head_office_return)


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    return body


def _unknown(body: Mapping[str, Any], known: tuple[str, ...]) -> None:
    extra = sorted(set(body) - set(known))
    if extra:
        raise MalformedRequest(f"body.{extra[0]}", f"unknown field (known: {', '.join(known)})")


def _int(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedRequest(f"body.{name}", f"expected an integer, got {value!r}")
    return value


def _text(body: Mapping[str, Any], name: str, *, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise MalformedRequest(f"body.{name}", f"required text, got {value!r}")
    return value


def parse_adjustment(body: Any) -> dict[str, Any]:
    """{wallet="bonus", amount, reason, expires_at?, idempotency_key} of POST .../adjustments."""
    body = _object(body)
    _unknown(body, ("wallet", "amount", "reason", "expires_at", "idempotency_key"))
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("body.reason", "required: say why the balance is adjusted")
    expires_at: datetime | None = None
    raw = body.get("expires_at")
    if raw is not None:
        try:
            expires_at = datetime.fromisoformat(_text(body, "expires_at"))
        except ValueError as exc:
            raise MalformedRequest("body.expires_at", f"not an ISO 8601 time: {exc}") from exc
        if expires_at.tzinfo is None:
            raise MalformedRequest("body.expires_at", "needs a UTC offset, e.g. +00:00")
    return {
        "wallet": _text(body, "wallet", default="bonus"),
        "amount": _int(body, "amount"),
        "reason": reason.strip(),
        "expires_at": expires_at,
        "idempotency_key": _text(body, "idempotency_key"),
    }


def parse_return(body: Any) -> tuple[str, dict[int, int], str]:
    """(sale_id, {line_no: qty_milli}, return_id) of POST /v1/returns."""
    body = _object(body)
    _unknown(body, ("sale_id", "lines", "return_id"))
    ids: list[str] = []
    for name in ("sale_id", "return_id"):
        value = _text(body, name)
        try:
            canonical = str(uuid.UUID(value))
        except ValueError as exc:
            raise MalformedRequest(f"body.{name}", f"expected a UUID, got {value[:80]!r}") from exc
        if canonical != value:
            raise MalformedRequest(
                f"body.{name}", f"expected the canonical lower-case UUID {canonical}"
            )
        ids.append(value)
    lines = body.get("lines")
    if not isinstance(lines, list) or not 1 <= len(lines) <= MAX_RETURN_LINES:
        raise MalformedRequest("body.lines", f"expected a list of 1..{MAX_RETURN_LINES} lines")
    returned: dict[int, int] = {}
    for i, line in enumerate(lines):
        if not isinstance(line, Mapping):
            raise MalformedRequest(f"body.lines[{i}]", "expected {line_no, qty_milli}")
        _unknown(line, ("line_no", "qty_milli"))
        line_no, qty = line.get("line_no"), line.get("qty_milli")
        for name, given in (("line_no", line_no), ("qty_milli", qty)):
            if isinstance(given, bool) or not isinstance(given, int) or given <= 0:
                raise MalformedRequest(
                    f"body.lines[{i}].{name}", f"expected an int > 0, got {given!r}"
                )
        assert isinstance(line_no, int) and isinstance(qty, int)
        if line_no in returned:
            raise MalformedRequest(f"body.lines[{i}].line_no", f"line {line_no} given twice")
        returned[line_no] = qty
    return ids[0], returned, ids[1]


async def adjust(request: web.Request) -> web.Response:
    card_no = card_no_param(request)
    parsed = parse_adjustment(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = actor_of(request)

    def run() -> dict[str, Any]:
        return storage.returns.adjust(
            card_no,
            parsed["wallet"],
            parsed["amount"],
            parsed["reason"],
            actor,
            now,
            expires_at=parsed["expires_at"],
            idempotency_key=parsed["idempotency_key"],
        )

    done = await in_db(request, run)
    return web.json_response(done, status=200 if done["replayed"] else 201)


async def overdrafts(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    return web.json_response(await in_db(request, storage.returns.overdrafts))


async def returns_exceptions(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    return web.json_response({"returns": await in_db(request, storage.returns.return_exceptions)})


async def head_office_return(request: web.Request) -> web.Response:
    sale_id, returned, return_id = parse_return(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(
        request,
        storage.returns.head_office_return,
        sale_id,
        returned,
        return_id,
        actor_of(request),
        now,
    )
    return web.json_response(done, status=200 if done["replayed"] else 201)
