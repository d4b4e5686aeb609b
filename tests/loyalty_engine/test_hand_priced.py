"""Issue 12's engine differences, each priced by hand (the arithmetic is in the comments)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loyalty_engine import (
    Calculation,
    CustomerState,
    Receipt,
    ReceiptLine,
    calculate,
    load_promotion_set,
)

# A Saturday, noon UTC.
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def line(no: int, pid: str, units: int, price: int, **fields: Any) -> ReceiptLine:
    """``units`` whole units of ``pid`` at ``price``."""
    return ReceiptLine(no, pid, units * 1000, price, units * price, **fields)


def receipt(*lines: ReceiptLine, **fields: Any) -> Receipt:
    fields.setdefault("now", NOW)
    fields.setdefault("store_id", "S1")
    return Receipt(lines=lines, **fields)


def promo(pid: str, kind: str, priority: int = 10, **fields: Any) -> dict[str, Any]:
    return {"promotion_id": pid, "kind": kind, "status": "active", "priority": priority, **fields}


def run(
    r: Receipt, *docs: dict[str, Any], settings: dict[str, str] | None = None, **kw: Any
) -> Calculation:
    return calculate(r, load_promotion_set(docs, version=1, settings=settings), **kw)


# -- rounding once per line ------------------------------------------------------------------


def test_ladder_rounds_once_per_line() -> None:
    doc = promo("L", "ladder", goods={"products": ["A"]}, steps=["0", "10", "20", "30"])
    calc = run(receipt(line(1, "A", 5, 1005)), doc)
    # Units at 0/10/20/30/30 % of 10.05: rates add up to 90 %; 1005 * 0.90 = 904.5 -> 904
    # (half to even). Per unit it was 0 + 100.5->100 + 201 + 301.5->302 + 302 = 905.
    assert calc.discount_minor == 904
    # Four units were discounted (the first one is paid in full).
    assert calc.promo_qty_milli == (("L", 4000),)


def test_every_nth_unit_rounds_once_per_line() -> None:
    doc = promo("B", "buy_get", goods={"products": ["A"]}, buy=1, get=1, percent="50")
    calc = run(receipt(line(1, "A", 4, 333)), doc)
    # 4 units -> 2 fires -> 2 units at 50 %: 2 * 333 * 0.5 = 333 (per unit 166.5 -> 166, 332).
    assert calc.discount_minor == 333
    assert calc.promo_qty_milli == (("B", 2000),)


# -- promo quantity counters count the discounted units --------------------------------------


def test_quantity_limit_counts_discounted_units_only() -> None:
    doc = promo(
        "B",
        "buy_get",
        goods={"products": ["A"]},
        buy=2,
        get=1,
        limits={"max_qty_per_day_milli": 2000},
    )
    customer = CustomerState(qty_day_milli={"B": 1000})
    calc = run(receipt(line(1, "A", 6, 300), card_no="C1", customer=customer), doc)
    # 6 units -> 2 free units (600); 1 of the day's 2 promo units is used, 1 left: half the
    # line's discount stays, 600 * 1/2 = 300, and the counter grows by 1 unit, not by 6.
    assert calc.discount_minor == 300
    assert calc.promo_qty_milli == (("B", 1000),)
