"""Console page of the administrator: every store node and register, the silent ones first."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.monitoring import LIMITS, node_contacts
from center.access.permissions import Requirement
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import render
from center.web.request import in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/nodes"): "stores.admin",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/nodes", nodes)


async def nodes(request: web.Request) -> web.StreamResponse:
    """Last contact, queue and sync lag per store node and register (refreshes itself)."""
    beats = await in_db(request, request.app[STORAGE_KEY].nodes.contacts)
    now = request.app[CLOCK_KEY]()
    contacts = node_contacts(beats, now)
    return render(
        request,
        "access/nodes.html",
        {
            "contacts": contacts,
            "limits": {
                role: [int(x.total_seconds()) for x in pair] for role, pair in LIMITS.items()
            },
            "bad": sum(1 for c in contacts if c.status != "ok"),
        },
    )
