"""One test per mechanic, each with a hand-computed expected receipt."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from loyalty_engine import (
    BonusSpendError,
    Calculation,
    CustomerState,
    Discount,
    InvalidReceipt,
    PersonalOffer,
    Receipt,
    ReceiptLine,
    RuleError,
    calculate,
    load_promotion_set,
    verify_code,
)

# A Saturday, noon UTC.
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = "chain-secret"


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


def per_line(calc: Calculation) -> list[int]:
    return [result.discount_minor for result in calc.lines]


def check_sums(calc: Calculation) -> None:
    assert sum(per_line(calc)) == calc.discount_minor == calc.subtotal_minor - calc.total_minor


# --- discounts on goods -------------------------------------------------------------------


def test_goods_percent_with_selector_and_exclusion() -> None:
    r = receipt(
        line(1, "MILK", 1, 200, category="dairy"),
        line(2, "CREAM", 1, 300, category="dairy"),
        line(3, "BREAD", 1, 100, category="bakery"),
    )
    calc = run(
        r,
        promo(
            "D10",
            "goods_discount",
            goods={"categories": ["dairy"], "exclude_products": ["CREAM"]},
            percent="10",
        ),
    )
    assert per_line(calc) == [20, 0, 0]
    assert calc.lines[0].discounts == (Discount("D10", 20),)
    assert calc.explanation == ("D10: applied: 10 % off 1 line(s) = 0.20 RUB",)
    check_sums(calc)


def test_goods_amount_off_and_fixed_price_per_unit() -> None:
    r = receipt(line(1, "A", 3, 150, brand="acme"), line(2, "B", 2, 250, type="snack"))
    calc = run(
        r,
        promo("OFF", "goods_discount", goods={"brands": ["acme"]}, amount_off_minor=20),
        promo("FIX", "goods_discount", 20, goods={"types": ["snack"]}, fixed_price_minor=199),
    )
    assert per_line(calc) == [60, 102]
    check_sums(calc)


def test_goods_min_quantity() -> None:
    r = receipt(line(1, "A", 1, 1000))
    doc = promo("Q", "goods_discount", goods={"products": ["A"]}, percent="10", min_qty_milli=2000)
    assert run(r, doc).discount_minor == 0
    assert run(receipt(line(1, "A", 2, 1000)), doc).discount_minor == 200


# --- the Mission's accrual example ---------------------------------------------------------

MISSION_ACCRUAL = promo(
    "HALF",
    "accrual_percent",
    percent="0.5",
    max_total_minor=100_000,
    requires_card=True,
    place={"exclude_formats": ["discounter"]},
)


@pytest.mark.parametrize(
    ("total", "store_format", "card", "points"),
    [
        (80_000, "supermarket", "C1", 400),  # 0.5 % of 800.00 = 4.00
        (99_999, "hyper", "C1", 500),  # 499.995 rounds half-even to 500
        (100_000, "supermarket", "C1", 0),  # not below 1 000
        (80_000, "discounter", "C1", 0),  # every store except the Discounter format
        (80_000, "supermarket", None, 0),  # every card holder only
    ],
)
def test_mission_half_percent_below_1000(
    total: int, store_format: str, card: str | None, points: int
) -> None:
    calc = run(
        receipt(line(1, "A", 1, total), store_format=store_format, card_no=card), MISSION_ACCRUAL
    )
    assert sum(a.amount for a in calc.accruals) == points


def test_accrual_delay_lifetime_and_movements() -> None:
    doc = promo("A", "accrual_percent", percent="5", delay_days=14, lifetime_days=30)
    calc = run(
        receipt(line(1, "A", 1, 10_000), card_no="C1", bonus_balance=2000), doc, bonus_to_spend=1000
    )
    # base = 10 000 - 1 000 paid with bonus; pending for 14 days, burning 30 days later.
    assert [(m.wallet, m.kind, m.amount) for m in calc.movements] == [
        ("bonus", "spent", 1000),
        ("bonus", "pending", 450),
    ]
    assert calc.movements[1].active_from == datetime(2025, 3, 15, 12, tzinfo=UTC)
    assert calc.movements[1].expires_at == datetime(2025, 4, 14, 12, tzinfo=UTC)
    on_paid = run(
        receipt(line(1, "A", 1, 10_000), card_no="C1", bonus_balance=2000),
        {**doc, "accrue_on_bonus_paid": True},
        bonus_to_spend=1000,
    )
    assert on_paid.accruals[0].amount == 500


def test_accrual_on_goods_only_and_per_amount_chips() -> None:
    r = receipt(
        line(1, "A", 1, 60_000, category="wine"),
        line(2, "B", 1, 60_000, category="bread"),
        card_no="C1",
    )
    calc = run(
        r,
        promo("W", "accrual_percent", percent="10", goods={"categories": ["wine"]}),
        promo("CHIP", "accrual_per_amount", 20, per_amount_minor=50_000, points=1, wallet="chips"),
    )
    assert [(a.rule_id, a.wallet, a.amount) for a in calc.accruals] == [
        ("W", "bonus", 6000),
        ("CHIP", "chips", 2),
    ]


# --- cascades, ladders, multi-buys ---------------------------------------------------------


def _three_steps() -> list[dict[str, Any]]:
    return [
        promo("C1", "threshold_discount", 1, steps=[{"min_total_minor": 0, "percent": "10"}]),
        promo("C2", "threshold_discount", 2, steps=[{"min_total_minor": 0, "percent": "5"}]),
        promo("C3", "threshold_discount", 3, steps=[{"min_total_minor": 0, "percent": "2"}]),
    ]


def test_three_step_cascade_compounds_in_priority_order() -> None:
    calc = run(receipt(line(1, "A", 1, 10_000)), *_three_steps())
    # 10 % of 10 000 = 1 000; 5 % of 9 000 = 450; 2 % of 8 550 = 171.
    assert calc.lines[0].discounts == (
        Discount("C1", 1000),
        Discount("C2", 450),
        Discount("C3", 171),
    )
    assert calc.total_minor == 8379


def test_additive_stacking_computes_on_original_amounts() -> None:
    calc = run(receipt(line(1, "A", 1, 10_000)), *_three_steps(), settings={"stacking": "additive"})
    assert calc.discount_minor == 1000 + 500 + 200
    assert calc.explanation[0].endswith("[additive]")


def test_ladder_second_third_fourth_unit() -> None:
    doc = promo("L", "ladder", goods={"products": ["A"]}, steps=["0", "10", "20", "30"])
    calc = run(receipt(line(1, "A", 3, 1000), line(2, "A", 2, 1000), line(3, "B", 2, 1000)), doc)
    # Units of A in receipt order: 0 %, 10 %, 20 % (line 1), 30 %, 30 % (line 2, last step repeats).
    assert per_line(calc) == [300, 600, 0]
    no_repeat = run(receipt(line(1, "A", 5, 1000)), {**doc, "repeat_last": False})
    assert no_repeat.discount_minor == 600


def test_buy_two_get_one_cheapest_free_as_often_as_fits() -> None:
    r = receipt(
        line(1, "A", 1, 500),
        line(2, "B", 1, 400),
        line(3, "C", 1, 300),
        line(4, "D", 1, 200),
        line(5, "E", 2, 100),
    )
    calc = run(
        r,
        promo(
            "B2G1", "buy_get", goods={"departments": ["x"], "products": list("ABCDE")}, buy=2, get=1
        ),
    )
    # 6 units -> 2 free units, the two cheapest (100 + 100).
    assert per_line(calc) == [0, 0, 0, 0, 200]


def test_buy_get_per_product_half_price() -> None:
    doc = promo(
        "P", "buy_get", goods={"products": ["A", "B"]}, buy=1, get=1, percent="50", per_product=True
    )
    calc = run(receipt(line(1, "A", 3, 1000), line(2, "B", 1, 800)), doc)
    assert per_line(calc) == [500, 0]


def test_mix_and_match_set_price() -> None:
    doc = promo(
        "MEAL",
        "set_price",
        components=[
            {"goods": {"categories": ["sandwich"]}, "qty": 1},
            {"goods": {"categories": ["drink"]}, "qty": 1},
        ],
        price_minor=300,
    )
    r = receipt(
        line(1, "S", 2, 250, category="sandwich"),
        line(2, "D", 1, 100, category="drink"),
    )
    calc = run(r, doc)
    # One set (one drink): 350 -> 300; 50 spread 250:100 by largest remainder.
    assert per_line(calc) == [36, 14]
    two = run(
        receipt(line(1, "S", 2, 250, category="sandwich"), line(2, "D", 2, 100, category="drink")),
        doc,
    )
    assert two.discount_minor == 100


# --- coupons -------------------------------------------------------------------------------


def test_promo_code_single_and_multi_use() -> None:
    doc = promo("SPRING", "coupon", codes=["spring10"], percent="10")
    r = receipt(line(1, "A", 1, 1000), coupon_codes=("Spring10",))
    calc = run(r, doc)
    assert (calc.discount_minor, calc.coupons_consumed) == (100, ("SPRING10",))
    used = CustomerState(used_coupons=frozenset({"SPRING10"}))
    again = run(receipt(line(1, "A", 1, 1000), coupon_codes=("SPRING10",), customer=used), doc)
    assert again.discount_minor == 0
    assert again.explanation == ("SPRING: skipped: single-use coupon SPRING10 already used",)
    multi = run(
        receipt(line(1, "A", 1, 1000), coupon_codes=("SPRING10",), customer=used),
        {**doc, "multi_use": True},
    )
    assert multi.discount_minor == 100
    assert run(receipt(line(1, "A", 1, 1000)), doc).explanation == ()


def test_coupon_gives_extra_bonus_points() -> None:
    doc = promo("X", "coupon", codes=["BONUS500"], bonus_points=500)
    calc = run(receipt(line(1, "A", 1, 1000), coupon_codes=("BONUS500",), card_no="C1"), doc)
    assert [(a.wallet, a.amount) for a in calc.accruals] == [("bonus", 500)]
    assert calc.discount_minor == 0


def test_issued_coupon_is_verifiable_offline_and_redeemable() -> None:
    settings = {"coupon_key": KEY}
    issue = promo("ISS", "issue_coupon", prefix="NEXT", min_total_minor=5000, valid_days=30)
    sale = run(receipt(line(1, "A", 1, 6000), receipt_id="R-1"), issue, settings=settings)
    (coupon,) = sale.coupons_issued
    assert coupon.valid_until == datetime(2025, 3, 31, 12, tzinfo=UTC)
    assert verify_code(KEY, coupon.code) == "NEXT"
    assert verify_code("other-key", coupon.code) is None
    # The same sale recomputed (the Center) issues the same code.
    assert run(
        receipt(line(1, "A", 1, 6000), receipt_id="R-1"), issue, settings=settings
    ).coupons_issued == (coupon,)
    redeem = promo("RED", "coupon", signed_prefix="next", amount_minor=300)
    later = run(
        receipt(line(1, "B", 1, 1000), coupon_codes=(coupon.code,)), redeem, settings=settings
    )
    assert later.discount_minor == 300
    forged = coupon.code[:-1] + ("0" if coupon.code[-1] != "0" else "1")
    bad = run(receipt(line(1, "B", 1, 1000), coupon_codes=(forged,)), redeem, settings=settings)
    assert bad.discount_minor == 0
    assert "fails its check digit or signature" in bad.explanation[0]
    small = run(receipt(line(1, "A", 1, 4000), receipt_id="R-2"), issue, settings=settings)
    assert small.coupons_issued == ()


# --- customers: tiers, favourites, personal offers, counters -------------------------------


def test_tier_privilege() -> None:
    doc = promo(
        "GOLD",
        "threshold_discount",
        steps=[{"min_total_minor": 0, "percent": "3"}],
        tiers=["champion"],
    )
    champion = CustomerState(tier="champion")
    assert run(receipt(line(1, "A", 1, 1000), customer=champion), doc).discount_minor == 30
    newcomer = run(receipt(line(1, "A", 1, 1000), customer=CustomerState(tier="newcomer")), doc)
    assert newcomer.explanation == ("GOLD: skipped: tier 'newcomer' not in the rule's tiers",)


def test_favourite_categories_from_the_segment_list() -> None:
    doc = promo(
        "FAV",
        "favourite_categories",
        percent="5",
        choices={"gold": ["dairy", "meat", "fish"], "*": ["bread"]},
        max_categories=2,
    )
    customer = CustomerState(favourite_categories=("toys", "dairy", "bread"))
    r = receipt(
        line(1, "M", 1, 2000, category="dairy"),
        line(2, "T", 1, 3000, category="toys"),
        line(3, "B", 1, 500, category="bread"),
        card_no="C1",
        segment="gold",
        customer=customer,
    )
    # toys are not offered to gold, bread neither: only dairy counts, 5 % of 2 000.
    assert [a.amount for a in run(r, doc).accruals] == [100]


def test_personal_offers() -> None:
    customer = CustomerState(
        personal_offers=(
            PersonalOffer("o1", ("A", "B"), Decimal("15")),
            PersonalOffer("o2", ("B",), Decimal("40")),
        )
    )
    r = receipt(
        line(1, "A", 1, 1000), line(2, "B", 1, 1000), line(3, "C", 1, 1000), customer=customer
    )
    calc = run(r, promo("PO", "personal_offers", max_percent="30"))
    assert per_line(calc) == [150, 300, 0]


def test_counter_rewards_welcome_and_every_tenth_purchase() -> None:
    welcome = promo("WELCOME", "counter_reward", counter="purchases", at=1, points=1000)
    tenth = promo("TENTH", "counter_reward", 20, counter="purchases", every=10, points=200)
    first = run(
        receipt(line(1, "A", 1, 100), card_no="C1", customer=CustomerState()), welcome, tenth
    )
    assert [(a.rule_id, a.amount) for a in first.accruals] == [("WELCOME", 1000)]
    ninth = CustomerState(counters={"purchases": 9})
    calc = run(receipt(line(1, "A", 1, 100), card_no="C1", customer=ninth), welcome, tenth)
    assert [(a.rule_id, a.amount) for a in calc.accruals] == [("TENTH", 200)]


# --- the compliment scheme -----------------------------------------------------------------


def test_compliments_one_per_1000_at_most_three_a_week_credited_weekly() -> None:
    doc = promo("COMP", "compliment_accrual", per_amount_minor=100_000, weekly_cap=3)
    customer = CustomerState(counters={"compliment_week": 1})
    calc = run(receipt(line(1, "A", 1, 250_000), card_no="C1", customer=customer), doc)
    (movement,) = calc.movements
    # 2 earned (2 500 spent), room for 2 more this week; credited next Monday 00:00.
    assert (movement.wallet, movement.kind, movement.amount) == ("compliment", "pending", 2)
    assert movement.active_from == datetime(2025, 3, 3, tzinfo=UTC)
    full = CustomerState(counters={"compliment_week": 3})
    capped = run(receipt(line(1, "A", 1, 500_000), card_no="C1", customer=full), doc)
    assert capped.accruals == ()
    assert capped.explanation == ("COMP: skipped: weekly cap 3 reached (3 earned this week)",)


def test_compliments_spent_with_product_caps_and_floor_at_cost() -> None:
    doc = promo(
        "SPEND",
        "compliment_redeem",
        goods={"categories": ["milk", "whisky"]},
        default_cap=10,
        product_caps={"WHISKY": 1},
    )
    customer = CustomerState(wallets={"compliment": 5})
    r = receipt(
        line(1, "MILK", 3, 100, category="milk"),
        line(2, "WHISKY", 2, 5000, category="whisky", cost_minor=3000),
        card_no="C1",
        customer=customer,
    )
    calc = run(r, doc, spend={"compliment": 3})
    # A compliment buys a weekly pass on one product: whisky (biggest saving first) down to its
    # cost on 1 unit (cap 1, saving 20.00), then milk free on all 3 units (cap 10, 3.00). The
    # third compliment finds no other product: 2 are spent.
    assert per_line(calc) == [300, 2000]
    assert [(m.wallet, m.kind, m.amount) for m in calc.movements] == [("compliment", "spent", 2)]
    with pytest.raises(BonusSpendError, match=r"spend\['compliment'\]"):
        run(r, doc, spend={"compliment": 6})


# --- stacking ------------------------------------------------------------------------------


def test_exclusive_wins_only_when_better_for_the_customer() -> None:
    big = promo(
        "EX",
        "threshold_discount",
        5,
        steps=[{"min_total_minor": 0, "percent": "20"}],
        stacking="exclusive",
    )
    r = receipt(line(1, "A", 1, 10_000))
    calc = run(r, *_three_steps(), big)
    assert calc.lines[0].discounts == (Discount("EX", 2000),)
    assert "replaced by an exclusive promotion" in calc.explanation[0]
    small = {**big, "steps": [{"min_total_minor": 0, "percent": "12"}]}
    calc = run(r, *_three_steps(), small)
    assert calc.discount_minor == 1621
    assert "exclusive, but the other discounts give more" in calc.explanation[-1]


def test_best_for_customer_per_line() -> None:
    a = promo("A10", "goods_discount", 1, goods={"products": ["P1"]}, percent="10", stacking="best")
    b = promo(
        "B20", "goods_discount", 2, goods={"categories": ["c"]}, percent="20", stacking="best"
    )
    c = promo("C30", "goods_discount", 3, goods={"products": ["P1"]}, percent="30", stacking="best")
    r = receipt(line(1, "P1", 1, 1000, category="c"), line(2, "P2", 1, 1000, category="c"))
    calc = run(r, a, b, c)
    assert [res.discounts for res in calc.lines] == [
        (Discount("C30", 300),),
        (Discount("B20", 200),),
    ]
    assert "A10: skipped" in calc.explanation[0]


def test_chain_wide_exclusive_gives_the_single_best_promotion() -> None:
    calc = run(
        receipt(line(1, "A", 1, 10_000)), *_three_steps(), settings={"stacking": "exclusive"}
    )
    assert calc.lines[0].discounts == (Discount("C1", 1000),)


# --- restrictions --------------------------------------------------------------------------


def test_max_discount_per_receipt_share_and_amount() -> None:
    calc = run(
        receipt(line(1, "A", 1, 6000), line(2, "B", 1, 4000)),
        *_three_steps(),
        settings={"max_discount_share": "0.15"},
    )
    assert calc.discount_minor == 1500
    check_sums(calc)
    calc = run(
        receipt(line(1, "A", 1, 10_000)), *_three_steps(), settings={"max_discount_minor": "1000"}
    )
    assert calc.discount_minor == 1000


def test_per_promotion_discount_and_accrual_caps() -> None:
    disc = promo(
        "D",
        "threshold_discount",
        steps=[{"min_total_minor": 0, "percent": "50"}],
        limits={"max_discount_minor": 700},
    )
    acc = promo("A", "accrual_percent", 20, percent="10", limits={"max_accrual_minor": 50})
    calc = run(receipt(line(1, "A", 1, 2000), card_no="C1"), disc, acc)
    assert (calc.discount_minor, calc.accruals[0].amount) == (700, 50)
    chain = run(
        receipt(line(1, "A", 1, 2000), card_no="C1"), acc, settings={"max_accrual_minor": "30"}
    )
    assert chain.accruals[0].amount == 30


def test_fire_limits_per_day_and_month() -> None:
    doc = promo(
        "F",
        "goods_discount",
        goods={"products": ["A"]},
        percent="10",
        limits={"max_fires_per_day": 1, "max_fires_per_month": 3},
    )
    fresh = run(receipt(line(1, "A", 1, 1000), customer=CustomerState()), doc)
    assert fresh.fired == ("F",)
    today = run(receipt(line(1, "A", 1, 1000), customer=CustomerState(fired_day={"F": 1})), doc)
    assert today.explanation == ("F: skipped: fired 1 time(s) today, limit 1",)
    month = run(receipt(line(1, "A", 1, 1000), customer=CustomerState(fired_month={"F": 3})), doc)
    assert month.discount_minor == 0
    once = {**doc, "limits": {"max_fires_total": 1}}
    ever = run(receipt(line(1, "A", 1, 1000), customer=CustomerState(fired_total={"F": 1})), once)
    assert ever.explanation == ("F: skipped: fired 1 time(s) for this customer, limit 1",)


def test_quantity_limit_per_day() -> None:
    doc = promo(
        "Q",
        "goods_discount",
        goods={"products": ["A"]},
        percent="10",
        limits={"max_qty_per_day_milli": 2000},
    )
    customer = CustomerState(qty_day_milli={"Q": 1000})
    calc = run(receipt(line(1, "A", 3, 1000), customer=customer), doc)
    # One unit left today out of 2: a third of the line's 300.
    assert calc.discount_minor == 100


def test_price_floor_and_never_below_cost() -> None:
    disc = promo("D", "goods_discount", goods={"products": ["A", "B"]}, percent="20")
    floor = promo("FL", "price_floor", 0, goods={"products": ["A"]}, min_unit_price_minor=900)
    r = receipt(line(1, "A", 1, 1000), line(2, "B", 1, 1000, cost_minor=950))
    calc = run(r, disc, floor)
    assert per_line(calc) == [100, 50]
    assert calc.explanation[-1] == (
        "D: applied: 20 % off 2 line(s) = 4.00 RUB, given 1.50 RUB within floors and limits"
    )
    blocked = run(receipt(line(1, "A", 1, 1000, cost_minor=1000)), disc)
    assert blocked.explanation == (
        "D: skipped: 20 % off 1 line(s) = 2.00 RUB; nothing left above floors and limits",
    )
    assert blocked.fired == ()
    pct_floor = promo("FL", "price_floor", 0, goods={"products": ["A"]}, max_discount_percent="5")
    assert per_line(run(r, disc, pct_floor)) == [50, 50]
    assert per_line(run(r, disc, settings={"never_below_cost": "false"})) == [200, 200]


def test_supplier_budget_stops_the_campaign() -> None:
    doc = promo(
        "SUP",
        "goods_discount",
        goods={"brands": ["acme"]},
        percent="10",
        funding={"by": "supplier:acme", "budget_minor": 10_000},
    )
    r = receipt(line(1, "A", 1, 1000, brand="acme"))
    assert run(r, doc, budgets_left={"SUP": 30}).discount_minor == 30
    spent = run(r, doc, budgets_left={"SUP": 0})
    assert spent.explanation == ("SUP: skipped: budget of supplier:acme spent",)


def test_schedule_days_of_month_and_regions() -> None:
    doc = promo(
        "M",
        "threshold_discount",
        steps=[{"min_total_minor": 0, "percent": "10"}],
        schedule={"days_of_month": [1, 15]},
        place={"regions": ["north"]},
    )
    assert run(receipt(line(1, "A", 1, 1000), region="north"), doc).discount_minor == 100
    assert run(receipt(line(1, "A", 1, 1000), region="south"), doc).discount_minor == 0
    later = receipt(line(1, "A", 1, 1000), region="north", now=datetime(2025, 3, 2, 12, tzinfo=UTC))
    assert run(later, doc).explanation == ("M: skipped: day of month 2 not in [1,15]",)


def test_messages_of_new_kinds_are_filled() -> None:
    doc = promo(
        "D",
        "goods_discount",
        goods={"products": ["A"]},
        percent="10",
        messages={"slip": "-{percent} %: {amount}"},
    )
    assert run(receipt(line(1, "A", 1, 1000)), doc).messages.slip == ("-10 %: 1.00",)


def test_invalid_documents_name_rule_and_field() -> None:
    with pytest.raises(RuleError) as info:
        load_promotion_set(
            [
                promo(
                    "G",
                    "goods_discount",
                    goods={"products": ["A"]},
                    percent="10",
                    amount_off_minor=5,
                ),
                promo("S", "set_price", components=[{"goods": {}, "qty": 1}], price_minor=1),
                promo(
                    "K",
                    "threshold_discount",
                    steps=[{"min_total_minor": 0, "percent": "1"}],
                    stacking="sometimes",
                ),
            ],
            version=1,
        )
    text = "\n".join(info.value.problems)
    assert "promotion 'G': percent: expected exactly one of" in text
    assert "promotion 'S': components[0].goods: expected a selector" in text
    assert "promotion 'K': stacking: expected one of compound, additive, best, exclusive" in text


def test_impossible_new_receipt_fields_are_refused() -> None:
    with pytest.raises(InvalidReceipt, match=r"lines\[0\]\.cost_minor"):
        run(receipt(line(1, "A", 1, 100, cost_minor=-1)))


def test_wallet_exchange_chips_for_a_discount() -> None:
    doc = promo(
        "EX", "wallet_exchange", goods={"categories": ["toys"]}, wallet="chips", value_minor=500
    )
    customer = CustomerState(wallets={"chips": 10})
    r = receipt(
        line(1, "T", 1, 1200, category="toys"),
        line(2, "M", 1, 300, category="milk"),
        customer=customer,
    )
    calc = run(r, doc, spend={"chips": 4})
    # 1 200 of toys absorb two whole chips of 5.00; the other two stay in the wallet.
    assert per_line(calc) == [1000, 0]
    assert [(m.wallet, m.kind, m.amount) for m in calc.movements] == [("chips", "spent", 2)]


def test_gift_when_the_receipt_contains_goods() -> None:
    gift = promo(
        "GIFT",
        "goods_discount",
        goods={"products": ["CUP"]},
        fixed_price_minor=0,
        contains={"brands": ["coffee-co"]},
        contains_qty_milli=2000,
        min_subtotal_minor=1000,
    )
    two = receipt(line(1, "BEANS", 2, 600, brand="coffee-co"), line(2, "CUP", 1, 300))
    assert per_line(run(two, gift)) == [0, 300]
    one = receipt(line(1, "BEANS", 1, 1600, brand="coffee-co"), line(2, "CUP", 1, 300))
    assert run(one, gift).explanation == (
        "GIFT: skipped: receipt holds 1000 of the required goods, needs 2000",
    )


def test_schedule_in_the_store_time_zone_and_promo_quantities() -> None:
    doc = promo(
        "H",
        "goods_discount",
        goods={"products": ["A"]},
        percent="10",
        schedule={"hours": [9, 12]},
    )
    # 12:00 UTC is 12:00 in Lisbon (UTC+0 in March): outside; 07:00 UTC is 10:00 in Moscow.
    lisbon = run(receipt(line(1, "A", 2, 1000), timezone="Europe/Lisbon"), doc)
    assert lisbon.explanation == ("H: skipped: hour 12 outside [9, 12)",)
    early = receipt(line(1, "A", 2, 1000), now=datetime(2025, 3, 1, 7, tzinfo=UTC))
    moscow = run(replace(early, timezone="Europe/Moscow"), doc)
    assert (moscow.discount_minor, moscow.promo_qty_milli) == (200, (("H", 2000),))
    with pytest.raises(InvalidReceipt, match="timezone"):
        run(replace(early, timezone="Mars/Olympus"), doc)
