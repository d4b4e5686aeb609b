"""Head-office reports: plain rows into report dicts, and hand-written SVG charts of them.

Pure and deterministic: no I/O, no clock, the same input gives the same bytes. Sums are int
minor units; Decimal only for rates and the half-even rounding of averages; floats only place
pixels. Days are UTC calendar days, weeks start on Monday.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from center.errors import MalformedRequest

__all__ = [
    "MAX_DAYS",
    "MAX_STORE_BARS",
    "NO_CATEGORY",
    "PROMOTION_MAX_DAYS",
    "Chart",
    "Series",
    "bar_chart",
    "categories_report",
    "categories_svg",
    "days_between",
    "format_count",
    "format_minor",
    "line_chart",
    "loyalty_report",
    "loyalty_svg",
    "parse_period",
    "promotion_report",
    "promotion_svg",
    "report_html",
    "sales_report",
    "sales_svg",
    "segments_report",
    "segments_svg",
    "svg_document",
]

MONEY_DECIMALS = 2
"""Minor units per major unit as a power of ten (cents)."""

_KIND_COLUMNS = {"accrue": "accrued", "spend": "spent", "expire": "expired"}
"""Ledger kinds with a column of their own; `adjustment` and `return_*` have theirs too."""

PALETTE = ("#1f6fb4", "#e0782a", "#2e9b4f", "#c23b3b", "#7b55b3", "#8c6239", "#d45fa8", "#6f6f6f")
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


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


_FLOWS = ("accrued", "spent", "expired", "adjusted", "returned", "other")
_FLOW_NAMES = {"returned": "returns", "other": "other (welcome, transfers)"}


def _flow(kind: str) -> str:
    if kind in _KIND_COLUMNS:
        return _KIND_COLUMNS[kind]
    if kind == "adjustment":
        return "adjusted"
    if kind.startswith("return_"):
        return "returned"
    return "other"


def _empty_flows() -> dict[str, int]:
    return dict.fromkeys((*_FLOWS, "net"), 0)


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


# -- SVG ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a line chart: a name for the legend and one int per label."""

    name: str
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """A drawn chart: its size in pixels and its SVG elements (without the <svg> root)."""

    width: int
    height: int
    body: str


