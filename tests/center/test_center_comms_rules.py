"""Pure rules of communications: addresses, quiet hours, ABX assignment, templates, money."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

import pytest

from center.communications.chains import stratum_of
from center.communications.rules import abx_group, decide, normal_email, normal_phone, quiet_until
from center.communications.templates import format_date, format_money, parse_template
from center.errors import InvalidRequest

SPLIT = (("A", 4500), ("B", 4500), ("X", 1000))


def test_addresses_are_normalised_or_refused() -> None:
    assert normal_phone("8 (916) 123-45-67") == "79161234567"
    assert normal_phone("+7 916 123 45 67") == "79161234567"
    assert normal_phone("9161234567") == "79161234567"
    assert normal_phone("+44 20 7946 0958") == "442079460958"
    for bad in ("12345", "call me", "", None, "+7 916 123 45 67 89 00 11"):
        assert normal_phone(bad) is None, bad
    assert normal_email(" anna@example.org ") == "anna@example.org"
    for bad in ("not-an-email", "a@b", "a b@example.org", "", None):
        assert normal_email(bad) is None, bad


def test_quiet_hours_are_local_to_the_customers_zone() -> None:
    evening_utc = datetime(2026, 12, 7, 19, 30, tzinfo=UTC)  # 22:30 Moscow, 13:30 Chicago
    assert quiet_until(evening_utc, "America/Chicago") is None
    assert quiet_until(evening_utc, "Europe/Moscow") == datetime(2026, 12, 8, 6, 0, tzinfo=UTC)
    early = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)  # 06:00 Moscow: waits until 09:00 same day
    assert quiet_until(early, "Europe/Moscow") == datetime(2026, 12, 8, 6, 0, tzinfo=UTC)
    night = decide(kind="transactional", channel="sms", address="79161234567", consents={},
                   sent_today=99, daily_cap=1, now=evening_utc, zone="Europe/Moscow",
                   expires_at=None)  # fmt: skip
    assert night.action == "send", "a one-time code goes at night, over the cap, without consent"


def test_abx_is_deterministic_balanced_and_stratified() -> None:
    first = [abx_group(f"c{i}", "camp", "small", SPLIT) for i in range(20_000)]
    assert first == [abx_group(f"c{i}", "camp", "small", SPLIT) for i in range(20_000)]
    shares = Counter(first)
    assert abs(shares["X"] - 2000) < 200 and abs(shares["A"] - 9000) < 400
    other = [abx_group(f"c{i}", "camp-2", "small", SPLIT) for i in range(20_000)]
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 8000, (
        "campaigns are independent"
    )
    large = [abx_group(f"c{i}", "camp", "large", SPLIT) for i in range(20_000)]
    assert sum(a != b for a, b in zip(first, large, strict=True)) > 8000, "so are strata"
    assert [stratum_of(x) for x in (100, 60_000, 600_000)] == ["small", "medium", "large"]
    with pytest.raises(ValueError, match="sum to 10000"):
        abx_group("c1", "camp", "s", (("A", 5000),))


def test_templates_refuse_unknown_variables_naming_them() -> None:
    ok = {"subject": {"en": "Hi {name}", "ru": "Привет, {name}"}, "body": {"en": "{balance}"}}
    template = parse_template("t", ok)
    assert template.render("ru", {"name": "Анна", "balance": "1"}) == ("Привет, Анна", "1")
    assert template.render("en", {"name": "Ann", "balance": "1"}) == ("Hi Ann", "1")
    bad = {"subject": {"en": "Hi"}, "body": {"en": "You have {points} points"}}
    with pytest.raises(InvalidRequest) as refused:
        parse_template("t", bad)
    assert refused.value.field == "body.body.en" and "{points}" in str(refused.value)
    with pytest.raises(InvalidRequest, match="unknown language"):
        parse_template("t", {"subject": {"de": "x"}, "body": {"en": "x"}})


def test_money_in_major_units_with_currency() -> None:
    assert format_money(123_450, "RUB", "ru") == "1\u00a0234,50\u00a0₽"
    assert format_money(123_450, "RUB", "en") == "RUB 1,234.50"
    assert format_money(-5, "EUR", "ru") == "-0,05\u00a0€"
    assert format_date(date(2026, 12, 13), "ru") == "13.12.2026"


def test_burning_plan_splits_groups_and_leaves_the_control_group_alone() -> None:
    from center.communications.chains import BurningCampaign, Candidate, plan_burning

    expires = datetime(2026, 12, 13, 20, 0, tzinfo=UTC)  # 23:00 in Moscow, the 13th
    a = parse_template("a", {"subject": {"en": "A"}, "body": {"en": "A {burning_date}"}})
    b = parse_template("b", {"subject": {"en": "B"}, "body": {"en": "B {burning_amount}"}})
    campaign = BurningCampaign("c1", {"A": a, "B": b}, SPLIT)
    candidates = [Candidate(f"c{i}", 100 * i, expires, 200 * i) for i in range(1, 601)]
    contacts = {f"c{i}": {"email": f"u{i}@example.org", "lang": "en"} for i in range(1, 601)}
    assignments, messages = plan_burning(campaign, candidates, contacts)
    assert plan_burning(campaign, candidates, contacts) == (assignments, messages)
    groups = {customer: group for customer, group, _ in assignments}
    assert len(groups) == 600 and 30 < list(groups.values()).count("X") < 100
    assert {m.customer_id for m in messages} == {c for c, g in groups.items() if g != "X"}
    for m in messages:
        assert m.idempotency_key == f"c1:{m.customer_id}:email" and m.expires_at == expires
        assert m.body.startswith(groups[m.customer_id])
    first_a = next(m for m in messages if m.group == "A")
    assert first_a.body == "A 2026-12-13"
    with pytest.raises(InvalidRequest, match="sum to 10000"):
        BurningCampaign("c2", {"A": a}, (("A", 5000),))
