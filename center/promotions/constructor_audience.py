"""Console pages of the marketer around the constructor: segments with their member counts kept
live, and coupon batches (generate, issue to a segment, export as CSV).

Each form goes through the JSON API's own parsers (`parse_batch`, `parse_issue`) and the same
repositories; the export is the API's streamed CSV (`/v1/coupon-batches/{id}/export`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import RequestError, UnknownObject
from center.promotions.coupons import parse_batch, parse_issue
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import form_of, page_actor, render
from center.web.request import ID_PATTERN, in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/segments"): "segments.read",
    ("GET", "/console/segments/{segment_id}/count"): "segments.read",
    ("POST", "/console/segments/{segment_id}/recalculate"): "segments.write",
    ("GET", "/console/coupon-batches"): "coupons.read",
    ("POST", "/console/coupon-batches"): "coupons.write",
    ("POST", "/console/coupon-batches/{batch_id}/issue"): "coupons.write",
}
"""(method, canonical route path) -> the permission a caller needs."""

PAGE_MAX_BATCH = 10_000
"""The most codes one batch made on the page holds (the API's jobs make bigger ones)."""
BATCH_FIELDS = ("promotion_id", "name", "prefix", "count", "valid_from", "valid_to", "single_use")


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/segments", segments)
    app.router.add_get("/console/segments/{segment_id}/count", segment_count)
    app.router.add_post("/console/segments/{segment_id}/recalculate", recalculate)
    app.router.add_get("/console/coupon-batches", batches)
    app.router.add_post("/console/coupon-batches", create_batch)
    app.router.add_post("/console/coupon-batches/{batch_id}/issue", issue)


def _id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise UnknownObject(name, f"unknown {name.removesuffix('_id')} {value[:80]!r}")
    return value


async def segments(request: web.Request) -> web.StreamResponse:
    """Every segment with its member count, refreshed as it changes."""
    found = await in_db(request, request.app[STORAGE_KEY].segments.list_segments)
    return render(request, "promotions/constructor_segments.html", {"segments": found})


async def _count_cell(request: web.Request, segment_id: str) -> web.StreamResponse:
    found = await in_db(request, request.app[STORAGE_KEY].segments.segment, segment_id)
    if found is None:
        raise UnknownObject("segment_id", f"unknown segment {segment_id!r}")
    return render(request, "promotions/constructor_segment_count.html", {"s": found})


async def segment_count(request: web.Request) -> web.StreamResponse:
    """A segment's member count (the cell the segments page polls)."""
    return await _count_cell(request, _id(request, "segment_id"))


async def recalculate(request: web.Request) -> web.StreamResponse:
    """Recount a dynamic segment's members now; the new count."""
    segment_id = _id(request, "segment_id")
    storage = request.app[STORAGE_KEY]
    await in_db(
        request,
        storage.segments.recalculate_segment,
        segment_id,
        page_actor(request),
        request.app[CLOCK_KEY](),
    )
    if request.headers.get("HX-Request"):
        return await _count_cell(request, segment_id)
    return web.Response(status=303, headers={"Location": "/console/segments"})


async def _batches_page(
    request: web.Request,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    done: Mapping[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.coupons.list_coupon_batches)
    groups = await in_db(request, storage.segments.list_segments)
    promotions = await in_db(request, storage.promotions.list_promotions, None)
    context = {
        "batches": found,
        "segment_list": groups,
        "coupon_promotions": [p for p in promotions if p["kind"] == "coupon"],
        "values": values or {"single_use": "yes"},
        "errors": errors or {},
        "done": done or {},
        "page_max": PAGE_MAX_BATCH,
    }
    return render(request, "promotions/constructor_coupons.html", context, status=status)


async def batches(request: web.Request) -> web.StreamResponse:
    """The coupon batches, newest first, with the forms to make and issue them."""
    return await _batches_page(request)


def _message(exc: RequestError) -> str:
    return str(exc).removeprefix(f"{exc.field}: ")


async def create_batch(request: web.Request) -> web.StreamResponse:
    """Generate a batch of codes for a coupon promotion (what POST /v1/coupon-batches does)."""
    form = await form_of(request)
    values = {name: str(form.get(name, ""))[:200].strip() for name in BATCH_FIELDS}
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "promotion_id": values["promotion_id"],
        "name": values["name"],
        "prefix": values["prefix"],
        "single_use": values["single_use"] == "yes",
    }
    for name in ("valid_from", "valid_to"):
        if values[name]:
            body[name] = values[name]
    cleaned = values["count"].replace(" ", "").replace("\u00a0", "")
    if not cleaned.isdigit() or not 1 <= int(cleaned) <= PAGE_MAX_BATCH:
        errors["count"] = f"expected a whole number 1..{PAGE_MAX_BATCH}"
    else:
        body["count"] = int(cleaned)
    view: dict[str, Any] | None = None
    if not errors:
        try:
            parsed = parse_batch(body)
            view = await in_db(
                request,
                request.app[STORAGE_KEY].coupons.create_coupon_batch,
                parsed,
                page_actor(request),
                request.app[CLOCK_KEY](),
            )
        except RequestError as exc:
            name = exc.field.removeprefix("body.")
            errors[name if name in BATCH_FIELDS else "form"] = _message(exc)
    if errors or view is None:
        return await _batches_page(request, values=values, errors=errors, status=422)
    return await _batches_page(request, done={"created": view})


async def issue(request: web.Request) -> web.StreamResponse:
    """Give one free code of the batch to each member of a segment who has none yet."""
    batch_id = _id(request, "batch_id")
    form = await form_of(request)
    segment_id = str(form.get("segment_id", ""))[:64]
    try:
        parsed = parse_issue({"segment_id": segment_id})
        done = await in_db(
            request,
            request.app[STORAGE_KEY].coupons.issue_coupons,
            batch_id,
            parsed,
            page_actor(request),
            request.app[CLOCK_KEY](),
        )
    except RequestError as exc:
        if isinstance(exc, UnknownObject) and exc.field == "batch_id":
            raise
        errors = {f"issue-{batch_id}": _message(exc)}
        return await _batches_page(request, errors=errors, status=exc.status)
    return await _batches_page(request, done={"issued": {**done, "batch_id": batch_id}})
