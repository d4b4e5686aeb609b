from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_engine import (
    PromotionSet,
    Receipt,
    ReceiptLine,
    calculate,
    default_promotions,
    default_settings,
    load_promotion_set,
    percent_of,
    share_of,
)

amounts = st.integers(min_value=0, max_value=2_000_000)
percents = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False)
shares = st.decimals(min_value=0, max_value=1, places=2, allow_nan=False)


@st.composite
def receipts(draw: st.DrawFn) -> Receipt:
    line_amounts = draw(st.lists(amounts, max_size=12))
    lines = tuple(
        ReceiptLine(i + 1, f"P{i}", 1000, amount, amount) for i, amount in enumerate(line_amounts)
    )
    now = draw(
        st.datetimes(
            min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        )
    )
    card = draw(st.sampled_from([None, "C1"]))
    return Receipt(
        lines=lines,
        now=now,
        store_id=draw(st.sampled_from(["S1", "S2"])),
        store_format=draw(st.sampled_from(["", "discounter"])),
        card_no=card,
        bonus_balance=draw(st.integers(min_value=0, max_value=5_000_000)),
    )


Steps = tuple[tuple[int, Decimal], ...]


@st.composite
def promotion_sets(draw: st.DrawFn) -> tuple[PromotionSet, Steps]:
    """One threshold discount with random steps plus one accrual; returns the steps too."""
    mins = draw(st.sets(st.integers(min_value=0, max_value=3_000_000), min_size=1, max_size=4))
    steps = tuple((m, draw(percents)) for m in sorted(mins))
    docs: list[dict[str, Any]] = [
        {
            "promotion_id": "T",
            "kind": "threshold_discount",
            "status": "active",
            "priority": 10,
            "steps": [{"min_total_minor": m, "percent": str(p)} for m, p in steps],
        },
        {
            "promotion_id": "A",
            "kind": "accrual_percent",
            "status": "active",
            "percent": str(draw(percents)),
            "accrue_on_bonus_paid": draw(st.booleans()),
        },
    ]
    share = draw(shares)
    promotions = load_promotion_set(docs, version=1, settings={"bonus_max_share": str(share)})
    return promotions, steps


@settings(max_examples=200, deadline=None)
@given(receipts(), promotion_sets(), st.integers(min_value=0, max_value=100))
def test_totals_and_line_discounts_are_consistent(
    receipt: Receipt, promotion_set: tuple[PromotionSet, Steps], spend_percent: int
) -> None:
    promotions, steps = promotion_set
    calc = calculate(receipt, promotions)
    assert calc.total_minor == calc.subtotal_minor - calc.discount_minor
    assert calc.subtotal_minor == sum(line.amount_minor for line in receipt.lines)
    assert calc.discount_minor == sum(line.discount_minor for line in calc.lines)
    for line in calc.lines:
        assert 0 <= line.discount_minor <= line.amount_minor
        assert all(d.amount_minor > 0 and d.rule_id == "T" for d in line.discounts)
    # The highest step reached applies; its line shares sum exactly to the rounded percent.
    reached = [p for m, p in steps if calc.subtotal_minor >= m]
    expected = percent_of(calc.subtotal_minor, reached[-1]) if reached else 0
    assert calc.discount_minor == expected
    cap = share_of(calc.total_minor, promotions.settings.bonus_max_share)
    assert 0 <= calc.bonus_payable_max <= min(cap, receipt.bonus_balance)
    if receipt.card_no is None:
        assert calc.bonus_payable_max == 0
        assert calc.accruals == ()
    spend = calc.bonus_payable_max * spend_percent // 100
    paid = calculate(receipt, promotions, bonus_to_spend=spend)
    assert paid.to_pay_minor == paid.total_minor - spend >= 0
    assert all(a.amount > 0 for a in paid.accruals)


@settings(max_examples=100, deadline=None)
@given(receipts(), st.integers(min_value=0, max_value=10_000))
def test_calculation_is_deterministic(receipt: Receipt, spend: int) -> None:
    first = load_promotion_set(default_promotions(), version=5, settings=default_settings())
    second = load_promotion_set(
        list(reversed(default_promotions())), version=5, settings=default_settings()
    )
    assert first == second
    spend = min(spend, calculate(receipt, first).bonus_payable_max)
    result = calculate(receipt, first, bonus_to_spend=spend)
    assert calculate(receipt, second, bonus_to_spend=spend) == result
    assert result.to_dict() == calculate(receipt, first, bonus_to_spend=spend).to_dict()
    # Coupon rules are found by presented codes only: without one they are not candidates.
    candidates = [p for p in first.promotions if p.kind != "coupon" or receipt.coupon_codes]
    assert len(result.explanation) == len(candidates)
