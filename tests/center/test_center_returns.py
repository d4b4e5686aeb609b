"""Returns, manual adjustments and overdrafts on the Center ledger, on both backends."""

from __future__ import annotations

import itertools
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from center.errors import Conflict, InvalidRequest, UnknownObject
from center.storage import Storage
from sync_protocol import Payment, Sale, SaleLine
from tests.center.center_factories import CARD, T0, make_sale, master_tables
from tests.center.conftest import OpenStorage

LATER = T0 + timedelta(days=1)


def make_return(
    seq: int,
    original: Sale,
    returned: dict[int, int],
    *,
    register_id: str = "367-9",
    card_no: str | None = None,
    refund: dict[int, int] | None = None,
    sale_id: str | None = None,
) -> Sale:
    """A return of `returned` (line_no -> qty_milli) of `original`, refunding the lines'
    share of their amount after discounts (or `refund` line_no -> money when given)."""
    by_no = {line.line_no: line for line in original.lines}
    lines = []
    for line_no, qty in sorted(returned.items()):
        line = by_no[line_no]
        paid = line.amount_minor - sum(d.amount_minor for d in line.discounts)
        money = (refund or {}).get(line_no, paid * qty // line.qty_milli)
        lines.append(
            SaleLine(
                line_no=line_no,
                product_id=line.product_id,
                qty_milli=qty,
                unit_price_minor=line.unit_price_minor,
                amount_minor=money,
            )
        )
    total = sum(line.amount_minor for line in lines)
    closed = T0 + timedelta(minutes=seq)
    return Sale(
        sale_id=sale_id or str(uuid.uuid4()),
        store_id=original.store_id,
        register_id=register_id,
        seq=seq,
        opened_at=closed - timedelta(minutes=1),
        closed_at=closed,
        card_no=card_no if card_no is not None else original.card_no,
        lines=tuple(lines),
        payments=(Payment("cash", total),),
        loyalty=(),
        subtotal_minor=total,
        discount_minor=0,
        total_minor=total,
        promo_version=1,
        return_of=original.sale_id,
    )


def bonus(storage: Storage, now: datetime = LATER) -> int:
    found = storage.ledger.balance(CARD, now)
    assert found is not None
    return found.wallets["bonus"]


def kinds(storage: Storage, source: str) -> dict[str, int]:
    history = storage.ledger.history(CARD, limit=1000) or []
    out: dict[str, int] = {}
    for entry in history:
        if entry.source == source:
            out[entry.kind] = out.get(entry.kind, 0) + entry.amount
    return out


def check_invariant(storage: Storage) -> None:
    journal, remaining, debt = storage.ledger.lot_totals()  # type: ignore[attr-defined]
    assert journal == remaining - debt


@pytest.fixture
def loaded(storage: Storage) -> Storage:
    storage.feed.upsert_master(master_tables())
    return storage


def test_full_return_reverses_accrual_and_spend_exactly(loaded: Storage) -> None:
    loaded.sales.ingest([make_sale(1, card_no=CARD, accrue=100)], T0)
    original = make_sale(2, card_no=CARD, accrue=20, spend=50)
    loaded.sales.ingest([original], T0)
    assert bonus(loaded) == 70
    ret = make_return(3, original, {1: 1000, 2: 1000})
    ack = loaded.sales.ingest([ret], T0)
    assert ack.accepted == (ret.sale_id,)
    assert kinds(loaded, ret.sale_id) == {"return_accrual": -20, "return_spend": 50}
    assert bonus(loaded) == 100
    status = loaded.returns.return_status(ret.sale_id)
    assert status is not None
    assert status["status"] == "applied"
    assert status["refund_minor"] == original.total_minor
    assert status["problem"] == ""
    assert loaded.returns.return_exceptions() == []
    check_invariant(loaded)


def test_three_partial_returns_sum_to_the_full_reversal(loaded: Storage) -> None:
    loaded.sales.ingest([make_sale(1, card_no=CARD, accrue=1000)], T0)
    original = make_sale(2, card_no=CARD, amounts=(301, 302, 397), accrue=7, spend=333)
    loaded.sales.ingest([original], T0)
    returns = [make_return(3 + i, original, {i + 1: 1000}) for i in range(3)]
    for ret in returns:
        loaded.sales.ingest([ret], T0)
    accrual = sum(kinds(loaded, r.sale_id).get("return_accrual", 0) for r in returns)
    spend = sum(kinds(loaded, r.sale_id).get("return_spend", 0) for r in returns)
    assert (accrual, spend) == (-7, 333)
    # Each part is a real share, not all on the last return.
    assert all(kinds(loaded, r.sale_id).get("return_spend", 0) > 0 for r in returns)
    assert bonus(loaded) == 1000
    check_invariant(loaded)


def test_a_replayed_return_changes_nothing(loaded: Storage) -> None:
    original = make_sale(1, card_no=CARD, accrue=40)
    loaded.sales.ingest([original], T0)
    ret = make_return(2, original, {1: 1000})
    loaded.sales.ingest([ret], T0)
    before = (
        bonus(loaded),
        loaded.counts().ledger_entries,
        loaded.returns.return_status(ret.sale_id),
    )
    ack = loaded.sales.ingest([ret], T0)
    assert ack.duplicates == (ret.sale_id,)
    after = (
        bonus(loaded),
        loaded.counts().ledger_entries,
        loaded.returns.return_status(ret.sale_id),
    )
    assert after == before
    assert kinds(loaded, ret.sale_id) == {"return_accrual": -22}  # 40 * 250 / 449


def test_a_return_before_its_original_waits_and_applies_when_it_arrives(
    loaded: Storage,
) -> None:
    original = make_sale(1, card_no=CARD, accrue=30)
    ret = make_return(2, original, {1: 1000, 2: 1000})
    loaded.sales.ingest([ret], T0)
    status = loaded.returns.return_status(ret.sale_id)
    assert status is not None and status["status"] == "pending"
    assert [r["return_id"] for r in loaded.returns.return_exceptions()] == [ret.sale_id]
    assert bonus(loaded) == 0
    loaded.sales.ingest([make_sale(5, register_id="406-1", store_id="406")], T0)  # unrelated
    assert loaded.returns.return_status(ret.sale_id)["status"] == "pending"  # type: ignore[index]
    loaded.sales.ingest([original], T0)
    assert loaded.returns.return_status(ret.sale_id)["status"] == "applied"  # type: ignore[index]
    assert bonus(loaded) == 0
    assert kinds(loaded, ret.sale_id) == {"return_accrual": -30}
    assert loaded.returns.return_exceptions() == []


def test_original_and_return_in_one_batch(loaded: Storage) -> None:
    original = make_sale(1, card_no=CARD, accrue=30)
    ret = make_return(2, original, {1: 1000, 2: 1000}, register_id="300-1")
    loaded.sales.ingest([ret, original], T0)
    assert kinds(loaded, ret.sale_id) == {"return_accrual": -30}


def test_return_after_spending_makes_a_debt_reported_and_recovered(loaded: Storage) -> None:
    original = make_sale(1, card_no=CARD, accrue=100)
    loaded.sales.ingest([original, make_sale(2, card_no=CARD, spend=100)], T0)
    assert bonus(loaded) == 0
    loaded.sales.ingest([make_return(3, original, {1: 1000, 2: 1000})], T0)
    assert bonus(loaded) == -100
    report = loaded.returns.overdrafts()
    assert report["total"] == {"bonus": 100}
    [row] = report["cards"]
    assert (row["card_no"], row["customer_id"], row["wallet"], row["debt"]) == (
        CARD,
        "hh-1",
        "bonus",
        100,
    )
    assert row["since"] == (T0 + timedelta(minutes=3)).isoformat()
    loaded.sales.ingest([make_sale(4, card_no=CARD, accrue=30)], T0)
    assert bonus(loaded) == -70
    assert loaded.returns.overdrafts()["cards"][0]["debt"] == 70
    loaded.sales.ingest([make_sale(5, card_no=CARD, accrue=80)], T0)
    assert bonus(loaded) == 10
    assert loaded.returns.overdrafts() == {"cards": [], "total": {}}
    check_invariant(loaded)


def test_a_return_of_more_than_was_sold_is_reported_never_over_reversed(
    loaded: Storage,
) -> None:
    original = make_sale(1, card_no=CARD, accrue=45, amounts=(300,))
    loaded.sales.ingest([original], T0)
    first = make_return(2, original, {1: 1000})
    loaded.sales.ingest([first], T0)
    again = make_return(3, original, {1: 1000})
    ack = loaded.sales.ingest([again], T0)
    assert ack.accepted == (again.sale_id,)
    assert kinds(loaded, first.sale_id) == {"return_accrual": -45}
    assert kinds(loaded, again.sale_id) == {}
    [problem] = loaded.returns.return_exceptions()
    assert problem["return_id"] == again.sale_id
    assert "not left to return" in problem["problem"]
    assert bonus(loaded) == 0


def test_over_quantity_in_one_return_is_capped_and_reported(loaded: Storage) -> None:
    original = make_sale(1, card_no=CARD, accrue=45, amounts=(300,))
    loaded.sales.ingest([original], T0)
    ret = make_return(2, original, {1: 3000}, refund={1: 900})
    loaded.sales.ingest([ret], T0)
    assert kinds(loaded, ret.sale_id) == {"return_accrual": -45}
    [problem] = loaded.returns.return_exceptions()
    assert "qty_milli: 3000 exceeds" in problem["problem"]
    assert "total_minor" in problem["problem"]


def test_return_follows_a_replaced_card(loaded: Storage) -> None:
    original = make_sale(1, card_no=CARD, accrue=60)
    loaded.sales.ingest([original], T0)
    done = loaded.customers.replace_card(CARD, "2900000000099", "tester", T0 + timedelta(minutes=2))
    assert done["moved"] == {"bonus": 60}
    loaded.sales.ingest([make_return(3, original, {1: 1000, 2: 1000})], T0)
    new = loaded.ledger.balance("2900000000099", LATER)
    assert new is not None and new.wallets["bonus"] == 0
    assert bonus(loaded) == 0


# -- adjustments -------------------------------------------------------------------------------


def test_adjustment_credits_with_reason_and_author_once(loaded: Storage) -> None:
    now = T0 + timedelta(hours=1)
    done = loaded.returns.adjust(
        CARD, "bonus", 250, "goodwill: late delivery", "alice", now, idempotency_key="k-1"
    )
    assert done["replayed"] is False
    assert done["balance"] == {"bonus": 250}
    again = loaded.returns.adjust(
        CARD, "bonus", 250, "goodwill: late delivery", "alice", now, idempotency_key="k-1"
    )
    assert again["replayed"] is True
    assert bonus(loaded) == 250
    [entry] = [e for e in loaded.ledger.history(CARD) or [] if e.kind == "adjustment"]
    assert (entry.amount, entry.source) == (250, "adjust:k-1")
    [audit] = [a for a in loaded.audit.audit_history("card", CARD) if a["action"] == "adjust"]
    assert audit["actor"] == "alice"
    assert audit["after"]["reason"] == "goodwill: late delivery"
    assert audit["after"]["amount"] == 250


def test_adjustment_key_reused_for_another_adjustment_conflicts(loaded: Storage) -> None:
    loaded.returns.adjust(CARD, "bonus", 10, "fix", "alice", T0, idempotency_key="k-2")
    with pytest.raises(Conflict, match="idempotency_key"):
        loaded.returns.adjust(CARD, "bonus", 11, "fix", "alice", T0, idempotency_key="k-2")
    assert bonus(loaded) == 10


@pytest.mark.parametrize("reason", ["", "   "])
def test_adjustment_without_reason_is_refused(loaded: Storage, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=r"^reason: "):
        loaded.returns.adjust(CARD, "bonus", 10, reason, "alice", T0, idempotency_key="k-3")
    assert bonus(loaded) == 0
    assert loaded.audit.audit_history("card", CARD) == []


def test_adjustment_of_unknown_card_and_zero_amount(loaded: Storage) -> None:
    with pytest.raises(UnknownObject, match="card_no"):
        loaded.returns.adjust("nope", "bonus", 10, "why", "alice", T0, idempotency_key="k-4")
    with pytest.raises(InvalidRequest, match=r"^amount: "):
        loaded.returns.adjust(CARD, "bonus", 0, "why", "alice", T0, idempotency_key="k-5")


def test_negative_adjustment_takes_fifo_and_may_go_into_debt(loaded: Storage) -> None:
    loaded.sales.ingest([make_sale(1, card_no=CARD, accrue=40)], T0)
    now = T0 + timedelta(hours=1)
    done = loaded.returns.adjust(
        CARD, "bonus", -100, "fraud claw-back", "bob", now, idempotency_key="n"
    )
    assert done["balance"] == {"bonus": -60}
    assert loaded.returns.overdrafts()["total"] == {"bonus": 60}
    check_invariant(loaded)


def test_positive_adjustment_with_expiry_expires(loaded: Storage) -> None:
    expires = T0 + timedelta(days=10)
    loaded.returns.adjust(
        CARD, "bonus", 70, "promo", "alice", T0, expires_at=expires, idempotency_key="e"
    )
    assert bonus(loaded, T0 + timedelta(days=9)) == 70
    assert bonus(loaded, T0 + timedelta(days=11)) == 0
    # The same instant written with another offset is the same adjustment.
    moscow = expires.astimezone(timezone(timedelta(hours=3)))
    again = loaded.returns.adjust(
        CARD, "bonus", 70, "promo", "alice", T0, expires_at=moscow, idempotency_key="e"
    )
    assert again["replayed"] is True and again["expires_at"] == expires.isoformat()
    with pytest.raises(InvalidRequest, match=r"^expires_at: "):
        loaded.returns.adjust(
            CARD, "bonus", 70, "promo", "alice", T0, expires_at=T0, idempotency_key="e2"
        )


def test_a_return_of_a_return_is_reported_and_reverses_nothing(loaded: Storage) -> None:
    original = make_sale(1, card_no=CARD, accrue=45)
    ret = make_return(2, original, {1: 1000})
    loaded.sales.ingest([original, ret], T0)
    twice = make_return(3, ret, {1: 1000}, register_id="367-8")
    loaded.sales.ingest([twice], T0)
    assert kinds(loaded, twice.sale_id) == {}
    [problem] = loaded.returns.return_exceptions()
    assert problem["return_id"] == twice.sale_id
    assert "is itself a return" in problem["problem"]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    amounts=st.lists(st.integers(1, 3000), min_size=1, max_size=3),
    accrue=st.integers(1, 500),
    spend_share=st.integers(0, 100),
    data=st.data(),
)
def test_partial_returns_in_any_order_restore_the_balance_exactly(
    loaded: Storage,
    amounts: list[int],
    accrue: int,
    spend_share: int,
    data: st.DataObject,
) -> None:
    card = loaded.customers.issue_card("hh-1", None, "electronic", "test", T0)["card_no"]
    register = f"P-{card}"
    spend = sum(amounts) * spend_share // 100
    loaded.sales.ingest([make_sale(1, register_id=register, card_no=card, accrue=spend)], T0)
    original = make_sale(
        2, register_id=register, card_no=card, amounts=tuple(amounts), accrue=accrue, spend=spend
    )
    loaded.sales.ingest([original], T0)
    pieces: list[tuple[int, int]] = []
    for line in original.lines:
        cuts = sorted(data.draw(st.sets(st.integers(1, 999), max_size=2)))
        edges = [0, *cuts, 1000]
        pieces.extend((line.line_no, b - a) for a, b in itertools.pairwise(edges))
    order = data.draw(st.permutations(pieces))
    returns = [
        make_return(3 + i, original, {no: qty}, register_id=f"R-{card}")
        for i, (no, qty) in enumerate(order)
    ]
    for ret in returns:
        loaded.sales.ingest([ret], T0)
    history = loaded.ledger.history(card, limit=1000) or []
    moved = {"return_accrual": 0, "return_spend": 0}
    for entry in history:
        if entry.kind in moved:
            moved[entry.kind] += entry.amount
    assert moved == {"return_accrual": -accrue, "return_spend": spend}
    found = loaded.ledger.balance(card, LATER)
    assert found is not None and found.wallets["bonus"] == spend
    assert loaded.returns.return_exceptions() == []