def _text(value: str) -> str:
    """Text safe in SVG content and attribute values (markup escaped, XML-illegal chars gone)."""
    return html.escape(_XML_BAD.sub("", value), quote=True)


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _ticks(lo: int, hi: int, count: int = 5) -> list[int]:
    """Round ticks (1, 2 or 5 times a power of ten apart) covering [lo, hi], at most count+1."""
    if hi <= lo:
        hi = lo + 1
    span = hi - lo
    step = 1
    power = 1
    while True:
        found = next((m * power for m in (1, 2, 5) if -(-span // (m * power)) <= count), None)
        if found is not None:
            step = found
            break
        power *= 10
    first = (lo // step) * step
    last = -(-hi // step) * step
    return list(range(first, last + 1, step))


def _label(value: int, money: bool, step: int) -> str:
    if not money:
        return format_count(value)
    return format_minor(value, fraction=step % 10**MONEY_DECIMALS != 0)


def _value_text(value: int, money: bool) -> str:
    return format_minor(value) if money else format_count(value)


def _short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _frame(width: int, height: int, title: str, unit: str, unit_y: int) -> list[str]:
    parts = [
        f'<rect class="background" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text class="title" x="{width // 2}" y="24" text-anchor="middle" font-size="16" '
        f'font-weight="bold" fill="#222222">{_text(title)}</text>',
    ]
    if unit:
        parts.append(
            f'<text class="unit" x="12" y="{unit_y}" font-size="11" fill="#555555">'
            f"{_text(unit)}</text>"
        )
    return parts


def _legend(names: Sequence[str], width: int, y: int) -> list[str]:
    parts = []
    x = 80.0
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        label = _short(name, 28)
        parts.append(
            f'<g class="legend-item"><rect x="{_num(x)}" y="{y - 9}" width="12" height="12" '
            f'fill="{color}"/><text x="{_num(x + 17)}" y="{y + 1}" font-size="12" '
            f'fill="#222222">{_text(label)}</text></g>'
        )
        x += 30 + 7 * len(label)
        if x > width - 120:
            break
    return parts


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    money: bool = False,
    unit: str = "",
    width: int = 760,
    height: int = 340,
) -> Chart:
    """Lines over labelled points (days, weeks): axes, ticks, legend, one circle per value."""
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(f"series {s.name!r}: {len(s.values)} values for {len(labels)} labels")
    left, right, top, bottom = 90, 40, 72, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _frame(width, height, title, unit, top - 12)
    parts += _legend([s.name for s in series], width, 44)
    values = [v for s in series for v in s.values]
    if not labels or not series:
        parts.append(
            f'<text class="empty" x="{width // 2}" y="{height // 2}" text-anchor="middle" '
            f'font-size="13" fill="#777777">no data</text>'
        )
        return Chart(width, height, "".join(parts))
    ticks = _ticks(min(0, *values), max(0, *values))
    lo, hi = ticks[0], ticks[-1]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1

    def y_of(value: int) -> float:
        return top + plot_h - (value - lo) * plot_h / (hi - lo)

    def x_of(i: int) -> float:
        return left + (plot_w / 2 if len(labels) == 1 else i * plot_w / (len(labels) - 1))

    parts.append('<g class="y-axis">')
    for tick in ticks:
        y = _num(y_of(tick))
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#e4e4e4"/>'
            f'<text class="tick" x="{left - 6}" y="{y}" dy="4" text-anchor="end" font-size="11" '
            f'fill="#444444">{_text(_label(tick, money, step))}</text>'
        )
    parts.append("</g>")
    zero = _num(y_of(0))
    parts.append(
        f'<line class="axis" x1="{left}" y1="{zero}" x2="{left + plot_w}" y2="{zero}" '
        f'stroke="#888888"/><line class="axis" x1="{left}" y1="{top}" x2="{left}" '
        f'y2="{top + plot_h}" stroke="#888888"/>'
    )
    every = -(-len(labels) // 10)
    parts.append('<g class="x-axis">')
    for i, label in enumerate(labels):
        if i % every and i != len(labels) - 1:
            continue
        if i != len(labels) - 1 and len(labels) - 1 - i < every / 2:
            continue  # the last label always shows; drop a neighbour it would overlap
        x = _num(x_of(i))
        parts.append(
            f'<line x1="{x}" y1="{top + plot_h}" x2="{x}" y2="{top + plot_h + 4}" '
            f'stroke="#888888"/><text class="tick" x="{x}" y="{top + plot_h + 18}" '
            f'text-anchor="middle" font-size="11" fill="#444444">{_text(_short(label, 12))}</text>'
        )
    parts.append("</g>")
    for n, s in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{_num(x_of(i))},{_num(y_of(v))}" for i, v in enumerate(s.values))
        parts.append(
            f'<g class="series" data-series="{_text(s.name)}"><polyline points="{points}" '
            f'fill="none" stroke="{color}" stroke-width="2"/>'
        )
        radius = 3 if len(labels) <= 60 else 1.5
        for i, v in enumerate(s.values):
            parts.append(
                f'<circle class="point" cx="{_num(x_of(i))}" cy="{_num(y_of(v))}" r="{radius}" '
                f'fill="{color}" data-label="{_text(labels[i])}" data-value="{v}"><title>'
                f"{_text(s.name)} {_text(labels[i])}: {_text(_value_text(v, money))}"
                "</title></circle>"
            )
        parts.append("</g>")
    return Chart(width, height, "".join(parts))


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[int],
    *,
    money: bool = False,
    unit: str = "",
    width: int = 760,
) -> Chart:
    """Horizontal bars, one per label (stores, categories), each with its value at its end."""
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values for {len(labels)} labels")
    left, right, top, bottom, bar_h = 190, 110, 56, 40, 24
    height = top + max(1, len(labels)) * bar_h + bottom
    plot_w = width - left - right
    parts = _frame(width, height, title, unit, top - 10)
    if not labels:
        parts.append(
            f'<text class="empty" x="{width // 2}" y="{top + 16}" text-anchor="middle" '
            f'font-size="13" fill="#777777">no data</text>'
        )
        return Chart(width, height, "".join(parts))
    ticks = _ticks(min(0, *values), max(0, *values))
    lo, hi = ticks[0], ticks[-1]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    bottom_y = top + len(labels) * bar_h

    def x_of(value: int) -> float:
        return left + (value - lo) * plot_w / (hi - lo)

    parts.append('<g class="x-axis">')
    for tick in ticks:
        x = _num(x_of(tick))
        parts.append(
            f'<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom_y}" stroke="#e4e4e4"/>'
            f'<text class="tick" x="{x}" y="{bottom_y + 16}" text-anchor="middle" '
            f'font-size="11" fill="#444444">{_text(_label(tick, money, step))}</text>'
        )
    parts.append("</g>")
    zero = x_of(0)
    parts.append(
        f'<line class="axis" x1="{_num(zero)}" y1="{top}" x2="{_num(zero)}" y2="{bottom_y}" '
        f'stroke="#888888"/>'
    )
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * bar_h
        end = x_of(value)
        x0, x1 = min(zero, end), max(zero, end)
        color = PALETTE[0] if value >= 0 else PALETTE[3]
        parts.append(
            f'<text class="bar-label" x="{left - 8}" y="{y + bar_h / 2 + 4:.1f}" '
            f'text-anchor="end" font-size="12" fill="#222222">{_text(_short(label, 26))}</text>'
            f'<rect class="bar" x="{_num(x0)}" y="{y + 3}" width="{_num(x1 - x0)}" '
            f'height="{bar_h - 6}" fill="{color}" data-label="{_text(label)}" '
            f'data-value="{value}"><title>{_text(label)}: {_text(_value_text(value, money))}'
            f'</title></rect><text class="bar-value" x="{_num(x1 + 5)}" '
            f'y="{y + bar_h / 2 + 4:.1f}" font-size="11" fill="#444444">'
            f"{_text(_value_text(value, money))}</text>"
        )
    return Chart(width, height, "".join(parts))


def svg_document(*charts: Chart) -> str:
    """One standalone SVG with the charts stacked top to bottom."""
    width = max((c.width for c in charts), default=0)
    height = sum(c.height for c in charts)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}>'
    ]
    y = 0
    for chart in charts:
        parts.append(f'<g class="chart" transform="translate(0,{y})">{chart.body}</g>')
        y += chart.height
    parts.append("</svg>\n")
    return "".join(parts)


def _period(report: Mapping[str, Any]) -> str:
    where = f", store {report['store_id']}" if report.get("store_id") else ""
    return f"{report['from']} to {report['to']}{where}"


MAX_STORE_BARS = 40
"""Stores drawn in the per-store chart (the best by revenue); the JSON lists them all."""


def _store_label(store: Mapping[str, Any]) -> str:
    name, store_id = str(store["name"]), str(store["store_id"])
    return name if name == store_id else f"{name} ({store_id})"


def sales_svg(report: Mapping[str, Any]) -> str:
    """Revenue and discount per day, then revenue per store."""
    days = report["days"]
    labels = [d["day"][5:] for d in days]
    daily = line_chart(
        f"Sales per day, {_period(report)}",
        labels,
        [
            Series("revenue", tuple(d["revenue_minor"] for d in days)),
            Series("discount", tuple(d["discount_minor"] for d in days)),
            Series("refunds", tuple(d["refund_minor"] for d in days)),
        ],
        money=True,
        unit="currency units (UTC days)",
    )
    receipts = line_chart(
        "Receipts per day",
        labels,
        [
            Series("receipts", tuple(d["receipts"] for d in days)),
            Series("with a card", tuple(d["card_receipts"] for d in days)),
        ],
        unit="receipts",
        height=260,
    )
    stores = report["stores"][:MAX_STORE_BARS]
    shown = (
        f" (top {len(stores)} of {len(report['stores'])})"
        if len(stores) < len(report["stores"])
        else ""
    )
    per_store = bar_chart(
        f"Revenue per store{shown}",
        [_store_label(s) for s in stores],
        [s["revenue_minor"] for s in stores],
        money=True,
        unit="currency units",
    )
    return svg_document(daily, receipts, per_store)


def loyalty_svg(report: Mapping[str, Any]) -> str:
    """Points accrued, spent, expired per week, then the outstanding liability."""
    weeks = report["weeks"]
    labels = [w["week"][5:] for w in weeks]
    flows = line_chart(
        f"Loyalty points per week ({report['wallet']}), {_period(report)}",
        labels,
        [
            Series(_FLOW_NAMES.get(name, name), tuple(w[name] for w in weeks))
            for name in _FLOWS
            if any(w[name] for w in weeks) or name in ("accrued", "spent", "expired")
        ],
        unit="points (weeks from Monday)",
    )
    liability = line_chart(
        "Outstanding points at the end of each week",
        labels,
        [Series("liability", tuple(w["liability"] for w in weeks))],
        unit="points",
        height=260,
    )
    rules = report["rules"][:MAX_STORE_BARS]
    if not rules:
        return svg_document(flows, liability)
    per_rule = bar_chart(
        "Points accrued per rule",
        [r["rule_id"] for r in rules],
        [r["accrued"] for r in rules],
        unit="points",
    )
    return svg_document(flows, liability, per_rule)


def categories_svg(report: Mapping[str, Any]) -> str:
    """Net revenue of the top categories."""
    found = report["categories"]
    return svg_document(
        bar_chart(
            f"Top categories by revenue, {_period(report)}",
            [c["category"] for c in found],
            [c["revenue_minor"] for c in found],
            money=True,
            unit="currency units, after discounts, returns subtracted",
        )
    )


def segments_svg(report: Mapping[str, Any]) -> str:
    """Members of each segment per day."""
    return svg_document(
        line_chart(
            f"Segment members, {_period(report)}",
            [d[5:] for d in report["days"]],
            [Series(s["name"], tuple(s["members"])) for s in report["segments"]],
            unit="customers",
        )
    )


def promotion_svg(report: Mapping[str, Any]) -> str:
    """Receipts with and without the promotion per day, the money, then its points."""
    days = report["days"]
    labels = [d["day"][5:] for d in days]
    title = f"Promotion {report['promotion_id']}, {_period(report)}"
    receipts = line_chart(
        title,
        labels,
        [
            Series("receipts with it", tuple(d["receipts_with"] for d in days)),
            Series("receipts without it", tuple(d["receipts_without"] for d in days)),
        ],
        unit="receipts in the stores where it applied",
    )
    money = line_chart(
        "Revenue and discount per day",
        labels,
        [
            Series("revenue with it", tuple(d["revenue_with_minor"] for d in days)),
            Series("revenue without it", tuple(d["revenue_without_minor"] for d in days)),
            Series("average with it", tuple(d["average_with_minor"] for d in days)),
            Series("average without it", tuple(d["average_without_minor"] for d in days)),
            Series("discount given", tuple(d["discount_minor"] for d in days)),
        ],
        money=True,
        unit="currency units",
    )
    points = line_chart(
        f"Points of the promotion ({report['wallet']})",
        labels,
        [
            Series("accrued", tuple(d["bonus_accrued"] for d in days)),
            Series("reversed by returns", tuple(d["bonus_reversed"] for d in days)),
        ],
        unit="points",
        height=260,
    )
    return svg_document(receipts, money, points)


# -- HTML ---------------------------------------------------------------------------------------


def _kpi_rows(sales: Mapping[str, Any], loyalty: Mapping[str, Any]) -> list[tuple[str, str]]:
    total = sales["total"]
    flows = loyalty["total"]
    share = Decimal(total["card_share"]) * 100
    return [
        ("Receipts", format_count(total["receipts"])),
        ("Revenue", format_minor(total["revenue_minor"])),
        ("Discounts", format_minor(total["discount_minor"])),
        ("Average receipt", format_minor(total["average_receipt_minor"])),
        ("Receipts with a card", f"{format_count(total['card_receipts'])} ({share:.1f} %)"),
        ("Returns", f"{format_count(total['returns'])} ({format_minor(total['refund_minor'])})"),
        ("Net revenue", format_minor(total["net_revenue_minor"])),
        (f"Points accrued ({loyalty['wallet']})", format_count(flows["accrued"])),
        ("Points spent", format_count(flows["spent"])),
        ("Points expired", format_count(flows["expired"])),
        (
            "Points adjusted / returned / other",
            " / ".join(format_count(flows[k]) for k in ("adjusted", "returned", "other")),
        ),
        ("Outstanding points at the start", format_count(loyalty["opening_liability"])),
        ("Outstanding points at the end", format_count(loyalty["closing_liability"])),
    ]


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> str:
    cells = "".join(f"<th>{_text(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_text(v)}</td>' if i >= numeric_from else f"<td>{_text(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def report_html(
    sales: Mapping[str, Any],
    loyalty: Mapping[str, Any],
    categories: Mapping[str, Any],
    svgs: Sequence[str],
) -> str:
    """One self-contained page: the KPI table, sales per store, then the charts inline."""
    stores = _table(
        ("store", "receipts", "revenue", "average receipt", "card share", "discounts"),
        (
            (
                _store_label(s),
                format_count(s["receipts"]),
                format_minor(s["revenue_minor"]),
                format_minor(s["average_receipt_minor"]),
                f"{Decimal(s['card_share']) * 100:.1f} %",
                format_minor(s["discount_minor"]),
            )
            for s in sales["stores"]
        ),
    )
    cats = _table(
        ("category", "revenue", "discounts", "receipts"),
        (
            (
                c["category"],
                format_minor(c["revenue_minor"]),
                format_minor(c["discount_minor"]),
                format_count(c["receipts"]),
            )
            for c in categories["categories"]
        ),
    )
    charts = "".join(f'<div class="chart">{svg}</div>' for svg in svgs)
    title = f"Loyalty report {sales['from']} to {sales['to']}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_text(title)}</title><style>"
        "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0 24px}"
        "th,td{border:1px solid #ddd;padding:4px 10px}th{background:#f3f3f3;text-align:left}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums}.chart{margin:12px 0}"
        f"</style></head><body><h1>{_text(title)}</h1>"
        "<p>Amounts in currency units; days are UTC days, weeks start on Monday.</p>"
        f"<h2>Key figures</h2>{_table(('figure', 'value'), _kpi_rows(sales, loyalty))}"
        f"<h2>Stores</h2>{stores}<h2>Top categories</h2>{cats}<h2>Charts</h2>{charts}"
        "</body></html>\n"
    )
