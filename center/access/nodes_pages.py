"""Console page of the administrator: every store node and register, the worst first, sortable."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.monitoring import SORTS, limits_of, node_contacts, sort_contacts
from center.access.permissions import Requirement
from center.errors import InvalidRequest
from center.web.keys import CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
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
    """Last contact, queue, sync lag and alerts per store node and register (refreshes itself)."""
    sort = request.query.get("sort", "status")
    if sort not in SORTS:
        raise InvalidRequest("sort", f"expected one of {', '.join(SORTS)}, got {sort[:40]!r}")
    descending = request.query.get("desc", "") == "1"
    beats = await in_db(request, request.app[STORAGE_KEY].nodes.contacts)
    now = request.app[CLOCK_KEY]()
    watch = request.app[CONFIG_KEY].monitoring
    limits = limits_of(
        watch.store_late_s, watch.store_silent_s, watch.register_late_s, watch.register_silent_s
    )
    contacts = sort_contacts(node_contacts(beats, now, limits), sort, descending=descending)
    return render(
        request,
        "access/nodes.html",
        {
            "contacts": contacts,
            "limits": {
                role: [int(x.total_seconds()) for x in pair] for role, pair in limits.items()
            },
            "bad": sum(1 for c in contacts if c.status != "ok"),
            "sort": sort,
            "descending": descending,
            "sorts": SORTS,
        },
    )
