"""The supplier cabinet's pure rules: masking, audiences, campaigns, the control split, the
account's balances and the campaign figures."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from center.errors import InvalidRequest
from center.suppliers.model import (
    AccountEntry,
    account_balances,
    campaign_figures,
    estimate_window,
    masked,
    parse_audience,
    parse_campaign,
    promotion_doc,
    split_control,
)
from loyalty_engine import load_promotion_set
from sync_protocol import LineDiscount
from tests.center.center_factories import make_sale

TODAY = date(2024, 3, 1)


def body(**changes: object) -> dict[str, object]:
    return {
        "name": "Acme -10 %",
        "product_ids": ["1000"],
        "percent": "10",
        "date_from": "2024-03-01",
        "date_to": "2024-03-14",
        "audience": {"brands": ["Acme"]},
        **changes,
    }


def test_groups_under_the_minimum_are_masked() -> None:
    assert masked(10) == 10 and masked(9) == "< 10" and masked(0) == "< 10"
    assert masked(4, minimum=5) == "< 5"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"percent": "0"}, "body.percent"),
        ({"percent": "95"}, "body.percent"),
        ({"percent": "1.234"}, "body.percent"),
        ({"percent": True}, "body.percent"),
        ({"product_ids": []}, "body.product_ids"),
        ({"date_to": "2024-02-29"}, "body.date_to"),
        ({"date_to": "2024-06-30"}, "body.date_to"),
        ({"date_from": "tomorrow"}, "body.date_from"),
        ({"control_percent": 60}, "body.control_percent"),
        ({"audience": {"churn_min": 0.8, "churn_max": 0.2}}, "body.audience.churn_max"),
        ({"audience": {"min_avg_receipt_minor": -1}}, "body.audience.min_avg_receipt_minor"),
        ({"audience": {"colour": "red"}}, "body.audience.colour"),
        ({"extra": 1}, "body.extra"),
    ],
)
def test_bad_campaigns_are_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_campaign(body(**changes), TODAY)
    assert caught.value.field == field


def test_an_audience_reads_back_to_itself_and_keeps_segment_rule_parts() -> None:
    audience = parse_audience(
        {"stores": "367, 406", "min_receipts": "3", "categories": ["DAIRY"], "churn_min": "0.5"}
    )
    assert parse_audience(audience.to_doc()) == audience
    rule = audience.segment_rule()
    assert rule is not None and rule.stores is not None and rule.stores.values == ("367", "406")
    assert rule.frequency is not None and rule.frequency.minimum == 3
    assert parse_audience({"brands": ["Acme"]}).segment_rule() is None


def test_the_launched_promotion_is_a_valid_supplier_funded_rule() -> None:
    campaign = parse_campaign(body(), TODAY)
    doc = promotion_doc("c1", "acme", campaign, "sup-c1", 375)
    found = load_promotion_set([doc], version=1, exact=True)
    promotion = found.promotions[0]
    assert promotion.funding.by == "supplier:acme" and promotion.funding.budget_minor == 375
    assert promotion.audience.segments == ("sup-c1",)
    assert estimate_window(campaign, datetime(2024, 3, 1, 9, tzinfo=UTC)) == (
        date(2024, 2, 16),
        date(2024, 2, 29),
    )


@given(st.sets(st.text("abc123", min_size=1, max_size=6), max_size=60), st.integers(0, 50))
def test_the_control_split_is_a_seeded_partition(members: set[str], percent: int) -> None:
    treated, control = split_control(members, percent, "seed")
    assert set(treated) | set(control) == members and not set(treated) & set(control)
    assert len(control) == len(members) * percent // 100
    assert split_control(sorted(members, reverse=True), percent, "seed") == (treated, control)


def test_balances_are_sums_of_the_append_only_entries() -> None:
    entries = [
        AccountEntry("top_up", 1000, 0),
        AccountEntry("reserve", -600, 600, "c1"),
        AccountEntry("spend", 0, -250, "c1"),
        AccountEntry("spend", 0, -350, "c1"),
        AccountEntry("top_up", 50, 0),
    ]
    assert account_balances(entries) == {
        "available_minor": 450,
        "reserved_minor": 0,
        "spent_minor": 600,
        "topped_up_minor": 1050,
    }


def test_figures_count_only_the_campaign_promotion() -> None:
    sale = make_sale(1, card_no="77", amounts=(500, 300))
    mine = dataclasses.replace(sale.lines[0], discounts=(LineDiscount("sup-c1", 50),))
    other = dataclasses.replace(sale.lines[1], discounts=(LineDiscount("chain-5", 15),))
    sales = [dataclasses.replace(sale, lines=(mine, other)), make_sale(2, card_no="88")]
    figures = campaign_figures(sales, "sup-c1")
    assert (figures.spend_minor, figures.receipts, figures.units_milli) == (50, 1, 1000)
    assert figures.customers == {"77"} and set(figures.revenue_by_card) == {"77", "88"}
    assert figures.to_dict()["customers"] == "< 10"
