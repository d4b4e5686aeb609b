import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from loyalty_engine import (
    Accrual,
    BonusSpendError,
    Discount,
    EngineError,
    InvalidReceipt,
    Messages,
    Receipt,
    ReceiptLine,
    calculate,
    default_promotions,
    default_settings,
    load_promotion_set,
)

MakeDoc = Callable[..., dict[str, Any]]
MakeReceipt = Callable[..., Receipt]
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("amounts", "discount", "why"),
    [
        ((4200,), 0, "T5: skipped: subtotal 42.00 RUB below 50.00 RUB"),
        (
            (4999, 1),
            250,
            "T5: applied: subtotal 50.00 RUB reached 50.00 RUB: 5 % of 50.00 RUB = 2.50 RUB",
        ),
        (
            (9999,),
            500,
            "T5: applied: subtotal 99.99 RUB reached 50.00 RUB: 5 % of 99.99 RUB = 5.00 RUB",
        ),
        (
            (3333, 2500, 5001),
            1083,
            "T5: applied: subtotal 108.34 RUB reached 100.00 RUB: 10 % of 108.34 RUB = 10.83 RUB",
        ),
    ],
)
def test_threshold_discount_highest_step_reached(
    make_receipt: MakeReceipt,
    threshold_doc: MakeDoc,
    amounts: tuple[int, ...],
    discount: int,
    why: str,
) -> None:
    calc = calculate(make_receipt(*amounts), load_promotion_set([threshold_doc()], version=1))
    assert calc.discount_minor == discount
    assert calc.total_minor == sum(amounts) - discount
    assert calc.explanation == (why,)


def test_threshold_discount_is_spread_over_lines_by_amount(
    make_receipt: MakeReceipt, threshold_doc: MakeDoc
) -> None:
    calc = calculate(
        make_receipt(3333, 2500, 5001, 0), load_promotion_set([threshold_doc()], version=1)
    )
    assert [line.discounts for line in calc.lines] == [
        (Discount("T5", 333),),
        (Discount("T5", 250),),
        (Discount("T5", 500),),
        (),
    ]
    assert [line.total_minor for line in calc.lines] == [3000, 2250, 4501, 0]
    assert calc.to_pay_minor == calc.total_minor == 9751


def test_discounts_cascade_in_priority_order(
    make_receipt: MakeReceipt, threshold_doc: MakeDoc
) -> None:
    first = threshold_doc(
        promotion_id="B", priority=1, steps=[{"min_total_minor": 0, "percent": "10"}]
    )
    second = threshold_doc(
        promotion_id="A", priority=2, steps=[{"min_total_minor": 0, "percent": "50"}]
    )
    calc = calculate(make_receipt(1000), load_promotion_set([second, first], version=1))
    # 10 % of 1 000 = 100, then 50 % of the 900 left = 450.
    assert calc.lines[0].discounts == (Discount("B", 100), Discount("A", 450))
    assert calc.total_minor == 450
    assert calc.explanation[0].startswith("B: applied")


def test_full_discount_never_goes_below_zero(
    make_receipt: MakeReceipt, threshold_doc: MakeDoc
) -> None:
    docs = [
        threshold_doc(promotion_id="X", steps=[{"min_total_minor": 0, "percent": "100"}]),
        threshold_doc(
            promotion_id="Y", priority=20, steps=[{"min_total_minor": 0, "percent": "100"}]
        ),
    ]
    calc = calculate(make_receipt(700, 300), load_promotion_set(docs, version=1))
    assert calc.total_minor == 0
    assert [line.discount_minor for line in calc.lines] == [700, 300]
    assert calc.explanation[1] == "Y: skipped: 100 % of 0.00 RUB rounds to 0"


def test_accrual_percent_basic(make_receipt: MakeReceipt, accrual_doc: MakeDoc) -> None:
    promotions = load_promotion_set([accrual_doc(lifetime_days=365)], version=4)
    calc = calculate(make_receipt(1234, 1000, card_no="C1"), promotions)
    # 3 % of 2 234 = 67.02 -> 67
    assert calc.accruals == (
        Accrual("bonus", 67, "A3", active_from=None, expires_at=NOW + timedelta(days=365)),
    )
    assert calc.promo_version == 4


def test_accrual_needs_a_card(make_receipt: MakeReceipt, accrual_doc: MakeDoc) -> None:
    promotions = load_promotion_set([accrual_doc(requires_card=False)], version=1)
    calc = calculate(make_receipt(1000), promotions)
    assert calc.accruals == ()
    assert calc.explanation == ("A3: skipped: no card presented to credit",)


def test_accrual_delay_and_lifetime(make_receipt: MakeReceipt, accrual_doc: MakeDoc) -> None:
    promotions = load_promotion_set([accrual_doc(delay_days=14, lifetime_days=30)], version=1)
    moscow_now = datetime(2025, 3, 1, 15, 0, tzinfo=timezone(timedelta(hours=3)))
    (accrual,) = calculate(make_receipt(1000, card_no="C1", now=moscow_now), promotions).accruals
    assert accrual.active_from == NOW + timedelta(days=14)
    assert accrual.expires_at == NOW + timedelta(days=44)
    assert accrual.active_from is not None and accrual.active_from.tzinfo is UTC


