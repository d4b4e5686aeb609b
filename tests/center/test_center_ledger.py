"""The loyalty ledger as lots: FIFO debits, debts, expiry and derived views, on both backends."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from center.ledger.lots import allocate
from center.storage import Burning, LedgerEntry, Pending, Storage
from center.storage.postgres import PostgresStorage
from center.storage.sql import SqlStorage
from center.storage.sqlite import SqliteStorage
from tests.center.center_factories import CARD, T0, make_sale, master_tables

NOW = T0 + timedelta(days=1)


def _sql(storage: Storage) -> SqlStorage:
    assert isinstance(storage, SqlStorage)
    return storage


def _accrual(
    source: str,
    amount: int,
    *,
    expires_in: timedelta | None = None,
    active_in: timedelta | None = None,
    at: Any = T0,
) -> LedgerEntry:
    return LedgerEntry(
        card_no=CARD,
        wallet="bonus",
        kind="accrue",
        amount=amount,
        rule_id="base",
        source=source,
        created_at=at,
        active_from=None if active_in is None else at + active_in,
        expires_at=None if expires_in is None else at + expires_in,
    )


def _spend(source: str, amount: int, *, at: Any = NOW) -> LedgerEntry:
    return LedgerEntry(CARD, "bonus", "spend", -amount, "", source, at)


def _remaining(storage: Storage) -> dict[str, int]:
    rows = _sql(storage).db.execute("SELECT source, remaining FROM lots ORDER BY lot_id").fetchall()
    return {r[0]: int(r[1]) for r in rows}


def _consumptions(storage: Storage) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in _sql(storage)
        .db.execute(
            "SELECT l.source, c.kind, c.amount FROM lot_consumptions c "
            "LEFT JOIN lots l ON l.lot_id = c.lot_id ORDER BY c.consumption_id"
        )
        .fetchall()
    ]


def _assert_balanced(storage: Storage) -> None:
    journal, remaining, debt = _sql(storage).ledger.lot_totals()
    assert journal == remaining - debt


@pytest.fixture
def ledger(storage: Storage) -> Storage:
    storage.feed.upsert_master(master_tables())
    return storage


def test_allocate_takes_in_order_and_reports_the_uncovered_rest() -> None:
    assert allocate([(1, 30), (2, 0), (3, 50)], 60) == ([(1, 30), (3, 30)], 0)
    assert allocate([(1, 30)], 45) == ([(1, 30)], 15)
    assert allocate([], 10) == ([], 10)
    assert allocate([(1, 5)], 0) == ([], 0)
    with pytest.raises(ValueError, match="amount"):
        allocate([(1, 5)], -1)


def test_spend_takes_the_earliest_expiring_lots_first(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries(
        [
            _accrual("late", 100, expires_in=timedelta(days=90)),
            _accrual("never", 100),
            _accrual("soon", 100, expires_in=timedelta(days=30)),
        ]
    )
    assert ledger.ledger.add_ledger_entries([_spend("sale-1", 150)]) == 1
    assert _remaining(ledger) == {"late": 50, "never": 100, "soon": 0}
    assert _consumptions(ledger) == [("soon", "spend", 100), ("late", "spend", 50)]
    # A spend beyond the dated lots reaches the undated one last.
    ledger.ledger.add_ledger_entries([_spend("sale-2", 70)])
    assert _remaining(ledger) == {"late": 0, "never": 80, "soon": 0}
    balance = ledger.ledger.balance(CARD, NOW)
    assert balance is not None and balance.wallets == {"bonus": 80}
    assert balance.debt == {"bonus": 0}
    _assert_balanced(ledger)


def test_a_replayed_sale_changes_nothing(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries([_accrual("welcome", 500)])
    sale = make_sale(1, card_no=CARD, accrue=30, spend=100)
    ledger.sales.ingest([sale], NOW)
    state = (_remaining(ledger), _consumptions(ledger), ledger.counts())
    ledger.sales.ingest([sale], NOW + timedelta(hours=1))
    # The same movements offered directly (another route to the ledger) are no-ops too.
    again = LedgerEntry(CARD, "bonus", "spend", -100, "", sale.sale_id, sale.closed_at)
    assert ledger.ledger.add_ledger_entries([again]) == 0
    assert (_remaining(ledger), _consumptions(ledger), ledger.counts()) == state
    balance = ledger.ledger.balance(CARD, NOW)
    assert balance is not None and balance.wallets == {"bonus": 430}
    _assert_balanced(ledger)


def test_expiry_burns_the_remainder_once(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries(
        [_accrual("old", 100, expires_in=timedelta(hours=12)), _accrual("kept", 10)]
    )
    ledger.ledger.add_ledger_entries([_spend("sale-1", 40, at=T0 + timedelta(hours=1))])
    before = ledger.ledger.balance(CARD, NOW)
    assert before is not None and before.wallets == {"bonus": 10}  # derived: no job needed
    assert ledger.ledger.expire_lots(T0) == 0  # nothing expired yet
    assert ledger.ledger.expire_lots(NOW) == 1
    assert ledger.ledger.expire_lots(NOW) == 0
    assert ledger.ledger.expire_lots(NOW + timedelta(days=400)) == 0
    assert _remaining(ledger) == {"old": 0, "kept": 10}
    history = ledger.ledger.history(CARD)
    assert history is not None
    burnt = [e for e in history if e.kind == "expire"]
    assert len(burnt) == 1 and burnt[0].amount == -60
    assert burnt[0].created_at == T0 + timedelta(hours=12)
    after = ledger.ledger.balance(CARD, NOW)
    assert after == before
    _assert_balanced(ledger)


def test_overdraft_is_a_debt_recovered_from_later_accruals(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries([_accrual("first", 30)])
    ledger.ledger.add_ledger_entries([_spend("offline", 100)])
    balance = ledger.ledger.balance(CARD, NOW)
    assert balance is not None
    assert balance.wallets == {"bonus": -70} and balance.debt == {"bonus": 70}
    assert _consumptions(ledger) == [("first", "spend", 30), (None, "debt", 70)]
    ledger.ledger.add_ledger_entries([_accrual("second", 50, at=NOW)])
    balance = ledger.ledger.balance(CARD, NOW)
    assert balance is not None
    assert balance.wallets == {"bonus": -20} and balance.debt == {"bonus": 20}
    assert _remaining(ledger)["second"] == 0
    ledger.ledger.add_ledger_entries([_accrual("third", 40, at=NOW)])
    balance = ledger.ledger.balance(CARD, NOW)
    assert balance is not None
    assert balance.wallets == {"bonus": 20} and balance.debt == {"bonus": 0}
    assert _remaining(ledger)["third"] == 20
    # The master snapshot carries the same (possibly negative) figure to the registers.
    ledger.ledger.add_ledger_entries([_spend("offline-2", 50)])
    snapshot = ledger.feed.master_snapshot("367", NOW)
    assert snapshot is not None
    cards = {c["card_no"]: c["bonus_balance"] for c in snapshot[1]["cards"]}
    assert cards[CARD] == -30
    _assert_balanced(ledger)


def test_pending_points_are_not_spendable_until_active(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries(
        [
            _accrual("now", 20, expires_in=timedelta(days=10)),
            _accrual("week", 50, active_in=timedelta(days=7), expires_in=timedelta(days=100)),
            _accrual("week-2", 5, active_in=timedelta(days=7)),
        ]
    )
    balance = ledger.ledger.balance(CARD, T0, burning_within=timedelta(days=30))
    assert balance is not None
    assert balance.wallets == {"bonus": 20}
    assert balance.pending == (Pending("bonus", 55, T0 + timedelta(days=7)),)
    assert balance.burning == (Burning("bonus", 20, T0 + timedelta(days=10)),)
    # A spend now may use only the active lot; the rest is a debt, not the pending points.
    ledger.ledger.add_ledger_entries([_spend("sale-1", 30, at=T0 + timedelta(hours=1))])
    assert _remaining(ledger) == {"now": 0, "week": 50, "week-2": 5}
    later = ledger.ledger.balance(CARD, T0 + timedelta(days=8), burning_within=timedelta(days=100))
    assert later is not None
    assert later.pending == ()
    assert later.wallets == {"bonus": 55 - 10} and later.debt == {"bonus": 10}
    assert later.burning == (Burning("bonus", 50, T0 + timedelta(days=100)),)


def test_history_lists_movements_newest_first(ledger: Storage) -> None:
    ledger.ledger.add_ledger_entries([_accrual("welcome", 100, expires_in=timedelta(hours=2))])
    sale = make_sale(1, card_no=CARD, accrue=7, spend=20)
    ledger.sales.ingest([sale], NOW)
    ledger.ledger.expire_lots(NOW + timedelta(days=1))
    history = ledger.ledger.history(CARD)
    assert history is not None
    # The sale (closed at T0 + 1 min) spent from the welcome lot, which expired at T0 + 2 h.
    assert [(e.kind, e.amount, e.source) for e in history] == [
        ("expire", -80, history[0].source),
        ("spend", -20, sale.sale_id),
        ("accrue", 7, sale.sale_id),
        ("accrue", 100, "welcome"),
    ]
    assert history[0].source.startswith("lot:")
    assert history[0].created_at == T0 + timedelta(hours=2)
    assert history[3].expires_at == T0 + timedelta(hours=2)
    assert history[1].created_at == sale.closed_at
    limited = ledger.ledger.history(CARD, limit=1)
    assert limited is not None and len(limited) == 1
    assert ledger.ledger.history("0000000000000") is None


def test_concurrent_spends_never_share_a_lot(open_storage: Any) -> None:
    writers = [open_storage(), open_storage()]
    writers[0].feed.upsert_master(master_tables())
    writers[0].ledger.add_ledger_entries([_accrual("welcome", 100)])
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(storage: Storage, register: str) -> None:
        try:
            start.wait()
            for seq in range(1, 11):
                sale = make_sale(seq, register_id=register, card_no=CARD, spend=10)
                storage.sales.ingest([sale], NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w, f"367-{i}")) for i, w in enumerate(writers, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    balance = writers[0].ledger.balance(CARD, NOW)
    assert balance is not None
    assert balance.wallets == {"bonus": -100} and balance.debt == {"bonus": 100}
    taken = sum(c[2] for c in _consumptions(writers[0]) if c[0] == "welcome")
    assert taken == 100
    _assert_balanced(writers[0])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_turns_the_existing_journal_into_lots(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    def make() -> SqlStorage:
        if backend == "postgresql":
            return PostgresStorage(request.getfixturevalue("pg_dsn"))
        return SqliteStorage(tmp_path / "center.db")

    old = make()
    try:
        full = old.migrations
        old.migrations = full.until("m003_node_enrolment")
        assert old.migrate() == old.migrations.names()
        # The card as that release stored it (this release's upsert also fills the card
        # directory of m018_distribution_keys).
        with old.db.transaction():
            old.db.execute(
                "INSERT INTO cards (card_no, customer_id, status, version) "
                "VALUES (?, 'hh-1', 'active', 1)",
                (CARD,),
            )
        rows = [
            (CARD, "accrue", 100, "a", T0, T0 + timedelta(days=30)),
            (CARD, "accrue", 50, "b", T0, None),
            (CARD, "spend", -120, "s", T0 + timedelta(hours=1), None),
            (CARD, "accrue", 40, "c", T0 + timedelta(hours=2), None),
        ]
        with old.db.transaction():
            for card, kind, amount, source, at, expires in rows:
                old.db.execute(
                    "INSERT INTO ledger (card_no, wallet, kind, amount, rule_id, source, "
                    "active_from, expires_at, created_at) VALUES (?, 'bonus', ?, ?, '', ?, "
                    "NULL, ?, ?)",
                    (card, kind, amount, source, old.db.ts(expires), old.db.ts(at)),
                )
        old.migrations = full
        assert old.migrate() == full.names()[3:]
        assert _remaining(old) == {"a": 0, "b": 30, "c": 40}
        balance = old.ledger.balance(CARD, NOW)
        assert balance is not None and balance.wallets == {"bonus": 70}
        assert old.counts().ledger_entries == 4
        _assert_balanced(old)
    finally:
        old.close()
