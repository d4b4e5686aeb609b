"""The member API's routes (`/v1/member/...`): one table, which registers the routes, their
permissions and the OpenAPI document served at /v1/member/openapi.json."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from center.access.api import Caller
from center.access.permissions import MEMBER, PUBLIC, Requirement
from center.communications.model import CHANNELS, PURPOSES
from center.communications.rules import normal_address
from center.errors import MalformedRequest, RequestError, Unauthorized
from center.members.model import TokenClaims, parse_address
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, json_body, query_int

__all__ = [
    "MEMBER_KEY",
    "PERMISSIONS",
    "ROUTES",
    "MemberRoute",
    "add_routes",
    "openapi",
    "verify_member",
]

MAX_JSON_BYTES = 16 * 1024
MEMBER_KEY: web.RequestKey[TokenClaims] = web.RequestKey("center_member")
"""The claims of the member token this request was authenticated with."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class MemberRoute:
    """One member route: what the table registers and the OpenAPI document describes."""

    method: str
    path: str
    handler: Handler
    summary: str
    public: bool = False
    body: Mapping[str, Any] | None = None
    """JSON schema of the request body (None: no body)."""
    query: tuple[tuple[str, str, str], ...] = ()
    """(name, JSON type, description) of each query parameter."""
    tags: tuple[str, ...] = field(default=("member",))


# -- request helpers -----------------------------------------------------------------------------


def _now(request: web.Request) -> datetime:
    return request.app[CLOCK_KEY]()


def _ip(request: web.Request) -> str:
    return (request.remote or "unknown")[:64]


def _member(request: web.Request) -> str:
    return request[MEMBER_KEY].customer_id


async def _object(
    request: web.Request, known: tuple[str, ...], *, optional: bool = False
) -> dict[str, Any]:
    body = await json_body(request, max_bytes=MAX_JSON_BYTES, optional=optional)
    if not isinstance(body, dict):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise MalformedRequest(f"body.{unknown[0]}", f"unknown field (known: {', '.join(known)})")
    return body


def _text(body: Mapping[str, Any], name: str, *, max_len: int = 200) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise MalformedRequest(f"body.{name}", f"expected text of 1..{max_len} characters")
    return value.strip()


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise MalformedRequest(name, f"expected 1..64 letters or digits, got {value[:80]!r}")
    return value


def _flags(value: Any, field_name: str) -> dict[str, bool]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRequest(field_name, "expected an object {purpose: true|false}")
    out: dict[str, bool] = {}
    for key, flag in value.items():
        if key not in PURPOSES:
            raise MalformedRequest(
                f"{field_name}.{key}", f"unknown purpose (known: {', '.join(PURPOSES)})"
            )
        if not isinstance(flag, bool):
            raise MalformedRequest(f"{field_name}.{key}", "expected true or false")
        out[key] = flag
    return out


def _profile(value: Any, field_name: str) -> dict[str, str]:
    from center.members.members_store import PROFILE_FIELDS

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRequest(field_name, "expected an object of profile fields")
    out: dict[str, str] = {}
    for key, text in value.items():
        if key not in PROFILE_FIELDS:
            raise MalformedRequest(
                f"{field_name}.{key}", f"unknown field (known: {', '.join(PROFILE_FIELDS)})"
            )
        if not isinstance(text, str) or len(text) > 100 or not text.isprintable():
            raise MalformedRequest(f"{field_name}.{key}", "expected printable text of at most 100")
        out[key] = text.strip()
    return out


# -- authentication ------------------------------------------------------------------------------


