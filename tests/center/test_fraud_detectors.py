"""Each fraud detector on hand-made histories: it fires on the fraud, stays quiet on a normal
history with seasonal variation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from center.fraud.detectors import (
    accrual_outliers,
    adjustment_bursts,
    fast_travel,
    return_bursts,
    revision_at,
    revision_jumps,
    revision_versions,
    shared_coupons,
)
from center.fraud.model import (
    Adjustment,
    CouponUse,
    FraudSettings,
    Grant,
    Money,
    Receipt,
    ReturnEvent,
    Revision,
)

NOW = datetime(2024, 12, 20, 18, 0, tzinfo=UTC)
S = FraudSettings()
RUB = Money("RUB", 2)


def seasonal_history(card: str = "C1", register: str = "367-1") -> list[Receipt]:
    """90 days of one receipt a day, accruals 20..60 (weekends and December twice a weekday)."""
    receipts = []
    for d in range(1, 90):
        at = NOW - timedelta(days=d, hours=3)
        base = 20 + (d * 7) % 11  # noise
        if at.weekday() >= 5:
            base *= 2
        if at.month == 12:
            base = base * 3 // 2
        receipts.append(Receipt(f"h{d}", "367", register, card, at, base))
    return receipts


def test_accrual_outlier_fires_on_a_receipt_far_above_the_cards_history() -> None:
    fraud = Receipt("bad-1", "367", "367-1", "C1", NOW - timedelta(hours=2), 10_000)
    found = accrual_outliers([*seasonal_history(), fraud], S, NOW, RUB)
    kinds = {(s.subject_kind, s.subject) for s in found}
    assert kinds == {("card", "C1"), ("register", "367-1")}
    card = next(s for s in found if s.subject_kind == "card")
    assert card.sale_ids == ("bad-1",)
    assert card.window == "2024-12-20"
    assert "100.00 RUB" in card.reason and "median" in card.reason
    assert card.severity == "high"


def test_accrual_outlier_is_quiet_on_a_seasonal_peak_and_a_short_history() -> None:
    # A weekend in December: twice and a half the usual, well within the history's own spread.
    peak = Receipt("peak", "367", "367-1", "C1", NOW - timedelta(hours=2), 90)
    assert accrual_outliers([*seasonal_history(), peak], S, NOW, RUB) == []
    # A new card (3 receipts of history) is not judged on its own history.
    short = seasonal_history()[:3]
    fraud = Receipt("bad", "367", "367-2", "C1", NOW - timedelta(hours=2), 10_000)
    assert accrual_outliers([*short, fraud], S, NOW) == []


def test_fast_travel_fires_for_two_stores_minutes_apart() -> None:
    a = Receipt("s1", "367", "367-1", "C1", NOW - timedelta(minutes=60), 10)
    b = Receipt("s2", "406", "406-1", "C1", NOW - timedelta(minutes=57), 10)
    found = fast_travel([a, b], S, NOW)
    assert len(found) == 1
    assert found[0].sale_ids == ("s1", "s2")
    assert found[0].subject == "C1"
    assert "store 367" in found[0].reason and "store 406" in found[0].reason
    assert "3.0 min" in found[0].reason


def test_fast_travel_is_quiet_for_the_same_store_or_enough_time() -> None:
    a = Receipt("s1", "367", "367-1", "C1", NOW - timedelta(minutes=60), 10)
    same = Receipt("s2", "367", "367-2", "C1", NOW - timedelta(minutes=58), 10)
    later = Receipt("s3", "406", "406-1", "C1", NOW - timedelta(minutes=58) + timedelta(hours=1), 0)
    other_card = Receipt("s4", "406", "406-1", "C2", NOW - timedelta(minutes=59), 10)
    assert fast_travel([a, same, later, other_card], S, NOW) == []


def test_return_burst_fires_per_register_and_is_quiet_when_spread() -> None:
    burst = [
        ReturnEvent(f"r{i}", "367", "367-1", f"C{i}", NOW - timedelta(minutes=50 - 5 * i), 1000)
        for i in range(6)
    ]
    found = return_bursts(burst, S, NOW, RUB)
    assert [(s.subject_kind, s.subject) for s in found] == [("register", "367-1")]
    assert found[0].sale_ids == tuple(f"r{i}" for i in range(6))
    assert "60.00 RUB" in found[0].reason
    # The same six returns over a working day (one every 2 hours) are normal.
    spread = [
        ReturnEvent(f"r{i}", "367", "367-1", None, NOW - timedelta(hours=2 * i + 1), 1000)
        for i in range(6)
    ]
    assert return_bursts(spread, S, NOW) == []


def test_adjustment_burst_names_the_person_and_keeps_the_keys() -> None:
    burst = [
        Adjustment(f"k{i}", f"C{i}", "mallory", 5000, NOW - timedelta(minutes=30 - i))
        for i in range(5)
    ]
    found = adjustment_bursts(burst, S, NOW, RUB)
    assert [(s.subject_kind, s.subject) for s in found] == [("person", "mallory")]
    assert found[0].refs == tuple(f"k{i}" for i in range(5)) and found[0].sale_ids == ()
    assert "250.00 RUB" in found[0].reason
    assert adjustment_bursts(burst[:4], S, NOW) == []


def test_shared_coupon_fires_above_the_card_count_only() -> None:
    uses = [CouponUse("FRIENDS10", f"C{i}", f"s{i}", NOW - timedelta(hours=i)) for i in range(8)]
    found = shared_coupons(uses, S, NOW)
    assert len(found) == 1 and found[0].subject == "FRIENDS10"
    assert "8 different cards" in found[0].reason
    assert set(found[0].sale_ids) == {f"s{i}" for i in range(8)}
    # One card using its code every week, and five cards sharing one: not shared.
    same_card = [CouponUse("MINE", "C1", f"m{i}", NOW - timedelta(hours=i)) for i in range(20)]
    assert shared_coupons([*uses[:5], *same_card], S, NOW) == []


def revisions() -> list[Revision]:
    return [Revision("A3", 1, 5, "maria"), Revision("A3", 2, 9, "maria")]


def test_revision_at_is_the_last_published_at_or_before() -> None:
    assert revision_at(revisions(), 4) is None
    assert revision_at(revisions(), 5) == revisions()[0]
    assert revision_at(revisions(), 8) == revisions()[0]
    assert revision_at(revisions(), 12) == revisions()[1]


def test_revision_jump_names_the_promotion_revision_and_its_versions() -> None:
    # Revision 1 live at versions 5..8 (two master versions), revision 2 from 9: 6 receipts
    # granted 60,000.
    grants = [Grant("A3", 5, 12, 3600), Grant("A3", 7, 8, 2400), Grant("A3", 9, 6, 60_000)]
    found = revision_jumps(grants, revisions(), S, RUB)
    assert len(found) == 1
    signal = found[0]
    assert (signal.subject, signal.window) == ("A3", "revision 2")
    assert "600.00 RUB over 6 receipts, 100.00 RUB per receipt" in signal.reason
    assert "3.00 RUB per receipt over 20 receipts under revision 1" in signal.reason
    assert "by maria" in signal.reason
    assert revision_versions(revisions(), "A3", 1) == (5, 9)
    assert revision_versions(revisions(), "A3", 2) == (9, None)


def test_revision_jump_is_quiet_for_a_modest_change_or_few_receipts() -> None:
    before = Grant("A3", 5, 20, 6000)
    assert revision_jumps([before, Grant("A3", 9, 20, 12_000)], revisions(), S) == []  # doubled
    assert revision_jumps([before, Grant("A3", 9, 2, 20_000)], revisions(), S) == []  # 2 receipts
    # A promotion with a single revision has no "before" to jump from.
    assert revision_jumps([Grant("B1", 5, 50, 10**6)], [Revision("B1", 1, 5, "x")], S) == []
