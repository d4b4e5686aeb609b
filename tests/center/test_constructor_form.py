"""The constructor's form, pure: a rule document of every kind survives the trip to the form's
text and back, amounts typed in major units become minor units, bad text names its field."""

from __future__ import annotations

from typing import Any

import pytest

from center.promotions.constructor import check_doc
from center.promotions.constructor_form import (
    KINDS,
    doc_from_form,
    field_for,
    form_values,
    parse_major,
)

GOODS = {"categories": ["dairy"], "exclude_brands": ["Acme"]}
COMMON: dict[str, Any] = {
    "title": "Everything",
    "description": "A rule with every common field",
    "priority": 50,
    "stacking": "additive",
    "schedule": {
        "from": "2026-01-01",
        "to": "2026-12-31",
        "days_of_month": [1, 15],
        "days_of_week": [1, 5],
        "hours": [22, 6],
    },
    "place": {"stores": ["s1"], "exclude_formats": ["Discounter"], "regions": ["north"]},
    "requires_card": True,
    "segments": ["vip"],
    "attributes": {"city": "Tver"},
    "counters_at_least": {"purchases": 3},
    "min_subtotal_minor": 50000,
    "payment_types": ["card"],
    "contains": {"products": ["MILK"]},
    "contains_qty_milli": 1500,
    "contains_amount_minor": 12345,
    "limits": {"max_discount_minor": 100000, "max_fires_per_day": 1, "max_qty_per_day_milli": 5000},
    "funding": {"by": "supplier:acme", "budget_minor": 1000000},
    "messages": {"slip": "+{amount}", "display": "{percent} %"},
}
CREDIT = {"wallet": "bonus", "delay_days": 14, "lifetime_days": 365}
TERMS: dict[str, dict[str, Any]] = {
    "accrual_percent": {
        "percent": "0.5",
        "min_total_minor": 100,
        "max_total_minor": 100000,
        "accrue_on_bonus_paid": False,
        "accrue_after_bonus_payment": True,
        "goods": GOODS,
        **CREDIT,
    },
    "accrual_per_amount": {"per_amount_minor": 10000, "bonus": "2.50", **CREDIT, "goods": GOODS},
    "accrual_per_unit": {
        "points": 1,
        "max_points": 10,
        "wallet": "stickers",
        "lifetime_months": 3,
        "goods": GOODS,
    },
    "favourite_categories": {
        "percent": "5",
        "choices": {"*": ["dairy", "bakery"], "vip": ["wine"]},
        "max_categories": 2,
        **CREDIT,
    },
    "counter_reward": {"counter": "purchases", "at": 1, "bonus": "100.00", **CREDIT},
    "compliment_accrual": {
        "per_amount_minor": 100000,
        "weekly_cap": 3,
        "wallet": "compliment",
        "week_counter": "compliment_week",
        "lifetime_days": 30,
        "credit_weekday": 1,
    },
    "referral_reward": {"bonus": "200.00", "counter": "purchases", "min_total_minor": 50000},
    "prize_draw": {
        "draw_id": "summer",
        "per_amount_minor": 100000,
        "entries": 1,
        "max_entries": 5,
        "goods": GOODS,
    },
    "issue_coupon": {"prefix": "NEXT5", "min_total_minor": 6000, "valid_days": 14},
    "threshold_discount": {
        "steps": [
            {"min_total_minor": 100000, "percent": "5"},
            {"min_total_minor": 200000, "amount_minor": 15000},
        ]
    },
    "goods_discount": {"percent": "10", "min_qty_milli": 2000, "goods": GOODS},
    "ladder": {"steps": ["0", "10", "20.5"], "repeat_last": False, "goods": GOODS},
    "buy_get": {"buy": 2, "get": 1, "percent": "100", "per_product": True, "goods": GOODS},
    "set_price": {
        "components": [
            {"goods": {"products": ["A"]}, "qty": 1},
            {"goods": {"products": ["B"]}, "qty": 2},
        ],
        "price_minor": 19900,
    },
    "personal_offers": {"max_percent": "30", "goods": GOODS},
    "compliment_redeem": {
        "wallet": "compliment",
        "default_cap": 10,
        "product_caps": {"WHISKY": 1},
        "min_unit_price_minor": 100,
        "max_discount_percent": "90",
        "pass_days": 7,
        "goods": GOODS,
    },
    "wallet_exchange": {"wallet": "chips", "value_minor": 5000, "goods": GOODS},
    "restriction": {
        "promotions": ["a", "b"],
        "max_discount_percent": "30",
        "max_discount_minor": 50000,
        "max_grants_per_day": 1,
        "max_grants_per_month": 4,
    },
    "coupon": {"codes": ["SPRING"], "multi_use": True, "amount_minor": 30000, "goods": GOODS},
    "price_floor": {"min_unit_price_minor": 1000, "max_discount_percent": "50", "goods": GOODS},
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("language", ["en", "ru"])
def test_every_kind_survives_the_form_and_back(kind: str, language: str) -> None:
    doc = {"kind": kind, "promotion_id": f"p-{kind}", **COMMON, **TERMS[kind]}
    problems, _ = check_doc(doc)
    assert problems == [], problems  # a document the engine takes, every field filled
    values = form_values(doc, 2, language)
    back, errors = doc_from_form(values, kind)
    assert errors == {}
    assert back == doc


def test_amounts_typed_in_major_units_become_minor_units() -> None:
    assert parse_major("1 234,56") == 123456
    assert parse_major("1\u00a0234.5") == 123450
    assert parse_major("1 000") == 100000
    assert parse_major("12", exponent=0) == 12
    values = form_values({"kind": "accrual_percent", "max_total_minor": 100000}, 2, "ru")
    assert values["max_total_minor"] == "1 000,00"


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("max_total_minor", "12,345"),
        ("max_total_minor", "ten"),
        ("delay_days", "1.5"),
        ("schedule.hours", "9"),
        ("requires_card", "maybe"),
        ("attributes", "no equals sign"),
    ],
)
def test_text_a_field_cannot_read_is_named_and_left_out(field: str, text: str) -> None:
    doc, errors = doc_from_form({field: text, "percent": "1"}, "accrual_percent")
    assert list(errors) == [field]
    assert doc == {"kind": "accrual_percent", "percent": "1"}


def test_problem_paths_land_on_their_form_field() -> None:
    assert field_for("steps[1].percent", "threshold_discount") == "steps"
    assert field_for("components[0].goods", "set_price") == "components"
    assert field_for("place.exclude_formats", "accrual_percent") == "place.exclude_formats"
    assert field_for("body.promotion_id", "accrual_percent") == "promotion_id"
    assert field_for("settings.max_discount_share", "accrual_percent") == ""
