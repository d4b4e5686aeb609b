"""HTTP routes of coupon batches: generate, issue, export, look up, double redemptions; the
holds store nodes take on single-use codes and the offline policies (coupons_holds.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import Requirement
from center.errors import MalformedRequest, UnknownObject
from center.promotions import coupon_jobs
from center.promotions.coupons import check_code, code_checks, parse_batch, parse_issue
from center.promotions.coupons_holds import (
    hold_id_of,
    parse_batch_update,
    parse_commit,
    parse_hold,
    parse_release,
)
from center.web.keys import CLOCK_KEY, EXECUTOR_KEY, STORAGE_KEY
from center.web.request import in_db, json_body, own_store, query_int

__all__ = [
    "EXPORT_PAGE",
    "JOBS_KEY",
    "MAX_HOLD_BYTES",
    "MAX_JSON_BYTES",
    "PERMISSIONS",
    "add_routes",
]

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 8 * 1024 * 1024
"""An issue request may list many customers."""
EXPORT_PAGE = 20_000
MAX_HOLD_BYTES = 16 * 1024
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
JOBS_KEY: web.AppKey[dict[str, asyncio.Task[Any]]] = web.AppKey("center_coupon_jobs")
"""The coupon jobs this process runs, by job id."""

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/v1/coupon-batches"): "coupons.write",
    ("GET", "/v1/coupon-batches/{batch_id}"): "coupons.read",
    ("GET", "/v1/coupon-jobs/{job_id}"): "coupons.read",
    ("GET", "/v1/coupon-batches/{batch_id}/export"): "coupons.read",
    ("POST", "/v1/coupon-batches/{batch_id}/issue"): "coupons.write",
    ("GET", "/v1/coupons/{code}"): ("coupons.read", "node"),
    ("GET", "/v1/reports/coupon-double-redemptions"): "reports.read",
    ("PATCH", "/v1/coupon-batches/{batch_id}"): "coupons.write",
    ("POST", "/v1/coupon-holds"): "node",
    ("POST", "/v1/coupon-holds/{hold_id}/commit"): "node",
    ("POST", "/v1/coupon-holds/{hold_id}/release"): "node",
    ("GET", "/v1/coupon-policies"): ("coupons.read", "node"),
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/coupon-batches", create_batch)
    app.router.add_get("/v1/coupon-jobs/{job_id}", job)
    app[JOBS_KEY] = {}
    # Appended after the app's own lifecycle: starts once the storage is open, stops (failing
    # the jobs still running) before it closes.
    app.cleanup_ctx.append(_jobs_lifecycle)
    app.router.add_get("/v1/coupon-batches/{batch_id}", batch)
    app.router.add_get("/v1/coupon-batches/{batch_id}/export", export)
    app.router.add_post("/v1/coupon-batches/{batch_id}/issue", issue)
    app.router.add_get("/v1/coupons/{code}", coupon)
    app.router.add_get("/v1/reports/coupon-double-redemptions", double_redemptions)
    app.router.add_patch("/v1/coupon-batches/{batch_id}", update_batch)
    app.router.add_post("/v1/coupon-holds", hold)
    app.router.add_post("/v1/coupon-holds/{hold_id}/commit", commit_hold)
    app.router.add_post("/v1/coupon-holds/{hold_id}/release", release_hold)
    app.router.add_get("/v1/coupon-policies", policies)


def _batch_id(request: web.Request) -> str:
    batch_id = request.match_info["batch_id"]
    if not _ID.match(batch_id):
        raise MalformedRequest("batch_id", f"expected a batch id, got {batch_id[:80]!r}")
    return batch_id


async def _jobs_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Fail the jobs of processes that died (their staged codes go), run ours, and on the way
    out fail the ones still running."""
    storage = app[STORAGE_KEY]
    clock = app[CLOCK_KEY]
    now = clock()

    def dead(owner: str, updated_at: Any) -> bool:
        return coupon_jobs.owner_dead(owner, updated_at, now)

    loop = asyncio.get_running_loop()
    failed = await loop.run_in_executor(
        app[EXECUTOR_KEY], storage.coupon_jobs.recover_coupon_jobs, dead, now
    )
    for job_id in failed:
        log.warning("coupon job %s: its process stopped; marked failed", job_id)
    yield
    tasks = list(app[JOBS_KEY].values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def create_batch(request: web.Request) -> web.Response:
    """Small batches are made in the request (201); bigger ones by a job (202 + Location)."""
    parsed = parse_batch(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    if parsed.count <= coupon_jobs.SYNC_MAX:
        view = await in_db(
            request, storage.coupons.create_coupon_batch, parsed, actor_of(request), now
        )
        return web.json_response(view, status=201)
    started = await in_db(
        request,
        storage.coupon_jobs.start_coupon_job,
        parsed,
        actor_of(request),
        coupon_jobs.this_owner(),
        now,
    )
    job_id = started["job_id"]
    app = request.app
    task = asyncio.create_task(
        coupon_jobs.run_job_async(storage, app[EXECUTOR_KEY], job_id, app[CLOCK_KEY])
    )
    app[JOBS_KEY][job_id] = task
    task.add_done_callback(lambda _: app[JOBS_KEY].pop(job_id, None))
    location = f"/v1/coupon-jobs/{job_id}"
    return web.json_response(started, status=202, headers={"Location": location})


async def job(request: web.Request) -> web.Response:
    """A coupon job's progress and final state (with the batch once done)."""
    job_id = request.match_info["job_id"]
    if not _ID.match(job_id):
        raise MalformedRequest("job_id", f"expected a job id, got {job_id[:80]!r}")
    found = await in_db(request, request.app[STORAGE_KEY].coupon_jobs.coupon_job, job_id)
    if found is None:
        raise UnknownObject("job_id", f"unknown coupon job {job_id!r}")
    return web.json_response(found)


async def batch(request: web.Request) -> web.Response:
    batch_id = _batch_id(request)
    view = await in_db(request, request.app[STORAGE_KEY].coupons.coupon_batch, batch_id)
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
    view = await in_db(request, storage.coupons.coupon_batch, batch_id)
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
        rows = await in_db(
            request, storage.coupons.coupon_export_page, batch_id, after, EXPORT_PAGE
        )
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
    done = await in_db(
        request, storage.coupons.issue_coupons, batch_id, parsed, actor_of(request), now
    )
    return web.json_response(done)


async def coupon(request: web.Request) -> web.Response:
    """A code's status, for the back office and for a store node checking a code online."""
    code = request.match_info["code"]
    if len(code) > 128:
        raise MalformedRequest("code", f"expected a coupon code, got {code[:40]!r}...")
    found = await in_db(request, request.app[STORAGE_KEY].coupons.coupon, code)
    if found is None:
        check_code(code)  # a malformed code is named as such (a held one is answered anyway)
        raise UnknownObject("code", f"no coupon batch holds code {code.strip().upper()[:40]!r}")
    return web.json_response(found)


async def double_redemptions(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", default=1000)
    if not 1 <= limit <= 1000:
        raise MalformedRequest("limit", f"expected 1..1000, got {limit}")
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.coupons.coupon_double_redemptions, limit)
    return web.json_response({"coupons": found})


async def update_batch(request: web.Request) -> web.Response:
    """Change a batch's offline policy (where a store may take its codes without the Center)."""
    batch_id = _batch_id(request)
    offline = parse_batch_update(await json_body(request, max_bytes=MAX_HOLD_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(
        request, storage.coupon_holds.set_offline, batch_id, offline, actor_of(request), now
    )
    return web.json_response(done)


async def hold(request: web.Request) -> web.Response:
    """A store node holds single-use codes for a receipt (all or none; 409 naming the code)."""
    parsed = parse_hold(await json_body(request, max_bytes=MAX_HOLD_BYTES))
    own_store(request, parsed.store_id, field="body.store_id")
    storage = request.app[STORAGE_KEY]
    held = await in_db(request, storage.coupon_holds.hold, parsed, request.app[CLOCK_KEY]())
    return web.json_response(held)


async def commit_hold(request: web.Request) -> web.Response:
    """The hold's sale redeemed these codes; the others go."""
    hold_id = hold_id_of(request.match_info["hold_id"])
    parsed = parse_commit(await json_body(request, max_bytes=MAX_HOLD_BYTES))
    own_store(request, parsed.store_id, field="body.store_id")
    storage = request.app[STORAGE_KEY]
    done = await in_db(
        request, storage.coupon_holds.commit, hold_id, parsed, request.app[CLOCK_KEY]()
    )
    if done["lost"]:
        log.warning(
            "hold %s of store %s committed by sale %s had lost %s (expired and taken)",
            hold_id,
            parsed.store_id,
            parsed.sale_id,
            ",".join(done["lost"]),
        )
    return web.json_response(done)


async def release_hold(request: web.Request) -> web.Response:
    """Free the codes the hold still holds (idempotent)."""
    hold_id = hold_id_of(request.match_info["hold_id"])
    store_id = parse_release(await json_body(request, max_bytes=MAX_HOLD_BYTES))
    own_store(request, store_id, field="body.store_id")
    storage = request.app[STORAGE_KEY]
    done = await in_db(request, storage.coupon_holds.release, hold_id, store_id)
    return web.json_response(done)


async def policies(request: web.Request) -> web.Response:
    """Each coupon prefix's origin and offline policy, for store nodes to follow offline."""
    found = await in_db(request, request.app[STORAGE_KEY].coupon_holds.policies)
    return web.json_response(
        {
            "policies": found,
            "defaults": {"register": "issuing_store", "head_office": "never"},
        }
    )
