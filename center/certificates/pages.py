"""Console pages of gift certificates: the batches, one batch's codes, one code's state and
movements with the sales behind them, and blocking a code with a reason (the same parsers
and repository calls as the /v1/certificate* routes)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from center.access.permissions import Requirement
from center.certificates.model import code_of, parse_block
from center.errors import MalformedRequest, RequestError, UnknownObject
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import field_errors, form_of, page_actor, render
from center.web.request import ID_PATTERN, in_db

__all__ = ["PERMISSIONS", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/certificates"): "certificates.read",
    ("GET", "/console/certificates/batches/{batch_id}"): "certificates.read",
    ("GET", "/console/certificates/codes/{code}"): "certificates.read",
    ("POST", "/console/certificates/codes/{code}/block"): "certificates.write",
}
"""(method, canonical route path) -> the permission a caller needs."""

CODES_SHOWN = 500
"""Most codes one batch page lists."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/certificates", batches)
    app.router.add_get("/console/certificates/batches/{batch_id}", batch)
    app.router.add_get("/console/certificates/codes/{code}", certificate)
    app.router.add_post("/console/certificates/codes/{code}/block", block)


async def batches(request: web.Request) -> web.StreamResponse:
    """Every batch; with `?code=`, to that code's page (or the error by the search field)."""
    storage = request.app[STORAGE_KEY]
    typed = request.query.get("code", "")
    errors: dict[str, str] = {}
    if typed.strip():
        try:
            code = code_of(typed.strip(), "code")
        except RequestError as exc:
            errors = {"code": next(iter(field_errors(exc).values()))}
        else:
            return web.Response(
                status=303, headers={"Location": f"/console/certificates/codes/{code}"}
            )
    found = await in_db(request, storage.certificates.batches)
    return render(
        request,
        "certificates/batches.html",
        {"batches": found, "code": typed[:100], "errors": errors},
        status=422 if errors else 200,
    )


async def batch(request: web.Request) -> web.StreamResponse:
    """One batch: how many codes are in each state, and its codes."""
    batch_id = request.match_info["batch_id"]
    if not ID_PATTERN.match(batch_id):
        raise MalformedRequest("batch_id", f"expected a batch id, got {batch_id[:80]!r}")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    found = await in_db(
        request, lambda: storage.certificates.batch(batch_id, now, limit=CODES_SHOWN)
    )
    if found is None:
        raise UnknownObject("batch_id", f"no certificate batch {batch_id}")
    return render(request, "certificates/batch.html", {"batch": found})


async def _code_page(
    request: web.Request,
    code: str,
    *,
    errors: Mapping[str, str] | None = None,
    reason: str = "",
    status: int = 200,
) -> web.Response:
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.certificates.certificate, code, request.app[CLOCK_KEY]())
    if found is None:
        raise UnknownObject("code", f"no certificate {code}")
    return render(
        request,
        "certificates/code.html",
        {
            "cert": found,
            "errors": dict(errors or {}),
            "reason": reason,
            "notice": "blocked" if request.query.get("done") == "blocked" else "",
        },
        status=status,
    )


async def certificate(request: web.Request) -> web.StreamResponse:
    """A code's state, balance, holds and movements (each linked to its sale)."""
    return await _code_page(request, code_of(request.match_info["code"], "code"))


async def block(request: web.Request) -> web.StreamResponse:
    """Block a code with a reason: no store may redeem it online any more."""
    code = code_of(request.match_info["code"], "code")
    form = await form_of(request)
    reason = str(form.get("reason", ""))[:500]
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    try:
        checked = parse_block({"reason": reason})
        await in_db(request, storage.certificates.block, code, checked, actor, now)
    except RequestError as exc:
        if isinstance(exc, UnknownObject):
            raise
        message = next(iter(field_errors(exc).values()))
        return await _code_page(
            request, code, errors={"reason": message}, reason=reason, status=exc.status
        )
    return web.Response(
        status=303, headers={"Location": f"/console/certificates/codes/{code}?done=blocked"}
    )
