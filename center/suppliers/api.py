"""HTTP routes of the supplier cabinet (docs/API.md): the chain's side (organisations, their
people, top-ups) and the supplier's own (audience sizes, campaigns, estimate, launch, report,
its account). A supplier's person acts only for the supplier it is bound to: another
supplier's campaign is unknown to it (404), the chain's routes are refused (403)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.api import actor_of, caller_of
from center.access.people import add_person, check_password_text
from center.access.permissions import Requirement
from center.access.users import check_username
from center.errors import Forbidden, InvalidRequest, MalformedRequest, UnknownObject
from center.suppliers import cabinet
from center.suppliers.model import (
    masked,
    parse_audience,
    parse_campaign,
    parse_supplier,
    parse_top_up,
)
from center.web.keys import CLOCK_KEY, EXECUTOR_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, json_body

__all__ = ["MAX_JSON_BYTES", "PERMISSIONS", "add_routes", "supplier_of_caller"]

MAX_JSON_BYTES = 64 * 1024

_ORG = "/v1/suppliers/{supplier_id}"
_MINE = "/v1/supplier"
_ONE = _MINE + "/campaigns/{campaign_id}"
PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/v1/suppliers"): "suppliers.admin",
    ("POST", "/v1/suppliers"): "suppliers.admin",
    ("POST", _ORG + "/people"): "suppliers.admin",
    ("POST", _ORG + "/top-ups"): "suppliers.admin",
    ("GET", _ORG + "/account"): "suppliers.admin",
    ("POST", _MINE + "/audience/size"): "suppliers.cabinet",
    ("GET", _MINE + "/account"): "suppliers.cabinet",
    ("GET", _MINE + "/campaigns"): "suppliers.cabinet",
    ("POST", _MINE + "/campaigns"): "suppliers.cabinet",
    ("GET", _ONE): "suppliers.cabinet",
    ("POST", _ONE + "/estimate"): "suppliers.cabinet",
    ("POST", _ONE + "/launch"): "suppliers.cabinet",
    ("GET", _ONE + "/report"): "suppliers.cabinet",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/suppliers", list_suppliers)
    app.router.add_post("/v1/suppliers", create_supplier)
    app.router.add_post(_ORG + "/people", add_supplier_person)
    app.router.add_post(_ORG + "/top-ups", top_up)
    app.router.add_get(_ORG + "/account", supplier_account)
    app.router.add_post(_MINE + "/audience/size", audience_size)
    app.router.add_get(_MINE + "/account", own_account)
    app.router.add_get(_MINE + "/campaigns", list_campaigns)
    app.router.add_post(_MINE + "/campaigns", create_campaign)
    app.router.add_get(_ONE, get_campaign)
    app.router.add_post(_ONE + "/estimate", estimate_campaign)
    app.router.add_post(_ONE + "/launch", launch_campaign)
    app.router.add_get(_ONE + "/report", campaign_report)


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise MalformedRequest(name, f"expected 1..64 letters, digits or ._:- , got {value[:80]!r}")
    return value


async def supplier_of_caller(request: web.Request) -> str:
    """The supplier the caller acts for; Forbidden for a caller bound to none."""
    name = caller_of(request).name
    found = await in_db(request, request.app[STORAGE_KEY].suppliers.supplier_of, name)
    if found is None:
        raise Forbidden(
            "supplier", f"{name!r} is not a supplier's person: the cabinet is a supplier's own"
        )
    return found


async def _known_supplier(request: web.Request) -> str:
    supplier_id = _path_id(request, "supplier_id")
    found = await in_db(request, request.app[STORAGE_KEY].suppliers.supplier, supplier_id)
    if found is None:
        raise UnknownObject("supplier_id", f"unknown supplier {supplier_id!r}")
    return supplier_id


# -- the chain's side ----------------------------------------------------------------------------


async def list_suppliers(request: web.Request) -> web.Response:
    found = await in_db(request, request.app[STORAGE_KEY].suppliers.list_suppliers)
    return web.json_response({"suppliers": found})


async def create_supplier(request: web.Request) -> web.Response:
    supplier_id, name = parse_supplier(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    done = await in_db(
        request,
        storage.suppliers.create_supplier,
        supplier_id,
        name,
        actor_of(request),
        request.app[CLOCK_KEY](),
    )
    return web.json_response(done, status=201)


async def add_supplier_person(request: web.Request) -> web.Response:
    supplier_id = await _known_supplier(request)
    body = await json_body(request, max_bytes=MAX_JSON_BYTES)
    if not isinstance(body, dict):
        raise MalformedRequest("body", "expected a JSON object")
    extra = sorted(set(body) - {"username", "password", "totp"})
    if extra:
        raise InvalidRequest(f"body.{extra[0]}", "unknown field; expected username, password, totp")
    username = check_username(body.get("username"), field="body.username")
    password = check_password_text(body.get("password"), field="body.password")
    totp = body.get("totp", False)
    if not isinstance(totp, bool):
        raise InvalidRequest("body.totp", f"expected true or false, got {totp!r:.40}")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = actor_of(request)

    def add() -> str | None:
        if storage.suppliers.supplier_of(username) is not None:
            raise InvalidRequest("body.username", f"{username!r} is a supplier's person already")
        secret = add_person(storage, username, "supplier", password, actor, now, totp=totp)
        storage.suppliers.bind_person(username, supplier_id, actor, now)
        return secret

    secret = await in_db(request, add)
    body_out: dict[str, Any] = {
        "username": username,
        "supplier_id": supplier_id,
        "role": "supplier",
    }
    if secret is not None:
        body_out["totp_secret"] = secret
    return web.json_response(body_out, status=201)


async def top_up(request: web.Request) -> web.Response:
    supplier_id = _path_id(request, "supplier_id")
    amount, note = parse_top_up(await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    balances = await in_db(
        request,
        storage.suppliers.top_up,
        supplier_id,
        amount,
        note,
        actor_of(request),
        request.app[CLOCK_KEY](),
    )
    return web.json_response({"supplier_id": supplier_id, **balances}, status=201)


async def supplier_account(request: web.Request) -> web.Response:
    supplier_id = await _known_supplier(request)
    found = await in_db(request, request.app[STORAGE_KEY].suppliers.account, supplier_id)
    return web.json_response(found)


# -- the supplier's own --------------------------------------------------------------------------


async def audience_size(request: web.Request) -> web.Response:
    supplier_id = await supplier_of_caller(request)
    body = await json_body(request, max_bytes=MAX_JSON_BYTES)
    if not isinstance(body, dict):
        raise MalformedRequest("body", "expected a JSON object")
    audience = parse_audience(body.get("audience"), "body.audience")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()

    def count() -> int:
        size = storage.suppliers.audience_size(audience, now)
        storage.suppliers.record_action(
            supplier_id, "audience_size", audience.to_doc(), actor_of(request), now
        )
        return size

    size = await in_db(request, count)
    return web.json_response({"size": masked(size), "audience": audience.to_doc()})


async def own_account(request: web.Request) -> web.Response:
    supplier_id = await supplier_of_caller(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()

    def read() -> Any:
        cabinet.follow_live_campaigns_of(storage, supplier_id, now)
        return storage.suppliers.account(supplier_id)

    return web.json_response(await in_db(request, read))


async def list_campaigns(request: web.Request) -> web.Response:
    supplier_id = await supplier_of_caller(request)
    found = await in_db(request, request.app[STORAGE_KEY].suppliers.campaigns, supplier_id)
    return web.json_response({"campaigns": found})


async def create_campaign(request: web.Request) -> web.Response:
    supplier_id = await supplier_of_caller(request)
    now = request.app[CLOCK_KEY]()
    campaign = parse_campaign(await json_body(request, max_bytes=MAX_JSON_BYTES), now.date())
    storage = request.app[STORAGE_KEY]
    done = await in_db(
        request, storage.suppliers.create_campaign, supplier_id, campaign, actor_of(request), now
    )
    return web.json_response(done, status=201)


async def get_campaign(request: web.Request) -> web.Response:
    supplier_id = await supplier_of_caller(request)
    campaign_id = _path_id(request, "campaign_id")
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, cabinet.own_campaign, storage, supplier_id, campaign_id)
    return web.json_response(found)


async def estimate_campaign(request: web.Request) -> web.Response:
    supplier_id = await supplier_of_caller(request)
    campaign_id = _path_id(request, "campaign_id")
    app = request.app
    done = await cabinet.estimate(
        app[STORAGE_KEY],
        app[EXECUTOR_KEY],
        supplier_id,
        campaign_id,
        actor_of(request),
        app[CLOCK_KEY](),
    )
    return web.json_response(done)


async def launch_campaign(request: web.Request) -> web.Response:
    supplier_id = await supplier_of_caller(request)
    campaign_id = _path_id(request, "campaign_id")
    storage = request.app[STORAGE_KEY]
    done = await in_db(
        request,
        cabinet.launch,
        storage,
        supplier_id,
        campaign_id,
        actor_of(request),
        request.app[CLOCK_KEY](),
    )
    return web.json_response(done)


async def campaign_report(request: web.Request) -> web.Response:
    supplier_id = await supplier_of_caller(request)
    campaign_id = _path_id(request, "campaign_id")
    storage = request.app[STORAGE_KEY]
    done = await in_db(
        request,
        cabinet.report,
        storage,
        supplier_id,
        campaign_id,
        actor_of(request),
        request.app[CLOCK_KEY](),
    )
    return web.json_response(done)
