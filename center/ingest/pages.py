"""Console page of the loyalty manager: the review queue of sales the Center did not book as
claimed, approved or rejected through the same repository call as the JSON routes
(center/ingest/review_api.py)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import InvalidRequest
from center.ingest.review_api import parse_decision
from center.ingest.review_store import CASE_STATES
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import form_of, page_actor, render
from center.web.request import in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/review"): "loyalty.review",
    ("POST", "/console/review/{case_id}/approve"): "loyalty.review",
    ("POST", "/console/review/{case_id}/reject"): "loyalty.review",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/review", queue)
    app.router.add_post("/console/review/{case_id}/approve", approve)
    app.router.add_post("/console/review/{case_id}/reject", reject)


async def queue(request: web.Request) -> web.StreamResponse:
    """The cases in one state (open unless asked), newest first."""
    state = request.query.get("state", "open")
    if state not in CASE_STATES:
        raise InvalidRequest("state", f"expected one of {', '.join(CASE_STATES)}, got {state!r}")
    storage = request.app[STORAGE_KEY]
    cases = await in_db(request, lambda: storage.reviews.list_cases(state=state, limit=200))
    return render(
        request,
        "ingest/review.html",
        {
            "cases": cases,
            "state": state,
            "states": CASE_STATES,
            "notice": request.query.get("done", ""),
        },
    )


async def _decide(request: web.Request, decision: str) -> web.StreamResponse:
    raw = request.match_info["case_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise InvalidRequest("case_id", f"expected a case id (digits), got {raw[:80]!r}")
    form = await form_of(request)
    note = parse_decision({"note": str(form.get("note", ""))[:500]})
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    await in_db(request, storage.reviews.decide, int(raw), decision, note, actor, now)
    return web.Response(status=303, headers={"Location": f"/console/review?done={decision}"})


async def approve(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "approved")


async def reject(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "rejected")
