"""Pure arithmetic of returns at the Center: which original lines a return takes back, and the
part of the original's accruals and bonus payment it reverses.

A return reverses in proportion to the money it refunds against the original's total. Parts
are cumulative (`part(value, done, now, whole)` = rounded share of done + now minus rounded
share of done), so any series of partial returns reverses exactly the whole amount in the end
and never more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from center.ingest.sales import ledger_movements
from sync_protocol import Sale

__all__ = ["ReturnPlan", "Reversal", "part", "plan_return", "reversals"]


def _round_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def part(value: int, done: int, now: int, whole: int) -> int:
    """The share of `value` that the progress from `done` to `done + now` (of `whole`) reverses."""
    if whole <= 0:
        return 0
    return _round_half_even(value * (done + now), whole) - _round_half_even(value * done, whole)


@dataclass(frozen=True, slots=True)
class ReturnPlan:
    """What one return takes back: per original line the quantity, the progress, the problems."""

    lines: Mapping[int, int]
    """original line_no -> qty_milli taken back by this return (capped at what is left)."""
    done: int
    """Progress of the earlier returns of the same sale (money, or qty when the total is 0)."""
    now: int
    """Progress of this return, capped so that done + now <= whole."""
    whole: int
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reversal:
    """One ledger movement of a return: signed points of a wallet for one original rule."""

    wallet: str
    kind: str
    rule_id: str
    amount: int


def plan_return(
    original: Sale, ret: Sale, returned_before: Mapping[int, int], refunded_before: int
) -> ReturnPlan:
    """Match the return's lines to the original's and measure the return's progress.

    `returned_before` is original line_no -> qty_milli already taken back by earlier returns,
    `refunded_before` their summed progress. Impossible lines are problems, never errors.
    """
    problems: list[str] = []
    left = {
        line.line_no: line.qty_milli - returned_before.get(line.line_no, 0)
        for line in original.lines
    }
    by_no = {line.line_no: line for line in original.lines}
    taken: dict[int, int] = {}
    for i, line in enumerate(ret.lines):
        if line.qty_milli <= 0:
            problems.append(f"lines[{i}].qty_milli: expected > 0, got {line.qty_milli}")
            continue
        same = by_no.get(line.line_no)
        if same is not None and same.product_id == line.product_id and left[line.line_no] > 0:
            match: int | None = line.line_no
        else:
            match = next(
                (
                    o.line_no
                    for o in original.lines
                    if o.product_id == line.product_id and left[o.line_no] > 0
                ),
                None,
            )
        if match is None:
            problems.append(
                f"lines[{i}].product_id: {line.product_id!r} is not left to return in sale "
                f"{original.sale_id}"
            )
            continue
        qty = min(line.qty_milli, left[match])
        if qty < line.qty_milli:
            problems.append(
                f"lines[{i}].qty_milli: {line.qty_milli} exceeds the {left[match]} not yet "
                f"returned of line {match} of sale {original.sale_id}"
            )
        left[match] -= qty
        taken[match] = taken.get(match, 0) + qty
    all_back = all(qty <= 0 for qty in left.values()) and bool(original.lines)
    whole = original.total_minor
    done = refunded_before
    if whole > 0:
        wanted = ret.total_minor
        if done + wanted > whole:
            problems.append(
                f"total_minor: refunds of sale {original.sale_id} reach {done + wanted}, more "
                f"than its total {whole}"
            )
    else:
        # Nothing was paid: measure by quantity instead.
        whole = sum(max(line.qty_milli, 0) for line in original.lines)
        wanted = sum(taken.values())
    reached = whole if all_back else max(done, min(done + max(wanted, 0), whole))
    return ReturnPlan(
        lines=dict(sorted(taken.items())),
        done=done,
        now=reached - done,
        whole=whole,
        problems=tuple(problems),
    )


def reversals(original: Sale, plan: ReturnPlan) -> list[Reversal]:
    """The movements reversing the original's accruals (debits) and bonus payment (credits)."""
    out: list[Reversal] = []
    for move in ledger_movements(original):
        amount = part(abs(move.amount), plan.done, plan.now, plan.whole)
        if not amount:
            continue
        if move.amount > 0:
            out.append(Reversal(move.wallet, "return_accrual", move.rule_id, -amount))
        else:
            out.append(Reversal(move.wallet, "return_spend", move.rule_id, amount))
    return out
