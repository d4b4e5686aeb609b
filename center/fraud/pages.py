"""Console pages of the fraud signals: the list with each signal's reason, one signal with the
sales behind it, and its review (confirm / dismiss / reopen with a note) through the same
parser and repository call as POST /v1/fraud/signals/{signal_id}/review."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import MalformedRequest, RequestError
from center.fraud.api import parse_review
from center.fraud.model import REVIEW_STATUSES
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import field_errors, form_of, page_actor, render
from center.web.request import in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/fraud"): "fraud.read",
    ("GET", "/console/fraud/{signal_id}"): "fraud.read",
    ("POST", "/console/fraud/{signal_id}/review"): "fraud.review",
}
"""(method, canonical route path) -> the permission a caller needs."""

SHOWN = 200
"""Most signals one page lists (newest first)."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/fraud", signals)
    app.router.add_get("/console/fraud/{signal_id}", signal)
    app.router.add_post("/console/fraud/{signal_id}/review", review)


def _signal_id(request: web.Request) -> int:
    raw = request.match_info["signal_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise MalformedRequest("signal_id", f"expected a signal id (digits), got {raw[:80]!r}")
    return int(raw)


async def signals(request: web.Request) -> web.StreamResponse:
    """The signals of one review status (open by default), newest first."""
    status = request.query.get("status", "open")
    if status not in REVIEW_STATUSES:
        status = "open"
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, lambda: storage.fraud.list_signals(status=status, limit=SHOWN))
    return render(
        request,
        "fraud/signals.html",
        {"signals": found, "status": status, "statuses": REVIEW_STATUSES},
    )


async def _signal_page(
    request: web.Request,
    signal_id: int,
    *,
    errors: Mapping[str, str] | None = None,
    note: str = "",
    status: int = 200,
) -> web.Response:
    found = await in_db(request, request.app[STORAGE_KEY].fraud.signal, signal_id)
    notice = request.query.get("done", "")
    return render(
        request,
        "fraud/signal.html",
        {
            "signal": found,
            "errors": dict(errors or {}),
            "note": note,
            "notice": notice if notice in REVIEW_STATUSES else "",
        },
        status=status,
    )


async def signal(request: web.Request) -> web.StreamResponse:
    """One signal: detector, reason, the sales behind it, its review history."""
    return await _signal_page(request, _signal_id(request))


async def review(request: web.Request) -> web.StreamResponse:
    """Confirm, dismiss or reopen a signal with a note; back to it."""
    signal_id = _signal_id(request)
    form = await form_of(request)
    note = str(form.get("note", ""))[:2000]
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    try:
        status, checked = parse_review({"status": str(form.get("status", "")), "note": note})
        await in_db(request, storage.fraud.review, signal_id, status, checked, actor, now)
    except RequestError as exc:
        if exc.field == "signal_id":
            raise
        errors = field_errors(exc)
        return await _signal_page(request, signal_id, errors=errors, note=note, status=exc.status)
    return web.Response(
        status=303, headers={"Location": f"/console/fraud/{signal_id}?done={status}"}
    )
