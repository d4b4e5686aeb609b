"""Issue 12's engine differences, each priced by hand (the arithmetic is in the comments)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from loyalty_engine import (
    CERTIFICATE_TYPE,
    BonusSpendError,
    Calculation,
    CustomerState,
    Receipt,
    ReceiptLine,
    RuleError,
    calculate,
    calculate_return,
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


# -- supplier budgets need budget state ------------------------------------------------------


def test_budget_funded_rule_needs_budget_state() -> None:
    doc = promo(
        "SUP",
        "goods_discount",
        goods={"products": ["A"]},
        percent="10",
        funding={"by": "supplier:acme", "budget_minor": 150},
    )
    r = receipt(line(1, "A", 1, 5000))
    without = run(r, doc)
    assert without.discount_minor == 0
    assert without.explanation == (
        "SUP: skipped: no budget state given for the budget of supplier:acme",
    )
    # 10 % of 50.00 = 5.00, but only 1.20 of the campaign's budget is left.
    assert run(r, doc, budgets_left={"SUP": 120}).discount_minor == 120
    assert run(r, doc, budgets_left={"SUP": 900}).discount_minor == 500


# -- the two accrual switches ----------------------------------------------------------------


def test_accrual_switches_after_bonus_payment_and_bonus_paid_part() -> None:
    base = promo("A", "accrual_percent", percent="10")
    r = receipt(line(1, "A", 1, 10_000), card_no="C1", bonus_balance=5000)
    # Default: accrue, without the bonus-paid part: 10 % of (100.00 - 20.00) = 8.00.
    assert run(r, base, bonus_to_spend=2000).accruals[0].amount == 800
    # accrue_on_bonus_paid: the whole total is the base: 10 % of 100.00 = 10.00.
    whole = {**base, "accrue_on_bonus_paid": True}
    assert run(r, whole, bonus_to_spend=2000).accruals[0].amount == 1000
    # accrue_after_bonus_payment off: nothing at all on a receipt paid with bonus ...
    never = {**base, "accrue_after_bonus_payment": False}
    paid = run(r, never, bonus_to_spend=2000)
    assert paid.accruals == ()
    assert paid.explanation == (
        "A: skipped: receipt paid with 20.00 RUB of bonus "
        "(this rule does not accrue after a bonus payment)",
    )
    # ... and 10 % of 100.00 on a receipt paid without bonus.
    assert run(r, never).accruals[0].amount == 1000


# -- bonus lifetime in calendar months -------------------------------------------------------


def test_lifetime_in_calendar_months() -> None:
    doc = promo("A", "accrual_percent", percent="1", lifetime_months=1)
    jan31 = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)
    calc = run(receipt(line(1, "A", 1, 10_000), card_no="C1", now=jan31), doc)
    # 31 January + 1 month: February 2024 has 29 days.
    assert calc.accruals[0].expires_at == datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
    # In Moscow time (UTC+3) 31 March 23:00 local is 20:00 UTC: + 1 month = 30 April 23:00 local.
    late = datetime(2024, 3, 31, 20, 0, tzinfo=UTC)
    moscow = run(
        receipt(line(1, "A", 1, 10_000), card_no="C1", now=late, timezone="Europe/Moscow"),
        {**doc, "lifetime_months": 1},
    )
    assert moscow.accruals[0].expires_at == datetime(2024, 4, 30, 20, 0, tzinfo=UTC)
    twelve = run(receipt(line(1, "A", 1, 10_000), card_no="C1"), {**doc, "lifetime_months": 12})
    assert twelve.accruals[0].expires_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_lifetime_days_and_months_exclude_each_other() -> None:
    doc = promo("A", "accrual_percent", percent="1", lifetime_days=30, lifetime_months=1)
    with pytest.raises(RuleError, match="lifetime_months: expected only one of"):
        load_promotion_set([doc], version=1)


# -- restrictions as rules of their own ------------------------------------------------------


def _two_discounts() -> list[dict[str, Any]]:
    return [
        promo("G", "goods_discount", 10, goods={"products": ["A"]}, percent="30"),
        promo("H", "goods_discount", 11, goods={"products": ["B"]}, percent="20"),
    ]


def test_restriction_caps_share_of_receipt_with_its_own_place_and_segment() -> None:
    cap = promo(
        "R",
        "restriction",
        50,
        max_discount_percent="15",
        place={"formats": ["Discounter"]},
        segments=["students"],
    )
    r = receipt(line(1, "A", 1, 6000), line(2, "B", 1, 4000), store_format="discounter")
    # 30 % of 60.00 = 18.00 and 20 % of 40.00 = 8.00: 26.00 of 100.00.
    free = run(r, *_two_discounts(), cap)
    assert free.discount_minor == 2600
    assert free.explanation[-1] == "R: skipped: segment '' not in the rule's segments"
    # A student in a discounter ("discounter" matches "Discounter"): at most 15 % of 100.00
    # = 15.00, split 18 : 8 by largest remainder -> 10.38 + 4.62.
    capped = run(replace_receipt(r, segment="students"), *_two_discounts(), cap)
    assert capped.discount_minor == 1500
    assert [x.discount_minor for x in capped.lines] == [1038, 462]
    assert capped.explanation[-1] == ("R: applied: covered discounts 26.00 RUB capped at 15.00 RUB")
    assert "R" in capped.fired


def test_restriction_grants_per_day_from_state_and_its_covered_rules() -> None:
    limit = promo("R", "restriction", 50, promotions=["G"], max_grants_per_day=1)
    r = receipt(line(1, "A", 1, 6000), line(2, "B", 1, 4000), card_no="C1")
    first = run(r, *_two_discounts(), limit)
    # Nothing given today yet: both discounts stay and the grant is counted (fired).
    assert first.discount_minor == 1800 + 800
    assert first.fired == ("G", "H", "R")
    again = run(
        replace_receipt(r, customer=CustomerState(fired_day={"R": 1})), *_two_discounts(), limit
    )
    # One grant today already: G's 18.00 is removed, H (not covered) keeps its 8.00.
    assert again.discount_minor == 800
    assert again.fired == ("H",)
    assert again.explanation[-1] == (
        "R: applied: given 1 time(s) today, limit 1: covered discounts of 18.00 RUB removed"
    )
    amount = promo("R2", "restriction", 60, max_discount_minor=1000)
    assert run(r, *_two_discounts(), amount).discount_minor == 1000


def replace_receipt(r: Receipt, **fields: Any) -> Receipt:
    return replace(r, **fields)


# -- fixed amount off the receipt, spend thresholds, matched goods' value, stickers ----------


def test_fixed_amount_off_the_whole_receipt_without_a_code() -> None:
    doc = promo("F", "threshold_discount", steps=[{"min_total_minor": 0, "amount_minor": 300}])
    calc = run(receipt(line(1, "A", 1, 1000), line(2, "B", 1, 2000)), doc)
    # 3.00 off 30.00, split 1 : 2 -> 1.00 + 2.00.
    assert [x.discount_minor for x in calc.lines] == [100, 200]
    assert calc.explanation == ("F: applied: 3.00 RUB off 30.00 RUB = 3.00 RUB",)
    small = run(receipt(line(1, "A", 1, 200)), doc)
    assert small.discount_minor == 200


def test_threshold_on_spend_over_a_period_from_a_state_counter() -> None:
    doc = promo("V", "goods_discount", percent="5", counters_at_least={"spend_30d_minor": 500_000})
    r = receipt(line(1, "A", 1, 10_000), card_no="C1")
    below = run(
        replace_receipt(r, customer=CustomerState(counters={"spend_30d_minor": 499_999})), doc
    )
    assert below.discount_minor == 0
    assert below.explanation == ("V: skipped: spend_30d_minor 4999.99 RUB below 5000.00 RUB",)
    at = run(replace_receipt(r, customer=CustomerState(counters={"spend_30d_minor": 500_000})), doc)
    assert at.discount_minor == 500


def test_condition_on_the_value_of_the_matched_goods() -> None:
    dairy = {"categories": ["dairy"]}
    doc = promo(
        "D",
        "goods_discount",
        goods=dairy,
        percent="10",
        contains=dairy,
        contains_amount_minor=50_000,
    )
    milk = line(1, "M", 4, 10_000, category="dairy")
    bread = line(2, "B", 1, 30_000, category="bakery")
    # 400.00 of dairy (the bread does not count) is below 500.00.
    short = run(receipt(milk, bread), doc)
    assert short.explanation == (
        "D: skipped: the required goods are worth 400.00 RUB, below 500.00 RUB",
    )
    # 500.00 of dairy: 10 % of it = 50.00 off the dairy only.
    enough = run(receipt(line(1, "M", 5, 10_000, category="dairy"), bread), doc)
    assert [x.discount_minor for x in enough.lines] == [5000, 0]


def test_stickers_per_unit_of_a_given_product() -> None:
    doc = promo("S", "accrual_per_unit", goods={"products": ["CHOC"]}, points=2, max_points=7)
    r = receipt(line(1, "CHOC", 3, 100), line(2, "A", 5, 100), card_no="C1")
    calc = run(r, doc)
    # 3 bars x 2 stickers = 6 (the 5 units of A earn none).
    assert [(a.wallet, a.amount) for a in calc.accruals] == [("stickers", 6)]
    more = run(replace_receipt(r, lines=(line(1, "CHOC", 4, 100),)), doc)
    # 4 x 2 = 8, at most 7 a receipt.
    assert more.accruals[0].amount == 7


# -- compliments as weekly passes ------------------------------------------------------------


def _compliment_redeem() -> dict[str, Any]:
    return promo(
        "PASS",
        "compliment_redeem",
        goods={"categories": ["milk", "whisky"]},
        default_cap=10,
        product_caps={"WHISKY": 1},
        max_discount_percent="50",
    )


def test_a_compliment_buys_a_weekly_pass_capped_per_product_across_receipts() -> None:
    doc = _compliment_redeem()
    milk = line(1, "MILK", 4, 90, category="milk")
    whisky = line(2, "WHISKY", 1, 200_000, category="whisky")
    customer = CustomerState(wallets={"compliment": 3})
    monday = receipt(milk, whisky, card_no="C1", customer=customer)
    # The customer picks milk: 50 % off 4 bottles of 0.90 = 3.60 * 0.5 = 1.80, one compliment.
    first = run(monday, doc, spend={"compliment": 1}, pass_products=["MILK"])
    assert [x.discount_minor for x in first.lines] == [180, 0]
    (opened,) = first.passes
    assert (opened.product_id, opened.units, opened.used) == ("MILK", 10, 4)
    assert opened.valid_until == datetime(2025, 3, 8, 12, 0, tzinfo=UTC)
    assert first.promo_qty_milli == (("PASS", 4000),)
    assert [(m.wallet, m.kind, m.amount) for m in first.movements] == [("compliment", "spent", 1)]
    # Three days later, no compliment spent: the pass still covers 10 - 4 = 6 bottles, of 7.
    later = replace_receipt(
        monday,
        now=datetime(2025, 3, 4, 9, 0, tzinfo=UTC),
        lines=(line(1, "MILK", 7, 90, category="milk"),),
        customer=CustomerState(wallets={"compliment": 2}, compliment_passes=first.passes),
    )
    second = run(later, doc)
    # 6 bottles * 0.90 * 50 % = 2.70.
    assert second.discount_minor == 270
    assert second.passes[0].used == 10
    assert [m.kind for m in second.movements] == []
    # The week is over on 8 March 12:00: the pass gives nothing after it.
    expired = replace_receipt(
        later,
        now=datetime(2025, 3, 8, 12, 0, tzinfo=UTC),
        customer=CustomerState(compliment_passes=(replace(opened, used=5),)),
    )
    assert run(expired, doc).discount_minor == 0


def test_whisky_pass_is_one_unit_and_compliment_credit_day_is_configurable() -> None:
    doc = _compliment_redeem()
    r = receipt(
        line(1, "WHISKY", 2, 200_001, category="whisky"),
        card_no="C1",
        customer=CustomerState(wallets={"compliment": 1}),
    )
    calc = run(r, doc, spend={"compliment": 1})
    # One whisky of 2 000.01 at 50 %: 1 000.005 -> 1 000.00 (half to even); the second is full.
    assert calc.discount_minor == 100_000
    assert (calc.passes[0].units, calc.passes[0].used) == (1, 1)
    accrual = promo("EARN", "compliment_accrual", per_amount_minor=100_000, credit_weekday=5)
    earned = run(receipt(line(1, "A", 1, 250_000), card_no="C1"), accrual)
    # Saturday 1 March 2025: the next Friday is 7 March, 00:00 store time (UTC here).
    assert earned.accruals[0].active_from == datetime(2025, 3, 7, tzinfo=UTC)
    assert earned.accruals[0].amount == 2


# -- exact validation at the Center, tolerance at the register -------------------------------


def test_exact_mode_names_unknown_fields_and_settings_the_register_tolerates_them() -> None:
    doc = promo("T", "threshold_discount", steps=[{"min_total_minor": 0, "percent": "5"}])
    typo = {**doc, "max_discount_shares": "0.2"}
    with pytest.raises(RuleError) as exact:
        load_promotion_set([typo], version=1, settings={"max_discount_shares": "0.2"}, exact=True)
    assert exact.value.problems[0].startswith("settings: max_discount_shares: unknown setting")
    assert exact.value.problems[1] == (
        "promotion 'T': max_discount_shares: unknown field for a threshold_discount rule"
    )
    # A register parsing a newer Center's rules keeps going, and says what it ignored.
    tolerant = load_promotion_set([typo], version=1, settings={"max_discount_shares": "0.2"})
    assert tolerant.warnings == ("promotion 'T': unknown field 'max_discount_shares' ignored",)
    # Dotted settings belong to other components.
    load_promotion_set([doc], version=1, settings={"offline.max_receipts": "9"}, exact=True)


# -- gift certificate lines are money, not goods ----------------------------------------------


def _certificate_rules() -> list[dict[str, Any]]:
    return [
        promo("ALL10", "goods_discount", priority=10, percent="10"),
        promo(
            "T1000",
            "threshold_discount",
            priority=20,
            steps=[{"min_total_minor": 100000, "amount_minor": 5000}],
        ),
        promo("ACC1", "accrual_percent", priority=30, percent="1"),
    ]


def test_certificate_line_is_not_discounted_accrued_or_counted_in_totals() -> None:
    goods = line(1, "MILK", 3, 10000)
    cert = line(2, "CERT-1000", 1, 100000, type=CERTIFICATE_TYPE)
    r = receipt(goods, cert, card_no="C1", bonus_balance=100000)
    calc = run(r, *_certificate_rules(), settings={"bonus_max_share": "0.5"})
    # Goods 300.00: 10 % off = 30.00; the certificate (1,000.00) takes no discount.
    assert [(x.line_no, x.discount_minor) for x in calc.lines] == [(1, 3000), (2, 0)]
    assert calc.lines[1].total_minor == 100000
    # The threshold reads the goods subtotal 300.00, below 1,000.00: it does not fire
    # (with the certificate the subtotal would be 1,300.00 and give 50.00 off).
    assert "T1000" not in calc.fired
    assert calc.discount_minor == 3000
    # The customer pays the goods after discount and the certificate in full.
    assert calc.subtotal_minor == 130000
    assert calc.total_minor == 27000 + 100000
    assert calc.to_pay_minor == 127000
    # 1 % of the goods after discount, 270.00 -> 2.70; not of 1,270.00.
    assert [(a.rule_id, a.amount) for a in calc.accruals] == [("ACC1", 270)]
    # Bonus pays at most half of the goods (135.00), never the certificate.
    assert calc.bonus_payable_max == 13500
    with pytest.raises(BonusSpendError):
        run(r, *_certificate_rules(), settings={"bonus_max_share": "0.5"}, bonus_to_spend=13501)


def test_the_same_receipt_without_the_type_prices_the_certificate_as_goods() -> None:
    # The control: without the type the old pricing discounted and counted the certificate.
    goods = line(1, "MILK", 3, 10000)
    cert = line(2, "CERT-1000", 1, 100000)
    calc = run(receipt(goods, cert, card_no="C1"), *_certificate_rules())
    assert calc.lines[1].discount_minor > 0
    assert "T1000" in calc.fired


def test_a_goods_rule_naming_the_certificate_still_does_not_touch_it() -> None:
    cert = line(1, "CERT-1000", 1, 100000, type=CERTIFICATE_TYPE)
    docs = [
        promo("P", "goods_discount", goods={"products": ["CERT-1000"]}, percent="50"),
        promo("T", "goods_discount", goods={"types": [CERTIFICATE_TYPE]}, percent="50"),
        promo("ACC1", "accrual_percent", priority=30, percent="1"),
    ]
    calc = run(receipt(cert, card_no="C1", bonus_balance=5000), *docs)
    assert calc.discount_minor == 0
    assert calc.total_minor == calc.to_pay_minor == 100000
    assert calc.accruals == ()
    assert calc.fired == ()
    assert calc.bonus_payable_max == 0


def test_returning_goods_next_to_a_certificate_reverses_the_whole_accrual() -> None:
    goods = line(1, "MILK", 3, 10000)
    cert = line(2, "CERT-1000", 1, 100000, type=CERTIFICATE_TYPE)
    r = receipt(goods, cert, card_no="C1", bonus_balance=100000)
    sale = run(r, *_certificate_rules(), bonus_to_spend=2000)
    # Accrual: 1 % of the goods left to pay in money, 270.00 - 20.00 of bonus = 2.50.
    assert [a.amount for a in sale.accruals] == [250]
    back = calculate_return(r, sale, {1: 3000})
    # All the goods back: 270.00 refunded, the 20.00 of bonus and the 2.50 accrued in full
    # (shares of 1,270.00 would have given back 2000 * 27000 / 127000 = 425 and 53).
    assert back.refund_minor == 27000
    assert back.bonus_refund == 2000
    assert [a.amount for a in back.accrual_reversals] == [250]
    # The certificate back alone: its 1,000.00, no bonus and no accrual.
    cert_back = calculate_return(r, sale, {2: 1000})
    assert (cert_back.refund_minor, cert_back.bonus_refund) == (100000, 0)
    assert cert_back.accrual_reversals == ()
