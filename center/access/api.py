"""Who is calling and may they: bearer-token users, signed store nodes, and the users routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from center.access.nodes import NodeIdentity, signature_headers, token_hash
from center.access.people_session import (
    SAFE_METHODS,
    SESSION_COOKIE,
    check_csrf,
    session_of,
)
from center.access.permissions import (
    AUTHENTICATED,
    MEMBER,
    PUBLIC,
    Requirement,
    allows,
    requirement_names,
)
from center.access.users import (
    authenticate,
    check_role,
    check_ttl_days,
    check_username,
    create_user,
    permissions_of,
)
from center.access.users_store import UserRecord
from center.errors import Forbidden, MalformedRequest, Unauthorized
from center.web.keys import CLOCK_KEY, CONFIG_KEY, ROUTE_PERMISSIONS_KEY, STORAGE_KEY
from center.web.request import in_db, json_body

__all__ = [
    "CALLER_KEY",
    "PERMISSIONS",
    "Caller",
    "actor_of",
    "add_routes",
    "authorize",
    "caller_of",
    "session_caller",
]

MAX_JSON_BYTES = 16 * 1024

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/v1/users"): "users.admin",
    ("POST", "/v1/users"): "users.admin",
    ("POST", "/v1/users/{username}/revoke"): "users.admin",
    ("POST", "/v1/users/{username}/role"): "users.admin",
    ("GET", "/v1/me"): AUTHENTICATED,
}
"""(method, canonical route path) -> the permission a caller needs."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request."""

    name: str
    kind: str
    """"user" (bearer token), "person" (console session), "member" (member token), "node",
    "unsigned" (a node route while signatures are optional) or "anonymous"."""
    role: str
    permissions: frozenset[str]
    csrf_token: str = ""
    """The session's CSRF token (a person signed in to the console); empty otherwise."""
    language: str = ""
    """The person's console language setting ('' = the browser's)."""


CALLER_KEY: web.RequestKey[Caller] = web.RequestKey("center_caller")

ANONYMOUS = Caller(name="anonymous", kind="anonymous", role="", permissions=frozenset())
UNSIGNED = Caller(name="unsigned", kind="unsigned", role="", permissions=frozenset({"node"}))


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/v1/users", list_users)
    app.router.add_post("/v1/users", add_user)
    app.router.add_post("/v1/users/{username}/revoke", revoke_user)
    app.router.add_post("/v1/users/{username}/role", set_role)
    app.router.add_get("/v1/me", me)


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller (anonymous on a public route)."""
    return request.get(CALLER_KEY, ANONYMOUS)


def actor_of(request: web.Request) -> str:
    """The authenticated caller's name (username or node id)."""
    return caller_of(request).name


# -- authentication and authorization ------------------------------------------------------------


def _describe(requirement: Requirement) -> str:
    names = requirement_names(requirement)
    return names[0] if len(names) == 1 else "one of " + ", ".join(names)


async def authorize(
    request: web.Request,
    verify_node: Callable[[web.Request], Awaitable[NodeIdentity]],
    verify_member: Callable[[web.Request], Awaitable[Caller]] | None = None,
) -> Caller:
    """Authenticate the caller and check the route's permission; Unauthorized / Forbidden.
    A member route is authenticated by `verify_member` alone (a member token)."""
    route = request.match_info.route
    canonical = route.resource.canonical if route.resource is not None else request.path
    method = "GET" if request.method == "HEAD" else request.method
    requirement = request.app[ROUTE_PERMISSIONS_KEY].get((method, canonical))
    if requirement is None:
        raise Forbidden("path", f"route has no permission: {method} {canonical} is refused")
    if requirement == PUBLIC:
        caller = ANONYMOUS
    elif requirement == MEMBER:
        if verify_member is None:
            raise Forbidden("path", f"member routes are not served here: {method} {canonical}")
        caller = await verify_member(request)
    else:
        caller = await _authenticate(request, requirement, verify_node)
        if requirement != AUTHENTICATED and not allows(caller.permissions, requirement):
            who = (
                f"role {caller.role!r}"
                if caller.kind in ("user", "person")
                else f"{caller.kind} callers"
            )
            raise Forbidden(
                "permission",
                f"{method} {canonical} needs {_describe(requirement)}, which {who} "
                f"({caller.name}) lacks",
            )
        if caller.kind == "person" and method not in SAFE_METHODS:
            await check_csrf(request, caller.csrf_token)
    request[CALLER_KEY] = caller
    return caller


