"""The pure arithmetic of returns: partial returns add up exactly to the full reversal."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from center.ledger.returns import part, plan_return, reversals
from sync_protocol import Sale
from tests.center.center_factories import CARD, make_sale
from tests.center.test_center_returns import make_return


@given(
    value=st.integers(0, 10**6),
    whole=st.integers(1, 10**6),
    cuts=st.lists(st.integers(0, 10**6), max_size=6),
)
def test_cumulative_parts_sum_to_the_value(value: int, whole: int, cuts: list[int]) -> None:
    points = sorted({min(c, whole) for c in cuts} | {0, whole})
    parts = [part(value, a, b - a, whole) for a, b in itertools.pairwise(points)]
    assert sum(parts) == value
    assert all(p >= 0 for p in parts)


def _apply_all(original: Sale, returns: list[Sale]) -> tuple[int, int, list[str]]:
    returned: dict[int, int] = {}
    refunded = 0
    accrual = spend = 0
    problems: list[str] = []
    for ret in returns:
        plan = plan_return(original, ret, returned, refunded)
        problems.extend(plan.problems)
        for move in reversals(original, plan):
            if move.kind == "return_accrual":
                accrual += move.amount
            else:
                spend += move.amount
        for line_no, qty in plan.lines.items():
            returned[line_no] = returned.get(line_no, 0) + qty
        refunded += plan.now
        assert -accrual <= 1000 and spend <= original.total_minor
    return accrual, spend, problems


@given(
    amounts=st.lists(st.integers(1, 5000), min_size=1, max_size=5),
    accrue=st.integers(0, 999),
    spend_share=st.integers(0, 100),
    data=st.data(),
)
def test_any_series_of_partial_returns_reverses_exactly(
    amounts: list[int], accrue: int, spend_share: int, data: st.DataObject
) -> None:
    spend = sum(amounts) * spend_share // 100
    original = make_sale(1, card_no=CARD, amounts=tuple(amounts), accrue=accrue, spend=spend)
    # Each line returned in 1..3 pieces of its quantity, the pieces in any order.
    pieces: list[tuple[int, int]] = []
    for line in original.lines:
        cuts = sorted(data.draw(st.sets(st.integers(1, 999), max_size=2)))
        edges = [0, *cuts, 1000]
        pieces.extend((line.line_no, b - a) for a, b in itertools.pairwise(edges))
    order = data.draw(st.permutations(pieces))
    returns = [make_return(2 + i, original, {no: qty}) for i, (no, qty) in enumerate(order)]
    accrual, spent, problems = _apply_all(original, returns)
    assert problems == []
    assert (accrual, spent) == (-accrue, spend)


def test_a_half_return_reverses_half() -> None:
    original = make_sale(1, card_no=CARD, amounts=(500, 500), accrue=11, spend=101)
    accrual, spent, _ = _apply_all(original, [make_return(2, original, {1: 1000})])
    assert (accrual, spent) == (-6, 50)  # 5.5 and 50.5 rounded half to even
