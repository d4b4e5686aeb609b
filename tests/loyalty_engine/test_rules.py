import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from loyalty_engine import (
    EngineError,
    PromotionSet,
    RuleError,
    default_promotions,
    default_settings,
    load_promotion_set,
)
from loyalty_engine.conditions import Place, Schedule
from loyalty_engine.kinds import KINDS
from loyalty_engine.kinds.accrual_percent import AccrualPercent
from loyalty_engine.kinds.threshold_discount import Step, ThresholdDiscount

MakeDoc = Callable[..., dict[str, Any]]


def problems_of(docs: list[Any], **kwargs: Any) -> tuple[str, ...]:
    with pytest.raises(RuleError) as info:
        load_promotion_set(docs, version=kwargs.pop("version", 1), **kwargs)
    assert isinstance(info.value, EngineError)
    for problem in info.value.problems:
        assert problem in str(info.value)
    return info.value.problems


def test_valid_documents_become_frozen_rules(accrual_doc: MakeDoc, threshold_doc: MakeDoc) -> None:
    docs = [
        accrual_doc(
            min_total_minor=100,
            max_total_minor=2000,
            delay_days=14,
            lifetime_days=365,
            wallet="chips",
            schedule={"from": "2025-01-01", "to": None, "days_of_week": [6, 7], "hours": [9, 21]},
            place={"stores": ["S1"], "exclude_formats": ["discounter"]},
        ),
        threshold_doc(),
    ]
    promotions = load_promotion_set(docs, version=7, settings={"timezone": "Europe/Moscow"})
    assert promotions.version == 7
    # Ordered by priority: the discount (10) before the accrual (100).
    assert [p.promotion_id for p in promotions.promotions] == ["T5", "A3"]
    accrual = promotions.get("A3")
    assert accrual is not None
    assert accrual.stage == "accrual"
    assert accrual.terms == AccrualPercent(
        percent=Decimal(3),
        wallet="chips",
        min_total_minor=100,
        max_total_minor=2000,
        delay_days=14,
        lifetime_days=365,
    )
    assert accrual.schedule == Schedule(date(2025, 1, 1), None, (6, 7), (9, 21))
    assert accrual.place == Place(stores=("S1",), exclude_formats=("discounter",))
    threshold = promotions.get("T5")
    assert threshold is not None
    assert threshold.terms == ThresholdDiscount((Step(5000, Decimal(5)), Step(10000, Decimal(10))))
    assert promotions.settings.timezone == "Europe/Moscow"
    assert promotions.settings.bonus_max_share == Decimal("0.5")
    with pytest.raises(AttributeError):
        accrual.priority = 1  # type: ignore[misc]


def test_the_documented_message_names_promotion_and_field(threshold_doc: MakeDoc) -> None:
    doc = threshold_doc(
        steps=[
            {"min_total_minor": 5000, "percent": "5"},
            {"min_total_minor": 10000, "percent": "150"},
        ]
    )
    assert problems_of([doc]) == (
        "promotion 'T5': steps[1].percent: expected a decimal string between 0 and 100, got '150'",
    )