def test_concurrent_returns_and_adjustment_retries_on_two_connections(
    open_storage: OpenStorage,
) -> None:
    first, second = open_storage(), open_storage()
    first.feed.upsert_master(master_tables())
    for round_no in range(4):
        original = make_sale(
            1, register_id=f"C-{round_no}", card_no=CARD, amounts=(301, 302, 397), accrue=7
        )
        first.sales.ingest([original], T0)
        returns = [
            make_return(1, original, {1: 1000}, register_id=f"CA-{round_no}"),
            make_return(1, original, {2: 1000, 3: 1000}, register_id=f"CB-{round_no}"),
        ]
        barrier = threading.Barrier(2)
        key = f"same-{round_no}"

        def ingest(storage: Storage, sale: Sale, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            storage.sales.ingest([sale], T0)

        def adjust(
            storage: Storage, barrier: threading.Barrier = barrier, key: str = key
        ) -> dict[str, Any]:
            barrier.wait()
            return storage.returns.adjust(
                CARD, "bonus", 5, "retry", "alice", T0, idempotency_key=key
            )

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(ingest, (first, second), returns))
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(adjust, (first, second)))
        reversed_ = sum(kinds(first, r.sale_id).get("return_accrual", 0) for r in returns)
        assert reversed_ == -7
        assert sorted(a["replayed"] for a in answers) == [False, True]
    assert bonus(first) == 4 * 5
    check_invariant(first)


def test_the_returned_quantities_and_a_sources_movements_read_back(loaded: Storage) -> None:
    original = make_sale(1, card_no=CARD, amounts=(300, 700), accrue=50)
    loaded.sales.ingest([original], T0)
    assert loaded.returns.returned_qty(original.sale_id) == {}
    first = make_return(2, original, {1: 1000})
    second = make_return(3, original, {2: 400})
    loaded.sales.ingest([first, second], T0)
    assert loaded.returns.returned_qty(original.sale_id) == {1: 1000, 2: 400}
    [accrued] = loaded.ledger.movements_of(original.sale_id)
    assert (accrued.card_no, accrued.kind, accrued.amount) == (CARD, "accrue", 50)
    reversed_ = loaded.ledger.movements_of(first.sale_id) + loaded.ledger.movements_of(
        second.sale_id
    )
    assert {m.kind for m in reversed_} == {"return_accrual"}
    assert sum(m.amount for m in reversed_) == sum(kinds(loaded, r.sale_id).get(
        "return_accrual", 0) for r in (first, second))  # fmt: skip
    assert loaded.ledger.movements_of("no-such-source") == []
