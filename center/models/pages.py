"""Console page of the models: each model's versions with their metrics, newest first, and a
training run on demand (the same training and permission as POST /v1/models/train)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.models.api import PERMISSIONS as API_PERMISSIONS
from center.models.api import parse_template, train_now
from center.web.keys import STORAGE_KEY
from center.web.pages import render
from center.web.request import in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/models"): API_PERMISSIONS[("GET", "/v1/models")],
    ("POST", "/console/models/train"): API_PERMISSIONS[("POST", "/v1/models/train")],
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/models", models_page)
    app.router.add_post("/console/models/train", train_page)


async def models_page(request: web.Request) -> web.StreamResponse:
    """Every model kind with its versions (metrics, training time), the latest first."""
    versions: list[dict[str, Any]] = await in_db(
        request, request.app[STORAGE_KEY].models.versions, None, 200
    )
    kinds: dict[str, list[dict[str, Any]]] = {}
    for version in sorted(versions, key=lambda v: (v["kind"], -v["version"])):
        kinds.setdefault(version["kind"], []).append(version)
    notice = "trained" if request.query.get("done") == "trained" else ""
    return render(request, "models/models.html", {"kinds": kinds, "notice": notice})


async def train_page(request: web.Request) -> web.StreamResponse:
    """Train now with the default offer template, then back to the page."""
    await train_now(request, parse_template(None))
    return web.Response(status=303, headers={"Location": "/console/models?done=trained"})