def test_every_problem_of_every_document_is_listed(
    accrual_doc: MakeDoc, threshold_doc: MakeDoc
) -> None:
    docs: list[Any] = [
        accrual_doc(percent=3.5, wallet="", delay_days=-1, accrue_on_bonus_paid="yes"),
        threshold_doc(steps=[]),
        {"kind": "nope", "priority": "high"},
        "not a document",
        accrual_doc(
            promotion_id="A9",
            status="live",
            min_total_minor=500,
            max_total_minor=500,
            schedule={"from": "2025-13-01", "days_of_week": [0, 8], "hours": [9]},
            place={"stores": "S1", "exclude_formats": [""]},
            messages={"slip": "{amont}", "display": "{amount:>9}", "cashier": 5},
        ),
    ]
    problems = problems_of(docs, settings={"bonus_max_share": "1.5", "timezone": "Mars/Base"})
    expected = [
        "settings: bonus_max_share: expected a decimal string between 0 and 1, got '1.5'",
        "settings: timezone: expected an IANA time zone name, got 'Mars/Base'",
        "promotion 'A3': percent: expected a decimal string between 0 and 100, got 3.5",
        "promotion 'A3': wallet: expected a non-empty string, got ''",
        "promotion 'A3': delay_days: expected an integer between 0 and 3660, got -1",
        "promotion 'A3': accrue_on_bonus_paid: expected true or false, got 'yes'",
        "promotion 'T5': steps: expected at least one step, got []",
        "promotion #2: promotion_id: required",
        "promotion #2: kind: expected one of accrual_per_amount, accrual_per_unit, "
        "accrual_percent, ",
        "promotion #2: priority: expected an integer between -1000000 and 1000000, got 'high'",
        "promotion #3: expected an object, got 'not a document'",
        "promotion 'A9': status: expected one of draft, active, archived, got 'live'",
        "promotion 'A9': schedule.from: expected an ISO date (YYYY-MM-DD) or null, "
        "got '2025-13-01'",
        "promotion 'A9': schedule.days_of_week[0]: expected an integer between 1 and 7, got 0",
        "promotion 'A9': schedule.days_of_week[1]: expected an integer between 1 and 7, got 8",
        "promotion 'A9': schedule.hours: expected [start_hour, end_hour], got [9]",
        "promotion 'A9': place.stores: expected a list, got 'S1'",
        "promotion 'A9': place.exclude_formats[0]: expected a non-empty string, got ''",
        "promotion 'A9': messages.slip: unsupported placeholder {amont}",
        "promotion 'A9': messages.cashier: expected a string, got 5",
        "promotion 'A9': messages.display: unsupported placeholder {amount}",
        "promotion 'A9': max_total_minor: expected an integer above min_total_minor 500, got 500",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    assert len(problems) == len(expected)


def test_duplicate_ids_version_and_required_fields(accrual_doc: MakeDoc) -> None:
    problems = problems_of([accrual_doc(), accrual_doc(), {"promotion_id": "X"}], version=-1)
    assert problems == (
        "version: expected an integer >= 0, got -1",
        "promotion 'A3': promotion_id: duplicate of document #0",
        "promotion 'X': kind: required",
    )
    assert problems_of([accrual_doc(percent=None)]) == ("promotion 'A3': percent: required",)


def test_threshold_steps_must_increase(threshold_doc: MakeDoc) -> None:
    doc = threshold_doc(
        steps=[
            {"min_total_minor": 5000, "percent": "5"},
            {"min_total_minor": 5000, "percent": "7"},
            3,
        ]
    )
    assert problems_of([doc]) == (
        "promotion 'T5': steps[1].min_total_minor: expected steps in increasing order, "
        "above 5000, got 5000",
        "promotion 'T5': steps[2]: expected an object, got 3",
    )


def test_schedule_dates_must_be_ordered(accrual_doc: MakeDoc) -> None:
    doc = accrual_doc(schedule={"from": "2025-02-01", "to": "2025-01-01"})
    assert problems_of([doc]) == (
        "promotion 'A3': schedule.to: ends before 'from' 2025-02-01, got '2025-01-01'",
    )


def test_unknown_fields_are_warnings_not_errors(accrual_doc: MakeDoc) -> None:
    promotions = load_promotion_set(
        [accrual_doc(precent="5", schedule={"form": "2025-01-01"})], version=1
    )
    assert promotions.warnings == (
        "promotion 'A3': unknown field 'precent' ignored",
        "promotion 'A3': unknown field 'schedule.form' ignored",
    )


def test_unknown_kinds_fail_unless_not_strict(accrual_doc: MakeDoc) -> None:
    future = {"promotion_id": "L2", "kind": "discount_ladder", "status": "active"}
    problems = problems_of([accrual_doc(), future])
    assert problems == (
        "promotion 'L2': kind: expected one of "
        + ", ".join(sorted(KINDS))
        + ", got 'discount_ladder'",
    )
    promotions = load_promotion_set([accrual_doc(), future], version=2, strict=False)
    assert [p.promotion_id for p in promotions.promotions] == ["A3"]
    assert promotions.warnings == (
        "promotion 'L2': kind 'discount_ladder' unknown to this engine, skipped",
    )


def test_settings_defaults_and_unknown_settings_ignored() -> None:
    promotions = load_promotion_set([], version=0, settings={"center_name": "HQ"})
    assert promotions == PromotionSet(version=0)
    assert promotions.settings.bonus_max_share == Decimal("0.5")
    assert promotions.settings.timezone == "UTC"
    assert problems_of([], settings={"currency_exponent": "7"}) == (
        "settings: currency_exponent: expected 0, 1, 2 or 3, got '7'",
    )


def test_default_promotions_load_cleanly_and_are_json() -> None:
    docs = default_promotions()
    assert json.loads(json.dumps(docs)) == docs
    promotions = load_promotion_set(docs, version=1, settings=default_settings())
    assert promotions.warnings == ()
    assert {p.kind for p in promotions.promotions} == {
        "accrual_percent",
        "threshold_discount",
        "issue_coupon",
        "coupon",
    }
    assert all(p.status == "active" for p in promotions.promotions)
    # A fresh list each time: callers may mutate it.
    docs[0]["status"] = "draft"
    assert default_promotions()[0]["status"] == "active"


@pytest.mark.parametrize(
    ("percent", "message"),
    [
        ("0.0000001", "expected at most 6 decimal places, got '0.0000001'"),
        ("1E-1000000", "expected at most 6 decimal places, got '1E-1000000'"),
        ("NaN", "expected a decimal string between 0 and 100, got 'NaN'"),
        ("3" * 50, "expected a decimal string between 0 and 100, got '" + "3" * 50 + "'"),
        ("three", "expected a decimal string between 0 and 100, got 'three'"),
        (True, "expected a decimal string between 0 and 100, got True"),
    ],
)
def test_rates_are_bounded_exact_decimals(accrual_doc: MakeDoc, percent: Any, message: str) -> None:
    assert problems_of([accrual_doc(percent=percent)]) == (f"promotion 'A3': percent: {message}",)


def test_rates_accept_ints_and_padded_strings(accrual_doc: MakeDoc) -> None:
    for given, expected in ((3, Decimal(3)), (" 2.50 ", Decimal("2.50")), ("100", Decimal(100))):
        promotion = load_promotion_set([accrual_doc(percent=given)], version=1).promotions[0]
        assert isinstance(promotion.terms, AccrualPercent)
        assert promotion.terms.percent == expected
