"""The purchase history's period (this week, this month, or from..to), the receipts' totals per
day in the chain's time zone, and the chart of them as SVG: pure, the pages give `today`."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from center.errors import InvalidRequest

__all__ = [
    "MAX_DAYS",
    "PERIODS",
    "DayTotal",
    "Period",
    "bonus_of",
    "chart_svg",
    "day_totals",
    "parse_period",
]

PERIODS = ("week", "month", "period")
MAX_DAYS = 366
BONUS_WALLET = "bonus"


@dataclass(frozen=True, slots=True)
class Period:
    """Days `first`..`last` (both included) of the chain's calendar."""

    kind: str
    first: date
    last: date

    def days(self) -> list[date]:
        """Every day of the period, in order."""
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


@dataclass(frozen=True, slots=True)
class DayTotal:
    """One day of the history: receipts, money paid (returns subtract), bonus earned and spent."""

    day: date
    receipts: int = 0
    net_minor: int = 0
    discount_minor: int = 0
    bonus_earned: int = 0
    bonus_spent: int = 0


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise InvalidRequest(name, f"expected a date YYYY-MM-DD, got {text[:40]!r}") from None


def parse_period(kind: str, date_from: str, date_to: str, today: date) -> Period:
    """This week (Monday to today), this month (the 1st to today), or a period of at most
    MAX_DAYS days; InvalidRequest naming `from` or `to`."""
    if kind == "month":
        return Period("month", today.replace(day=1), today)
    if kind == "period":
        first = _day(date_from, "from")
        last = _day(date_to, "to") if date_to.strip() else today
        if last < first:
            raise InvalidRequest("to", "expected a day on or after the first")
        if (last - first).days + 1 > MAX_DAYS:
            raise InvalidRequest("to", f"expected at most {MAX_DAYS} days")
        return Period("period", first, last)
    return Period("week", today - timedelta(days=today.weekday()), today)


def bonus_of(receipt: Mapping[str, Any]) -> tuple[int, int]:
    """(earned, spent) bonus of one receipt, from its ledger movements (minor units)."""
    earned = spent = 0
    for movement in receipt.get("loyalty", ()):
        if movement.get("wallet") != BONUS_WALLET:
            continue
        amount = int(movement.get("amount", 0))
        if amount >= 0:
            earned += amount
        else:
            spent -= amount
    return earned, spent


def day_totals(
    receipts: Iterable[Mapping[str, Any]], period: Period, zone: ZoneInfo
) -> list[DayTotal]:
    """One DayTotal per day of the period (empty days too) from the receipts closed in it."""
    by_day: dict[date, dict[str, int]] = {
        d: {"receipts": 0, "net": 0, "discount": 0, "earned": 0, "spent": 0} for d in period.days()
    }
    for receipt in receipts:
        day = datetime.fromisoformat(str(receipt["closed_at"])).astimezone(zone).date()
        if day not in by_day:
            continue
        earned, spent = bonus_of(receipt)
        totals = by_day[day]
        totals["receipts"] += 1 if receipt.get("kind", "sale") == "sale" else 0
        totals["net"] += int(receipt.get("net_minor", receipt.get("total_minor", 0)))
        totals["discount"] += int(receipt.get("discount_minor", 0))
        totals["earned"] += earned
        totals["spent"] += spent
    return [
        DayTotal(d, t["receipts"], t["net"], t["discount"], t["earned"], t["spent"])
        for d, t in by_day.items()
    ]


def chart_svg(
    days: Sequence[DayTotal], *, title: str, money: Any, day_label: Any, empty: str
) -> str:
    """Columns of money paid per day, scaled to the largest day; `money(minor)` and
    `day_label(day)` format the texts in the page's language. Fits a phone (viewBox 360 wide)."""
    width, height, top, bottom, left = 360, 200, 28, 28, 8
    plot_h = height - top - bottom
    plot_w = width - 2 * left
    esc = html.escape
    parts = [
        f'<svg class="day-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
        f'{height}" role="img" aria-label="{esc(title)}">',
        f'<text x="{left}" y="16" font-size="12" fill="#333">{esc(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}" '
        'stroke="#999"/>',
    ]
    peak = max((max(d.net_minor, 0) for d in days), default=0)
    if not days or peak == 0:
        parts.append(
            f'<text x="{width // 2}" y="{top + plot_h // 2}" text-anchor="middle" '
            f'font-size="12" fill="#777">{esc(empty)}</text>'
        )
    else:
        slot = plot_w / len(days)
        bar = max(slot * 0.7, 1.0)
        for i, d in enumerate(days):
            value = max(d.net_minor, 0)
            h = round(value * plot_h / peak, 1)
            x = round(left + i * slot + (slot - bar) / 2, 1)
            y = round(top + plot_h - h, 1)
            parts.append(
                f'<rect class="day" x="{x}" y="{y}" width="{round(bar, 1)}" height="{h}" '
                f'fill="#2e7d5b" data-day="{d.day.isoformat()}" data-value="{d.net_minor}">'
                f"<title>{esc(day_label(d.day))}: {esc(money(d.net_minor))}</title></rect>"
            )
        marks = {0, len(days) - 1} if len(days) > 7 else set(range(len(days)))
        for i in sorted(marks):
            x = round(left + i * slot + slot / 2, 1)
            parts.append(
                f'<text x="{x}" y="{height - 10}" text-anchor="middle" font-size="10" '
                f'fill="#555">{esc(day_label(days[i].day))}</text>'
            )
        parts.append(
            f'<text x="{width - left}" y="{top - 4}" text-anchor="end" font-size="10" '
            f'fill="#555">{esc(money(peak))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
