"""The portal's session on the wire: cookies holding the member's access and refresh tokens (made
and checked by the member services, center/members/), the CSRF token every form carries, the
language.

The access token is short-lived; a page asked with an expired one is served after a refresh
(the refresh token rotates, the new pair replaces the cookies on that page's answer). A
refused refresh (signed out, reused, expired) ends the session: back to the sign-in page.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from aiohttp import web

from center.errors import Forbidden, Unauthorized
from center.members import TokenClaims
from center.web.i18n import choose_language
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import in_db

__all__ = [
    "ACCESS_COOKIE",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "LANG_COOKIE",
    "REFRESH_COOKIE",
    "SESSION_KEY",
    "PortalSession",
    "caller_ip",
    "check_csrf",
    "clear_session",
    "csrf_of",
    "language_of",
    "member_of",
    "store_tokens",
    "write_cookies",
]

ACCESS_COOKIE = "portal_access"
REFRESH_COOKIE = "portal_refresh"
CSRF_COOKIE = "portal_csrf"
LANG_COOKIE = "portal_lang"
CSRF_FIELD = "csrf_token"
MAX_COOKIE_LEN = 1024
REFRESH_MAX_AGE_S = 30 * 24 * 3600


@dataclass
class PortalSession:
    """What one request learnt of its session, and the cookies its answer must set."""

    claims: TokenClaims | None = None
    csrf: str = ""
    language: str = ""
    set_cookies: dict[str, tuple[str, int]] = field(default_factory=dict)
    """name -> (value, max age s); an empty value deletes the cookie."""


SESSION_KEY: web.RequestKey[PortalSession] = web.RequestKey("portal_session")


def _session(request: web.Request) -> PortalSession:
    found = request.get(SESSION_KEY)
    if found is None:
        found = PortalSession()
        request[SESSION_KEY] = found
    return found


def caller_ip(request: web.Request) -> str:
    """The address rate limits count against."""
    return (request.remote or "unknown")[:64]


def _cookie(request: web.Request, name: str) -> str:
    value = request.cookies.get(name, "")
    return value if 0 < len(value) <= MAX_COOKIE_LEN else ""


def language_of(request: web.Request) -> str:
    """`?lang=` (remembered), the remembered choice, else the browser's Accept-Language."""
    session = _session(request)
    if session.language:
        return session.language
    asked = request.query.get("lang", "")
    if asked in ("ru", "en"):
        session.set_cookies[LANG_COOKIE] = (asked, 365 * 24 * 3600)
        session.language = asked
        return asked
    session.language = choose_language(
        _cookie(request, LANG_COOKIE), request.headers.get("Accept-Language")
    )
    return session.language


def csrf_of(request: web.Request) -> str:
    """This browser's CSRF token (made, and set as a cookie, on its first page)."""
    session = _session(request)
    if not session.csrf:
        session.csrf = _cookie(request, CSRF_COOKIE)
        if not session.csrf:
            session.csrf = secrets.token_urlsafe(24)
            session.set_cookies[CSRF_COOKIE] = (session.csrf, REFRESH_MAX_AGE_S)
    return session.csrf


async def check_csrf(request: web.Request) -> None:
    """Forbidden unless the posted form (or htmx's header) carries this browser's token."""
    expected = _cookie(request, CSRF_COOKIE)
    given = request.headers.get("X-CSRF-Token")
    if given is None:
        given = str((await request.post()).get(CSRF_FIELD, ""))
    if not expected or not secrets.compare_digest(expected.encode(), given.encode()):
        raise Forbidden(CSRF_FIELD, "missing or wrong CSRF token: reload the page and try again")


def store_tokens(request: web.Request, tokens: dict[str, object]) -> None:
    """Keep a new token pair (sign-in or refresh) in the cookies of this request's answer."""
    session = _session(request)
    session.set_cookies[ACCESS_COOKIE] = (str(tokens["access_token"]), REFRESH_MAX_AGE_S)
    session.set_cookies[REFRESH_COOKIE] = (str(tokens["refresh_token"]), REFRESH_MAX_AGE_S)


def clear_session(request: web.Request) -> None:
    """Forget the tokens (the answer deletes their cookies)."""
    session = _session(request)
    session.claims = None
    session.set_cookies[ACCESS_COOKIE] = ("", 0)
    session.set_cookies[REFRESH_COOKIE] = ("", 0)


async def member_of(request: web.Request) -> TokenClaims:
    """The signed-in member (refreshing an expired access token once); Unauthorized."""
    session = _session(request)
    if session.claims is not None:
        return session.claims
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    ip = caller_ip(request)
    access = _cookie(request, ACCESS_COOKIE)
    if access:
        try:
            session.claims = await in_db(request, storage.members.authenticate, access, ip, now)
            return session.claims
        except Unauthorized:
            pass
    refresh = _cookie(request, REFRESH_COOKIE)
    if not refresh:
        raise Unauthorized("session", "not signed in")
    try:
        tokens = await in_db(request, storage.members.refresh, refresh, ip, now)
    except Unauthorized:
        clear_session(request)
        raise
    store_tokens(request, tokens)
    session.claims = await in_db(
        request, storage.members.authenticate, str(tokens["access_token"]), ip, now
    )
    return session.claims


def write_cookies(request: web.Request, response: web.StreamResponse) -> None:
    """Set (or delete) the cookies this request changed: HttpOnly, SameSite=Lax (a link from
    a message opens the portal signed in; every change still needs the CSRF token), Secure
    under TLS."""
    session = request.get(SESSION_KEY)
    if session is None:
        return
    for name, (value, max_age) in session.set_cookies.items():
        if not value:
            response.del_cookie(name, path="/portal")
            continue
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/portal",
            httponly=True,
            samesite="Lax",
            secure=request.secure,
        )
