"""Console pages of the marketer: the promotions and their status (read-only for now)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.permissions import Requirement
from center.promotions.constructor import LIFECYCLE
from center.web.keys import STORAGE_KEY
from center.web.pages import render
from center.web.request import in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/promotions"): "promotions.read",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/promotions", promotions)


async def promotions(request: web.Request) -> web.StreamResponse:
    """Every managed promotion, or those of one status (`?status=`)."""
    status = request.query.get("status", "")
    wanted = status if status in LIFECYCLE else None
    found = await in_db(request, request.app[STORAGE_KEY].promotions.list_promotions, wanted)
    return render(
        request,
        "promotions/list.html",
        {"promotions": found, "status": wanted or "", "lifecycle": LIFECYCLE},
    )
