"""Pure FIFO arithmetic of the loyalty ledger: which lots a debit takes, and what stays a debt."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["allocate"]


def allocate(lots: Iterable[tuple[int, int]], amount: int) -> tuple[list[tuple[int, int]], int]:
    """Take `amount` from (lot_id, remaining) pairs in the given (FIFO) order.

    Returns the (lot_id, taken) pairs and the part no lot covered (the debt, >= 0).
    """
    if amount < 0:
        raise ValueError(f"amount: must be >= 0, got {amount}")
    taken: list[tuple[int, int]] = []
    rest = amount
    for lot_id, remaining in lots:
        if rest == 0:
            break
        if remaining <= 0:
            continue
        take = min(remaining, rest)
        taken.append((lot_id, take))
        rest -= take
    return taken, rest
