"""The pure ledger planner: examples of each rule, and properties over random wallets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from center.ledger.model import LedgerEntry
from center.ledger.planner import (
    Consumption,
    LedgerPlan,
    Lot,
    born_expired,
    debited_wallets,
    derive_balance,
    plan_expiry,
    plan_movements,
)
from center.storage import Burning, Pending
from tests.center.center_factories import T0

CARD = "2900000000013"
H = timedelta(hours=1)
KEY = (CARD, "bonus")


def credit(
    entry_id: int,
    amount: int,
    *,
    at: datetime = T0,
    active_from: datetime | None = None,
    expires_at: datetime | None = None,
    wallet: str = "bonus",
) -> tuple[int, LedgerEntry]:
    entry = LedgerEntry(
        CARD, wallet, "accrue", amount, "r", f"c{entry_id}", at, active_from, expires_at
    )
    return entry_id, entry


def debit(
    entry_id: int, amount: int, *, at: datetime = T0 + H, wallet: str = "bonus", kind: str = "spend"
) -> tuple[int, LedgerEntry]:
    return entry_id, LedgerEntry(CARD, wallet, kind, -amount, "", f"d{entry_id}", at)


def lot(
    lot_id: int,
    remaining: int,
    *,
    created_at: datetime = T0 - 24 * H,
    active_from: datetime | None = None,
    expires_at: datetime | None = None,
    wallet: str = "bonus",
) -> Lot:
    return Lot(lot_id, CARD, wallet, remaining, created_at, active_from, expires_at, "r")


def taken(plan: LedgerPlan, entry_id: int) -> list[tuple[Any, str, int]]:
    """(lot_id or ("new", entry_id) or None, kind, amount) of one movement's consumptions."""
    return [
        (c.lot_id if c.new_lot is None else ("new", c.new_lot), c.kind, c.amount)
        for c in plan.consumptions
        if c.entry_id == entry_id
    ]


def remaining(plan: LedgerPlan) -> dict[int, int]:
    return {entry_id: left for entry_id, _, left in plan.new_lots()}


# -- credits --------------------------------------------------------------------------------


def test_a_credit_is_a_whole_lot_when_nothing_is_owed() -> None:
    plan = plan_movements([credit(1, 50), credit(2, 7, wallet="promo")], {}, {})
    assert list(plan.new_lots()) == [
        (1, credit(1, 50)[1], 50),
        (2, credit(2, 7, wallet="promo")[1], 7),
    ]
    assert plan.consumptions == () and plan.taken() == {}


def test_a_credit_repays_the_debt_of_its_own_wallet_first() -> None:
    debts = {KEY: 30, (CARD, "promo"): 5}
    plan = plan_movements([credit(1, 20), credit(2, 20), credit(3, 20)], debts, {})
    assert remaining(plan) == {1: 0, 2: 10, 3: 20}
    assert [taken(plan, n) for n in (1, 2, 3)] == [
        [(("new", 1), "recover", 20)],
        [(("new", 2), "recover", 10)],
        [],
    ]
    assert plan.consumptions[0] == Consumption(1, CARD, "bonus", "recover", 20, T0, new_lot=1)


def test_a_born_expired_credit_repays_nothing() -> None:
    stale = credit(1, 20, at=T0, expires_at=T0 - H)
    edge = credit(2, 20, at=T0, expires_at=T0)
    live = credit(3, 20, at=T0, expires_at=T0 + timedelta(microseconds=1))
    assert born_expired(stale[1]) and born_expired(edge[1]) and not born_expired(live[1])
    plan = plan_movements([stale, edge, live], {KEY: 100}, {})
    assert remaining(plan) == {1: 20, 2: 20, 3: 0}
    assert [c.new_lot for c in plan.consumptions] == [3]


def test_a_pending_credit_repays_at_once() -> None:
    plan = plan_movements([credit(1, 20, active_from=T0 + 72 * H)], {KEY: 5}, {})
    assert remaining(plan) == {1: 15}


# -- debits ---------------------------------------------------------------------------------


