"""Hand-written SVG charts of the report dicts: the same input gives the same bytes; floats only
place pixels."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from center.reporting.figures import (
    FLOW_NAMES,
    FLOWS,
    MONEY_DECIMALS,
    format_count,
    format_minor,
)

__all__ = [
    "FONT",
    "MAX_STORE_BARS",
    "PALETTE",
    "Chart",
    "Series",
    "bar_chart",
    "categories_svg",
    "escaped",
    "line_chart",
    "loyalty_svg",
    "promotion_svg",
    "sales_svg",
    "segments_svg",
    "store_label",
    "svg_document",
]

PALETTE = ("#1f6fb4", "#e0782a", "#2e9b4f", "#c23b3b", "#7b55b3", "#8c6239", "#d45fa8", "#6f6f6f")
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

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


def escaped(value: str) -> str:
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
        f'font-weight="bold" fill="#222222">{escaped(title)}</text>',
    ]
    if unit:
        parts.append(
            f'<text class="unit" x="12" y="{unit_y}" font-size="11" fill="#555555">'
            f"{escaped(unit)}</text>"
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
            f'fill="#222222">{escaped(label)}</text></g>'
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
            f'fill="#444444">{escaped(_label(tick, money, step))}</text>'
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
            f'text-anchor="middle" font-size="11" fill="#444444">'
            f"{escaped(_short(label, 12))}</text>"
        )
    parts.append("</g>")
    for n, s in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{_num(x_of(i))},{_num(y_of(v))}" for i, v in enumerate(s.values))
        parts.append(
            f'<g class="series" data-series="{escaped(s.name)}"><polyline points="{points}" '
            f'fill="none" stroke="{color}" stroke-width="2"/>'
        )
        radius = 3 if len(labels) <= 60 else 1.5
        for i, v in enumerate(s.values):
            parts.append(
                f'<circle class="point" cx="{_num(x_of(i))}" cy="{_num(y_of(v))}" r="{radius}" '
                f'fill="{color}" data-label="{escaped(labels[i])}" data-value="{v}"><title>'
                f"{escaped(s.name)} {escaped(labels[i])}: {escaped(_value_text(v, money))}"
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
            f'font-size="11" fill="#444444">{escaped(_label(tick, money, step))}</text>'
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
            f'text-anchor="end" font-size="12" fill="#222222">{escaped(_short(label, 26))}</text>'
            f'<rect class="bar" x="{_num(x0)}" y="{y + 3}" width="{_num(x1 - x0)}" '
            f'height="{bar_h - 6}" fill="{color}" data-label="{escaped(label)}" '
            f'data-value="{value}"><title>{escaped(label)}: {escaped(_value_text(value, money))}'
            f'</title></rect><text class="bar-value" x="{_num(x1 + 5)}" '
            f'y="{y + bar_h / 2 + 4:.1f}" font-size="11" fill="#444444">'
            f"{escaped(_value_text(value, money))}</text>"
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


def store_label(store: Mapping[str, Any]) -> str:
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
        [store_label(s) for s in stores],
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
            Series(FLOW_NAMES.get(name, name), tuple(w[name] for w in weeks))
            for name in FLOWS
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
