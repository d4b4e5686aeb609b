"""GET /: the store's admin page, served by the store node itself (works while the Center is
away): every register's last contact, last sale, queue and lag, its printer and display, and
this node's own lag to the Center (the figures of GET /health, as a page), and the enrolment of
a new register. The store admin signs in with the credentials set at the store's enrolment
(`loyalty-store enrol --admin-user`): a session cookie, a CSRF token on every form."""

from __future__ import annotations

import asyncio
import gettext
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from store_node.admin_auth import AdminAuth, AdminSession, SignInRefused, csrf_matches, new_secret
from store_node.auth import MAX_TTL_H
from store_node.keys import AUTH_KEY, CLOCK_KEY, CONFIG_KEY, WORKER_KEY
from store_node.sales_api import health_of
from store_node.salesbox import SalesBox

__all__ = ["ADMIN_AUTH_KEY", "LANGUAGES", "PAGE_PATHS", "add_routes", "load_translations"]

LANGUAGES = ("ru", "en")
_HERE = Path(__file__).resolve().parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=True, auto_reload=False
)
TRANSLATIONS_KEY: web.AppKey[dict[str, gettext.NullTranslations]] = web.AppKey("store_translations")
ADMIN_AUTH_KEY = web.AppKey("store_admin_auth", AdminAuth)
SESSION_COOKIE = "store_admin_session"
SIGNIN_COOKIE = "store_admin_signin"
"""Double-submit CSRF token of the sign-in form (there is no session yet to hold one)."""
CSRF_FIELD = "csrf_token"
PAGE_PATHS = frozenset({"/", "/sign-in", "/sign-out", "/registers"})
"""The page's routes: a session cookie, not a register's signature, lets a person in."""
REGISTER_TOKEN_TTL_H = 24.0
_REGISTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CSP = (
    "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def load_translations() -> dict[str, gettext.NullTranslations]:
    """The page's catalogues (locale/<lang>/LC_MESSAGES/messages.po), compiled in memory."""
    found: dict[str, gettext.NullTranslations] = {}
    for language in LANGUAGES:
        with (_HERE / "locale" / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
            catalog = read_po(po, locale=language)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        found[language] = gettext.GNUTranslations(compiled)
    return found


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app[TRANSLATIONS_KEY] = load_translations()
    app[ADMIN_AUTH_KEY] = AdminAuth(app[CONFIG_KEY].db_path)
    app.router.add_get("/", admin_page)
    app.router.add_post("/sign-in", post_sign_in)
    app.router.add_post("/sign-out", post_sign_out)
    app.router.add_post("/registers", post_register)


def _language(request: web.Request) -> str:
    asked = request.query.get("lang", "")
    if asked in LANGUAGES:
        return asked
    tags = [p.split(";")[0].strip() for p in request.headers.get("Accept-Language", "").split(",")]
    try:
        best = Locale.negotiate([t for t in tags[:20] if t], list(LANGUAGES), sep="-")
    except (ValueError, UnknownLocaleError):
        best = None
    return str(best.language) if best is not None else "ru"


def _page_data(box: SalesBox, health: dict[str, Any]) -> dict[str, Any]:
    for register in health["registers"]:
        last = box.last_sale(register["register_id"])
        register["last_sale"] = (
            None if last is None else {"seq": last[0], "closed_at": last[1], "total_minor": last[2]}
        )
    return health


def _ago(now: datetime, _: Callable[..., str]) -> Callable[[Any], str]:
    def ago(value: Any) -> str:
        if not value:
            return _("never")
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        seconds = max(0, int((now - moment).total_seconds()))
        if seconds < 120:
            return _("%(n)s s ago", n=seconds)
        if seconds < 7200:
            return _("%(n)s min ago", n=seconds // 60)
        return _("%(n)s h ago", n=seconds // 3600)

    return ago


def _translator(request: web.Request, language: str) -> Callable[..., str]:
    catalogue = request.app[TRANSLATIONS_KEY][language]

    def _(text: str, **values: object) -> str:
        done = catalogue.gettext(text)
        return done % values if values else done

    return _


def _html(request: web.Request, language: str, html: str, status: int = 200) -> web.Response:
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={
            "Content-Language": language,
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": CSP,
        },
    )


async def _session(request: web.Request) -> AdminSession | None:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if not cookie:
        return None
    auth = request.app[ADMIN_AUTH_KEY]
    return await asyncio.to_thread(auth.session, cookie, request.app[CLOCK_KEY]())


def _sign_in_page(
    request: web.Request, *, status: int = 200, error: str = "", username: str = ""
) -> web.Response:
    language = _language(request)
    token = new_secret()
    html = _ENV.get_template("signin.html").render(
        lang=language,
        _=_translator(request, language),
        store_id=request.app[CONFIG_KEY].store.store_id,
        signin_csrf=token,
        error=error,
        username=username,
    )
    response = _html(request, language, html, status)
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        path="/sign-in",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def admin_page(request: web.Request) -> web.StreamResponse:
    """The sign-in form, or (signed in) the store's health as a page; refreshes every 10 s."""
    session = await _session(request)
    if session is None:
        return _sign_in_page(request)
    return await _admin_page(request, session)


async def _admin_page(
    request: web.Request,
    session: AdminSession,
    *,
    enrolled: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    app = request.app
    now = app[CLOCK_KEY]()
    config = app[CONFIG_KEY]
    data = await app[WORKER_KEY].run(lambda box: _page_data(box, health_of(box, config, now)))
    language = _language(request)
    _ = _translator(request, language)

    def when(value: Any) -> str:
        if not value:
            return ""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return format_datetime(moment.astimezone(UTC), "short", tzinfo=UTC, locale=language)

    html = _ENV.get_template("admin.html").render(
        health=data,
        lang=language,
        _=_,
        ago=_ago(now, _),
        when=when,
        number=lambda n: format_decimal(int(n), locale=language),
        admin=session.username,
        csrf_field=CSRF_FIELD,
        csrf_token=session.csrf_token,
        enrolled=enrolled,
        errors=errors or {},
        values=values or {},
        # The page with a one-time token on it does not reload itself (the token would go).
        refresh=enrolled is None and not errors,
    )
    return _html(request, language, html, status)


def _see(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def post_sign_in(request: web.Request) -> web.StreamResponse:
    """Check the store admin's name and password; a session cookie, or the form again."""
    form = await request.post()
    _ = _translator(request, _language(request))
    if not csrf_matches(request.cookies.get(SIGNIN_COOKIE, ""), form.get(CSRF_FIELD)):
        return _sign_in_page(request, status=403, error=_("The form expired: sign in again."))
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:256]
    auth = request.app[ADMIN_AUTH_KEY]
    try:
        cookie, _session_made = await asyncio.to_thread(
            auth.sign_in, username, password, request.app[CLOCK_KEY]()
        )
    except SignInRefused:
        # One answer for an unknown name, a wrong password and a locked account.
        return _sign_in_page(
            request, status=401, error=_("Wrong user name or password."), username=username
        )
    asked = request.query.get("lang", "")
    response = _see(f"/?lang={asked}" if asked in LANGUAGES else "/")
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=12 * 3600,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    response.del_cookie(SIGNIN_COOKIE, path="/sign-in")
    return response


async def _checked_session(request: web.Request) -> tuple[AdminSession | None, Any]:
    """The session of a form post whose CSRF token matches it, and the form; (None, form)."""
    form = await request.post()
    session = await _session(request)
    if session is None or not csrf_matches(session.csrf_token, form.get(CSRF_FIELD)):
        return None, form
    return session, form


async def post_sign_out(request: web.Request) -> web.StreamResponse:
    """End the session."""
    session, _form = await _checked_session(request)
    if session is not None:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        await asyncio.to_thread(request.app[ADMIN_AUTH_KEY].sign_out, cookie)
    response = _see("/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def post_register(request: web.Request) -> web.StreamResponse:
    """Enrol a new register: its one-time token, shown once (for `loyalty-pos enrol`)."""
    session, form = await _checked_session(request)
    if session is None:
        # Not signed in, or a form without the session's token: nothing is issued.
        return web.Response(status=403, text="403: sign in and submit the form again")
    register_id = str(form.get("register_id", "")).strip()[:80]
    _ = _translator(request, _language(request))
    if not _REGISTER_ID.match(register_id):
        return await _admin_page(
            request,
            session,
            errors={"register_id": _("Letters, digits, '.', '_', ':' or '-', up to 64.")},
            values={"register_id": register_id},
            status=422,
        )
    app = request.app
    token = await asyncio.to_thread(
        app[AUTH_KEY].issue_token,
        register_id,
        app[CLOCK_KEY](),
        min(REGISTER_TOKEN_TTL_H, MAX_TTL_H),
    )
    enrolled = {"register_id": register_id, "token": token, "hours": "24"}
    return await _admin_page(request, session, enrolled=enrolled, status=201)
