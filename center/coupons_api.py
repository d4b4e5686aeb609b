"""HTTP routes of coupon batches: generate, issue, export, look up, double redemptions."""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import web

from center.app import CLOCK_KEY, STORAGE_KEY, _in_db, _query_int, json_body
from center.coupons import check_code, code_checks, parse_batch, parse_issue
from center.errors import MalformedRequest, UnknownObject
from center.permissions import Requirement
from center.users_api import actor_of

__all__ = ["EXPORT_PAGE", "MAX_JSON_BYTES", "PERMISSIONS", "add_routes"]

MAX_JSON_BYTES = 8 * 1024 * 1024
"""An issue request may list many customers."""
EXPORT_PAGE = 20_000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/v1/coupon-batches"): "coupons.write",
    ("GET", "/v1/coupon-batches/{batch_id}"): "coupons.read",
    ("GET", "/v1/coupon-batches/{batch_id}/export"): "coupons.read",
    ("POST", "/v1/coupon-batches/{batch_id}/issue"): "coupons.write",
    ("GET", "/v1/coupons/{code}"): ("coupons.read", "node"),
    ("GET", "/v1/reports/coupon-double-redemptions"): "reports.read",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/coupon-batches", create_batch)
    app.router.add_get("/v1/coupon-batches/{batch_id}", batch)
    app.router.add_get("/v1/coupon-batches/{batch_id}/export", export)
    app.router.add_post("/v1/coupon-batches/{batch_id}/issue", issue)
    app.router.add_get("/v1/coupons/{code}", coupon)
    app.router.add_get("/v1/reports/coupon-double-redemptions", double_redemptions)


def _batch_id(request: web.Request) -> str:
    batch_id = request.match_info["batch_id"]
    if not _ID.match(batch_id):
        raise MalformedRequest("batch_id", f"expected a batch id, got {batch_id[:80]!r}")
    return batch_id


async def create_batch(request: web.Request) -> web.Response:
    parsed = parse_batch(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    view = await _in_db(request, storage.create_coupon_batch, parsed, actor_of(request), now)
    return web.json_response(view, status=201)


async def batch(request: web.Request) -> web.Response:
    batch_id = _batch_id(request)
    view = await _in_db(request, request.app[STORAGE_KEY].coupon_batch, batch_id)
    if view is None:
        raise UnknownObject("batch_id", f"unknown coupon batch {batch_id!r}")
    return web.json_response(view)


def _csv_line(fields: tuple[str, ...]) -> str:
    # Codes, ids and dates never hold commas or quotes; names may: quote what needs it.
    out = []
    for value in fields:
        if any(c in value for c in ',"\r\n'):
            value = '"' + value.replace('"', '""') + '"'
        out.append(value)
    return ",".join(out) + "\r\n"


async def export(request: web.Request) -> web.StreamResponse:
    """Print-ready CSV of a batch, streamed by pages; each code's check character re-verified."""
    batch_id = _batch_id(request)
    wanted = request.query.get("format", "csv")
    if wanted != "csv":
        raise MalformedRequest("format", f"expected csv, got {wanted[:20]!r}")
    storage = request.app[STORAGE_KEY]
    view = await _in_db(request, storage.coupon_batch, batch_id)
    if view is None:
        raise UnknownObject("batch_id", f"unknown coupon batch {batch_id!r}")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{batch_id}.csv"',
        }
    )
    await response.prepare(request)
    header = ("code", "check", "customer_id", "card_no", "status", "valid_from", "valid_to")
    await response.write(_csv_line(header).encode())
    valid_from = view["valid_from"] or ""
    valid_to = view["valid_to"] or ""
    after = ""
    while True:
        rows = await _in_db(request, storage.coupon_export_page, batch_id, after, EXPORT_PAGE)
        if not rows:
            break
        chunk = []
        for code, customer_id, card_no, status in rows:
            ok = "ok" if code_checks(code) else "BAD"
            line = (code, ok, customer_id, card_no, status, valid_from, valid_to)
            chunk.append(_csv_line(line))
        await response.write("".join(chunk).encode())
        after = rows[-1][0]
    await response.write_eof()
    return response


async def issue(request: web.Request) -> web.Response:
    batch_id = _batch_id(request)
    parsed = parse_issue(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await _in_db(request, storage.issue_coupons, batch_id, parsed, actor_of(request), now)
    return web.json_response(done)


async def coupon(request: web.Request) -> web.Response:
    """A code's status, for the back office and for a store node checking a code online."""
    code = request.match_info["code"]
    check_code(code)
    found = await _in_db(request, request.app[STORAGE_KEY].coupon, code)
    if found is None:
        raise UnknownObject("code", f"no coupon batch holds code {code.strip().upper()[:40]!r}")
    return web.json_response(found)


async def double_redemptions(request: web.Request) -> web.Response:
    limit = _query_int(request, "limit", default=1000)
    if not 1 <= limit <= 1000:
        raise MalformedRequest("limit", f"expected 1..1000, got {limit}")
    storage = request.app[STORAGE_KEY]
    found = await _in_db(request, storage.coupon_double_redemptions, limit)
    return web.json_response({"coupons": found})
