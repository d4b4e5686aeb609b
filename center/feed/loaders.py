"""The chain's own master data as records: CSV files and JSON rows checked field by field (pure).

One path for every source: a CSV file (UTF-8, a header row), the JSON API and the Complete
Journey import all become `Record`s here, and `center/feed/master_store.py` writes them. A bad
value is a `Problem` naming its line (the file's line number, the header being line 1; for JSON,
the row's index) and its field; a source with any problem is refused whole.

Kinds and their columns (CSV header names; JSON rows use the same keys with money in minor units,
`price_minor` / `cost_minor`, and booleans as JSON booleans):
- formats, regions: `name` (the managed lists; compared case-insensitively);
- stores: `store_id`, `name`, `format`, `region`, `timezone` (IANA), `address`;
- registers: `register_id`, `store_id`;
- products: `product_id`, `name`, `category_path` (levels joined by ">": department, category,
  product type, deeper levels kept in the path), `brand`, `price`, `cost` (major units, e.g.
  12.50), `weighed` (true/false/yes/no/1/0); the import may add `manufacturer_id`, `package_size`;
- prices: `product_id`, `price`, `effective_from` (ISO 8601 with offset, or a day meaning 00:00
  in the chain's time zone).

Money rule: a major-unit amount has at most the currency's exponent of decimals ("12.5" and
"12.50" are 1250; "12.505" is refused, never rounded), so a file's price is the price exactly.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loyalty_engine import RuleError, load_promotion_set
from sync_protocol import ID_PATTERN

__all__ = [
    "KINDS",
    "LEVEL_SEPARATOR",
    "MAX_MINOR",
    "PROGRESS_LINES",
    "SETTINGS",
    "Problem",
    "Record",
    "check_rows",
    "check_settings",
    "major_to_minor",
    "parse_csv",
    "split_path",
]

KINDS = ("formats", "regions", "stores", "registers", "products", "prices")
"""What can be loaded, in the order a load applies them (a store's format before the store)."""
LEVEL_SEPARATOR = " > "
"""How category_path levels are joined (the dataset's names contain '/', never '>')."""
MAX_MINOR = 10**12
"""Largest amount in minor units a price, cost or limit may have."""
PROGRESS_LINES = 50_000
"""Lines between two progress reports of a big file."""
_MAX_TEXT = 200
_MAX_PATH = 500
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}