def test_a_debit_takes_earliest_expiry_then_oldest_then_first_stored_undated_last() -> None:
    stored = [
        lot(1, 10),  # undated
        lot(2, 10, expires_at=T0 + 48 * H),
        lot(3, 10, expires_at=T0 + 24 * H, created_at=T0 - H),
        lot(5, 10, expires_at=T0 + 24 * H, created_at=T0 - 2 * H),
        lot(4, 10, expires_at=T0 + 24 * H, created_at=T0 - 2 * H),
    ]
    plan = plan_movements([debit(9, 45)], {}, {KEY: stored})
    assert taken(plan, 9) == [(4, "spend", 10), (5, "spend", 10), (3, "spend", 10),
                              (2, "spend", 10), (1, "spend", 5)]  # fmt: skip
    assert plan.taken() == {4: 10, 5: 10, 3: 10, 2: 10, 1: 5}


def test_a_debit_takes_only_lots_active_at_its_time() -> None:
    at = T0 + H
    stored = [
        lot(1, 10, active_from=at + timedelta(microseconds=1)),  # not yet
        lot(2, 10, active_from=at),  # active from this instant
        lot(3, 10, expires_at=at),  # expired at this instant
        lot(4, 10, expires_at=at + timedelta(microseconds=1)),
    ]
    plan = plan_movements([debit(9, 30, at=at)], {}, {KEY: stored})
    assert taken(plan, 9) == [(4, "spend", 10), (2, "spend", 10), (None, "debt", 10)]


def test_a_debit_takes_lots_credited_earlier_in_the_plan_after_stored_ties() -> None:
    same = T0 + 24 * H
    movements = [
        credit(10, 5, at=T0 - 24 * H, expires_at=same),
        credit(11, 5, at=T0, expires_at=T0 + 2 * H),
        debit(12, 12),
        debit(13, 5, wallet="promo"),
    ]
    stored = {KEY: [lot(1, 5, expires_at=same)]}
    plan = plan_movements(movements, {}, stored)
    # Same expiry and creation as the stored lot 1: the new lot (a later lot_id) comes after.
    assert taken(plan, 12) == [
        (("new", 11), "spend", 5),
        (1, "spend", 5),
        (("new", 10), "spend", 2),
    ]
    assert taken(plan, 13) == [(None, "debt", 5)]
    assert remaining(plan) == {10: 3, 11: 0}
    assert plan.new_lots_consumed() == {10, 11}
    assert debited_wallets(movements) == {KEY, (CARD, "promo")}


def test_debt_then_recovery_in_one_plan() -> None:
    plan = plan_movements([debit(1, 30), credit(2, 10), credit(3, 50)], {}, {KEY: [lot(7, 5)]})
    assert taken(plan, 1) == [(7, "spend", 5), (None, "debt", 25)]
    assert remaining(plan) == {2: 0, 3: 35}


def test_a_preferred_lot_is_taken_first_whatever_its_dates() -> None:
    stored = [
        lot(1, 10, expires_at=T0 + 2 * H),
        lot(2, 10, active_from=T0 + 100 * H, expires_at=T0 + 200 * H),
    ]
    plan = plan_movements([debit(9, 25, kind="return_accrual")], {}, {KEY: stored}, first={9: 2})
    assert taken(plan, 9) == [(2, "return_accrual", 10), (1, "return_accrual", 10),
                              (None, "debt", 5)]  # fmt: skip


# -- expiry and balance ---------------------------------------------------------------------


def test_expiry_burns_what_is_left_of_each_expired_lot_dated_at_its_expiry() -> None:
    now = T0 + 10 * H
    lots = [
        lot(3, 7, expires_at=now),
        lot(1, 5, expires_at=T0),
        lot(2, 9, expires_at=now + timedelta(microseconds=1)),
        lot(4, 4),
    ]
    burns = plan_expiry(lots, now)
    assert [b.lot_id for b in burns] == [1, 3]
    assert burns[0].entry == LedgerEntry(CARD, "bonus", "expire", -5, "r", "lot:1", T0)
    assert burns[1].consumed(77) == Consumption(77, CARD, "bonus", "expire", 7, now, lot_id=3)
    assert plan_expiry(lots, T0 - H) == ()


