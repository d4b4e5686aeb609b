"""Returns, and hypothesis properties over a mixed promotion set of every kind."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_engine import (
    CustomerState,
    InvalidReceipt,
    PersonalOffer,
    Receipt,
    ReceiptLine,
    calculate,
    calculate_return,
    load_promotion_set,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _promo(pid: str, kind: str, priority: int, **fields: Any) -> dict[str, Any]:
    return {"promotion_id": pid, "kind": kind, "status": "active", "priority": priority, **fields}


DOCS = [
    _promo("FLOOR", "price_floor", 0, goods={"categories": ["c1"]}, max_discount_percent="30"),
    _promo("T", "threshold_discount", 1, steps=[{"min_total_minor": 1000, "percent": "5"}]),
    _promo("G", "goods_discount", 2, goods={"categories": ["c0", "c1"]}, percent="12.5"),
    _promo("L", "ladder", 3, goods={"categories": ["c2"]}, steps=["0", "25", "50"]),
    _promo("B", "buy_get", 4, goods={"categories": ["c3"]}, buy=2, get=1),
    _promo(
        "S",
        "set_price",
        5,
        components=[
            {"goods": {"categories": ["c0"]}, "qty": 1},
            {"goods": {"categories": ["c3"]}, "qty": 1},
        ],
        price_minor=150,
    ),
    _promo("PO", "personal_offers", 6),
    _promo("AMT", "goods_discount", 7, goods={"products": ["P1", "P2"]}, amount_off_minor=40),
    _promo(
        "X", "goods_discount", 8, goods={"categories": ["c2"]}, percent="40", stacking="exclusive"
    ),
    _promo("BE1", "goods_discount", 9, goods={"products": ["P4"]}, percent="15", stacking="best"),
    _promo("BE2", "goods_discount", 10, goods={"categories": ["c0"]}, percent="9", stacking="best"),
    _promo(
        "ADD", "goods_discount", 11, goods={"products": ["P5"]}, percent="5", stacking="additive"
    ),
    _promo("ACC", "accrual_percent", 100, percent="3", requires_card=True, delay_days=3),
    _promo("CH", "accrual_per_amount", 101, per_amount_minor=500, points=1, wallet="chips"),
]
CAP_SETTINGS = {"max_discount_share": "0.4", "bonus_max_share": "0.5"}
PROMOTIONS = load_promotion_set(DOCS, version=9, settings=CAP_SETTINGS)

lines_st = st.lists(
    st.tuples(
        st.integers(0, 5),  # product
        st.integers(0, 3),  # category
        st.integers(1, 4),  # whole units
        st.integers(0, 2000),  # unit price
        st.one_of(st.none(), st.integers(0, 2000)),  # unit cost
    ),
    min_size=1,
    max_size=12,
)


def _receipt(raw: list[tuple[int, int, int, int, int | None]], card: bool) -> Receipt:
    lines = tuple(
        ReceiptLine(
            i + 1,
            f"P{p}",
            units * 1000,
            price,
            units * price,
            category=f"c{c}",
            cost_minor=cost,
        )
        for i, (p, c, units, price, cost) in enumerate(raw)
    )
    customer = CustomerState(personal_offers=(PersonalOffer("o", ("P3",), Decimal("20")),))
    return Receipt(
        lines, NOW, "S1", card_no="C1" if card else None, bonus_balance=10**6, customer=customer
    )


def _floor(line: ReceiptLine) -> int:
    floor = 0
    if line.cost_minor is not None:
        floor = min(line.amount_minor, line.qty_milli * line.cost_minor // 1000)
    if line.category == "c1":
        floor = max(floor, line.amount_minor - (line.amount_minor * 30 + 50) // 100)
    return floor


@settings(max_examples=150, deadline=None)
@given(raw=lines_st, card=st.booleans(), spend_share=st.integers(0, 100))
def test_invariants_sums_floors_caps_determinism(
    raw: list[tuple[int, int, int, int, int | None]], card: bool, spend_share: int
) -> None:
    r = _receipt(raw, card)
    first = calculate(r, PROMOTIONS)
    spend = first.bonus_payable_max * spend_share // 100
    calc = calculate(r, PROMOTIONS, bonus_to_spend=spend)
    assert calc.discount_minor == sum(res.discount_minor for res in calc.lines)
    assert calc.total_minor == calc.subtotal_minor - calc.discount_minor
    assert calc.discount_minor <= calc.subtotal_minor * 4 // 10 + 1
    for line, res in zip(r.lines, calc.lines, strict=True):
        assert all(d.amount_minor > 0 for d in res.discounts)
        assert res.total_minor >= 0
        assert res.total_minor >= _floor(line) - 1  # floor is rounded half-even, not down
    assert spend <= calc.total_minor // 2 + 1
    again = calculate(
        r, load_promotion_set(DOCS, version=9, settings=CAP_SETTINGS), bonus_to_spend=spend
    )
    assert again.to_dict() == calc.to_dict()


@settings(max_examples=100, deadline=None)
@given(raw=lines_st, data=st.data())
def test_return_is_the_inverse_of_the_sale(
    raw: list[tuple[int, int, int, int, int | None]], data: st.DataObject
) -> None:
    r = _receipt(raw, True)
    payable = calculate(r, PROMOTIONS).bonus_payable_max
    sale = calculate(r, PROMOTIONS, bonus_to_spend=payable // 2)
    full = calculate_return(r, sale, {line.line_no: line.qty_milli for line in r.lines})
    assert full.refund_minor == sale.total_minor
    assert full.bonus_refund == sale.bonus_to_spend
    assert full.cash_refund_minor == sale.to_pay_minor
    assert sorted((a.rule_id, a.amount) for a in full.accrual_reversals) == sorted(
        (a.rule_id, a.amount) for a in sale.accruals if a.amount
    )
    # Two partial returns (any split of each line) add up to the full return.
    first = {
        line.line_no: q for line in r.lines if (q := data.draw(st.integers(0, line.qty_milli))) > 0
    }
    rest = {
        line.line_no: line.qty_milli - first.get(line.line_no, 0)
        for line in r.lines
        if line.qty_milli - first.get(line.line_no, 0) > 0
    }
    one = calculate_return(r, sale, first)
    two = calculate_return(r, sale, rest, already_returned=first)
    assert one.refund_minor + two.refund_minor == full.refund_minor
    assert one.bonus_refund + two.bonus_refund == full.bonus_refund
    acc = {}
    for a in one.accrual_reversals + two.accrual_reversals:
        acc[a.rule_id] = acc.get(a.rule_id, 0) + a.amount
    assert acc == {a.rule_id: a.amount for a in full.accrual_reversals}


def test_partial_return_by_hand() -> None:
    r = Receipt(
        (ReceiptLine(1, "A", 3000, 1000, 3000), ReceiptLine(2, "B", 1000, 1000, 1000)),
        NOW,
        "S1",
        card_no="C1",
        bonus_balance=1000,
    )
    docs = [
        _promo("T", "threshold_discount", 1, steps=[{"min_total_minor": 0, "percent": "10"}]),
        _promo("ACC", "accrual_percent", 100, percent="5"),
    ]
    sale = calculate(r, load_promotion_set(docs, version=1), bonus_to_spend=360)
    # 4 000 - 400 = 3 600; bonus 360 spent; 5 % of 3 240 = 162 accrued.
    assert (sale.total_minor, sale.accruals[0].amount) == (3600, 162)
    back = calculate_return(r, sale, {1: 1000})
    # One of three units of line 1: 1 000 - 100 = 900 back, a quarter of the receipt.
    assert (back.refund_minor, back.bonus_refund, back.cash_refund_minor) == (900, 90, 810)
    assert back.lines[0].discounts[0].amount_minor == 100
    assert [(a.rule_id, a.amount) for a in back.accrual_reversals] == [("ACC", 40)]
    with pytest.raises(InvalidReceipt, match=r"returned\[1\]"):
        calculate_return(r, sale, {1: 3000}, already_returned={1: 1000})
