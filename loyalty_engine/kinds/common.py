"""Helpers shared by the rule kinds."""

from __future__ import annotations

from ..model import ReceiptLine

__all__ = ["n", "pct", "units"]


def n(amount: int) -> str:
    """An integer with thin-space thousands: 10834 -> '10 834'."""
    return f"{amount:,}".replace(",", " ")


def pct(value: object) -> str:
    """A Decimal percent as plain text: Decimal('5.0') -> '5'."""
    from decimal import Decimal

    assert isinstance(value, Decimal)
    return format(value.normalize(), "f")


def units(lines: tuple[ReceiptLine, ...], indexes: list[int]) -> list[tuple[int, int]]:
    """Whole units of the given lines as (unit_price_minor, line index), receipt order."""
    out: list[tuple[int, int]] = []
    for i in indexes:
        line = lines[i]
        out.extend((line.unit_price_minor, i) for _ in range(line.qty_milli // 1000))
    return out
