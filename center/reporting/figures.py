"""Report figures: plain rows into report dicts, money and counts as people read them.

Pure and deterministic: no I/O, no clock. Sums are int minor units; Decimal only for rates and
the half-even rounding of averages. Days are calendar days, weeks start on Monday.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from center.errors import MalformedRequest

__all__ = [
    "FLOWS",
    "FLOW_NAMES",
    "MAX_DAYS",
    "MONEY_DECIMALS",
    "NO_CATEGORY",
    "PROMOTION_MAX_DAYS",
    "categories_report",
    "days_between",
    "format_count",
    "format_minor",
    "loyalty_report",
    "parse_period",
    "promotion_report",
    "sales_report",
    "segments_report",
]

MONEY_DECIMALS = 2
"""Minor units per major unit as a power of ten (cents)."""

_KIND_COLUMNS = {"accrue": "accrued", "spend": "spent", "expire": "expired"}
"""Ledger kinds with a column of their own; `adjustment` and `return_*` have theirs too."""


# -- numbers ------------------------------------------------------------------------------------


def _group(digits: str) -> str:
    head = len(digits) % 3 or 3
    parts = [digits[:head], *(digits[i : i + 3] for i in range(head, len(digits), 3))]
    return ",".join(parts)


def format_minor(value: int, decimals: int = MONEY_DECIMALS, *, fraction: bool = True) -> str:
    """Minor units as major units: 123456 -> "1,234.56" (no fraction part if `fraction` is off)."""
    sign = "-" if value < 0 else ""
    major, minor = divmod(abs(value), 10**decimals)
    text = sign + _group(str(major))
    if fraction and decimals:
        text += "." + str(minor).rjust(decimals, "0")
    return text


def format_count(value: int) -> str:
    """An integer with thousands separators."""
    return ("-" if value < 0 else "") + _group(str(abs(value)))


def _div_half_even(numerator: int, denominator: int) -> int:
    if denominator == 0:
        return 0
    return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), ROUND_HALF_EVEN))


def _share(part: int, whole: int) -> str:
    """part / whole as a decimal string with 4 places ("0.6250"); "0.0000" for an empty whole."""
    if whole == 0:
        return "0.0000"
    return str((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN))


MAX_DAYS = 732
"""Longest period of one report: two years of days."""

PROMOTION_MAX_DAYS = 366
"""Longest period of the promotion effect report (it decodes the receipts it looks at)."""


def _day_arg(value: str, name: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError("not 10 characters")
        return date.fromisoformat(value)
    except ValueError as exc:
        raise MalformedRequest(name, f"expected a date YYYY-MM-DD, got {value[:40]!r}") from exc


def parse_period(
    date_from: str | None,
    date_to: str | None,
    today: date,
    *,
    default_days: int = 28,
    max_days: int = MAX_DAYS,
) -> tuple[date, date]:
    """The period [from, to] of a report: `to` defaults to today, `from` to `default_days` before.

    MalformedRequest naming `from` or `to` for a bad date, a reversed or too long period.
    """
    end = _day_arg(date_to, "to") if date_to else today
    start = _day_arg(date_from, "from") if date_from else end - timedelta(days=default_days - 1)
    if start > end:
        raise MalformedRequest("from", f"{start} is after to={end}")
    if (end - start).days + 1 > max_days:
        raise MalformedRequest("from", f"at most {max_days} days per report, got {start}..{end}")
    return start, end


def days_between(date_from: date, date_to: date) -> list[date]:
    """Every day of [date_from, date_to], inclusive."""
    return [date_from + timedelta(days=i) for i in range((date_to - date_from).days + 1)]


# -- report dicts -------------------------------------------------------------------------------


def _sales_figures(values: Sequence[int]) -> dict[str, Any]:
    receipts, revenue, discount, card_receipts, returns, refund = (int(v or 0) for v in values)
    return {
        "receipts": receipts,
        "revenue_minor": revenue,
        "discount_minor": discount,
        "average_receipt_minor": _div_half_even(revenue, receipts),
        "card_receipts": card_receipts,
        "card_share": _share(card_receipts, receipts),
        "returns": returns,
        "refund_minor": refund,
        "net_revenue_minor": revenue - refund,
    }


def sales_report(
    day_rows: Iterable[Sequence[Any]],
    store_rows: Iterable[Sequence[Any]],
    date_from: date,
    date_to: date,
    store_id: str | None = None,
) -> dict[str, Any]:
    """Sales per day and per store.

    `day_rows`: (day "YYYY-MM-DD", receipts, revenue, discount, card receipts, returns, refund);
    `store_rows`: (store_id, name, the same six figures). Returns are not receipts: their
    count and refund are separate, `net_revenue_minor` = revenue - refund. Missing days are 0.
    """
    by_day = {str(r[0]): [int(v or 0) for v in r[1:7]] for r in day_rows}
    totals = [0] * 6
    days = []
    for day in days_between(date_from, date_to):
        values = by_day.get(day.isoformat(), [0] * 6)
        totals = [a + b for a, b in zip(totals, values, strict=True)]
        days.append({"day": day.isoformat(), **_sales_figures(values)})
    stores = [
        {"store_id": str(r[0]), "name": str(r[1] or r[0]), **_sales_figures(r[2:8])}
        for r in store_rows
    ]
    stores.sort(key=lambda s: (-s["revenue_minor"], s["store_id"]))
    return {
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "store_id": store_id,
        "total": _sales_figures(totals),
        "days": days,
        "stores": stores,
    }


FLOWS = ("accrued", "spent", "expired", "adjusted", "returned", "other")
FLOW_NAMES = {"returned": "returns", "other": "other (welcome, transfers)"}


def _flow(kind: str) -> str:
    if kind in _KIND_COLUMNS:
        return _KIND_COLUMNS[kind]
    if kind == "adjustment":
        return "adjusted"
    if kind.startswith("return_"):
        return "returned"
    return "other"


def _empty_flows() -> dict[str, int]:
    return dict.fromkeys((*FLOWS, "net"), 0)


def loyalty_report(
    opening: int,
    day_rows: Iterable[Sequence[Any]],
    date_from: date,
    date_to: date,
    wallet: str = "bonus",
    rule_rows: Iterable[Sequence[Any]] = (),
) -> dict[str, Any]:
    """Ledger movements per week (Monday to Sunday, cut to the period) and the liability.

    `opening`: the journal sum before `date_from`; `day_rows`: (day, kind, signed sum).
    `spent` and `expired` are shown as positive amounts; `adjusted`, `returned` (return_*
    kinds) and `other` (welcome credits, card transfers...) keep their sign. `liability` is the
    outstanding points at the end of the week: the journal sum up to then. `rule_rows`:
    (rule_id, points accrued in the period), listed in `rules` by points, descending.
    """
    per_day: dict[str, dict[str, int]] = {}
    for day, kind, amount in day_rows:
        flows = per_day.setdefault(str(day), _empty_flows())
        name = _flow(str(kind))
        value = int(amount or 0)
        flows[name] += -value if name in ("spent", "expired") else value
        flows["net"] += value
    weeks: list[dict[str, Any]] = []
    total = _empty_flows()
    liability = opening
    for day in days_between(date_from, date_to):
        if not weeks or day.weekday() == 0:
            weeks.append({"week": day.isoformat(), "to": day.isoformat(), **_empty_flows()})
        week = weeks[-1]
        week["to"] = day.isoformat()
        for name, value in per_day.get(day.isoformat(), {}).items():
            week[name] += value
            total[name] += value
        liability += per_day.get(day.isoformat(), {}).get("net", 0)
        week["liability"] = liability
    return {
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "wallet": wallet,
        "opening_liability": opening,
        "closing_liability": liability,
        "total": total,
        "weeks": weeks,
        "rules": sorted(
            ({"rule_id": str(r[0]), "accrued": int(r[1] or 0)} for r in rule_rows),
            key=lambda r: (-r["accrued"], r["rule_id"]),
        ),
    }


def _promotion_figures(values: Sequence[int]) -> dict[str, Any]:
    receipts, with_, revenue, revenue_with, discount, accrued, reversed_ = values
    without, revenue_without = receipts - with_, revenue - revenue_with
    return {
        "receipts": receipts,
        "receipts_with": with_,
        "receipts_without": without,
        "revenue_minor": revenue,
        "revenue_with_minor": revenue_with,
        "revenue_without_minor": revenue_without,
        "average_with_minor": _div_half_even(revenue_with, with_),
        "average_without_minor": _div_half_even(revenue_without, without),
        "share_with": _share(with_, receipts),
        "discount_minor": discount,
        "bonus_accrued": accrued,
        "bonus_reversed": reversed_,
    }


def promotion_report(
    promotion_id: str,
    touched_rows: Iterable[Sequence[Any]],
    all_rows: Iterable[Sequence[Any]],
    ledger_rows: Iterable[Sequence[Any]],
    stores: Sequence[str],
    date_from: date,
    date_to: date,
    wallet: str = "bonus",
) -> dict[str, Any]:
    """What one promotion did, per day and in total.

    `touched_rows`: (day, receipts the promotion touched, their revenue, the discount it gave);
    `all_rows`: (day, receipts, revenue) of every sale in `stores` (the stores where it touched
    a receipt); `ledger_rows`: (day, kind, signed sum) of its `accrue` and `return_accrual`
    movements. Receipts without = all - with; `bonus_reversed` is positive. Missing days are 0.
    """
    values: dict[str, list[int]] = {}

    def of(day: Any) -> list[int]:
        return values.setdefault(str(day), [0] * 7)

    for day, receipts, revenue, discount in touched_rows:
        row = of(day)
        row[1] += int(receipts or 0)
        row[3] += int(revenue or 0)
        row[4] += int(discount or 0)
    for day, receipts, revenue in all_rows:
        row = of(day)
        row[0] += int(receipts or 0)
        row[2] += int(revenue or 0)
    for day, kind, amount in ledger_rows:
        if kind == "accrue":
            of(day)[5] += int(amount or 0)
        elif kind == "return_accrual":
            of(day)[6] -= int(amount or 0)
    totals = [0] * 7
    days = []
    for day in days_between(date_from, date_to):
        found = values.get(day.isoformat(), [0] * 7)
        totals = [a + b for a, b in zip(totals, found, strict=True)]
        days.append({"day": day.isoformat(), **_promotion_figures(found)})
    return {
        "promotion_id": promotion_id,
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "wallet": wallet,
        "stores": sorted(stores),
        "total": _promotion_figures(totals),
        "days": days,
    }


NO_CATEGORY = "(no category)"


def categories_report(
    rows: Iterable[Sequence[Any]],
    date_from: date,
    date_to: date,
    *,
    limit: int = 15,
    store_id: str | None = None,
) -> dict[str, Any]:
    """The top `limit` categories by net revenue, the rest summed into `other_revenue_minor`.

    `rows`: (category, net revenue, discount, receipts, lines); ties broken by name.
    """
    found: list[dict[str, Any]] = [
        {
            "category": str(r[0] or "") or NO_CATEGORY,
            "revenue_minor": int(r[1] or 0),
            "discount_minor": int(r[2] or 0),
            "receipts": int(r[3] or 0),
            "lines": int(r[4] or 0),
        }
        for r in rows
    ]
    found.sort(key=lambda c: (-c["revenue_minor"], c["category"]))
    return {
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "store_id": store_id,
        "revenue_minor": sum(c["revenue_minor"] for c in found),
        "categories": found[:limit],
        "other_revenue_minor": sum(c["revenue_minor"] for c in found[limit:]),
        "other_categories": max(0, len(found) - limit),
    }


def segments_report(
    opening_rows: Iterable[Sequence[Any]],
    rows: Iterable[Sequence[Any]],
    date_from: date,
    date_to: date,
) -> dict[str, Any]:
    """Members of every segment at the end of each day (the last count recorded by then).

    `opening_rows`: (segment_id, name, members) as of before `date_from`; `rows`: (segment_id,
    name, day, members) in time order. A day before a segment's first count shows 0.
    """
    names: dict[str, str] = {}
    start: dict[str, int] = {}
    for segment_id, name, members in opening_rows:
        names[str(segment_id)] = str(name or segment_id)
        start[str(segment_id)] = int(members)
    last: dict[tuple[str, str], int] = {}
    for segment_id, name, day, members in rows:
        names.setdefault(str(segment_id), str(name or segment_id))
        last[(str(segment_id), str(day))] = int(members)
    days = [d.isoformat() for d in days_between(date_from, date_to)]
    segments = []
    for segment_id in sorted(names):
        current = start.get(segment_id, 0)
        counts = []
        for day in days:
            current = last.get((segment_id, day), current)
            counts.append(current)
        segments.append({"segment_id": segment_id, "name": names[segment_id], "members": counts})
    return {
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "days": days,
        "segments": segments,
    }
