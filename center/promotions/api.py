"""HTTP routes of the promotions constructor (docs/API.md): drafts, validation, preview,
activation, archiving and history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.api import actor_of
from center.errors import MalformedRequest, UnknownObject
from center.promotions.constructor import LIFECYCLE, check_doc, parse_sample, prepare_doc, preview
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, json_body

__all__ = ["MAX_JSON_BYTES", "PERMISSIONS", "add_routes"]

MAX_JSON_BYTES = 64 * 1024

_ONE = "/v1/promotions/{promotion_id}"
PERMISSIONS: Mapping[tuple[str, str], str] = {
    ("GET", "/v1/promotions"): "promotions.read",
    ("POST", "/v1/promotions"): "promotions.write",
    ("POST", "/v1/promotions/validate"): "promotions.write",
    ("GET", _ONE): "promotions.read",
    ("PUT", _ONE): "promotions.write",
    ("POST", _ONE + "/preview"): "promotions.write",
    ("POST", _ONE + "/activate"): "promotions.publish",
    ("POST", _ONE + "/archive"): "promotions.publish",
    ("GET", _ONE + "/history"): "promotions.read",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes (validate before the id it would shadow)."""
    app.router.add_get("/v1/promotions", list_promotions)
    app.router.add_post("/v1/promotions", create_promotion)
    app.router.add_post("/v1/promotions/validate", validate_promotion)
    app.router.add_get(_ONE, get_promotion)
    app.router.add_put(_ONE, update_promotion)
    app.router.add_post(_ONE + "/preview", preview_promotion)
    app.router.add_post(_ONE + "/activate", activate_promotion)
    app.router.add_post(_ONE + "/archive", archive_promotion)
    app.router.add_get(_ONE + "/history", promotion_history)


def _promotion_id(request: web.Request) -> str:
    value = request.match_info["promotion_id"]
    if not ID_PATTERN.match(value):
        raise MalformedRequest(
            "promotion_id", f"expected 1..64 letters, digits or ._:- , got {value[:80]!r}"
        )
    return value


def _unknown(promotion_id: str) -> UnknownObject:
    return UnknownObject("promotion_id", f"unknown promotion {promotion_id!r}")


async def list_promotions(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in LIFECYCLE:
        raise MalformedRequest(
            "status", f"expected one of {', '.join(LIFECYCLE)}, got {status[:80]!r}"
        )
    found = await in_db(request, request.app[STORAGE_KEY].promotions.list_promotions, status)
    return web.json_response({"promotions": found})


async def create_promotion(request: web.Request) -> web.Response:
    doc = prepare_doc(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    created = await in_db(request, storage.promotions.create_promotion, doc, actor_of(request), now)
    return web.json_response(created, status=201)


async def validate_promotion(request: web.Request) -> web.Response:
    doc = prepare_doc(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    settings = await in_db(request, storage.promotions.promotion_settings)
    known = await in_db(request, storage.promotions.validation_context)
    problems, warnings = check_doc(doc, settings, known)
    return web.json_response(
        {
            "valid": not problems,
            "promotion_id": doc["promotion_id"],
            "problems": [p.to_dict() for p in problems],
            "warnings": warnings,
        }
    )


async def get_promotion(request: web.Request) -> web.Response:
    promotion_id = _promotion_id(request)
    found = await in_db(request, request.app[STORAGE_KEY].promotions.get_promotion, promotion_id)
    if found is None:
        raise _unknown(promotion_id)
    return web.json_response(found)


async def update_promotion(request: web.Request) -> web.Response:
    promotion_id = _promotion_id(request)
    doc = prepare_doc(await json_body(request, max_bytes=MAX_JSON_BYTES), promotion_id)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    updated = await in_db(
        request, storage.promotions.update_promotion, promotion_id, doc, actor_of(request), now
    )
    return web.json_response(updated)


async def preview_promotion(request: web.Request) -> web.Response:
    promotion_id = _promotion_id(request)
    sample = parse_sample(await json_body(request, max_bytes=MAX_JSON_BYTES))
    result, found = await preview_stored(request, promotion_id, sample)
    return web.json_response({**result, "revision": found["revision"]})


async def preview_stored(
    request: web.Request, promotion_id: str, sample: Any
) -> tuple[dict[str, Any], Mapping[str, Any]]:
    """(the preview, the stored promotion): ``promotion_id`` as stored, priced on ``sample``
    with the chain's products, store and live set, as the API and the constructor show it."""
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.promotions.get_promotion, promotion_id)
    if found is None:
        raise _unknown(promotion_id)
    context = await in_db(
        request,
        storage.promotions.promotion_pricing_context,
        [line.product_id for line in sample.lines],
        sample.store_id,
    )
    result = preview(
        found["doc"],
        sample,
        products=context["products"],
        store_format=context["store_format"],
        settings=context["settings"],
        live=context["live"],
        version=context["version"],
        now=request.app[CLOCK_KEY](),
    )
    return result, found


async def activate_promotion(request: web.Request) -> web.Response:
    promotion_id = _promotion_id(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    version = await in_db(
        request, storage.promotions.activate_promotion, promotion_id, actor_of(request), now
    )
    found = await in_db(request, storage.promotions.get_promotion, promotion_id)
    return web.json_response({"master_version": version, "promotion": found})


async def archive_promotion(request: web.Request) -> web.Response:
    promotion_id = _promotion_id(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    version = await in_db(
        request, storage.promotions.archive_promotion, promotion_id, actor_of(request), now
    )
    found = await in_db(request, storage.promotions.get_promotion, promotion_id)
    return web.json_response({"master_version": version, "promotion": found})


async def promotion_history(request: web.Request) -> web.Response:
    promotion_id = _promotion_id(request)
    rows = await in_db(request, request.app[STORAGE_KEY].promotions.promotion_history, promotion_id)
    if rows is None:
        raise _unknown(promotion_id)
    return web.json_response({"promotion_id": promotion_id, "changes": rows})
