"""The console session on the wire: its cookie, the CSRF token every unsafe request carries."""

from __future__ import annotations

from aiohttp import web

from center.access.people import SESSION_TTL, csrf_matches, session_hash
from center.access.people_store import SessionRecord
from center.errors import Forbidden
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import in_db

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "check_csrf",
    "clear_session_cookie",
    "session_of",
    "set_session_cookie",
]

SESSION_COOKIE = "loyalty_session"
CSRF_FIELD = "csrf_token"
"""The hidden field of every console form."""
CSRF_HEADER = "X-CSRF-Token"
"""The header htmx sends the token in (hx-headers on <body>)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_COOKIE_LEN = 128


async def session_of(request: web.Request) -> SessionRecord | None:
    """The open session of this request's cookie, or None."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if not cookie or len(cookie) > MAX_COOKIE_LEN:
        return None
    app = request.app
    return await in_db(
        request, app[STORAGE_KEY].people.session, session_hash(cookie), app[CLOCK_KEY]()
    )


async def check_csrf(request: web.Request, expected: str) -> None:
    """Forbidden unless the request carries the session's CSRF token (header or form field)."""
    given: object = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        given = (await request.post()).get(CSRF_FIELD)
    if not csrf_matches(expected, given):
        raise Forbidden(
            CSRF_FIELD, "missing or wrong CSRF token: reload the page and submit the form again"
        )


def set_session_cookie(response: web.StreamResponse, request: web.Request, session: str) -> None:
    """HttpOnly, SameSite=Strict, Secure under TLS; ends with the session."""
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    """Tell the browser to forget the session cookie."""
    response.del_cookie(SESSION_COOKIE, path="/")
