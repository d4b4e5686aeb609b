"""Referral rewards and prize draws, each with a hand-computed receipt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loyalty_engine import CustomerState, RuleError, load_promotion_set

from .test_mechanics import NOW, line, promo, receipt, run

REFERRAL = promo("REF", "referral_reward", points=500, min_total_minor=1000, lifetime_days=90)


def test_a_referred_customers_first_purchase_earns_the_referral_bonus() -> None:
    newcomer = CustomerState(referrer="2000000000011")
    calc = run(receipt(line(1, "A", 2, 600), card_no="C9", customer=newcomer), REFERRAL)
    # Total 12.00 >= 10.00, no purchase before: 500 points, burning after 90 days.
    assert [(a.wallet, a.amount, a.rule_id) for a in calc.accruals] == [("bonus", 500, "REF")]
    assert calc.accruals[0].expires_at == NOW + timedelta(days=90)
    assert calc.fired == ("REF",)  # the caller credits the referrer from this
    assert calc.explanation == (
        "REF: applied: first purchase referred by 2000000000011: 5.00 bonus",
    )


@pytest.mark.parametrize(
    ("customer", "card_no", "amount", "why"),
    [
        (CustomerState(), "C9", 1200, "customer has no referrer"),
        (
            CustomerState(referrer="R1", counters={"purchases": 1}),
            "C9",
            1200,
            "purchases is 1: not the first purchase",
        ),
        (CustomerState(referrer="R1"), "C9", 999, "total 9.99 RUB below 10.00 RUB"),
        (CustomerState(referrer="R1"), None, 1200, "no card presented"),
    ],
)
def test_no_referral_bonus_without_referrer_after_first_purchase_or_below_minimum(
    customer: CustomerState, card_no: str | None, amount: int, why: str
) -> None:
    calc = run(receipt(line(1, "A", 1, amount), card_no=card_no, customer=customer), REFERRAL)
    assert calc.accruals == ()
    assert calc.explanation == (f"REF: skipped: {why}",)


DRAW = promo(
    "DRAW",
    "prize_draw",
    draw_id="spring-2025",
    per_amount_minor=1000,
    max_entries=5,
    schedule={"from": "2025-03-01", "to": "2025-03-31"},
)


def test_prize_draw_entries_per_amount_spent_within_the_period() -> None:
    # 37.50 (after no discount) with 5.00 paid in bonus: base 32.50 -> 3 entries.
    calc = run(
        receipt(line(1, "A", 3, 1250), card_no="C1", bonus_balance=1000),
        DRAW,
        bonus_to_spend=500,
    )
    assert [(a.wallet, a.amount) for a in calc.accruals] == [("draw_entries", 3)]
    assert calc.explanation == (
        "DRAW: applied: draw spring-2025: 1 per 10.00 RUB of 32.50 RUB = 3 to draw_entries",
    )
    # 80.00: 8 entries capped at 5.
    big = run(receipt(line(1, "A", 8, 1000), card_no="C1"), DRAW)
    assert [(a.wallet, a.amount) for a in big.accruals] == [("draw_entries", 5)]
    # 9.99: not one full step.
    assert run(receipt(line(1, "A", 1, 999), card_no="C1"), DRAW).accruals == ()
    # After the draw period (April 1st): no entries.
    april = datetime(2025, 4, 1, 12, tzinfo=UTC)
    assert run(receipt(line(1, "A", 8, 1000), card_no="C1", now=april), DRAW).accruals == ()


def test_prize_draw_needs_a_draw_id_and_a_step() -> None:
    with pytest.raises(RuleError) as caught:
        load_promotion_set([promo("D", "prize_draw", per_amount_minor=0)], version=1)
    text = "\n".join(caught.value.problems)
    assert "promotion 'D': draw_id" in text
    assert "promotion 'D': per_amount_minor" in text
