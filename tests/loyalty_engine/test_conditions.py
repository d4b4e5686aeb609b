from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from loyalty_engine import Receipt, calculate, load_promotion_set

MakeDoc = Callable[..., dict[str, Any]]
MakeReceipt = Callable[..., Receipt]


def accrued(receipt: Receipt, doc: dict[str, Any], timezone: str = "UTC") -> tuple[int, str]:
    promotions = load_promotion_set([doc], version=1, settings={"timezone": timezone})
    calc = calculate(receipt, promotions)
    return sum(a.amount for a in calc.accruals), calc.explanation[0]


@pytest.mark.parametrize(
    ("schedule", "now", "applies", "why"),
    [
        (
            {"from": "2025-03-01", "to": "2025-03-31"},
            datetime(2025, 3, 1, 0, 0, tzinfo=UTC),
            True,
            "",
        ),
        (
            {"from": "2025-03-02"},
            datetime(2025, 3, 1, 23, 59, tzinfo=UTC),
            False,
            "not yet valid: 2025-03-01 before 2025-03-02",
        ),
        (
            {"to": "2025-02-28"},
            datetime(2025, 3, 1, 0, 0, tzinfo=UTC),
            False,
            "expired: 2025-03-01 after 2025-02-28",
        ),
        # 2025-03-01 is a Saturday (ISO weekday 6).
        ({"days_of_week": [6, 7]}, datetime(2025, 3, 1, 12, tzinfo=UTC), True, ""),
        (
            {"days_of_week": [1, 2, 3, 4, 5]},
            datetime(2025, 3, 1, 12, tzinfo=UTC),
            False,
            "day of week 6 not in [1,2,3,4,5]",
        ),
        ({"hours": [9, 12]}, datetime(2025, 3, 1, 11, 59, tzinfo=UTC), True, ""),
        (
            {"hours": [9, 12]},
            datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
            False,
            "hour 12 outside [9, 12)",
        ),
        ({"hours": [22, 6]}, datetime(2025, 3, 1, 23, 0, tzinfo=UTC), True, ""),
        ({"hours": [22, 6]}, datetime(2025, 3, 1, 5, 0, tzinfo=UTC), True, ""),
        (
            {"hours": [22, 6]},
            datetime(2025, 3, 1, 6, 0, tzinfo=UTC),
            False,
            "hour 6 outside [22, 6)",
        ),
    ],
)
def test_schedule(
    make_receipt: MakeReceipt,
    accrual_doc: MakeDoc,
    schedule: dict[str, Any],
    now: datetime,
    applies: bool,
    why: str,
) -> None:
    amount, line = accrued(
        make_receipt(1000, card_no="C1", now=now), accrual_doc(schedule=schedule)
    )
    assert amount == (30 if applies else 0)
    assert line == (
        "A3: applied: 3 % of base 10.00 RUB = 0.30 bonus" if applies else f"A3: skipped: {why}"
    )


def test_schedule_is_evaluated_in_the_store_time_zone(
    make_receipt: MakeReceipt, accrual_doc: MakeDoc
) -> None:
    # 21:30 UTC on Friday 28 Feb is 00:30 on Saturday 1 March in Moscow (UTC+3).
    receipt = make_receipt(1000, card_no="C1", now=datetime(2025, 2, 28, 21, 30, tzinfo=UTC))
    doc = accrual_doc(schedule={"from": "2025-03-01", "days_of_week": [6], "hours": [0, 1]})
    assert accrued(receipt, doc, "Europe/Moscow")[0] == 30
    amount, why = accrued(receipt, doc, "UTC")
    assert amount == 0
    assert why == "A3: skipped: not yet valid: 2025-02-28 before 2025-03-01"


def test_daylight_saving_is_respected(make_receipt: MakeReceipt, accrual_doc: MakeDoc) -> None:
    doc = accrual_doc(schedule={"hours": [8, 9]})
    # 08:30 local in Chicago: 14:30 UTC in winter (CST), 13:30 UTC in summer (CDT).
    winter = make_receipt(1000, card_no="C1", now=datetime(2025, 1, 15, 14, 30, tzinfo=UTC))
    summer = make_receipt(1000, card_no="C1", now=datetime(2025, 7, 15, 13, 30, tzinfo=UTC))
    assert accrued(winter, doc, "America/Chicago")[0] == 30
    assert accrued(summer, doc, "America/Chicago")[0] == 30
    assert accrued(summer, doc, "UTC")[0] == 0


@pytest.mark.parametrize(
    ("place", "store_id", "store_format", "why"),
    [
        ({}, "S1", "", None),
        ({"stores": ["S1", "S2"]}, "S2", "", None),
        ({"stores": ["S1"]}, "S3", "", "store 'S3' not in the rule's stores"),
        ({"exclude_stores": ["S1"]}, "S1", "", "store 'S1' excluded"),
        (
            {"exclude_formats": ["discounter"]},
            "S1",
            "discounter",
            "store format 'discounter' excluded",
        ),
        ({"exclude_formats": ["discounter"]}, "S1", "hyper", None),
        ({"formats": ["hyper"]}, "S1", "mini", "store format 'mini' not in the rule's formats"),
    ],
)
def test_place(
    make_receipt: MakeReceipt,
    accrual_doc: MakeDoc,
    place: dict[str, Any],
    store_id: str,
    store_format: str,
    why: str | None,
) -> None:
    receipt = make_receipt(1000, card_no="C1", store_id=store_id, store_format=store_format)
    amount, line = accrued(receipt, accrual_doc(place=place))
    assert amount == (30 if why is None else 0)
    if why is not None:
        assert line == f"A3: skipped: {why}"


def test_audience_card_and_segment(make_receipt: MakeReceipt, threshold_doc: MakeDoc) -> None:
    promotions = load_promotion_set(
        [threshold_doc(requires_card=True, segments=["gold"])], version=1
    )
    no_card = calculate(make_receipt(6000), promotions)
    assert no_card.discount_minor == 0
    assert no_card.explanation == ("T5: skipped: no card presented",)
    silver = calculate(make_receipt(6000, card_no="C1", segment="silver"), promotions)
    assert silver.explanation == ("T5: skipped: segment 'silver' not in the rule's segments",)
    gold = calculate(make_receipt(6000, card_no="C1", segment="gold"), promotions)
    assert gold.discount_minor == 300


def test_only_active_rules_apply(make_receipt: MakeReceipt, accrual_doc: MakeDoc) -> None:
    docs = [
        accrual_doc(promotion_id="D", status="draft"),
        accrual_doc(promotion_id="R", status="archived"),
        accrual_doc(promotion_id="N"),  # status defaults to draft when absent
    ]
    docs[2].pop("status")
    calc = calculate(make_receipt(1000, card_no="C1"), load_promotion_set(docs, version=1))
    assert calc.accruals == ()
    assert calc.explanation == (
        "D: skipped: status draft",
        "N: skipped: status draft",
        "R: skipped: status archived",
    )
