"""Console pages of people: the sign-in form (GET /), sign-out, the start page, the language."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from yarl import URL

from center.access.api import caller_of
from center.access.people import (
    LANGUAGES,
    csrf_matches,
    new_session_secret,
    session_hash,
    sign_in,
)
from center.access.people_session import (
    CSRF_FIELD,
    SESSION_COOKIE,
    clear_session_cookie,
    session_of,
    set_session_cookie,
)
from center.access.permissions import AUTHENTICATED, PUBLIC, Requirement
from center.errors import Forbidden, InvalidRequest, Unauthorized
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import form_of, render, translate_for
from center.web.request import in_db

__all__ = ["PERMISSIONS", "add_routes"]

SIGNIN_COOKIE = "loyalty_signin"
"""Double-submit CSRF token of the sign-in form (there is no session yet to hold one)."""

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/"): PUBLIC,
    ("POST", "/sign-in"): PUBLIC,
    ("POST", "/sign-out"): AUTHENTICATED,
    ("GET", "/console"): AUTHENTICATED,
    ("POST", "/console/language"): AUTHENTICATED,
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/", start)
    app.router.add_post("/sign-in", post_sign_in)
    app.router.add_post("/sign-out", post_sign_out)
    app.router.add_get("/console", home)
    app.router.add_post("/console/language", post_language)


def _see(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _sign_in_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str = "",
    username: str = "",
) -> web.Response:
    token = new_session_secret()
    response = render(
        request,
        "access/signin.html",
        {"signin_csrf": token, "errors": {"form": error}, "values": {"username": username}},
        status=status,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        path="/sign-in",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def start(request: web.Request) -> web.StreamResponse:
    """The sign-in form, or the start page for a person already signed in."""
    if await session_of(request) is not None:
        return _see("/console")
    return _sign_in_page(request)


async def post_sign_in(request: web.Request) -> web.StreamResponse:
    """Check the form and open a session (cookie); the form again, with why, when refused."""
    form = await form_of(request)
    if not csrf_matches(request.cookies.get(SIGNIN_COOKIE, ""), form.get(CSRF_FIELD)):
        raise Forbidden(
            CSRF_FIELD, "missing or wrong CSRF token: reload the sign-in page and try again"
        )
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:256]
    code = str(form.get("code", ""))[:8]
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    try:
        done = await in_db(
            request, lambda: sign_in(storage, username, password, code, now, page=request.path)
        )
    except Unauthorized as exc:
        # One answer for an unknown name, a locked account and a wrong password or code; only a
        # right password with an already used code is told so (it can then wait for the next).
        _ = translate_for(request)
        message = (
            _("This code was already used: wait for the next code from your app.")
            if exc.field == "code"
            else _("Wrong user name, password or code.")
        )
        return _sign_in_page(request, status=401, error=message, username=username)
    response = _see("/console")
    set_session_cookie(response, request, done.session)
    response.del_cookie(SIGNIN_COOKIE, path="/sign-in")
    return response


async def post_sign_out(request: web.Request) -> web.StreamResponse:
    """End the session and forget its cookie."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if cookie:
        storage = request.app[STORAGE_KEY]
        await in_db(
            request,
            lambda: storage.people.close_session(
                session_hash(cookie), request.app[CLOCK_KEY](), page=request.path
            ),
        )
    response = _see("/")
    clear_session_cookie(response)
    return response


async def home(request: web.Request) -> web.StreamResponse:
    """The workstations the person's role may open."""
    return render(request, "access/home.html")


async def post_language(request: web.Request) -> web.StreamResponse:
    """Keep the person's console language."""
    caller = caller_of(request)
    if caller.kind != "person":
        raise Unauthorized("session", "the language is a setting of a signed-in person")
    form = await form_of(request)
    language = str(form.get("language", ""))
    if language not in LANGUAGES:
        raise InvalidRequest("language", f"expected one of {', '.join(LANGUAGES)}")
    storage = request.app[STORAGE_KEY]
    await in_db(
        request,
        lambda: storage.people.set_language(
            caller.name, language, request.app[CLOCK_KEY](), page=request.path
        ),
    )
    if request.headers.get("HX-Request"):
        return web.Response(status=204, headers={"HX-Refresh": "true"})  # htmx reloads the page
    # Back to the page the person was on (only a page of this console, never another site).
    back = URL(request.headers.get("Referer", "")).path_qs
    return _see(back if back.startswith("/console") else "/console")