async def verify_member(request: web.Request) -> Caller:
    """The member whose access token this request carries (401 naming the problem, counted
    against the caller's IP; 429 after too many)."""
    header = request.headers.get("Authorization")
    storage = request.app[STORAGE_KEY]
    now = _now(request)
    ip = _ip(request)
    if header is None:
        await in_db(request, storage.members.check_caller, ip, now)
        raise Unauthorized(
            "authorization", "missing credentials: send 'Authorization: Bearer <member token>'"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        await in_db(request, storage.members.record_failure, ip, now)
        raise Unauthorized("authorization", f"expected 'Bearer <token>', got {scheme[:20]!r}")
    claims = await in_db(request, storage.members.authenticate, token.strip(), ip, now)
    request[MEMBER_KEY] = claims
    return Caller(
        name=f"member:{claims.customer_id}",
        kind="member",
        role="member",
        permissions=frozenset({MEMBER}),
    )


# -- sign-in -------------------------------------------------------------------------------------


async def request_code(request: web.Request) -> web.Response:
    body = await _object(request, ("phone", "email", "language"))
    address = parse_address(body)
    language = body.get("language", "ru")
    if language not in ("ru", "en"):
        raise MalformedRequest("body.language", "expected ru or en")
    storage = request.app[STORAGE_KEY]
    answer = await in_db(
        request,
        lambda: storage.members.request_code(
            address, _ip(request), _now(request), language=language
        ),
    )
    return web.json_response(answer, status=202)


async def check_code(request: web.Request) -> web.Response:
    body = await _object(request, ("challenge_id", "code", "consents", "profile"))
    challenge_id = _text(body, "challenge_id", max_len=64)
    code = body.get("code")
    if not isinstance(code, str) or not code.isascii() or not code.isdigit() or len(code) != 6:
        raise MalformedRequest("body.code", "expected the 6 digits of the code")
    consents = _flags(body.get("consents"), "body.consents")
    profile = _profile(body.get("profile"), "body.profile")
    storage = request.app[STORAGE_KEY]
    answer = await in_db(
        request,
        lambda: storage.members.check_code(
            challenge_id, code, _ip(request), _now(request), consents=consents, profile=profile
        ),
    )
    return web.json_response(answer, status=201 if answer["created"] else 200)


async def refresh(request: web.Request) -> web.Response:
    body = await _object(request, ("refresh_token",))
    token = _text(body, "refresh_token", max_len=200)
    storage = request.app[STORAGE_KEY]
    answer = await in_db(request, storage.members.refresh, token, _ip(request), _now(request))
    return web.json_response(answer)


async def sign_out(request: web.Request) -> web.Response:
    body = await _object(request, ("everywhere",), optional=True)
    everywhere = body.get("everywhere", False)
    if not isinstance(everywhere, bool):
        raise MalformedRequest("body.everywhere", "expected true or false")
    storage = request.app[STORAGE_KEY]
    answer = await in_db(
        request,
        lambda: storage.members.sign_out(request[MEMBER_KEY], _now(request), everywhere=everywhere),
    )
    return web.json_response(answer)


# -- the member's data ---------------------------------------------------------------------------


def _reader(name: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        repo = request.app[STORAGE_KEY].members
        answer = await in_db(request, getattr(repo, name), _member(request), _now(request))
        return web.json_response(answer)

    handler.__name__ = name
    return handler


async def update_profile(request: web.Request) -> web.Response:
    body = await _object(request, ("profile",))
    changes = _profile(body.get("profile"), "body.profile")
    if not changes:
        raise MalformedRequest("body.profile", "give at least one field to change")
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(request, repo.update_profile, _member(request), changes, _now(request))
    return web.json_response(answer)


async def set_consents(request: web.Request) -> web.Response:
    body = await _object(request, ("consents",))
    items = body.get("consents")
    if not isinstance(items, list) or not 1 <= len(items) <= 20:
        raise MalformedRequest("body.consents", "expected a list of 1..20 consents")
    changes: list[tuple[str, str, bool]] = []
    for i, item in enumerate(items):
        where = f"body.consents[{i}]"
        if not isinstance(item, dict) or set(item) != {"channel", "purpose", "granted"}:
            raise MalformedRequest(where, "expected {channel, purpose, granted}")
        if item["channel"] not in CHANNELS:
            raise MalformedRequest(f"{where}.channel", f"expected one of {', '.join(CHANNELS)}")
        if item["purpose"] not in PURPOSES:
            raise MalformedRequest(f"{where}.purpose", f"expected one of {', '.join(PURPOSES)}")
        if not isinstance(item["granted"], bool):
            raise MalformedRequest(f"{where}.granted", "expected true or false")
        changes.append((item["channel"], item["purpose"], item["granted"]))
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(request, repo.set_consents, _member(request), changes, _now(request))
    return web.json_response(answer)


async def card_qr(request: web.Request) -> web.Response:
    card_no = _path_id(request, "card_no")
    storage = request.app[STORAGE_KEY]
    now = _now(request)

    answer = await in_db(request, storage.members.card_qr, _member(request), card_no, now)
    return web.json_response(answer)


async def card_pass(request: web.Request) -> web.Response:
    card_no = _path_id(request, "card_no")
    storage = request.app[STORAGE_KEY]
    await in_db(request, storage.members.own_card, _member(request), card_no)
    # py-pkpass signs with the chain's Apple Pass Type certificate and the WWDR intermediate;
    # without them configured a pass would not open in Wallet, so none is made.
    return web.json_response(
        {
            "error": "not_configured",
            "detail": "card_no: Apple Wallet passes need the chain's Pass Type ID certificate; "
            "none is configured: show the QR code from /qr instead",
        },
        status=501,
    )


async def history(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", default=50)
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(
        request, lambda: repo.history(_member(request), _now(request), limit=limit)
    )
    return web.json_response(answer)


async def receipts(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", default=20)
    cursor = request.query.get("cursor") or None
    if cursor is not None and len(cursor) > 200:
        raise MalformedRequest("cursor", "at most 200 characters")
    storage = request.app[STORAGE_KEY]
    customer_id = _member(request)
    now = _now(request)

    def run() -> dict[str, Any]:
        found = storage.customers.customer_receipts(customer_id, limit=limit, cursor=cursor)
        storage.members.audit_read(customer_id, "read_receipts", None, now)
        return found or {"receipts": [], "next_cursor": None}

    return web.json_response(await in_db(request, run))


async def receipt(request: web.Request) -> web.Response:
    sale_id = _path_id(request, "sale_id")
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(request, repo.receipt, _member(request), sale_id, _now(request))
    return web.json_response(answer)


async def activate_offer(request: web.Request) -> web.Response:
    offer_id = _path_id(request, "offer_id")
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(request, repo.activate_offer, _member(request), offer_id, _now(request))
    return web.json_response(answer)


async def set_categories(request: web.Request) -> web.Response:
    body = await _object(request, ("categories",))
    chosen = body.get("categories")
    if not isinstance(chosen, list) or len(chosen) > 20:
        raise MalformedRequest("body.categories", "expected a list of at most 20 categories")
    for i, name in enumerate(chosen):
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise MalformedRequest(f"body.categories[{i}]", "expected a category name")
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(request, repo.set_categories, _member(request), chosen, _now(request))
    return web.json_response(answer)


async def tier(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    customer_id = _member(request)
    now = _now(request)

    def run() -> dict[str, Any]:
        found = storage.tiers.customer_tier(customer_id, now)
        storage.members.audit_read(customer_id, "read_tier", None, now)
        return {"tier": found, "programme": found is not None}

    return web.json_response(await in_db(request, run))


def _coordinate(request: web.Request, name: str, bound: float) -> float | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise MalformedRequest(name, f"expected a number, got {value[:40]!r}") from None
    if not math.isfinite(number) or abs(number) > bound:
        raise MalformedRequest(name, f"expected -{bound}..{bound}, got {value[:40]!r}")
    return number


async def stores(request: web.Request) -> web.Response:
    lat = _coordinate(request, "lat", 90.0)
    lon = _coordinate(request, "lon", 180.0)
    if (lat is None) != (lon is None):
        raise MalformedRequest("lat" if lat is None else "lon", "give both lat and lon, or neither")
    near = None if lat is None or lon is None else (lat, lon)
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(request, repo.stores, _member(request), _now(request), near)
    return web.json_response(answer)


async def set_push(request: web.Request) -> web.Response:
    body = await _object(request, ("webpush", "fcm_token"))
    if len(body) != 1:
        raise MalformedRequest("body.webpush", "give exactly one of webpush or fcm_token")
    ((name, value),) = body.items()
    channel = "webpush" if name == "webpush" else "fcm"
    found = normal_address(channel, value)
    if found is None:
        hint = "{endpoint, keys: {p256dh, auth}}" if name == "webpush" else "a registration token"
        raise MalformedRequest(f"body.{name}", f"expected {hint}")
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(request, repo.set_push, _member(request), {name: found}, _now(request))
    return web.json_response(answer)


async def remove_push(request: web.Request) -> web.Response:
    repo = request.app[STORAGE_KEY].members
    contacts: dict[str, str | None] = {"webpush": None, "fcm_token": None}
    answer = await in_db(request, repo.set_push, _member(request), contacts, _now(request))
    return web.json_response(answer)


async def read_notification(request: web.Request) -> web.Response:
    notification_id = _path_id(request, "notification_id")
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(
        request, repo.read_notification, _member(request), notification_id, _now(request)
    )
    return web.json_response(answer)


async def export_data(request: web.Request) -> web.Response:
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(request, repo.export_data, _member(request), _now(request))
    return web.json_response(answer)


async def delete_data(request: web.Request) -> web.Response:
    body = await _object(request, ("confirm",))
    if body.get("confirm") is not True:
        raise MalformedRequest("body.confirm", "send true to confirm: this cannot be undone")
    repo = request.app[STORAGE_KEY].members
    answer = await in_db(request, repo.delete_data, _member(request), _now(request))
    return web.json_response(answer)


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(openapi())


# -- the table -----------------------------------------------------------------------------------

_ADDRESS = {
    "type": "object",
    "properties": {
        "phone": {"type": "string"},
        "email": {"type": "string"},
        "language": {"enum": ["ru", "en"]},
    },
    "additionalProperties": False,
}
_CONSENT_FLAGS = {
    "type": "object",
    "properties": {p: {"type": "boolean"} for p in PURPOSES},
    "additionalProperties": False,
}

ROUTES: tuple[MemberRoute, ...] = (
    MemberRoute("GET", "/v1/member/openapi.json", openapi_document, "This document", public=True),
    MemberRoute(
        "POST",
        "/v1/member/auth/code",
        request_code,
        "Send a one-time sign-in code by SMS or e-mail (the same answer for any address)",
        public=True,
        body=_ADDRESS,
    ),
    MemberRoute(
        "POST",
        "/v1/member/auth/verify",
        check_code,
        "Check the code: tokens; signs up an unknown address (needs consents.personal_data)",
        public=True,
        body={
            "type": "object",
            "required": ["challenge_id", "code"],
            "properties": {
                "challenge_id": {"type": "string"},
                "code": {"type": "string", "pattern": "^[0-9]{6}$"},
                "consents": _CONSENT_FLAGS,
                "profile": {"type": "object"},
            },
        },
    ),
    MemberRoute(
        "POST",
        "/v1/member/auth/refresh",
        refresh,
        "A new token pair for a refresh token (a reused one signs the family out)",
        public=True,
        body={
            "type": "object",
            "required": ["refresh_token"],
            "properties": {"refresh_token": {"type": "string"}},
        },
    ),
    MemberRoute(
        "POST",
        "/v1/member/auth/signout",
        sign_out,
        "Sign out this session, or everywhere",
        body={"type": "object", "properties": {"everywhere": {"type": "boolean"}}},
    ),
    MemberRoute("GET", "/v1/member/profile", _reader("profile"), "The member's profile"),
    MemberRoute(
        "PUT",
        "/v1/member/profile",
        update_profile,
        "Change profile fields",
        body={
            "type": "object",
            "required": ["profile"],
            "properties": {"profile": {"type": "object"}},
        },
    ),
    MemberRoute("GET", "/v1/member/consents", _reader("consents"), "Consents and their history"),
    MemberRoute(
        "PUT",
        "/v1/member/consents",
        set_consents,
        "Grant or withdraw consents",
        body={
            "type": "object",
            "required": ["consents"],
            "properties": {"consents": {"type": "array", "items": {"type": "object"}}},
        },
    ),
    MemberRoute("GET", "/v1/member/cards", _reader("cards"), "The member's cards (barcodes)"),
    MemberRoute(
        "GET",
        "/v1/member/cards/{card_no}/qr",
        card_qr,
        "The electronic card's rotating QR payload (30 s steps; registers check it offline)",
    ),
    MemberRoute(
        "GET",
        "/v1/member/cards/{card_no}/pass",
        card_pass,
        "Apple Wallet pass (501: not configured)",
    ),
    MemberRoute(
        "GET", "/v1/member/balances", _reader("balances"), "Balance per wallet, pending, burning"
    ),
    MemberRoute(
        "GET",
        "/v1/member/history",
        history,
        "Accruals and spends, newest first, linked to receipts",
        query=(("limit", "integer", "1..200, default 50"),),
    ),
    MemberRoute(
        "GET",
        "/v1/member/receipts",
        receipts,
        "Receipts, newest first, with totals",
        query=(("limit", "integer", "1..100"), ("cursor", "string", "next_cursor of a page")),
    ),
    MemberRoute(
        "GET",
        "/v1/member/receipts/{sale_id}",
        receipt,
        "An e-receipt: lines with each discount and the promotion that gave it",
    ),
    MemberRoute("GET", "/v1/member/coupons", _reader("coupons"), "Coupons: active, used, expired"),
    MemberRoute("GET", "/v1/member/offers", _reader("offers"), "Personal offers"),
    MemberRoute(
        "POST", "/v1/member/offers/{offer_id}/activate", activate_offer, "Activate an offer"
    ),
    MemberRoute(
        "GET",
        "/v1/member/categories",
        _reader("categories"),
        "The chain's categories, the chosen favourites, changes left",
    ),
    MemberRoute(
        "PUT",
        "/v1/member/categories",
        set_categories,
        "Choose favourite categories (changes limited per period)",
        body={
            "type": "object",
            "required": ["categories"],
            "properties": {"categories": {"type": "array", "items": {"type": "string"}}},
        },
    ),
    MemberRoute("GET", "/v1/member/tier", tier, "Tier and progress to the next"),
    MemberRoute(
        "GET",
        "/v1/member/stores",
        stores,
        "Stores; nearest first given lat and lon (when stores have coordinates)",
        query=(("lat", "number", "latitude"), ("lon", "number", "longitude")),
    ),
    MemberRoute(
        "GET", "/v1/member/notifications", _reader("notifications"), "The notifications inbox"
    ),
    MemberRoute(
        "PUT",
        "/v1/member/push",
        set_push,
        "Subscribe this device to push notifications (Web Push or FCM)",
        body={
            "type": "object",
            "properties": {"webpush": {"type": "object"}, "fcm_token": {"type": "string"}},
        },
    ),
    MemberRoute("DELETE", "/v1/member/push", remove_push, "Remove the push subscriptions"),
    MemberRoute(
        "POST",
        "/v1/member/notifications/{notification_id}/read",
        read_notification,
        "Mark a notification read",
    ),
    MemberRoute(
        "POST",
        "/v1/member/data/export",
        export_data,
        "152-FZ: everything kept about the member, as JSON",
    ),
    MemberRoute(
        "POST",
        "/v1/member/data/delete",
        delete_data,
        "152-FZ: anonymise the member (ledger amounts kept), sign out everywhere",
        body={
            "type": "object",
            "required": ["confirm"],
            "properties": {"confirm": {"const": True}},
        },
    ),
)
"""Every member route: registered, permitted and documented from this one table."""

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    (r.method, r.path): PUBLIC if r.public else MEMBER for r in ROUTES
}


def add_routes(app: web.Application) -> None:
    """Register every member route (a member's refused requests audited too)."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _audited(route.handler))


def _audited(handler: Handler) -> Handler:
    """`handler`, and an audit row (action `refused`) when it refuses a signed-in member: the
    services audit what they do in their own transaction, which a refusal rolls back."""

    async def audited(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestError as exc:
            claims = request.get(MEMBER_KEY)
            if claims is not None:
                # The route and the refused field, not the values sent: an id the member tried
                # is another customer's, and stays out of this member's records (and export).
                route = request.match_info.route.resource
                detail = {
                    "method": request.method,
                    "path": route.canonical if route is not None else "",
                    "status": exc.status,
                    "error": exc.kind,
                    "field": getattr(exc, "field", ""),
                }
                repo = request.app[STORAGE_KEY].members
                await in_db(
                    request, repo.audit_read, claims.customer_id, "refused", detail, _now(request)
                )
            raise

    audited.__name__ = handler.__name__
    return audited


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ROUTES."""
    paths: dict[str, dict[str, Any]] = {}
    error = {"$ref": "#/components/schemas/Error"}
    for route in ROUTES:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_names(route.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "schema": {"type": kind},
             "description": text}
            for name, kind, text in route.query
        ]  # fmt: skip
        operation: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
            "summary": route.summary,
            "tags": list(route.tags),
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "4XX": {
                    "description": "refused",
                    "content": {"application/json": {"schema": error}},
                },
            },
        }
        if not route.public:
            operation["security"] = [{"memberToken": []}]
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": dict(route.body)}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loyalty member API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "memberToken": {"type": "http", "scheme": "bearer", "bearerFormat": "mbr1"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                }
            },
        },
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
