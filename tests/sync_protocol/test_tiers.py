"""The tier rule on hand-computed purchase histories: upgrade on the qualifying day, downgrade
at the period's end after the grace period, rolling-window edges, calendar months."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sync_protocol import (
    CardState,
    TierChange,
    TierStatus,
    advance_tier,
    check_programme,
    fold_sale,
    kept_until,
    programme_text,
    read_programme,
    read_state,
    state_row,
    tier_progress,
    upgraded_tier,
    window_totals,
)
from sync_protocol.tiers import _Windows
from tests.center.center_factories import make_sale


def _level(code: str, rank: int, **thresholds: Any) -> dict[str, Any]:
    return {
        "code": code,
        "title": {"ru": code.upper(), "en": code.title()},
        "rank": rank,
        **thresholds,
    }


# 30 days, 10 days of grace: member (everyone who buys), silver at 100.00, gold at 300.00 and
# 3 visits (both needed).
DAYS_DOC: dict[str, Any] = {
    "period_days": 30,
    "grace_days": 10,
    "levels": [
        _level("member", 0),
        _level("silver", 1, spend_minor=10_000),
        _level("gold", 2, spend_minor=30_000, visits=3),
    ],
}
MONTHS_DOC: dict[str, Any] = {
    "period_months": 3,
    "grace_days": 0,
    "levels": [_level("silver", 1, spend_minor=10_000)],
}


def _programme(doc: dict[str, Any]) -> Any:
    programme, problems = check_programme(doc)
    assert problems == [] and programme is not None
    return programme


D = date.fromisoformat
DAYS = _programme(DAYS_DOC)
MONTHS = _programme(MONTHS_DOC)


def test_upgrade_on_the_qualifying_day_and_kept_for_a_period_plus_grace() -> None:
    history = {D("2026-01-01"): 6_000, D("2026-01-05"): 5_000}
    status, changes = advance_tier(DAYS, TierStatus(), history, D("2026-01-20"))
    assert changes == [
        TierChange(D("2026-01-01"), "", "member", "upgrade"),
        TierChange(D("2026-01-05"), "member", "silver", "upgrade"),  # 60.00 + 50.00 >= 100.00
    ]
    assert status == TierStatus("silver", D("2026-01-05"), D("2026-02-04"), D("2026-01-20"))
    assert kept_until(DAYS, status) == D("2026-02-13")  # review 02-04, + 10 days of grace - 1


def test_downgrade_after_the_grace_period_not_before() -> None:
    history = {D("2026-01-01"): 6_000, D("2026-01-05"): 5_000}
    kept, changes = advance_tier(DAYS, TierStatus(), history, D("2026-02-13"))
    assert kept.tier == "silver" and len(changes) == 2
    # On 02-14 the window ending 02-13 (01-15..02-13) holds nothing: down to member.
    status, more = advance_tier(DAYS, kept, history, D("2026-02-14"))
    assert more == [TierChange(D("2026-02-14"), "silver", "member", "downgrade")]
    assert status == TierStatus("member", D("2026-02-14"), D("2026-03-16"), D("2026-02-14"))


def test_a_purchase_in_the_grace_period_renews_the_level() -> None:
    history = {D("2026-01-01"): 6_000, D("2026-01-05"): 5_000, D("2026-02-10"): 10_000}
    status, changes = advance_tier(DAYS, TierStatus(), history, D("2026-02-20"))
    assert [c.to_tier for c in changes] == ["member", "silver"]  # renewed, no change on 02-14
    assert status.review_on == D("2026-03-06")  # 02-04 + 30
    assert kept_until(DAYS, status) == D("2026-03-15")


def test_rolling_window_edges() -> None:
    # 30 days ending 01-30 start on 01-01: both count; ending 01-31 they start on 01-02.
    status, _ = advance_tier(
        DAYS, TierStatus(), {D("2026-01-01"): 6_000, D("2026-01-30"): 4_000}, D("2026-01-30")
    )
    assert status.tier == "silver"
    status, _ = advance_tier(
        DAYS, TierStatus(), {D("2026-01-01"): 6_000, D("2026-01-31"): 4_000}, D("2026-01-31")
    )
    assert status.tier == "member"
    # The renewal window ends the day before the decision (02-14): 01-15 counts, 01-14 not.
    base = {D("2026-01-01"): 6_000, D("2026-01-05"): 5_000}
    renewed, _ = advance_tier(
        DAYS, TierStatus(), {**base, D("2026-01-15"): 10_000}, D("2026-02-14")
    )
    assert renewed.tier == "silver" and renewed.review_on == D("2026-03-06")
    lost, changes = advance_tier(
        DAYS, TierStatus(), {**base, D("2026-01-14"): 10_000}, D("2026-02-14")
    )
    assert lost.tier == "member" and changes[-1].reason == "downgrade"


def test_both_thresholds_needed_for_gold() -> None:
    history = {D("2026-03-01"): 20_000, D("2026-03-02"): 20_000}
    status, _ = advance_tier(DAYS, TierStatus(), history, D("2026-03-02"))
    assert status.tier == "silver"  # 400.00 spent but 2 visits of 3
    status, changes = advance_tier(DAYS, status, {**history, D("2026-03-09"): 100}, D("2026-03-09"))
    assert changes == [TierChange(D("2026-03-09"), "silver", "gold", "upgrade")]
    either = _programme(
        {
            **DAYS_DOC,
            "levels": [*DAYS_DOC["levels"][:2], {**DAYS_DOC["levels"][2], "require": "any"}],
        }
    )
    status, _ = advance_tier(either, TierStatus(), {D("2026-03-01"): 30_000}, D("2026-03-01"))
    assert status.tier == "gold"  # 300.00 on one visit is enough when either threshold is


def test_calendar_months() -> None:
    # 3 months ending in March are January..March: 01-31 and 03-01 make 100.00 on 03-01.
    history = {D("2026-01-31"): 5_000, D("2026-03-01"): 5_000}
    status, changes = advance_tier(MONTHS, TierStatus(), history, D("2026-03-01"))
    assert changes == [TierChange(D("2026-03-01"), "", "silver", "upgrade")]
    assert status.review_on == D("2026-06-01")  # March..May is the qualification period
    assert kept_until(MONTHS, status) == D("2026-05-31")
    # On 06-01 (no grace) March..May holds 50.00: no level any more.
    status, changes = advance_tier(MONTHS, status, history, D("2026-06-01"))
    assert changes == [TierChange(D("2026-06-01"), "silver", "", "downgrade")]
    assert status.review_on is None
    # December is outside January..March: 50.00 only.
    status, _ = advance_tier(
        MONTHS, TierStatus(), {D("2025-12-31"): 5_000, D("2026-03-01"): 5_000}, D("2026-03-01")
    )
    assert status.tier == ""


def test_late_sales_upgrade_on_the_review_day() -> None:
    """A sale of an earlier day that arrives after that day was reviewed upgrades on the review."""
    status, _ = advance_tier(DAYS, TierStatus(), {D("2026-01-01"): 6_000}, D("2026-01-10"))
    assert status.tier == "member"
    late = {D("2026-01-01"): 6_000, D("2026-01-08"): 5_000}
    status, changes = advance_tier(DAYS, status, late, D("2026-01-12"))
    assert changes == [TierChange(D("2026-01-12"), "member", "silver", "upgrade")]


def test_progress_to_the_next_level() -> None:
    status = TierStatus("silver", D("2026-01-05"), D("2026-02-04"), D("2026-01-20"))
    shown = tier_progress(
        DAYS,
        "silver",
        11_000,
        2,
        D("2026-01-20"),
        since=status.since,
        until=kept_until(DAYS, status),
    )
    assert shown["tier"] == "silver" and shown["kept_until"] == "2026-02-13"
    assert shown["window_from"] == "2025-12-22"
    assert shown["next"]["tier"] == "gold"
    assert (shown["next"]["spend_minor_needed"], shown["next"]["visits_needed"]) == (19_000, 1)
    assert (shown["keep"]["spend_minor_needed"], shown["keep"]["visits_needed"]) == (0, 0)


def test_programme_checked_field_by_field() -> None:
    bad = {
        "period_days": 30,
        "period_months": 1,
        "bonus": 1,
        "levels": [
            _level("silver", 1, spend_minor=1),
            {**_level("silver", 2, spend_minor=2)},
            {"code": "Gold!", "title": {"ru": "З"}, "rank": 3, "visits": -1},
            _level("plain", 4),
        ],
    }
    _, problems = check_programme(bad)
    fields = [f for f, _ in problems]
    assert "bonus" in fields
    assert "period_days" in fields  # both periods given
    assert "levels[1].code" in fields  # silver twice
    assert {"levels[2].code", "levels[2].title.en", "levels[2].visits"} <= set(fields)
    assert "levels[3].spend_minor" in fields  # only the lowest rank may have no threshold
    assert check_programme({"grace_days": 1, "levels": []})[1][0][0] == "period_days"


def test_the_setting_round_trips_and_reaches_a_tier() -> None:
    text = programme_text(DAYS)
    assert read_programme({"tiers.programme": text}) == DAYS
    assert read_programme({"tiers.programme": "{not json"}) is None
    assert read_programme({}) is None
    assert upgraded_tier(DAYS, "member", 9_999, 1) == "member"
    assert upgraded_tier(DAYS, "member", 10_000, 1) == "silver"
    assert upgraded_tier(DAYS, "gold", 0, 0) == "gold"  # never down at a register


def test_folding_a_sale_adds_to_the_tier_window() -> None:
    state = CardState(tier="member", tier_spend_minor=9_000, tier_visits=1, tier_until="2026-02-01")
    sale = make_sale(1, card_no="2900000000013", amounts=(600, 400))
    folded = fold_sale(state, sale, UTC)
    assert (folded.tier_spend_minor, folded.tier_visits) == (10_000, 2)
    assert upgraded_tier(DAYS, folded.tier, folded.tier_spend_minor, folded.tier_visits) == "silver"
    again = fold_sale(folded, make_sale(2, card_no="2900000000013", amounts=(100,)), UTC)
    assert again.tier_visits == 2  # the same day: no second visit
    row = state_row(again)
    assert row["tier_until"] == "2026-02-01" and read_state(row) == again
    assert read_state({"v": 1}).tier_spend_minor == 0  # an older Center's row


@settings(max_examples=60, deadline=None)
@given(
    purchases=st.dictionaries(
        st.integers(min_value=0, max_value=150), st.integers(min_value=1, max_value=8_000)
    ),
    months=st.booleans(),
    grace=st.integers(min_value=0, max_value=20),
)
def test_reviewing_every_day_equals_one_review_at_the_end(
    purchases: dict[int, int], months: bool, grace: int
) -> None:
    """The Center may review at any cadence: day by day or once, the same levels and changes."""
    doc = {**(MONTHS_DOC if months else DAYS_DOC), "grace_days": grace}
    programme = _programme(doc)
    start = D("2026-01-01")
    history = {start + timedelta(days=n): amount for n, amount in purchases.items()}
    end = start + timedelta(days=160)
    once, all_changes = advance_tier(programme, TierStatus(), history, end)
    status, changes = TierStatus(), []
    day = start
    while day <= end:
        status, more = advance_tier(programme, status, history, day)
        changes += more
        day += timedelta(days=1)
    assert (status, changes) == (once, all_changes)


@settings(max_examples=60, deadline=None)
@given(
    purchases=st.dictionaries(
        st.integers(min_value=0, max_value=120), st.integers(min_value=1, max_value=8_000)
    ),
    months=st.booleans(),
)
def test_the_reviews_indexed_windows_equal_the_plain_window_sums(
    purchases: dict[int, int], months: bool
) -> None:
    """advance_tier sums its windows from sorted running totals: the same (spend, visits) as
    window_totals for every day, edges of days and calendar months included."""
    programme = _programme(MONTHS_DOC if months else DAYS_DOC)
    start = D("2026-01-01")
    history = {start + timedelta(days=n): amount for n, amount in purchases.items()}
    windows = _Windows(programme, history)
    for n in range(-5, 160):
        day = start + timedelta(days=n)
        assert windows.totals(day) == window_totals(programme, history, day), day
