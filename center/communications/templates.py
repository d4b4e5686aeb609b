"""Message templates with named variables, in Russian and English; money in major units."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from center.errors import InvalidRequest

__all__ = ["LANGUAGES", "VARIABLES", "Template", "format_date", "format_money", "parse_template"]

LANGUAGES = ("ru", "en")
VARIABLES = ("name", "balance", "burning_amount", "burning_date", "store")
"""The variables a template may use; anything else is refused, named."""
_SYMBOLS = {"RUB": "₽", "EUR": "€", "USD": "$"}


@dataclass(frozen=True, slots=True)
class Template:
    """A subject and a text body per language, each with {variables}."""

    template_id: str
    subject: Mapping[str, str]
    body: Mapping[str, str]

    def render(self, lang: str, values: Mapping[str, str]) -> tuple[str, str]:
        """(subject, body) in `lang` (each in English when the template lacks it)."""
        subject = self.subject.get(lang, self.subject["en"])
        return subject.format_map(values), self.body.get(lang, self.body["en"]).format_map(values)


def _fields(text: str, where: str) -> None:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InvalidRequest(where, f"bad template: {exc}") from exc
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in VARIABLES:
            raise InvalidRequest(
                where, f"unknown variable {{{name}}}; known: {', '.join(VARIABLES)}"
            )
        if spec or conversion:
            raise InvalidRequest(where, f"variable {{{name}}} takes no format, got {spec!r}")


def parse_template(template_id: str, body: object) -> Template:
    """A Template from {"subject": {lang: text}, "body": {lang: text}}; InvalidRequest naming
    the field on an unknown variable or language."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("body", "expected a JSON object")
    parts: dict[str, dict[str, str]] = {}
    for part in ("subject", "body"):
        texts = body.get(part)
        if not isinstance(texts, Mapping) or not texts:
            raise InvalidRequest(f"body.{part}", "expected an object {language: text}")
        for lang, text in texts.items():
            where = f"body.{part}.{lang}"
            if lang not in LANGUAGES:
                raise InvalidRequest(where, f"unknown language; known: {', '.join(LANGUAGES)}")
            if not isinstance(text, str) or not 0 < len(text) <= 2000:
                raise InvalidRequest(where, "expected 1..2000 characters of text")
            _fields(text, where)
        parts[part] = dict(texts)
    if "en" not in parts["body"] or "en" not in parts["subject"]:
        raise InvalidRequest("body.body.en", "an English text is required (the fallback)")
    return Template(template_id, parts["subject"], parts["body"])


def format_money(minor: int, currency: str, lang: str) -> str:
    """Minor units in major units with the currency: ru "1 234,50 ₽", en "RUB 1,234.50"."""
    sign = "-" if minor < 0 else ""
    major, cents = divmod(abs(minor), 100)
    if lang == "ru":
        grouped = f"{major:,}".replace(",", "\u00a0")
        return f"{sign}{grouped},{cents:02d}\u00a0{_SYMBOLS.get(currency, currency)}"
    return f"{sign}{currency} {major:,}.{cents:02d}"


def format_date(day: date, lang: str) -> str:
    """A date as people read it: ru 07.12.2026, en 2026-12-07."""
    return day.strftime("%d.%m.%Y") if lang == "ru" else day.isoformat()