COLUMNS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "formats": (("name",), ()),
    "regions": (("name",), ()),
    "stores": (("store_id", "name", "timezone"), ("format", "region", "address")),
    "registers": (("register_id", "store_id"), ()),
    "products": (
        ("product_id", "name"),
        ("category_path", "brand", "price", "cost", "weighed", "manufacturer_id", "package_size"),
    ),
    "prices": (("product_id", "price", "effective_from"), ()),
}
"""kind -> (required CSV columns, optional CSV columns)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad value: where (line, field) and why."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class Record:
    """One checked row of a kind, in canonical form (the columns of its table)."""

    line: int
    values: dict[str, Any] = field(default_factory=dict)


class _Row:
    """Collects one row's problems while its fields are read."""

    def __init__(self, line: int, raw: Mapping[str, Any], problems: list[Problem]) -> None:
        self.line = line
        self.raw = raw
        self.problems = problems
        self.bad = False

    def problem(self, name: str, message: str) -> None:
        self.bad = True
        self.problems.append(Problem(self.line, name, message))

    def text(self, name: str, *, required: bool = False, limit: int = _MAX_TEXT) -> str:
        value = self.raw.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            self.problem(name, f"expected text, got {value!r}")
            return ""
        value = value.strip()
        if required and not value:
            self.problem(name, "required")
        elif len(value) > limit:
            self.problem(name, f"at most {limit} characters, got {len(value)}")
        elif value and not value.isprintable():
            self.problem(name, f"expected printable characters, got {value[:80]!r}")
        return value

    def ident(self, name: str) -> str:
        value = self.raw.get(name)
        if isinstance(value, str):
            value = value.strip()
        if not isinstance(value, str) or not ID_PATTERN.match(value):
            shown = "nothing" if value in (None, "") else repr(value)[:80]
            self.problem(
                name, f"expected 1..64 letters, digits or . _ : - (first alphanumeric), got {shown}"
            )
            return ""
        return value

    def money(self, name: str, *, text: bool, exponent: int, required: bool) -> int | None:
        """`name` in major units (CSV) or `name_minor` as an int (JSON); None when empty."""
        if not text:
            key = f"{name}_minor"
            value = self.raw.get(key)
            if value is None:
                if required:
                    self.problem(key, "required")
                return None
            if type(value) is not int or not 0 <= value <= MAX_MINOR:
                self.problem(
                    key, f"expected an integer of minor units 0..{MAX_MINOR}, got {value!r}"
                )
                return None
            return value
        value = self.raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.problem(name, "required")
            return None
        try:
            return major_to_minor(str(value), exponent)
        except ValueError as exc:
            self.problem(name, str(exc))
            return None

    def flag(self, name: str, *, text: bool) -> bool:
        value = self.raw.get(name)
        if value is None:
            return False
        if not text:
            if type(value) is not bool:
                self.problem(name, f"expected true or false, got {value!r}")
                return False
            return value
        word = str(value).strip().lower()
        if word in _TRUE:
            return True
        if word not in _FALSE:
            self.problem(name, f"expected true/false, yes/no or 1/0, got {value!r}")
        return False


def major_to_minor(text: str, exponent: int) -> int:
    """ "12.50" -> 1250 at exponent 2; ValueError naming the rule for anything else."""
    cleaned = text.strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or not re.fullmatch(r"[0-9]+(\.[0-9]*)?", cleaned):
        raise ValueError(f"expected an amount in major units such as 12.50, got {text!r}")
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"at most {exponent} decimals, got {text!r}")
    if minor > MAX_MINOR:
        raise ValueError(f"larger than the maximum {MAX_MINOR} minor units, got {text!r}")
    return int(minor)


def split_path(path: str) -> tuple[str, ...]:
    """The levels of a category path ("Dairy > Milk"), trailing empty levels dropped."""
    levels = [level.strip() for level in path.split(">")] if path.strip() else []
    while levels and not levels[-1]:
        levels.pop()
    return tuple(levels)


def _zone(row: _Row, name: str) -> str:
    value = row.text(name, required=True, limit=64)
    if value and value != "UTC":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            row.problem(name, f"expected an IANA time zone such as Europe/Moscow, got {value!r}")
    return value


def _listed(row: _Row, name: str, known: Mapping[str, str] | None) -> str:
    """A managed-list value in the list's own spelling ("" stays ""); None known: any."""
    value = row.text(name, limit=64)
    if not value or known is None:
        return value
    canonical = known.get(value.casefold())
    if canonical is None:
        shown = ", ".join(sorted(known.values())) or "none yet"
        row.problem(name, f"unknown {name} {value!r} (known: {shown})")
        return value
    return canonical