def test_balance_from_lots_and_debt() -> None:
    now = T0
    lots = [
        lot(1, 10, expires_at=now + 24 * H),
        lot(2, 5, expires_at=now + 24 * H),
        lot(3, 4, expires_at=now + 30 * 24 * H),  # at the horizon: burning
        lot(4, 1, expires_at=now + 30 * 24 * H + timedelta(microseconds=1)),
        lot(5, 8, active_from=now + H),
        lot(6, 2, active_from=now + H, wallet="promo"),
        lot(7, 3, active_from=now + 2 * H, expires_at=now),  # expired before activating
        lot(8, 6, expires_at=now),
    ]
    balance = derive_balance(CARD, "c-1", lots, {"bonus": 7, "promo": 0}, now, timedelta(days=30))
    assert balance.wallets == {"bonus": 20 - 7, "promo": 0}
    assert balance.debt == {"bonus": 7, "promo": 0}
    assert balance.pending == (Pending("bonus", 8, now + H), Pending("promo", 2, now + H))
    assert balance.burning == (
        Burning("bonus", 15, now + 24 * H),
        Burning("bonus", 4, now + 30 * 24 * H),
    )
    empty = derive_balance(CARD, "c-1", [], {}, now, timedelta(days=30))
    assert empty.wallets == {"bonus": 0} and empty.debt == {"bonus": 0}


# -- properties -----------------------------------------------------------------------------

_TIMES = st.integers(min_value=0, max_value=48).map(lambda h: T0 + h * H)
_MAYBE_TIME = st.none() | _TIMES


@dataclass(frozen=True, slots=True)
class _Dated:
    active_from: datetime | None
    expires_at: datetime | None
    created_at: datetime
    order: tuple[int, int]  # (0, lot_id) stored, (1, n) created by the plan


def _active(d: _Dated, at: datetime) -> bool:
    return (d.active_from is None or d.active_from <= at) and (
        d.expires_at is None or d.expires_at > at
    )


def _fifo(d: _Dated) -> tuple[Any, ...]:
    return (d.expires_at is None, d.expires_at or datetime.max.replace(tzinfo=T0.tzinfo),
            d.created_at, d.order)  # fmt: skip


@st.composite
def _wallet_states(draw: st.DrawFn) -> tuple[list[Lot], int, list[tuple[int, LedgerEntry]]]:
    stored = [
        Lot(
            lot_id,
            CARD,
            "bonus",
            draw(st.integers(1, 60)),
            draw(_TIMES),
            draw(_MAYBE_TIME),
            draw(_MAYBE_TIME),
        )
        for lot_id in range(1, draw(st.integers(0, 6)) + 1)
    ]
    debt = draw(st.integers(0, 80))
    movements: list[tuple[int, LedgerEntry]] = []
    for entry_id in range(100, 100 + draw(st.integers(1, 12))):
        amount = draw(st.integers(1, 80))
        at = draw(_TIMES)
        if draw(st.booleans()):
            entry = LedgerEntry(CARD, "bonus", "accrue", amount, "r", f"s{entry_id}", at,
                                draw(_MAYBE_TIME), draw(_MAYBE_TIME))  # fmt: skip
        else:
            entry = LedgerEntry(CARD, "bonus", "spend", -amount, "", f"s{entry_id}", at)
        movements.append((entry_id, entry))
    return stored, debt, movements


