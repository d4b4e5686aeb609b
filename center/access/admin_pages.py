"""Console pages of the administrator: people and their roles, and the audit log with search.

The same checks and repositories as the JSON routes of `center/access/api.py` and the
`add-person` command; every change is audited as "<administrator> via <page>".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from center.access.audit import AUDIT_KINDS, AuditQuery
from center.access.people import add_person, require_totp, reset_password, totp_uri
from center.access.permissions import ROLES, Requirement
from center.access.users import check_role, check_username
from center.errors import InvalidRequest, RequestError
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import field_errors, form_of, page_actor, render, translate_for
from center.web.request import in_db

__all__ = ["PAGE_SIZE", "PERMISSIONS", "add_routes"]

PAGE_SIZE = 50
"""Audit rows per page."""

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/users"): "users.admin",
    ("POST", "/console/users"): "users.admin",
    ("POST", "/console/users/{username}/role"): "users.admin",
    ("POST", "/console/users/{username}/password"): "users.admin",
    ("POST", "/console/users/{username}/unlock"): "users.admin",
    ("POST", "/console/users/{username}/totp"): "users.admin",
    ("POST", "/console/users/{username}/revoke"): "users.admin",
    ("GET", "/console/audit"): "audit.read",
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/users", users_page)
    app.router.add_post("/console/users", post_person)
    app.router.add_post("/console/users/{username}/role", post_role)
    app.router.add_post("/console/users/{username}/password", post_password)
    app.router.add_post("/console/users/{username}/unlock", post_unlock)
    app.router.add_post("/console/users/{username}/totp", post_totp)
    app.router.add_post("/console/users/{username}/revoke", post_revoke)
    app.router.add_get("/console/audit", audit_page)


# -- people --------------------------------------------------------------------------------------


async def _users(
    request: web.Request,
    *,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    notice: str = "",
    totp: str = "",
    status: int = 200,
) -> web.Response:
    storage = request.app[STORAGE_KEY]
    people = await in_db(request, storage.people.people)
    return render(
        request,
        "access/users.html",
        {
            "people": people,
            "roles": ROLES,
            "now": request.app[CLOCK_KEY](),
            "errors": dict(errors or {}),
            "values": dict(values or {}),
            "notice": notice,
            "totp_uri": totp,
        },
        status=status,
    )


async def users_page(request: web.Request) -> web.StreamResponse:
    """Every person, their role and sign-in state, and the form to add one."""
    return await _users(request)


async def post_person(request: web.Request) -> web.StreamResponse:
    """Add a person who signs in with a password (and a one-time code when asked)."""
    form = await form_of(request)
    username = str(form.get("username", ""))[:80]
    role = str(form.get("role", ""))[:40]
    password = str(form.get("password", ""))[:300]
    totp = form.get("totp") == "on"
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    try:
        secret = await in_db(
            request,
            lambda: add_person(
                storage, username, role, password, page_actor(request), now, totp=totp
            ),
        )
    except RequestError as exc:
        return await _users(
            request,
            errors=field_errors(exc),
            values={"username": username, "role": role, "totp": "on" if totp else ""},
            status=exc.status,
        )
    _ = translate_for(request)
    return await _users(
        request,
        notice=_("%(name)s can sign in now.", name=username),
        totp="" if secret is None else totp_uri(secret, username),
        status=201,
    )


def _username(request: web.Request) -> str:
    return check_username(request.match_info["username"])


async def _person_change(request: web.Request, change: Any, notice: str) -> web.StreamResponse:
    """Run one change of a person; the page again with the notice, or the error by its field."""
    try:
        answer = await in_db(request, change)
    except RequestError as exc:
        errors = field_errors(exc)
        return await _users(
            request,
            errors={f"{request.match_info['username']}:{k}": v for k, v in errors.items()},
            status=exc.status,
        )
    return await _users(request, notice=notice, totp=answer if isinstance(answer, str) else "")


async def post_role(request: web.Request) -> web.StreamResponse:
    """Give a person another role."""
    username = _username(request)
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    role = str(form.get("role", ""))[:40]

    def change() -> None:
        storage.users.set_role(username, check_role(role), actor, now)

    _ = translate_for(request)
    return await _person_change(
        request, change, _("%(name)s is now %(role)s.", name=username, role=role)
    )


async def post_password(request: web.Request) -> web.StreamResponse:
    """Set a new password for a person (the lockout ends)."""
    username = _username(request)
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    password = str(form.get("password", ""))[:300]
    _ = translate_for(request)
    return await _person_change(
        request,
        lambda: reset_password(storage, username, password, actor, now),
        _("The password of %(name)s was reset.", name=username),
    )


async def post_unlock(request: web.Request) -> web.StreamResponse:
    """End a person's lockout."""
    username = _username(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    _ = translate_for(request)
    return await _person_change(
        request,
        lambda: storage.people.unlock(username, actor, now),
        _("%(name)s is unlocked.", name=username),
    )


async def post_totp(request: web.Request) -> web.StreamResponse:
    """Require (or stop requiring) a one-time code; a new secret is shown once."""
    username = _username(request)
    form = await form_of(request)
    required = form.get("required") == "1"
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)

    def change() -> str | None:
        secret = require_totp(storage, username, required, actor, now)
        return None if secret is None else totp_uri(secret, username)

    _ = translate_for(request)
    notice = (
        _("%(name)s now needs a one-time code: add the key below to their app.", name=username)
        if required
        else _("%(name)s no longer needs a one-time code.", name=username)
    )
    return await _person_change(request, change, notice)


