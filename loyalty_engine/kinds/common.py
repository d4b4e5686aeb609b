"""Helpers shared by the rule kinds."""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from ..fields import FieldReader
from ..model import ReceiptLine

__all__ = ["add_months", "expiry", "n", "parse_lifetime", "pct", "units"]


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, on the same wall-clock time; a day the month lacks
    becomes its last day (31 January + 1 month = 28 or 29 February)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def expiry(
    start_utc: datetime,
    local_now: datetime,
    lifetime_days: int | None,
    lifetime_months: int | None = None,
) -> datetime | None:
    """When points credited at ``start_utc`` burn: after days, or calendar months counted in
    the store's time zone (``local_now``'s); ``None``: never."""
    if lifetime_days is not None:
        return start_utc + timedelta(days=lifetime_days)
    if lifetime_months is not None:
        local = start_utc.astimezone(local_now.tzinfo)
        return add_months(local, lifetime_months).astimezone(UTC)
    return None


def parse_lifetime(reader: FieldReader) -> tuple[int | None, int | None]:
    """``lifetime_days`` or ``lifetime_months`` (at most one of them)."""
    days = reader.int_("lifetime_days", None, min_value=1, max_value=36600)
    months = reader.int_("lifetime_months", None, min_value=1, max_value=1200)
    if days is not None and months is not None:
        reader.problem("lifetime_months", "expected only one of lifetime_days, lifetime_months")
    return days, months


def n(amount: int) -> str:
    """An integer with thin-space thousands: 10834 -> '10 834'."""
    return f"{amount:,}".replace(",", " ")


@lru_cache(maxsize=1024)
def pct(value: Decimal) -> str:
    """A Decimal percent as plain text: Decimal('5.0') -> '5' (rules hold few distinct rates)."""
    return format(value.normalize(), "f")


def units(lines: tuple[ReceiptLine, ...], indexes: list[int]) -> list[tuple[int, int]]:
    """Whole units of the given lines as (unit_price_minor, line index), receipt order."""
    out: list[tuple[int, int]] = []
    for i in indexes:
        line = lines[i]
        out.extend((line.unit_price_minor, i) for _ in range(line.qty_milli // 1000))
    return out
