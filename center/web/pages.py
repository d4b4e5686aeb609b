"""What every console page uses: templates, the person and their permissions, translations,
forms, errors as pages, and the vendored static files (/static).

Pages are routes like any other: each page module of a domain declares `PERMISSIONS` and is
listed in `center/web/routes.py`, so the middleware refuses what a role may not do; templates
get `can(permission)` so that the same role is never shown it either.
"""

from __future__ import annotations

import gettext
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from center.access.api import caller_of
from center.access.people_session import CSRF_FIELD, clear_session_cookie
from center.access.permissions import PUBLIC, Requirement, allows
from center.errors import RequestError, Unauthorized
from center.web import i18n
from center.web.keys import STORAGE_KEY
from center.web.request import in_db

__all__ = [
    "PERMISSIONS",
    "TRANSLATIONS_KEY",
    "add_routes",
    "field_errors",
    "form_of",
    "is_page",
    "language_of",
    "page_actor",
    "page_error",
    "remember_chain_language",
    "render",
    "setup_pages",
    "translate_for",
]

_CENTER = Path(__file__).resolve().parent.parent
TEMPLATE_DOMAINS = (
    "web", "access", "crm", "ingest", "ledger", "promotions", "reporting", "models", "fraud",
    "certificates", "analytics", "suppliers", "advertising", "portal",
)  # fmt: skip
"""Domains with a `templates/` folder; a template is named "<domain>/<file>"."""
STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_PREFIXES = ("/console", "/sign-in", "/sign-out")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)

TRANSLATIONS_KEY: web.AppKey[dict[str, gettext.NullTranslations]] = web.AppKey(
    "center_translations"
)
CHAIN_LANGUAGE_KEY: web.AppKey[dict[str, Any]] = web.AppKey("center_chain_language")
"""The chain setting `console_language` and when it was read (monotonic), cached a while."""
CHAIN_LANGUAGE_TTL_S = 30.0
_CHAIN_LANGUAGE: web.RequestKey[str] = web.RequestKey("center_request_chain_language")

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {("GET", "/static"): PUBLIC}
"""(method, canonical route path) -> the permission a caller needs."""


def setup_pages(app: web.Application) -> None:
    """Templates of every domain (autoescaped) and the compiled catalogues."""
    loader = jinja2.PrefixLoader(
        {name: jinja2.FileSystemLoader(_CENTER / name / "templates") for name in TEMPLATE_DOMAINS}
    )
    aiohttp_jinja2.setup(app, loader=loader, autoescape=True)
    app[TRANSLATIONS_KEY] = i18n.load_translations()
    app[CHAIN_LANGUAGE_KEY] = {"value": "", "read_at": None}


async def remember_chain_language(request: web.Request) -> None:
    """Read the chain's default console language (cached CHAIN_LANGUAGE_TTL_S) for a page."""
    cache = request.app[CHAIN_LANGUAGE_KEY]
    now = time.monotonic()
    if cache["read_at"] is None or now - cache["read_at"] >= CHAIN_LANGUAGE_TTL_S:
        master = request.app[STORAGE_KEY].master
        found = await in_db(request, master.settings)
        cache["value"] = str(found["settings"].get("console_language") or "")
        cache["read_at"] = now
    request[_CHAIN_LANGUAGE] = cache["value"]


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_static("/static", STATIC_DIR)


def is_page(request: web.Request) -> bool:
    """True for the console's pages asked by a browser (errors become pages, not JSON); a
    program (no text/html in Accept, or a bearer token) gets the JSON errors of the API."""
    page = request.path == "/" or request.path.startswith(PAGE_PREFIXES)
    browser = "text/html" in request.headers.get("Accept", "") or "HX-Request" in request.headers
    return page and browser and "Authorization" not in request.headers


def language_of(request: web.Request) -> str:
    """The language of this request: the person's setting, `?lang=`, the chain's default
    (setting `console_language`), Accept-Language."""
    setting = (
        caller_of(request).language
        or request.query.get("lang", "")
        or request.get(_CHAIN_LANGUAGE, "")
    )
    return i18n.choose_language(setting, request.headers.get("Accept-Language"))


def translate_for(request: web.Request) -> Callable[..., str]:
    """`_(text, **values)` in the request's language, for text made outside a template."""
    translations: dict[str, gettext.NullTranslations] = request.app[TRANSLATIONS_KEY]
    return i18n.translator(translations, language_of(request))


def page_actor(request: web.Request) -> str:
    """The audit actor of a change made on a page: the person and the page."""
    return f"{caller_of(request).name} via {request.path}"


async def form_of(request: web.Request) -> MultiDictProxy[Any]:
    """The posted form (the middleware already checked its CSRF token)."""
    return await request.post()


def field_errors(exc: RequestError) -> dict[str, str]:
    """{form field: message} of a refused request, to show next to the field."""
    field = exc.field.removeprefix("body.")
    message = str(exc).removeprefix(f"{exc.field}: ")
    return {field: message}


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> web.Response:
    """A page in the request's language, with the person, `can`, `_` and the formatters."""
    caller = caller_of(request)
    language = language_of(request)
    base: dict[str, Any] = {
        "caller": caller,
        "signed_in": caller.kind == "person",
        "can": lambda requirement: allows(caller.permissions, requirement),
        "csrf_field": CSRF_FIELD,
        "csrf_token": caller.csrf_token,
        "lang": language,
        "_": translate_for(request),
        "money": lambda minor: i18n.money(int(minor), language),
        "number": lambda value: i18n.number(int(value), language),
        "when": lambda value: i18n.when(value, language),
        "path": request.path,
        "errors": {},
        "values": {},
        "notice": "",
    }
    base.update(context or {})
    response = aiohttp_jinja2.render_template(template, request, base, status=status)
    response.headers["Content-Language"] = language
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    # Scripts and styles only from /static: an injected <script> or on* attribute never runs.
    response.headers["Content-Security-Policy"] = CSP
    return response


def page_error(request: web.Request, exc: RequestError) -> web.StreamResponse:
    """A refused page request as a page: to the sign-in form when not signed in."""
    if isinstance(exc, Unauthorized):
        if request.headers.get("HX-Request"):
            response: web.StreamResponse = web.Response(status=401)
            response.headers["HX-Redirect"] = "/"
        else:
            response = web.Response(status=303, headers={"Location": "/"})
        clear_session_cookie(response)
        return response
    return render(
        request,
        "web/error.html",
        {"status": exc.status, "kind": exc.kind, "message": str(exc)},
        status=exc.status,
    )