@settings(max_examples=300, deadline=None)
@given(_wallet_states())
def test_plans_conserve_points_and_follow_fifo(
    state: tuple[list[Lot], int, list[tuple[int, LedgerEntry]]],
) -> None:
    stored, debt, movements = state
    plan = plan_movements(movements, {KEY: debt}, {KEY: stored})
    # Replay the plan movement by movement, checking each step against the rules.
    left: dict[Any, int] = {("lot", s.lot_id): s.remaining for s in stored}
    dated: dict[Any, _Dated] = {
        ("lot", s.lot_id): _Dated(s.active_from, s.expires_at, s.created_at, (0, s.lot_id))
        for s in stored
    }
    by_entry: dict[int, list[Consumption]] = {}
    for c in plan.consumptions:
        by_entry.setdefault(c.entry_id, []).append(c)
    owed = debt
    for n, (entry_id, e) in enumerate(movements):
        mine = by_entry.pop(entry_id, [])
        if e.amount > 0:
            ref = ("new", entry_id)
            left[ref] = e.amount
            dated[ref] = _Dated(e.active_from, e.expires_at, e.created_at, (1, n))
            recovered = sum(c.amount for c in mine)
            stale = e.expires_at is not None and e.expires_at <= e.created_at
            expected = 0 if stale else min(owed, e.amount)
            assert [c.kind for c in mine] == (["recover"] if expected else [])
            assert recovered == expected and all(c.new_lot == entry_id for c in mine)
            left[ref] -= recovered
            owed -= recovered
            continue
        # A debit: its consumptions sum to it, lots before any debt.
        assert sum(c.amount for c in mine) == -e.amount
        kinds = [c.kind for c in mine]
        assert "debt" not in kinds[:-1]
        took = [("lot", c.lot_id) if c.new_lot is None else ("new", c.new_lot)
                for c in mine if c.kind != "debt"]  # fmt: skip
        for c, ref in zip(mine, took, strict=False):
            assert _active(dated[ref], e.created_at)
            left[ref] -= c.amount
            assert left[ref] >= 0
        keys = [_fifo(dated[ref]) for ref in took]
        assert keys == sorted(keys)
        still = [
            ref for ref, amount in left.items() if amount > 0 and _active(dated[ref], e.created_at)
        ]
        if kinds and kinds[-1] == "debt":
            owed += mine[-1].amount
            assert still == []  # a debt only once every active lot is empty
        elif took:
            # Whatever active lot still holds points comes after the last one taken.
            assert all(_fifo(dated[ref]) >= keys[-1] for ref in still)
    assert by_entry == {}
    assert remaining(plan) == {ref[1]: v for ref, v in left.items() if ref[0] == "new"}
    assert all(v >= 0 for v in left.values())
    assert plan.taken() == {
        s.lot_id: s.remaining - left[("lot", s.lot_id)]
        for s in stored
        if left[("lot", s.lot_id)] != s.remaining
    }
    # Conservation: what the movements add up to is what the lots gained less the new debt.
    stored_before = sum(s.remaining for s in stored)
    assert sum(e.amount for _, e in movements) == (sum(left.values()) - stored_before) - (
        owed - debt
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), _MAYBE_TIME, _MAYBE_TIME), max_size=8),
    st.integers(0, 40),
    _TIMES,
)
def test_balances_split_every_open_point_once(
    rows: list[tuple[int, datetime | None, datetime | None]], debt: int, now: datetime
) -> None:
    lots = [lot(n, left, active_from=a, expires_at=x) for n, (left, a, x) in enumerate(rows, 1)]
    balance = derive_balance(CARD, "c", lots, {"bonus": debt}, now, timedelta(hours=12))
    active = sum(x.remaining for x in lots if x.remaining > 0 and _active(
        _Dated(x.active_from, x.expires_at, x.created_at, (0, 0)), now))  # fmt: skip
    assert balance.wallets == {"bonus": active - debt}
    assert sum(b.amount for b in balance.burning) <= active
    assert all(now < b.expires_at <= now + timedelta(hours=12) for b in balance.burning)
    assert all(p.active_from > now for p in balance.pending)
    # Nothing expired counts: after burning what plan_expiry burns, the balance is the same.
    burnt = {b.lot_id for b in plan_expiry(lots, now)}
    kept = [x for x in lots if x.lot_id not in burnt]
    assert derive_balance(CARD, "c", kept, {"bonus": debt}, now, timedelta(hours=12)) == balance
