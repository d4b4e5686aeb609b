"""The demo chain's next-visit coupon: issued at the register, redeemed on a later visit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from loyalty_engine import (
    CouponMatch,
    CustomerState,
    calculate,
    default_promotions,
    default_settings,
    load_promotion_set,
    make_code,
)
from loyalty_engine.coupons import serial_for

from .conftest import NOW, MakeReceipt

PROMOTIONS = load_promotion_set(default_promotions(), version=1, settings=default_settings())
KEY = default_settings()["coupon_key"]


def test_a_60_receipt_issues_a_signed_coupon_derived_from_the_sale(
    make_receipt: MakeReceipt,
) -> None:
    # 70.00 - 5 % threshold (3.50) = 66.50 >= 60.00: one coupon, valid 14 days.
    calc = calculate(make_receipt(7000, receipt_id="sale-1"), PROMOTIONS)
    assert calc.total_minor == 6650
    serial = serial_for("S1", "sale-1", "next-visit-coupon", NOW.isoformat())
    # The last valid day (store time, Chicago) is signed into the code.
    want = make_code(KEY, "NEXT5", serial, date(2025, 3, 15))
    assert want.endswith("-20250315")
    assert [(c.code, c.rule_id, c.valid_until) for c in calc.coupons_issued] == [
        (want, "next-visit-coupon", NOW + timedelta(days=14))
    ]
    # The slip names the validity in the store's day (Chicago); the cashier sees the code.
    assert calc.messages.slip[-1] == (
        "Купон: 5 % на следующую покупку от 30.00 до 2025-03-15 / "
        "Coupon: 5 % off your next purchase from 30.00, valid until 2025-03-15"
    )
    assert calc.messages.cashier[-1] == f"Coupon {want} issued"
    # Same sale, same code (the Center recomputes it); another sale, another code.
    again = calculate(make_receipt(7000, receipt_id="sale-1"), PROMOTIONS)
    assert again.coupons_issued == calc.coupons_issued
    other = calculate(make_receipt(7000, receipt_id="sale-2"), PROMOTIONS)
    assert other.coupons_issued[0].code != want


def test_below_60_after_discounts_issues_nothing(make_receipt: MakeReceipt) -> None:
    # 63.00 - 5 % = 59.85: the bound compares the total after discounts.
    calc = calculate(make_receipt(6300, receipt_id="sale-1"), PROMOTIONS)
    assert (calc.total_minor, calc.coupons_issued) == (5985, ())


def test_find_coupon_validates_offline() -> None:
    code = make_code(KEY, "NEXT5", "0123456789")
    assert PROMOTIONS.find_coupon(f" {code.lower()} ") == CouponMatch(
        code, "next-visit-redeem", "5 % off with a NEXT5 coupon from a 30.00 receipt", False
    )
    forged = code[:-1] + ("0" if code[-1] != "0" else "1")
    assert PROMOTIONS.find_coupon(forged) is None
    assert PROMOTIONS.find_coupon("UNKNOWN-CODE") is None
    other_key = load_promotion_set(
        default_promotions(), version=1, settings={**default_settings(), "coupon_key": "k2"}
    )
    assert other_key.find_coupon(code) is None


def test_find_coupon_ignores_inactive_rules_and_knows_listed_codes() -> None:
    docs = [
        {
            "promotion_id": "promo",
            "kind": "coupon",
            "status": "active",
            "codes": ["spring"],
            "multi_use": True,
            "amount_minor": 100,
        },
        {
            "promotion_id": "old",
            "kind": "coupon",
            "status": "archived",
            "codes": ["winter"],
            "amount_minor": 100,
        },
    ]
    promotions = load_promotion_set(docs, version=1)
    assert promotions.find_coupon("Spring") == CouponMatch("SPRING", "promo", "", True)
    assert promotions.find_coupon("WINTER") is None


def test_redeeming_takes_5_percent_after_the_threshold(make_receipt: MakeReceipt) -> None:
    code = make_code(KEY, "NEXT5", "0123456789")
    receipt = make_receipt(3000, 2500, coupon_codes=(code,))
    calc = calculate(receipt, PROMOTIONS)
    # Threshold 5 % of 55.00 = 2.75 -> 1.50 + 1.25; left 28.50 + 23.75 = 52.25.
    # Coupon 5 % of 52.25 = 2.6125 -> 2.61 -> 1.42 + 1.19 (largest remainder .64 > .36).
    by_line = {r.line_no: [(d.rule_id, d.amount_minor) for d in r.discounts] for r in calc.lines}
    assert by_line == {
        1: [("threshold-5-10", 150), ("next-visit-redeem", 142)],
        2: [("threshold-5-10", 125), ("next-visit-redeem", 119)],
    }
    assert (calc.discount_minor, calc.total_minor) == (536, 4964)
    assert calc.coupons_consumed == (code,)
    assert "Скидка по купону 5 %: -2.61 / Coupon 5 % off: -2.61" in calc.messages.slip


def test_a_coupon_below_30_or_already_used_is_not_consumed(make_receipt: MakeReceipt) -> None:
    code = make_code(KEY, "NEXT5", "0123456789")
    small = calculate(make_receipt(2999, coupon_codes=(code,)), PROMOTIONS)
    assert (small.discount_minor, small.coupons_consumed) == (0, ())
    used = make_receipt(
        3000, coupon_codes=(code,), customer=CustomerState(used_coupons=frozenset({code}))
    )
    calc = calculate(used, PROMOTIONS)
    assert (calc.discount_minor, calc.coupons_consumed) == (0, ())


def test_a_dated_coupon_is_valid_through_its_last_store_day(make_receipt: MakeReceipt) -> None:
    code = make_code(KEY, "NEXT5", "0123456789", date(2025, 3, 15))
    match = PROMOTIONS.find_coupon(code)
    assert match is not None and match.expires_on == date(2025, 3, 15)
    # 2025-03-16 04:00 UTC is 23:00 on the 15th in Chicago (CDT, UTC-5): still valid.
    last = make_receipt(3000, coupon_codes=(code,), now=datetime(2025, 3, 16, 4, tzinfo=UTC))
    assert calculate(last, PROMOTIONS).coupons_consumed == (code,)
    late = make_receipt(3000, coupon_codes=(code,), now=datetime(2025, 3, 16, 6, tzinfo=UTC))
    calc = calculate(late, PROMOTIONS)
    assert (calc.discount_minor, calc.coupons_consumed) == (0, ())
    assert f"next-visit-redeem: skipped: coupon {code} expired on 2025-03-15" in calc.explanation
    # Moving the date breaks the signature.
    assert PROMOTIONS.find_coupon(code[:-8] + "20991231") is None
    assert PROMOTIONS.find_coupon(code[:-8] + "20251332") is None
