"""Console pages of the models: each model's versions with their metrics, newest first, a
training run on demand (the same training and permission as POST /v1/models/train), the
customer segments with their associations, and a customer's preferences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import RequestError
from center.models.api import PERMISSIONS as API_PERMISSIONS
from center.models.api import association_query, parse_template, train_now
from center.web.keys import STORAGE_KEY
from center.web.pages import field_errors, render
from center.web.request import ID_PATTERN, in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/models"): API_PERMISSIONS[("GET", "/v1/models")],
    ("POST", "/console/models/train"): API_PERMISSIONS[("POST", "/v1/models/train")],
    ("GET", "/console/models/associations"): API_PERMISSIONS[("GET", "/v1/models/associations")],
    ("GET", "/console/models/preferences"): API_PERMISSIONS[
        ("GET", "/v1/models/preferences/{customer_id}")
    ],
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/models", models_page)
    app.router.add_post("/console/models/train", train_page)
    app.router.add_get("/console/models/associations", associations_page)
    app.router.add_get("/console/models/preferences", preferences_page)


async def models_page(request: web.Request) -> web.StreamResponse:
    """Every model kind with its versions (metrics, training time), the latest first."""
    versions: list[dict[str, Any]] = await in_db(
        request, request.app[STORAGE_KEY].models.versions, None, 200
    )
    kinds: dict[str, list[dict[str, Any]]] = {}
    for version in sorted(versions, key=lambda v: (v["kind"], -v["version"])):
        kinds.setdefault(version["kind"], []).append(version)
    notice = "trained" if request.query.get("done") == "trained" else ""
    segments = await in_db(request, request.app[STORAGE_KEY].models.segments)
    return render(
        request, "models/models.html", {"kinds": kinds, "notice": notice, "segments": segments}
    )


async def associations_page(request: web.Request) -> web.StreamResponse:
    """The stored category pairs of one segment (or of all), by lift."""
    errors: dict[str, str] = {}
    try:
        segment, limit = association_query(request.query)
    except RequestError as exc:
        errors = field_errors(exc)
        segment, limit = None, 50
    storage = request.app[STORAGE_KEY]
    rows = await in_db(request, storage.models.associations, segment, limit if segment else 500)
    segments = await in_db(request, storage.models.segments)
    return render(
        request,
        "models/associations.html",
        {"segment": segment, "rows": rows, "segments": segments, "errors": errors},
    )


async def preferences_page(request: web.Request) -> web.StreamResponse:
    """One customer's preferred store, segment and favourite categories and brands."""
    customer_id = request.query.get("customer_id", "")[:64]
    errors: dict[str, str] = {}
    found = None
    if customer_id and not ID_PATTERN.match(customer_id):
        errors["customer_id"] = "expected a customer id (letters, digits, . _ : -)"
    elif customer_id:
        found = await in_db(request, request.app[STORAGE_KEY].models.preferences, customer_id)
    return render(
        request,
        "models/preferences.html",
        {"customer_id": customer_id, "found": found, "errors": errors},
    )


async def train_page(request: web.Request) -> web.StreamResponse:
    """Train now with the default offer template, then back to the page."""
    await train_now(request, parse_template(None))
    return web.Response(status=303, headers={"Location": "/console/models?done=trained"})
