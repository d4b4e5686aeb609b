"""Returns: reverse a sale's discounts, accruals and bonus payment in proportion (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidReceipt
from .goods import CERTIFICATE_TYPE
from .model import Accrual, Calculation, Discount, Receipt
from .money import round_half_even

__all__ = ["ReturnCalculation", "ReturnLine", "calculate_return"]


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """One returned line: the part of its amount, of each discount, and the refund."""

    line_no: int
    qty_milli: int
    amount_minor: int
    discounts: tuple[Discount, ...]
    refund_minor: int


@dataclass(frozen=True, slots=True)
class ReturnCalculation:
    """What a return gives back: money, bonus paid, and the accruals to take back."""

    lines: tuple[ReturnLine, ...]
    refund_minor: int
    bonus_refund: int
    cash_refund_minor: int
    accrual_reversals: tuple[Accrual, ...]


def _part(value: int, done: int, now: int, whole: int) -> int:
    # Cumulative rounding: the parts of successive partial returns add up to the full return.
    if whole <= 0:
        return 0
    return round_half_even(value * (done + now), whole) - round_half_even(value * done, whole)


def calculate_return(
    receipt: Receipt,
    sale: Calculation,
    returned: Mapping[int, int],
    *,
    already_returned: Mapping[int, int] | None = None,
) -> ReturnCalculation:
    """Reverse ``sale`` for ``returned`` (line_no -> qty_milli), after earlier ``already_returned``.

    Every amount is reversed in proportion; the parts of several partial returns sum exactly to
    the full return's. Raises ``InvalidReceipt`` naming the line for impossible quantities.
    """
    before = dict(already_returned or {})
    by_no = {line.line_no: line for line in receipt.lines}
    results = {r.line_no: r for r in sale.lines}
    out: list[ReturnLine] = []
    # The bonus paid and the accruals were shares of the goods only (certificate lines are
    # money): they are reversed in proportion to the goods returned.
    done_total = 0
    now_total = 0
    refund_total = 0
    for line_no in sorted(returned):
        qty = returned[line_no]
        line = by_no.get(line_no)
        result = results.get(line_no)
        if line is None or result is None:
            raise InvalidReceipt(f"returned[{line_no}]: no such line in the sale")
        done = before.get(line_no, 0)
        if (
            isinstance(qty, bool)
            or not isinstance(qty, int)
            or qty <= 0
            or done + qty > line.qty_milli
        ):
            raise InvalidReceipt(
                f"returned[{line_no}]: expected 1..{line.qty_milli - done} milli-units, got {qty!r}"
            )
        whole = line.qty_milli
        amount = _part(result.amount_minor, done, qty, whole)
        discounts = tuple(
            Discount(d.rule_id, _part(d.amount_minor, done, qty, whole)) for d in result.discounts
        )
        refund = amount - sum(d.amount_minor for d in discounts)
        out.append(ReturnLine(line_no, qty, amount, discounts, refund))
        refund_total += refund
        if line.type != CERTIFICATE_TYPE:
            now_total += refund
    for line_no, done in before.items():
        result = results.get(line_no)
        line = by_no.get(line_no)
        if result is not None and line is not None and done and line.type != CERTIFICATE_TYPE:
            # Exactly what the earlier returns refunded, so the receipt-level shares chain up.
            whole = line.qty_milli
            done_total += _part(result.amount_minor, 0, done, whole) - sum(
                _part(d.amount_minor, 0, done, whole) for d in result.discounts
            )
    money = sum(
        results[line.line_no].total_minor
        for line in receipt.lines
        if line.type == CERTIFICATE_TYPE and line.line_no in results
    )
    total = sale.total_minor - money
    bonus_refund = _part(sale.bonus_to_spend, done_total, now_total, total)
    reversals = tuple(
        Accrual(
            a.wallet,
            _part(a.amount, done_total, now_total, total),
            a.rule_id,
            a.active_from,
            a.expires_at,
        )
        for a in sale.accruals
    )
    return ReturnCalculation(
        lines=tuple(out),
        refund_minor=refund_total,
        bonus_refund=bonus_refund,
        cash_refund_minor=refund_total - bonus_refund,
        accrual_reversals=tuple(r for r in reversals if r.amount),
    )