def test_accrual_base_excludes_bonus_paid_part_unless_configured(
    make_receipt: MakeReceipt, accrual_doc: MakeDoc
) -> None:
    receipt = make_receipt(10000, card_no="C1", bonus_balance=5000)
    excluded = load_promotion_set([accrual_doc()], version=1)
    included = load_promotion_set([accrual_doc(accrue_on_bonus_paid=True)], version=1)
    assert calculate(receipt, excluded, bonus_to_spend=4000).accruals[0].amount == 180
    assert calculate(receipt, included, bonus_to_spend=4000).accruals[0].amount == 300


def test_accrual_total_bounds(make_receipt: MakeReceipt, accrual_doc: MakeDoc) -> None:
    # The Mission's "+0.5 % if the receipt total < 1 000": an exclusive upper bound.
    promotions = load_promotion_set(
        [accrual_doc(percent="0.5", min_total_minor=100, max_total_minor=1000)], version=1
    )
    assert calculate(make_receipt(999, card_no="C1"), promotions).accruals[0].amount == 5
    at_max = calculate(make_receipt(1000, card_no="C1"), promotions)
    assert at_max.accruals == ()
    assert at_max.explanation == ("A3: skipped: total 10.00 RUB not below 10.00 RUB",)
    below = calculate(make_receipt(99, card_no="C1"), promotions)
    assert below.explanation == ("A3: skipped: total 0.99 RUB below 1.00 RUB",)


def test_accrual_bounds_use_the_total_after_discounts(
    make_receipt: MakeReceipt, accrual_doc: MakeDoc, threshold_doc: MakeDoc
) -> None:
    docs = [threshold_doc(), accrual_doc(min_total_minor=5000)]
    calc = calculate(make_receipt(5000, card_no="C1"), load_promotion_set(docs, version=1))
    assert calc.total_minor == 4750
    assert calc.accruals == ()


def test_bonus_payable_max_is_capped_by_share_and_balance(make_receipt: MakeReceipt) -> None:
    promotions = load_promotion_set([], version=1, settings={"bonus_max_share": "0.3"})
    rich = calculate(make_receipt(10001, card_no="C1", bonus_balance=99999), promotions)
    assert rich.bonus_payable_max == 3000  # 3000.3 -> 3000
    poor = calculate(make_receipt(10001, card_no="C1", bonus_balance=1200), promotions)
    assert poor.bonus_payable_max == 1200
    no_card = calculate(make_receipt(10001, bonus_balance=1200), promotions)
    assert no_card.bonus_payable_max == 0
    paid = calculate(
        make_receipt(10001, card_no="C1", bonus_balance=99999), promotions, bonus_to_spend=3000
    )
    assert (paid.bonus_to_spend, paid.to_pay_minor) == (3000, 7001)


@pytest.mark.parametrize(
    ("fields", "spend", "message"),
    [
        (
            {"card_no": "C1", "bonus_balance": 99999},
            5001,
            "bonus_to_spend: 50.01 RUB above bonus_payable_max 50.00 RUB "
            "(at most 0.5 of total 100.00 RUB may be paid with bonus)",
        ),
        (
            {"card_no": "C1", "bonus_balance": 100},
            101,
            "bonus_to_spend: 1.01 RUB above bonus_payable_max 1.00 RUB (bonus balance is 1.00 RUB)",
        ),
        ({}, 1, "bonus_to_spend: 0.01 RUB above bonus_payable_max 0.00 RUB (no card presented)"),
        (
            {"card_no": "C1", "bonus_balance": 100},
            -1,
            "bonus_to_spend: expected an integer >= 0, got -1",
        ),
    ],
)
def test_bonus_to_spend_is_validated(
    make_receipt: MakeReceipt, fields: dict[str, Any], spend: int, message: str
) -> None:
    promotions = load_promotion_set([], version=1)
    with pytest.raises(BonusSpendError) as info:
        calculate(make_receipt(10000, **fields), promotions, bonus_to_spend=spend)
    assert str(info.value) == message
    assert isinstance(info.value, EngineError)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount_minor": -1}, "lines[0].amount_minor: expected an integer >= 0, got -1"),
        ({"qty_milli": 0}, "lines[0].qty_milli: expected an integer >= 1, got 0"),
        ({"unit_price_minor": 1.5}, "lines[0].unit_price_minor: expected an integer, got 1.5"),
        ({"line_no": True}, "lines[0].line_no: expected an integer, got True"),
    ],
)
def test_invalid_lines_name_the_field(change: dict[str, Any], message: str) -> None:
    line = replace(ReceiptLine(1, "P1", 1000, 100, 100), **change)
    with pytest.raises(InvalidReceipt) as info:
        calculate(Receipt((line,), NOW), load_promotion_set([], version=1))
    assert str(info.value) == message


