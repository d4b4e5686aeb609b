"""GET /: the store's admin page, served by the store node itself (works while the Center is
away): every register's last contact, last sale, queue and lag, its printer and display, and
this node's own lag to the Center. The figures are those of GET /health, as a page."""

from __future__ import annotations

import gettext
import io
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

from store_node.keys import CLOCK_KEY, CONFIG_KEY, WORKER_KEY
from store_node.sales_api import health_of
from store_node.salesbox import SalesBox

__all__ = ["LANGUAGES", "add_routes", "load_translations"]

LANGUAGES = ("ru", "en")
_HERE = Path(__file__).resolve().parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=True, auto_reload=False
)
TRANSLATIONS_KEY: web.AppKey[dict[str, gettext.NullTranslations]] = web.AppKey("store_translations")


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
    app.router.add_get("/", admin_page)


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


async def admin_page(request: web.Request) -> web.StreamResponse:
    """The store's health as a page, in the browser's language; refreshes every 10 s."""
    app = request.app
    now = app[CLOCK_KEY]()
    config = app[CONFIG_KEY]
    data = await app[WORKER_KEY].run(lambda box: _page_data(box, health_of(box, config, now)))
    language = _language(request)
    catalogue = app[TRANSLATIONS_KEY][language]

    def _(text: str, **values: object) -> str:
        done = catalogue.gettext(text)
        return done % values if values else done

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
    )
    return web.Response(
        text=html,
        content_type="text/html",
        headers={"Content-Language": language, "Cache-Control": "no-store"},
    )
