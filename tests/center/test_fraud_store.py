"""Fraud scans over stored sales on both backends: signals kept once per key, re-scans
idempotent, reviews audited with the person."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from center.errors import InvalidRequest, UnknownObject
from center.storage import Storage
from sync_protocol import LoyaltyMovement, Sale
from tests.center.center_factories import CARD, T0, make_sale, master_tables
from tests.center.test_center_returns import make_return

NOW = T0 + timedelta(days=30)


def sale_at(seq: int, at: datetime, *, accrue: int = 0, register_id: str = "367-1") -> Sale:
    """A sale of `register_id` with card CARD, closed at `at`, accruing `accrue` under rule A3."""
    made = make_sale(seq, register_id=register_id, card_no=CARD, amounts=(10_000,))
    loyalty = (LoyaltyMovement("bonus", "accrue", accrue, "A3"),) if accrue else ()
    return dataclasses.replace(
        made, opened_at=at - timedelta(minutes=1), closed_at=at, loyalty=loyalty
    )


def ingest_history(storage: Storage) -> None:
    """20 days of one receipt a day accruing 2.50..3.50 at register 367-1."""
    sales = [
        sale_at(d, NOW - timedelta(days=d, hours=2), accrue=250 + (d * 37) % 100)
        for d in range(1, 21)
    ]
    storage.sales.ingest(sales, NOW)


def test_scan_keeps_each_signal_once_and_adds_later_sales(storage: Storage) -> None:
    storage.feed.upsert_master({"settings": [{"name": "currency", "value": "RUB"}]})
    ingest_history(storage)
    quiet = storage.fraud.scan(NOW)
    assert (quiet["found"], quiet["new"]) == (0, 0)

    bad = sale_at(100, NOW - timedelta(hours=3), accrue=10_000)
    storage.sales.ingest([bad], NOW)
    first = storage.fraud.scan(NOW)
    assert (first["new"], first["updated"]) == (2, 0)  # the card's and the register's history
    signals = storage.fraud.list_signals(detector="accrual_outlier")
    assert {(s["subject_kind"], s["subject"]) for s in signals} == {
        ("card", CARD),
        ("register", "367-1"),
    }
    assert all(s["sale_ids"] == [bad.sale_id] and s["status"] == "open" for s in signals)
    assert "100.00 RUB" in signals[0]["reason"]

    again = storage.fraud.scan(NOW + timedelta(minutes=15))
    assert (again["new"], again["updated"]) == (0, 0)
    assert len(storage.fraud.list_signals()) == 2

    # A second outlier the same day joins the open cases instead of opening new ones.
    worse = sale_at(101, NOW - timedelta(hours=1), accrue=20_000)
    storage.sales.ingest([worse], NOW)
    later = storage.fraud.scan(NOW + timedelta(minutes=30))
    assert (later["new"], later["updated"]) == (0, 2)
    card = storage.fraud.list_signals(subject=CARD)[0]
    assert card["sale_ids"] == [bad.sale_id, worse.sale_id]

    detail = storage.fraud.signal(card["signal_id"])
    assert [s["sale_id"] for s in detail["sales"]] == [bad.sale_id, worse.sale_id]
    assert [s["accrued_minor"] for s in detail["sales"]] == [10_000, 20_000]


def test_review_is_audited_and_a_reviewed_signal_stays_as_reviewed(storage: Storage) -> None:
    ingest_history(storage)
    storage.sales.ingest([sale_at(100, NOW - timedelta(hours=3), accrue=10_000)], NOW)
    storage.fraud.scan(NOW)
    card = storage.fraud.list_signals(subject=CARD)[0]

    done = storage.fraud.review(card["signal_id"], "confirmed", "rule typo", "lena", NOW)
    assert (done["status"], done["reviewed_by"], done["review_note"]) == (
        "confirmed",
        "lena",
        "rule typo",
    )
    history = storage.audit.audit_history("fraud_signal", str(card["signal_id"]))
    assert [(h["action"], h["actor"]) for h in history] == [("review", "lena")]
    assert history[0]["before"]["status"] == "open"
    assert history[0]["after"] == {"status": "confirmed", "note": "rule typo"}
    assert done["history"] == history

    storage.sales.ingest([sale_at(101, NOW - timedelta(hours=1), accrue=20_000)], NOW)
    storage.fraud.scan(NOW + timedelta(minutes=5))
    kept = storage.fraud.signal(card["signal_id"])
    assert kept["status"] == "confirmed" and len(kept["sale_ids"]) == 1
    assert storage.fraud.list_signals(status="confirmed")[0]["signal_id"] == card["signal_id"]

    with pytest.raises(InvalidRequest, match="status"):
        storage.fraud.review(card["signal_id"], "maybe", "", "lena", NOW)
    with pytest.raises(UnknownObject):
        storage.fraud.review(999_999, "dismissed", "", "lena", NOW)
    with pytest.raises(InvalidRequest, match="detector"):
        storage.fraud.list_signals(detector="nope")


def test_adjustment_bursts_and_shared_codes_come_from_the_stored_rows(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    for i in range(5):
        storage.returns.adjust(
            CARD,
            "bonus",
            1000,
            "goodwill",
            "mallory",
            NOW - timedelta(minutes=20 - i),
            idempotency_key=f"adj-{i}",
        )
    shared = [
        dataclasses.replace(
            make_sale(200 + i, card_no=f"29000000001{i:02d}"),
            closed_at=NOW - timedelta(hours=i + 1),
            opened_at=NOW - timedelta(hours=i + 2),
            coupons_redeemed=("FRIENDS10",),
        )
        for i in range(7)
    ]
    storage.sales.ingest(shared, NOW)
    storage.fraud.scan(NOW)
    person = storage.fraud.list_signals(detector="adjustment_burst", subject="mallory")
    assert len(person) == 1 and person[0]["refs"] == [f"adj-{i}" for i in range(5)]
    code = storage.fraud.list_signals(detector="shared_coupon")
    assert len(code) == 1 and code[0]["subject"] == "FRIENDS10"
    assert set(code[0]["sale_ids"]) == {s.sale_id for s in shared}


def test_return_bursts_and_fast_travel_come_from_the_stored_sales(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    originals = [
        dataclasses.replace(
            make_sale(300 + i, register_id="367-2", card_no=f"29000000002{i:02d}"),
            closed_at=NOW - timedelta(days=2),
            opened_at=NOW - timedelta(days=2, minutes=1),
        )
        for i in range(5)
    ]
    returns = [
        dataclasses.replace(
            make_return(400 + i, original, {1: 1000}, register_id="367-9"),
            closed_at=NOW - timedelta(minutes=50 - 5 * i),
            opened_at=NOW - timedelta(minutes=51 - 5 * i),
        )
        for i, original in enumerate(originals)
    ]
    here = sale_at(500, NOW - timedelta(minutes=40))
    there = dataclasses.replace(
        sale_at(501, NOW - timedelta(minutes=36), register_id="406-1"), store_id="406"
    )
    storage.sales.ingest([*originals, *returns, here, there], NOW)
    storage.fraud.scan(NOW)
    [burst] = storage.fraud.list_signals(detector="return_burst")
    assert (burst["subject_kind"], burst["subject"]) == ("register", "367-9")
    assert burst["sale_ids"] == [r.sale_id for r in returns]
    [travel] = storage.fraud.list_signals(detector="fast_travel")
    assert travel["subject"] == CARD and travel["sale_ids"] == [here.sale_id, there.sale_id]