async def post_revoke(request: web.Request) -> web.StreamResponse:
    """Revoke a person: no more sign-in, token or session."""
    username = _username(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    _ = translate_for(request)

    def change() -> None:
        storage.users.revoke_user(username, actor, now)

    return await _person_change(request, change, _("%(name)s is revoked.", name=username))


# -- audit ---------------------------------------------------------------------------------------


def _day(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidRequest(field, f"expected a date YYYY-MM-DD, got {value[:20]!r}") from None
    if not date(1970, 1, 1) <= day <= date(9000, 1, 1):
        raise InvalidRequest(field, f"expected a date from 1970 to 9000, got {value[:20]!r}")
    return day


def _audit_query(query: Mapping[str, str]) -> tuple[AuditQuery, int | None]:
    person = query.get("person", "").strip()[:64]
    if person:
        check_username(person, field="person")
    kind = query.get("kind", "")
    if kind and kind not in AUDIT_KINDS:
        raise InvalidRequest("kind", f"expected one of {', '.join(AUDIT_KINDS)}")
    since = _day(query.get("since", ""), "since")
    until = _day(query.get("until", ""), "until")
    before = query.get("before", "")
    if before and not (before.isdigit() and len(before) <= 18):
        raise InvalidRequest("before", f"expected a row number, got {before[:20]!r}")
    return (
        AuditQuery(
            person=person,
            action=query.get("action", "").strip()[:40],
            kind=kind,
            object_id=query.get("object_id", "").strip()[:128],
            since=None if since is None else datetime.combine(since, time(), UTC),
            # The whole "until" day is included.
            until=None
            if until is None
            else datetime.combine(until, time(), UTC) + timedelta(days=1),
        ),
        int(before) if before else None,
    )


async def audit_page(request: web.Request) -> web.StreamResponse:
    """The audit log, newest first, searched by person, action, object and period; pages by
    keyset ("older" carries the last row's id), never a count over the table."""
    values = {
        k: request.query.get(k, "")[:128]
        for k in ("person", "action", "kind", "object_id", "since", "until")
    }
    rows: list[dict[str, Any]] = []
    older: int | None = None
    errors: dict[str, str] = {}
    try:
        query, before = _audit_query(request.query)
    except RequestError as exc:
        errors = field_errors(exc)
        status = exc.status
    else:
        status = 200
        audit = request.app[STORAGE_KEY].audit
        rows, older = await in_db(
            request, lambda: audit.search(query, before_id=before, limit=PAGE_SIZE)
        )
    next_query = {k: v for k, v in values.items() if v}
    return render(
        request,
        "access/audit.html",
        {
            "rows": rows,
            "older": older,
            "kinds": AUDIT_KINDS,
            "values": values,
            "errors": errors,
            "next_query": next_query,
            "first_page": "before" not in request.query,
        },
        status=status,
    )
