"""Every ledger rule of center/ledger/planner.py, run through the storage of both backends."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from center.storage import Burning, LedgerEntry, Pending, Storage
from center.storage.sql import SqlStorage
from tests.center.center_factories import CARD, T0, make_sale, master_tables
from tests.center.test_center_returns import make_return

DAY = timedelta(days=1)


def _sql(storage: Storage) -> SqlStorage:
    assert isinstance(storage, SqlStorage)
    return storage


def _credit(
    source: str,
    amount: int,
    *,
    at: datetime = T0,
    active_from: datetime | None = None,
    expires_at: datetime | None = None,
    wallet: str = "bonus",
) -> LedgerEntry:
    return LedgerEntry(CARD, wallet, "accrue", amount, "base", source, at, active_from, expires_at)


def _spend(source: str, amount: int, *, at: datetime = T0 + DAY) -> LedgerEntry:
    return LedgerEntry(CARD, "bonus", "spend", -amount, "", source, at)


def _lots(storage: Storage) -> dict[str, tuple[Any, ...]]:
    """source -> (amount, remaining, active_from, expires_at) of every lot."""
    sql = _sql(storage)
    rows = sql.db.execute(
        "SELECT source, amount, remaining, active_from, expires_at FROM lots ORDER BY lot_id"
    ).fetchall()

    def dt(value: Any) -> datetime | None:
        return None if value is None else sql.db.dt(value)

    return {r[0]: (int(r[1]), int(r[2]), dt(r[3]), dt(r[4])) for r in rows}


def _remaining(storage: Storage) -> dict[str, int]:
    return {source: lot[1] for source, lot in _lots(storage).items()}


def _consumptions(storage: Storage) -> list[tuple[Any, ...]]:
    """(movement source, lot source or None, kind, amount) in the order they were written."""
    rows = (
        _sql(storage)
        .db.execute(
            "SELECT e.source, l.source, c.kind, c.amount FROM lot_consumptions c "
            "JOIN ledger e ON e.entry_id = c.entry_id "
            "LEFT JOIN lots l ON l.lot_id = c.lot_id ORDER BY c.consumption_id"
        )
        .fetchall()
    )
    return [(r[0], r[1], r[2], int(r[3])) for r in rows]


def _wallets(storage: Storage, now: datetime) -> tuple[dict[str, int], dict[str, int]]:
    balance = storage.ledger.balance(CARD, now)
    assert balance is not None
    return dict(balance.wallets), dict(balance.debt)


def _assert_balanced(storage: Storage) -> None:
    journal, remaining, debt = _sql(storage).ledger.lot_totals()
    assert journal == remaining - debt


@pytest.fixture
def ledger(storage: Storage) -> Storage:
    storage.feed.upsert_master(master_tables())
    return storage


# -- credits --------------------------------------------------------------------------------


def test_an_accrual_is_a_lot_spendable_at_once(ledger: Storage) -> None:
    expires = T0 + 90 * DAY
    assert ledger.ledger.add_ledger_entries([_credit("a", 120, expires_at=expires)]) == 1
    assert _lots(ledger) == {"a": (120, 120, None, expires)}
    assert _consumptions(ledger) == []
    assert _wallets(ledger, T0) == ({"bonus": 120}, {"bonus": 0})
    _assert_balanced(ledger)


def test_a_delayed_accrual_is_pending_and_not_spendable_until_active(ledger: Storage) -> None:
    active = T0 + 7 * DAY
    ledger.ledger.add_ledger_entries([_credit("later", 50, active_from=active)])
    assert _lots(ledger) == {"later": (50, 50, active, None)}
    balance = ledger.ledger.balance(CARD, T0)
    assert balance is not None
    assert balance.wallets == {"bonus": 0}
    assert balance.pending == (Pending("bonus", 50, active),)
    # A spend before activation cannot reach it: the whole spend is a debt.
    ledger.ledger.add_ledger_entries([_spend("early", 20, at=active - timedelta(seconds=1))])
    assert _remaining(ledger) == {"later": 50}
    assert _consumptions(ledger) == [("early", None, "debt", 20)]
    # From the activation instant on, it is active (active_from <= now).
    assert _wallets(ledger, active) == ({"bonus": 30}, {"bonus": 20})
    ledger.ledger.add_ledger_entries([_spend("on-time", 10, at=active)])
    assert _remaining(ledger) == {"later": 40}
    _assert_balanced(ledger)


def test_a_lot_lives_until_its_expiry_instant(ledger: Storage) -> None:
    expires = T0 + 10 * DAY
    ledger.ledger.add_ledger_entries([_credit("short", 30, expires_at=expires)])
    assert _wallets(ledger, expires - timedelta(microseconds=1))[0] == {"bonus": 30}
    assert _wallets(ledger, expires)[0] == {"bonus": 0}  # derived: no job needed
    # A spend at the expiry instant finds nothing to take: a debt.
    ledger.ledger.add_ledger_entries([_spend("too-late", 5, at=expires)])
    assert _consumptions(ledger) == [("too-late", None, "debt", 5)]
    assert _remaining(ledger) == {"short": 30}


def test_a_born_expired_credit_repays_no_debt_and_is_burnt(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries([_spend("overdraft", 40, at=T0)])
    assert _wallets(ledger, T0) == ({"bonus": -40}, {"bonus": 40})
    # Credited at T0 + 1 day with an expiry already past (and one exactly at its creation).
    at = T0 + DAY
    ledger.ledger.add_ledger_entries(
        [
            _credit("stale", 25, at=at, expires_at=at - timedelta(hours=1)),
            _credit("edge", 15, at=at, expires_at=at),
        ]
    )
    assert _remaining(ledger) == {"stale": 25, "edge": 15}
    assert [c for c in _consumptions(ledger) if c[2] == "recover"] == []
    assert _wallets(ledger, at) == ({"bonus": -40}, {"bonus": 40})
    assert ledger.ledger.expire_lots(at) == 2
    assert _remaining(ledger) == {"stale": 0, "edge": 0}
    # A live credit after them does repay.
    ledger.ledger.add_ledger_entries([_credit("fresh", 10, at=at)])
    assert _wallets(ledger, at) == ({"bonus": -30}, {"bonus": 30})
    _assert_balanced(ledger)


# -- debits ---------------------------------------------------------------------------------


def test_a_debit_takes_the_earliest_expiring_lot_first_undated_last(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries(
        [
            _credit("undated", 100),
            _credit("late", 100, expires_at=T0 + 90 * DAY),
            _credit("soon-new", 100, at=T0 + timedelta(hours=1), expires_at=T0 + 30 * DAY),
            _credit("soon-old", 100, expires_at=T0 + 30 * DAY),
            _credit("soon-old-2", 100, expires_at=T0 + 30 * DAY),
        ]
    )
    ledger.ledger.add_ledger_entries([_spend("s1", 250)])
    # Same expiry: the older lot first, then (same creation too) the first stored.
    assert _consumptions(ledger) == [
        ("s1", "soon-old", "spend", 100),
        ("s1", "soon-old-2", "spend", 100),
        ("s1", "soon-new", "spend", 50),
    ]
    ledger.ledger.add_ledger_entries([_spend("s2", 200)])
    assert _consumptions(ledger)[3:] == [
        ("s2", "soon-new", "spend", 50),
        ("s2", "late", "spend", 100),
        ("s2", "undated", "spend", 50),
    ]
    assert _remaining(ledger)["undated"] == 50
    _assert_balanced(ledger)


def test_a_debit_in_the_same_batch_takes_the_lots_credited_before_it(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries([_credit("stored", 30, expires_at=T0 + 60 * DAY)])
    ledger.ledger.add_ledger_entries(
        [
            _credit("new-soon", 20, at=T0 + DAY, expires_at=T0 + 5 * DAY),
            _credit("new-undated", 40, at=T0 + DAY),
            _spend("s", 70, at=T0 + 2 * DAY),
            _credit("after", 10, at=T0 + 3 * DAY),
        ]
    )
    assert _consumptions(ledger) == [
        ("s", "new-soon", "spend", 20),
        ("s", "stored", "spend", 30),
        ("s", "new-undated", "spend", 20),
    ]
    assert _remaining(ledger) == {"stored": 0, "new-soon": 0, "new-undated": 20, "after": 10}
    _assert_balanced(ledger)


def test_a_lot_credited_in_the_batch_comes_after_its_stored_twin(ledger: Storage) -> None:
    # Same expiry, same creation: the lower lot_id first, and a new lot's is above every stored.
    ledger.ledger.add_ledger_entries([_credit("stored", 10, expires_at=T0 + 5 * DAY)])
    ledger.ledger.add_ledger_entries(
        [_credit("twin", 10, expires_at=T0 + 5 * DAY), _spend("s", 15)]
    )
    assert _consumptions(ledger) == [("s", "stored", "spend", 10), ("s", "twin", "spend", 5)]
    assert _remaining(ledger) == {"stored": 0, "twin": 5}


def test_an_overdraft_takes_every_active_lot_then_becomes_a_debt(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries(
        [
            _credit("a", 30),
            _credit("pending", 100, active_from=T0 + 30 * DAY),
            _credit("gone", 100, expires_at=T0 + timedelta(hours=1)),
        ]
    )
    ledger.ledger.add_ledger_entries([_spend("offline", 100)])
    assert _consumptions(ledger) == [("offline", "a", "spend", 30), ("offline", None, "debt", 70)]
    assert _remaining(ledger) == {"a": 0, "pending": 100, "gone": 100}
    assert _wallets(ledger, T0 + DAY) == ({"bonus": -70}, {"bonus": 70})
    _assert_balanced(ledger)


def test_later_accruals_repay_the_debt_first(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries([_spend("offline", 70, at=T0)])
    ledger.ledger.add_ledger_entries([_credit("part", 50, at=T0 + DAY)])
    assert _remaining(ledger) == {"part": 0}
    assert _wallets(ledger, T0 + DAY) == ({"bonus": -20}, {"bonus": 20})
    # A pending accrual repays at once too; what is left of it stays pending.
    active = T0 + 9 * DAY
    ledger.ledger.add_ledger_entries([_credit("rest", 45, at=T0 + DAY, active_from=active)])
    assert _remaining(ledger) == {"part": 0, "rest": 25}
    assert _wallets(ledger, T0 + DAY) == ({"bonus": 0}, {"bonus": 0})
    assert _wallets(ledger, active) == ({"bonus": 25}, {"bonus": 0})
    assert [c for c in _consumptions(ledger) if c[2] == "recover"] == [
        ("part", "part", "recover", 50),
        ("rest", "rest", "recover", 20),
    ]
    # The debt is repaid once: the next credit stays whole.
    ledger.ledger.add_ledger_entries([_credit("whole", 5, at=T0 + 2 * DAY)])
    assert _remaining(ledger)["whole"] == 5
    _assert_balanced(ledger)


def test_debt_and_its_recovery_within_one_batch(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries(
        [
            _credit("a", 10, at=T0),
            _spend("s", 25, at=T0 + timedelta(minutes=1)),
            _credit("b", 40, at=T0 + timedelta(minutes=2)),
            _credit("other", 7, at=T0, wallet="promo"),
        ]
    )
    assert _consumptions(ledger) == [
        ("s", "a", "spend", 10),
        ("s", None, "debt", 15),
        ("b", "b", "recover", 15),
    ]
    assert _remaining(ledger) == {"a": 0, "b": 25, "other": 7}
    assert _wallets(ledger, T0 + DAY) == ({"bonus": 25, "promo": 7}, {"bonus": 0})
    _assert_balanced(ledger)


# -- expiry ---------------------------------------------------------------------------------


def test_expiry_burns_the_remainder_once_dated_at_the_expiry(ledger: Storage) -> None:
    expires = T0 + 10 * DAY
    ledger.ledger.add_ledger_entries(
        [_credit("dated", 100, expires_at=expires), _credit("kept", 10, expires_at=expires + DAY)]
    )
    ledger.ledger.add_ledger_entries([_spend("s", 40, at=T0 + DAY)])
    assert ledger.ledger.expire_lots(expires - timedelta(microseconds=1)) == 0
    assert ledger.ledger.expire_lots(expires) == 1  # expires_at <= now
    assert _remaining(ledger) == {"dated": 0, "kept": 10}
    assert _consumptions(ledger)[-1] == (_lot_source(ledger, "dated"), "dated", "expire", 60)
    # Idempotent: neither again nor later burns it twice.
    assert ledger.ledger.expire_lots(expires) == 0
    assert ledger.ledger.expire_lots(expires + 400 * DAY) == 1  # only "kept"
    history = ledger.ledger.history(CARD)
    assert history is not None
    burnt = sorted((e.amount, e.created_at) for e in history if e.kind == "expire")
    assert burnt == [(-60, expires), (-10, expires + DAY)]
    assert _wallets(ledger, expires + 400 * DAY) == ({"bonus": 0}, {"bonus": 0})
    _assert_balanced(ledger)


def _lot_source(storage: Storage, source: str) -> str:
    row = _sql(storage).db.execute("SELECT lot_id FROM lots WHERE source = ?", (source,)).fetchone()
    return f"lot:{row[0]}"


# -- balance --------------------------------------------------------------------------------


def test_balance_pending_and_burning_are_grouped_and_ordered(ledger: Storage) -> None:
    now = T0 + DAY
    ledger.ledger.add_ledger_entries(
        [
            _credit("a", 10, expires_at=now + 5 * DAY),
            _credit("b", 20, expires_at=now + 5 * DAY),
            _credit("c", 4, expires_at=now + 2 * DAY, wallet="promo"),
            _credit("edge", 3, expires_at=now + 30 * DAY),  # at the horizon: burning
            _credit("far", 7, expires_at=now + 30 * DAY + timedelta(seconds=1)),
            _credit("p1", 5, active_from=now + 3 * DAY),
            _credit("p2", 6, active_from=now + 3 * DAY, expires_at=now + 90 * DAY),
            _credit("p3", 8, active_from=now + DAY, wallet="promo"),
            # Expired before it activates: neither pending nor active.
            _credit("never", 9, active_from=now + 3 * DAY, expires_at=now),
            _credit("gone", 11, expires_at=now),
        ]
    )
    balance = ledger.ledger.balance(CARD, now, burning_within=30 * DAY)
    assert balance is not None
    assert balance.wallets == {"bonus": 40, "promo": 4}
    assert balance.pending == (
        Pending("promo", 8, now + DAY),
        Pending("bonus", 11, now + 3 * DAY),
    )
    assert balance.burning == (
        Burning("promo", 4, now + 2 * DAY),
        Burning("bonus", 30, now + 5 * DAY),
        Burning("bonus", 3, now + 30 * DAY),
    )
    assert balance.debt == {"bonus": 0}
    narrow = ledger.ledger.balance(CARD, now, burning_within=3 * DAY)
    assert narrow is not None and narrow.burning == (Burning("promo", 4, now + 2 * DAY),)


def test_balance_is_active_lots_less_the_debt(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries([_spend("overdraft", 12, at=T0)])
    ledger.ledger.add_ledger_entries(
        [LedgerEntry(CARD, "promo", "spend", -5, "", "p", T0), _credit("b", 3, at=T0)]
    )
    assert _wallets(ledger, T0) == ({"bonus": -9, "promo": -5}, {"bonus": 9, "promo": 5})


# -- returns --------------------------------------------------------------------------------


def test_a_return_takes_back_its_own_lot_first_then_fifo(ledger: Storage) -> None:
    # (What no lot covers becomes a debt: test_center_returns covers that on both backends.)
    original = make_sale(1, card_no=CARD, accrue=100, expires_at=T0 + 300 * DAY)
    ledger.sales.ingest([original], T0)
    ledger.ledger.add_ledger_entries([_spend("s", 60, at=T0 + timedelta(minutes=2))])
    at = T0 + timedelta(minutes=2)
    ledger.ledger.add_ledger_entries(
        [
            _credit("soon", 50, at=at, expires_at=T0 + 10 * DAY),
            _credit("mid", 100, at=at, expires_at=T0 + 100 * DAY),
        ]
    )
    # The sale's own lot expires last, yet the return takes back what is left of it first.
    ret = make_return(3, original, {1: 1000, 2: 1000})
    ledger.sales.ingest([ret], T0)
    assert [c for c in _consumptions(ledger) if c[0] == ret.sale_id] == [
        (ret.sale_id, original.sale_id, "return_accrual", 40),
        (ret.sale_id, "soon", "return_accrual", 50),
        (ret.sale_id, "mid", "return_accrual", 10),
    ]
    assert _remaining(ledger) == {original.sale_id: 0, "soon": 0, "mid": 90}
    assert _wallets(ledger, T0 + DAY) == ({"bonus": 90}, {"bonus": 0})
    _assert_balanced(ledger)


def test_a_return_takes_its_own_lot_even_before_it_is_active(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries([_credit("other", 500)])
    original = make_sale(1, card_no=CARD, accrue=40, active_from=T0 + 14 * DAY)
    ledger.sales.ingest([original], T0)
    ret = make_return(2, original, {1: 1000, 2: 1000})
    ledger.sales.ingest([ret], T0)
    assert _remaining(ledger) == {"other": 500, original.sale_id: 0}
    balance = ledger.ledger.balance(CARD, T0 + DAY)
    assert balance is not None and balance.pending == () and balance.wallets == {"bonus": 500}
    _assert_balanced(ledger)