async def _authenticate(
    request: web.Request,
    requirement: Requirement,
    verify_node: Callable[[web.Request], Awaitable[NodeIdentity]],
) -> Caller:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized(
                "authorization", f"expected 'Bearer <token>', got scheme {scheme[:20]!r}"
            )
        app = request.app
        user: UserRecord = await in_db(
            request, authenticate, app[STORAGE_KEY], token.strip(), app[CLOCK_KEY]()
        )
        return Caller(
            name=user.username,
            kind="user",
            role=user.role,
            permissions=permissions_of(user.role),
        )
    if SESSION_COOKIE in request.cookies and signature_headers(request.headers) is None:
        return await session_caller(request)
    if signature_headers(request.headers) is not None:
        identity = await verify_node(request)
        return Caller(
            name=identity.node_id, kind="node", role="node", permissions=frozenset({"node"})
        )
    node_route = "node" in requirement_names(requirement)
    if node_route and not request.app[CONFIG_KEY].security.require_signatures:
        return UNSIGNED
    if node_route:
        people = "" if requirement == "node" else " (people send 'Authorization: Bearer <token>')"
        raise Unauthorized(
            "headers", "this request is not signed; enrol the node and sign every request" + people
        )
    raise Unauthorized(
        "authorization",
        "missing credentials: send 'Authorization: Bearer <token>' "
        "(`loyalty-center add-user` makes one)",
    )


async def session_caller(request: web.Request) -> Caller:
    """The person whose console session cookie this request carries; Unauthorized."""
    found = await session_of(request)
    if found is None:
        raise Unauthorized("session", "not signed in, or the session ended: sign in again")
    return Caller(
        name=found.username,
        kind="person",
        role=found.role,
        permissions=permissions_of(found.role),
        csrf_token=found.csrf_token,
        language=found.language,
    )


# -- routes --------------------------------------------------------------------------------------


async def _json_object(request: web.Request) -> dict[str, Any]:
    body = await json_body(request, max_bytes=MAX_JSON_BYTES)
    if not isinstance(body, dict):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    return body


def _path_username(request: web.Request) -> str:
    return check_username(request.match_info["username"])


def _default_ttl_days(request: web.Request) -> int | None:
    return request.app[CONFIG_KEY].auth.token_ttl_days or None


async def list_users(request: web.Request) -> web.Response:
    users = await in_db(request, request.app[STORAGE_KEY].users.list_users)
    return web.json_response({"users": [u.to_json() for u in users]})


async def add_user(request: web.Request) -> web.Response:
    body = await _json_object(request)
    unknown = sorted(set(body) - {"username", "role", "ttl_days"})
    if unknown:
        raise MalformedRequest(
            f"body.{unknown[0]}", "unknown field (known: username, role, ttl_days)"
        )
    username = check_username(body.get("username"), field="body.username")
    role = check_role(body.get("role"), field="body.role")
    ttl_days = check_ttl_days(body.get("ttl_days"), field="body.ttl_days")
    if ttl_days is None:
        ttl_days = _default_ttl_days(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()

    def create() -> tuple[str, UserRecord | None]:
        token = create_user(storage, username, role, actor_of(request), now, ttl_days=ttl_days)
        return token, storage.users.user_by_token_hash(token_hash(token))

    token, user = await in_db(request, create)
    assert user is not None
    return web.json_response({**user.to_json(), "token": token}, status=201)


async def revoke_user(request: web.Request) -> web.Response:
    username = _path_username(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    user = await in_db(request, storage.users.revoke_user, username, actor_of(request), now)
    return web.json_response(user.to_json())


async def set_role(request: web.Request) -> web.Response:
    username = _path_username(request)
    body = await _json_object(request)
    role = check_role(body.get("role"), field="body.role")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    user = await in_db(request, storage.users.set_role, username, role, actor_of(request), now)
    return web.json_response(user.to_json())


async def me(request: web.Request) -> web.Response:
    caller = caller_of(request)
    return web.json_response(
        {
            "username": caller.name,
            "kind": caller.kind,
            "role": caller.role,
            "permissions": sorted(caller.permissions),
        }
    )