def test_invalid_receipt_fields_name_the_field() -> None:
    promotions = load_promotion_set([], version=1)
    line = ReceiptLine(1, "P1", 1000, 100, 100)
    with pytest.raises(InvalidReceipt, match=r"^now: expected an aware datetime"):
        calculate(Receipt((line,), datetime(2025, 3, 1)), promotions)
    with pytest.raises(InvalidReceipt, match=r"^bonus_balance: expected an integer >= 0, got -5"):
        calculate(Receipt((line,), NOW, bonus_balance=-5), promotions)
    with pytest.raises(InvalidReceipt, match=r"^lines\[1\].line_no: duplicate line number 1"):
        calculate(Receipt((line, line), NOW), promotions)


def test_messages_are_filled_for_rules_that_applied(
    make_receipt: MakeReceipt, accrual_doc: MakeDoc, threshold_doc: MakeDoc
) -> None:
    docs = [
        threshold_doc(
            messages={"cashier": "{promotion_id}: -{amount} ({percent} %), total {total}"}
        ),
        accrual_doc(
            messages={"slip": "Начислено {amount} бонусов", "display": "+{points} {wallet}"}
        ),
        accrual_doc(promotion_id="OFF", status="draft", messages={"slip": "never shown"}),
    ]
    calc = calculate(make_receipt(6000, card_no="C1"), load_promotion_set(docs, version=1))
    assert calc.messages == Messages(
        slip=("Начислено 1.71 бонусов",),
        cashier=("T5: -3.00 (5 %), total 57.00",),
        display=("+171 bonus",),
    )


def test_empty_receipt(make_receipt: MakeReceipt) -> None:
    promotions = load_promotion_set(default_promotions(), version=1, settings=default_settings())
    calc = calculate(make_receipt(card_no="C1", bonus_balance=10), promotions)
    assert (calc.subtotal_minor, calc.total_minor, calc.bonus_payable_max, calc.accruals) == (
        0,
        0,
        0,
        (),
    )


def test_default_promotions_price_a_demo_basket(make_receipt: MakeReceipt) -> None:
    promotions = load_promotion_set(default_promotions(), version=3, settings=default_settings())
    big = calculate(
        make_receipt(3333, 2500, 5001, card_no="C1", bonus_balance=10000),
        promotions,
        bonus_to_spend=1000,
    )
    assert (big.discount_minor, big.total_minor, big.to_pay_minor) == (1083, 9751, 8751)
    assert [(a.rule_id, a.amount) for a in big.accruals] == [("base-accrual-3", 263)]
    assert big.bonus_payable_max == 4876
    assert big.messages.slip[:2] == (
        "Скидка 10 %: -10.83 / Discount 10 %: -10.83",
        "Начислено 2.63 бонусов / Bonus earned: 2.63",
    )
    # Total 97.51 >= 60.00: a NEXT5 coupon for the next visit, valid 14 days.
    assert [(c.rule_id, c.code[:6]) for c in big.coupons_issued] == [
        ("next-visit-coupon", "NEXT5-")
    ]
    small = calculate(make_receipt(1500, card_no="C1"), promotions)
    assert [(a.rule_id, a.amount) for a in small.accruals] == [
        ("base-accrual-3", 45),
        ("small-basket-1", 15),
    ]
    discounter = calculate(make_receipt(1500, card_no="C1", store_format="discounter"), promotions)
    assert [a.rule_id for a in discounter.accruals] == ["base-accrual-3"]
    anonymous = calculate(make_receipt(6000), promotions)
    assert (anonymous.discount_minor, anonymous.accruals) == (300, ())


def test_to_dict_matches_the_api_shape(make_receipt: MakeReceipt) -> None:
    promotions = load_promotion_set(default_promotions(), version=3, settings=default_settings())
    calc = calculate(
        make_receipt(6000, card_no="C1", bonus_balance=100), promotions, bonus_to_spend=100
    )
    data = json.loads(json.dumps(calc.to_dict()))
    assert set(data) == {
        "lines",
        "subtotal_minor",
        "discount_minor",
        "total_minor",
        "accrual",
        "bonus_payable_max",
        "bonus_to_spend",
        "to_pay_minor",
        "messages",
        "promo_version",
        "explanation",
        "movements",
        "coupons_consumed",
        "coupons_issued",
        "fired",
        "promo_qty_milli",
        "passes",
    }
    assert data["lines"] == [
        {
            "line_no": 1,
            "product_id": "P1",
            "amount_minor": 6000,
            "discounts": [{"rule_id": "threshold-5-10", "amount_minor": 300}],
        }
    ]
    assert data["accrual"] == [
        {
            "wallet": "bonus",
            "amount": 168,
            "rule_id": "base-accrual-3",
            "active_from": None,
            "expires_at": "2026-03-01T12:00:00+00:00",
        }
    ]
    assert (data["total_minor"], data["to_pay_minor"], data["promo_version"]) == (5700, 5600, 3)
