"""The console's languages: Babel catalogues (compiled in memory at start), the choice of
language, and dates, numbers and money in the locale."""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal

from center.access.people import LANGUAGES

__all__ = [
    "CURRENCY",
    "DEFAULT_LANGUAGE",
    "LOCALE_DIR",
    "choose_language",
    "load_translations",
    "money",
    "number",
    "translator",
    "when",
]

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
"""<lang>/LC_MESSAGES/messages.po for every language of LANGUAGES (the source strings are
English; `pybabel extract -F babel.cfg` collects them, tests/center/test_console_i18n.py checks
that Russian translates every one)."""
DEFAULT_LANGUAGE = "ru"
"""The chain's language when neither the person nor the browser names one we have."""
CURRENCY = "RUB"
"""The currency amounts in minor units are shown in (two decimals)."""


def load_translations() -> dict[str, gettext.NullTranslations]:
    """Every catalogue, read from its .po and compiled in memory (no .mo file to keep in step)."""
    found: dict[str, gettext.NullTranslations] = {}
    for language in LANGUAGES:
        path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as po:
            catalog = read_po(po, locale=language)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        found[language] = gettext.GNUTranslations(compiled)
    return found


def choose_language(setting: str, accept_language: str | None) -> str:
    """The person's setting, else the best of the browser's Accept-Language, else the default."""
    if setting in LANGUAGES:
        return setting
    wanted: list[tuple[float, str]] = []
    for i, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag:
            wanted.append((-q + i * 1e-6, tag.strip()))
    try:
        best = Locale.negotiate([tag for _, tag in sorted(wanted)], list(LANGUAGES), sep="-")
    except (ValueError, UnknownLocaleError):
        best = None
    return str(best.language) if best is not None else DEFAULT_LANGUAGE


def money(minor: int, language: str) -> str:
    """Minor units as the locale writes money, e.g. '1 234,56 ₽' in Russian."""
    return format_currency(Decimal(minor).scaleb(-2), CURRENCY, locale=language)


def number(value: int, language: str) -> str:
    """An integer with the locale's grouping, e.g. '12 345'."""
    return format_decimal(value, locale=language)


def when(value: datetime | str | None, language: str) -> str:
    """A moment (aware, or ISO 8601) in UTC, as the locale writes date and time; '' for None."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return format_datetime(moment.astimezone(UTC), "short", tzinfo=UTC, locale=language) + " UTC"


def translator(
    translations: Mapping[str, gettext.NullTranslations], language: str
) -> Callable[..., str]:
    """`_(text, **values)`: the translation of `text`, with `%(name)s` values filled in."""
    catalogue = translations.get(language) or gettext.NullTranslations()

    def _(text: str, **values: object) -> str:
        done = catalogue.gettext(text)
        return done % values if values else done

    return _