def _instant(row: _Row, name: str, zone: tzinfo) -> datetime | None:
    value = row.raw.get(name)
    if not isinstance(value, str) or not value.strip():
        row.problem(name, "required (ISO 8601 time with offset, or YYYY-MM-DD)")
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), zone).astimezone(UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        row.problem(name, f"expected an ISO 8601 time with offset or YYYY-MM-DD, got {text!r}")
        return None
    if moment.tzinfo is None:
        row.problem(name, f"expected a time with an offset (e.g. +03:00), got {text!r}")
        return None
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Context:
    exponent: int
    zone: tzinfo
    formats: Mapping[str, str] | None
    regions: Mapping[str, str] | None


def _record(kind: str, row: _Row, text: bool, ctx: _Context) -> dict[str, Any]:
    if kind in ("formats", "regions"):
        return {"name": row.text("name", required=True, limit=64)}
    if kind == "stores":
        return {
            "store_id": row.ident("store_id"),
            "name": row.text("name", required=True),
            "format": _listed(row, "format", ctx.formats),
            "region": _listed(row, "region", ctx.regions),
            "timezone": _zone(row, "timezone"),
            "address": row.text("address", limit=_MAX_PATH),
        }
    if kind == "registers":
        return {"register_id": row.ident("register_id"), "store_id": row.ident("store_id")}
    if kind == "products":
        path = split_path(row.text("category_path", limit=_MAX_PATH))
        levels = (*path, "", "", "")
        out = {
            "product_id": row.ident("product_id"),
            "name": row.text("name", required=True),
            "category_path": LEVEL_SEPARATOR.join(path),
            "department": levels[0],
            "category": levels[1],
            "product_type": levels[2],
            "brand": row.text("brand"),
            "manufacturer_id": row.text("manufacturer_id", limit=64),
            "package_size": row.text("package_size", limit=64),
            "weighed": row.flag("weighed", text=text),
            "price_minor": row.money("price", text=text, exponent=ctx.exponent, required=False),
            "cost_minor": row.money("cost", text=text, exponent=ctx.exponent, required=False),
        }
        return out
    if kind == "prices":
        return {
            "product_id": row.ident("product_id"),
            "price_minor": row.money("price", text=text, exponent=ctx.exponent, required=True),
            "effective_from": _instant(row, "effective_from", ctx.zone),
        }
    raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def _key(kind: str, values: Mapping[str, Any]) -> tuple[Any, ...]:
    if kind in ("formats", "regions"):
        return (str(values["name"]).casefold(),)
    if kind == "prices":
        return (values["product_id"], values["effective_from"])
    return (values[f"{kind[:-1]}_id"],)


def check_rows(
    kind: str,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    text: bool,
    exponent: int = 2,
    zone: tzinfo = UTC,
    formats: Mapping[str, str] | None = None,
    regions: Mapping[str, str] | None = None,
) -> tuple[list[Record], list[Problem]]:
    """Check (line, raw row) pairs of a kind: (records, every problem found).

    `text` rows come from a CSV file (strings, money in major units); others are JSON. `formats`
    and `regions` map the case-folded names of the managed lists to their spelling (None: not
    checked). A key seen twice is a problem on its second line.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    ctx = _Context(exponent, zone, formats, regions)
    records: list[Record] = []
    problems: list[Problem] = []
    seen: dict[tuple[Any, ...], int] = {}
    allowed = set(COLUMNS[kind][0]) | set(COLUMNS[kind][1])
    if not text:
        allowed = {f"{c}_minor" if c in ("price", "cost") else c for c in allowed}
    for line, raw in rows:
        if not isinstance(raw, Mapping):
            problems.append(Problem(line, "row", f"expected an object, got {raw!r}"[:200]))
            continue
        row = _Row(line, raw, problems)
        if not allowed.issuperset(raw):
            for name in raw:
                if name not in allowed:
                    row.problem(str(name), f"unknown field (known: {', '.join(sorted(allowed))})")
        values = _record(kind, row, text, ctx)
        if row.bad:
            continue
        key = _key(kind, values)
        if key in seen:
            row.problem(COLUMNS[kind][0][0], f"{key[0]!r} already given on line {seen[key]}")
            continue
        seen[key] = line
        records.append(Record(line, values))
    return records, problems


def _csv_rows(kind: str, data: bytes) -> tuple[Iterator[tuple[int, dict[str, str]]], list[Problem]]:
    """(line, row) of a CSV file after checking its encoding and header."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return iter(()), [Problem(line, "file", f"not UTF-8 at byte {exc.start}")]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return iter(()), [Problem(1, "header", "the file is empty (a header row is required)")]
    except csv.Error as exc:
        return iter(()), [Problem(1, "header", f"not CSV: {exc}")]
    names = [h.strip().lower() for h in header]
    required, optional = COLUMNS[kind]
    problems = [
        Problem(1, name, "required column is missing from the header")
        for name in required
        if name not in names
    ]
    for name in names:
        if name not in required and name not in optional:
            problems.append(
                Problem(
                    1,
                    name or "header",
                    f"unknown column (known: {', '.join((*required, *optional))})",
                )
            )
    if len(set(names)) != len(names):
        problems.append(Problem(1, "header", "a column is named twice"))
    if problems:
        return iter(()), problems

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, {"\0csv": str(exc)}
                continue
            if not cells or all(not c.strip() for c in cells):
                continue  # a blank line (often the last one)
            if len(cells) != len(names):
                yield line, {"\0cells": f"expected {len(names)} cells, got {len(cells)}"}
                continue
            yield line, dict(zip(names, cells, strict=True))

    return rows(), []


def parse_csv(
    kind: str,
    data: bytes,
    *,
    exponent: int = 2,
    zone: tzinfo = UTC,
    formats: Mapping[str, str] | None = None,
    regions: Mapping[str, str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[list[Record], list[Problem]]:
    """A CSV file of a kind: (records, every problem found, each with its line and field);
    `progress("read KIND", line, lines)` every PROGRESS_LINES lines."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    rows, problems = _csv_rows(kind, data)
    if problems:
        return [], problems
    total = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    good: list[tuple[int, dict[str, str]]] = []
    for line, row in rows:
        broken = row.get("\0csv") or row.get("\0cells")
        if broken:
            problems.append(Problem(line, "row", broken))
        else:
            good.append((line, row))
        if progress is not None and line % PROGRESS_LINES == 0:
            progress(f"read {kind}", line, total)
    if progress is not None:
        progress(f"read {kind}", total, total)
    records, found = check_rows(
        kind, good, text=True, exponent=exponent, zone=zone, formats=formats, regions=regions
    )
    problems.extend(found)
    problems.sort(key=lambda p: p.line)
    return records, problems


# -- chain settings ----------------------------------------------------------------------------

CURRENCY_EXPONENTS: Mapping[str, int] = {
    "BHD": 3, "CLP": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "LYD": 3,
    "OMR": 3, "TND": 3, "UGX": 0, "VND": 0, "XAF": 0, "XOF": 0,
}  # fmt: skip
"""ISO 4217 currencies whose minor unit is not 1/100 (every other code: 2)."""


def _share(value: Any) -> str:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if isinstance(value, bool) or not number.is_finite() or not 0 <= number <= 1:
        raise ValueError(f"expected a share between 0 and 1 such as 0.5, got {value!r}")
    return str(number.normalize()) if number else "0"


def _digits(value: Any) -> Any:
    """An integer given as ASCII digits in text, as an int; anything else unchanged."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return value


def _minor(value: Any) -> str:
    value = _digits(value)
    if type(value) is not int or not 0 <= value <= MAX_MINOR:
        raise ValueError(f"expected an integer of minor units 0..{MAX_MINOR}, got {value!r}")
    return str(value)


def _seconds(value: Any) -> str:
    value = _digits(value)
    if type(value) is not int or not 0 <= value <= 30 * 86400:
        raise ValueError(f"expected whole seconds 0..{30 * 86400}, got {value!r}")
    return str(value)


def _percent(value: Any) -> str:
    value = _digits(value)
    if type(value) is not int or not 0 <= value <= 100:
        raise ValueError(f"expected a whole percent 0..100, got {value!r}")
    return str(value)


def _count(value: Any) -> str:
    value = _digits(value)
    if type(value) is not int or not 0 <= value <= 1000:
        raise ValueError(f"expected a whole number 0..1000, got {value!r}")
    return str(value)


def _days(value: Any) -> str:
    value = _digits(value)
    if type(value) is not int or not 1 <= value <= 3660:
        raise ValueError(f"expected whole days 1..3660, got {value!r}")
    return str(value)


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected an IANA time zone such as Europe/Moscow, got {value!r}")
    if value != "UTC":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"expected an IANA time zone such as Europe/Moscow, got {value!r}"
            ) from exc
    return value


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError(f"expected an ISO 4217 code such as RUB, got {value!r}")
    return value


def _exponent(value: Any) -> str:
    if str(value) not in ("0", "1", "2", "3") or isinstance(value, bool):
        raise ValueError(f"expected 0, 1, 2 or 3, got {value!r}")
    return str(value)


def _stacking(value: Any) -> str:
    # The engine owns the list of stacking modes: ask it.
    try:
        load_promotion_set([], version=0, settings={"stacking": value})
    except RuleError as exc:
        raise ValueError(str(exc).rsplit("stacking", 1)[-1].lstrip(": ")) from exc
    return str(value)


def _boolean(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return "true" if value.lower() in ("true", "1") else "false"
    raise ValueError(f"expected true or false, got {value!r}")


def _console_language(value: Any) -> str:
    # The console's languages (center/web/i18n.py); a person's own setting overrides it.
    if value not in ("ru", "en"):
        raise ValueError(f"expected ru or en, got {value!r}")
    return str(value)


def _key_text(value: Any) -> str:
    if not isinstance(value, str) or not 16 <= len(value) <= 256 or not value.isprintable():
        raise ValueError("expected 16..256 printable characters (a secret, never echoed)")
    return value


SETTINGS: Mapping[str, Any] = {
    "bonus_max_share": _share,
    "max_discount_share": _share,
    "max_discount_minor": _minor,
    "max_accrual_minor": _minor,
    "offline_max_spend_per_card_minor": _minor,
    "offline_max_replica_age_s": _seconds,
    "offline_overdraft_ceiling_minor": _minor,
    "offline_lease_per_store_minor": _minor,
    "offline_lease_ttl_s": _seconds,
    "offline_lease_grace_s": _seconds,
    "budgets.lease_share_percent": _percent,
    "budgets.lease_ttl_s": _seconds,
    "budgets.lease_grace_s": _seconds,
    "currency": _currency,
    "currency_exponent": _exponent,
    "timezone": _timezone,
    "stacking": _stacking,
    "never_below_cost": _boolean,
    "coupon_key": _key_text,
    "console_language": _console_language,
    # The member API's (dotted: components' settings the engine's exact check leaves alone).
    "member.ecard_key": _key_text,
    "member.favourites_changes": _count,
    "member.favourites_period_days": _days,
}
"""Every chain-wide setting and how its value is checked (stored as text)."""


def check_settings(changes: Any) -> tuple[dict[str, str | None], list[Problem]]:
    """{name: value or None (remove)} -> (normalised text values, problems naming each key).

    Setting `currency` also sets `currency_exponent` from ISO 4217 unless it is given too.
    """
    if not isinstance(changes, Mapping) or not changes:
        return {}, [Problem(0, "body", "expected an object of settings {name: value}")]
    out: dict[str, str | None] = {}
    problems: list[Problem] = []
    for name, value in changes.items():
        check = SETTINGS.get(name)
        if check is None:
            problems.append(
                Problem(0, str(name), f"unknown setting (known: {', '.join(sorted(SETTINGS))})")
            )
            continue
        if value is None:
            out[name] = None
            continue
        try:
            out[name] = check(value)
        except ValueError as exc:
            problems.append(Problem(0, name, str(exc)))
    currency = out.get("currency")
    if currency and "currency_exponent" not in changes:
        out["currency_exponent"] = str(CURRENCY_EXPONENTS.get(currency, 2))
    return out, problems
