"""Console page of the tiers programme: the levels as a form, saved through the same check and
repository call as PUT /v1/tiers (sync_protocol.check_programme), every problem shown beside
its field. Spend thresholds are typed in major units (roubles) and kept in minor units."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from center.access.permissions import Requirement
from center.errors import InvalidLines, RequestError
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import form_of, page_actor, render
from center.web.request import in_db
from sync_protocol import check_programme

__all__ = ["PERMISSIONS", "add_routes", "parse_money"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/tiers"): "promotions.read",
    ("POST", "/console/tiers"): "promotions.write",
}
"""(method, canonical route path) -> the permission a caller needs (those of /v1/tiers)."""

BLANK_ROWS = 2
"""Empty level rows the form offers for new levels."""
MAX_ROWS = 20
LEVEL_FIELDS = ("code", "title.ru", "title.en", "rank", "spend", "visits", "require")
_MONEY = re.compile(r"^[0-9]{1,13}([.,][0-9]{1,2})?$")


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/tiers", tiers)
    app.router.add_post("/console/tiers", save)


def parse_money(text: str) -> int:
    """Money typed in major units ("30 000", "1 234,56") as minor units; ValueError if not."""
    cleaned = re.sub(r"[\s\u00a0\u202f₽]", "", text)
    if not _MONEY.match(cleaned):
        raise ValueError(f"expected an amount such as 1 234,56, got {text[:40]!r}")
    try:
        return int(Decimal(cleaned.replace(",", ".")).scaleb(2))
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
        raise ValueError(f"expected an amount, got {text[:40]!r}") from exc


def _values_of(doc: Mapping[str, Any] | None) -> dict[str, str]:
    """The form's values of a stored programme document."""
    if doc is None:
        return {"period_kind": "days", "period": "365", "grace_days": "0"}
    months = doc.get("period_months")
    values = {
        "period_kind": "months" if months else "days",
        "period": str(months or doc.get("period_days", "")),
        "grace_days": str(doc.get("grace_days", 0)),
    }
    for i, level in enumerate(doc.get("levels", [])):
        spend = int(level.get("spend_minor", 0))
        values |= {
            f"levels[{i}].code": level["code"],
            f"levels[{i}].title.ru": level["title"]["ru"],
            f"levels[{i}].title.en": level["title"]["en"],
            f"levels[{i}].rank": str(level["rank"]),
            f"levels[{i}].spend": f"{spend // 100}"
            + (f",{spend % 100:02d}" if spend % 100 else ""),
            f"levels[{i}].visits": str(level.get("visits", 0)),
            f"levels[{i}].require": level.get("require", "all"),
        }
    return values


def _rows(values: Mapping[str, str]) -> int:
    used = [
        int(m.group(1)) for k in values if (m := re.match(r"levels\[(\d+)\]\.", k)) and values[k]
    ]
    return min(MAX_ROWS, (max(used) + 1 if used else 0) + BLANK_ROWS)


async def _page(
    request: web.Request,
    values: Mapping[str, str],
    *,
    errors: Mapping[str, str] | None = None,
    notice: str = "",
    defined: bool = True,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "crm/tiers.html",
        {
            "values": dict(values),
            "errors": dict(errors or {}),
            "rows": range(_rows(values)),
            "notice": notice,
            "defined": defined,
        },
        status=status,
    )


async def tiers(request: web.Request) -> web.StreamResponse:
    """The programme's levels as a form (read-only without promotions.write)."""
    found = await in_db(request, request.app[STORAGE_KEY].tiers.programme)
    notice = "saved" if request.query.get("done") == "saved" else ""
    programme = found["programme"]
    return await _page(request, _values_of(programme), notice=notice, defined=programme is not None)


def _document(form: MultiDictProxy[Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(the PUT /v1/tiers document, what was typed, the page's own problems: numbers)."""
    values = {k: str(v)[:200] for k, v in form.items() if k != "csrf_token"}
    errors: dict[str, str] = {}

    def whole(name: str, text: str) -> int | str:
        cleaned = text.strip().replace(" ", "")
        if cleaned.isascii() and cleaned.isdigit() and len(cleaned) <= 9:
            return int(cleaned)
        errors[name] = f"expected a whole number, got {text[:40]!r}"
        return text

    kind = "period_months" if values.get("period_kind") == "months" else "period_days"
    doc: dict[str, Any] = {
        kind: whole(kind, values.get("period", "")),
        "grace_days": whole("grace_days", values.get("grace_days", "0") or "0"),
        "levels": [],
    }
    if kind in errors:
        errors["period"] = errors.pop(kind)
    for i in range(MAX_ROWS):
        row = {f: values.get(f"levels[{i}].{f}", "").strip() for f in LEVEL_FIELDS}
        if not any(v for f, v in row.items() if f != "require"):
            continue
        at = f"levels[{len(doc['levels'])}]."
        level: dict[str, Any] = {
            "code": row["code"],
            "title": {"ru": row["title.ru"], "en": row["title.en"]},
            "rank": whole(f"levels[{i}].rank", row["rank"]),
            "visits": whole(f"levels[{i}].visits", row["visits"] or "0"),
            "require": row["require"] or "all",
        }
        try:
            level["spend_minor"] = parse_money(row["spend"] or "0")
        except ValueError as exc:
            errors[f"levels[{i}].spend"] = str(exc)
        # check_programme names levels by their place in the document: map back to the row.
        values[f"_row:{at}"] = str(i)
        doc["levels"].append(level)
    return doc, values, errors


def _field_of(problem_field: str, values: Mapping[str, str]) -> str:
    """The form field of a check_programme problem ("levels[0].spend_minor" -> row's spend)."""
    m = re.match(r"(levels\[\d+\]\.)(.*)$", problem_field)
    if m is None:
        return "period" if problem_field.startswith("period_") else problem_field
    row = values.get(f"_row:{m.group(1)}", "0")
    name = "spend" if m.group(2) == "spend_minor" else m.group(2)
    return f"levels[{row}].{name}"


async def save(request: web.Request) -> web.StreamResponse:
    """Replace the programme; the form again with every problem beside its field."""
    form = await form_of(request)
    doc, values, errors = _document(form)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    if errors:
        # The numbers the page could not read aside, every other problem at once.
        for name, message in check_programme(doc)[1]:
            errors.setdefault(_field_of(name, values), message)
    else:
        try:
            await in_db(request, lambda: storage.tiers.set_programme(doc, actor=actor, now=now))
        except InvalidLines as exc:
            for problem in exc.problems:
                errors.setdefault(_field_of(str(problem["field"]), values), str(problem["message"]))
        except RequestError as exc:
            errors["form"] = str(exc)
    if errors:
        shown = {k: v for k, v in values.items() if not k.startswith("_row:")}
        return await _page(request, shown, errors=errors, status=422)
    return web.Response(status=303, headers={"Location": "/console/tiers?done=saved"})
