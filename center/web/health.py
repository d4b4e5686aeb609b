"""GET /health: liveness and the sizes a monitor watches."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.permissions import Requirement
from center.web.keys import STORAGE_KEY
from center.web.request import in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {("GET", "/health"): "public"}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/health", health)


async def health(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    counts = await in_db(request, storage.counts)
    return web.json_response(
        {
            "status": "ok",
            "storage": storage.backend,
            "sales": counts.sales,
            "quarantined": counts.quarantined,
            "master_version": counts.master_version,
        }
    )
