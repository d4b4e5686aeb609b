"""The restriction stage of ``calculate``: ``restriction`` rules bound the other rules'
discounts (share or amount of the receipt, grants per day / month) after the stacking policy
and before the chain-wide cap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from .kinds.restriction import Restriction
from .model import Discount
from .money import allocate, percent_of
from .rules import Promotion
from .stacking import Basis

__all__ = ["Restricted", "restrict_discounts"]


class Restricted(NamedTuple):
    """The discounts per line after the restrictions, which of them granted, and why."""

    discounts: list[list[Discount]]
    # Restrictions under which a discount was granted on this receipt (a grant to count).
    granted: tuple[str, ...]
    explanation: dict[str, str]


def _grants_refused(terms: Restriction, basis: Basis, rid: str) -> str | None:
    customer = basis.receipt.customer
    if customer is None:
        return None
    given = customer.fired_day.get(rid, 0)
    if terms.max_grants_per_day is not None and given >= terms.max_grants_per_day:
        return f"given {given} time(s) today, limit {terms.max_grants_per_day}"
    given = customer.fired_month.get(rid, 0)
    if terms.max_grants_per_month is not None and given >= terms.max_grants_per_month:
        return f"given {given} time(s) this month, limit {terms.max_grants_per_month}"
    return None


def restrict_discounts(
    basis: Basis,
    restrictions: Sequence[Promotion],
    discounts: list[list[Discount]],
    money: Callable[[int], str],
) -> Restricted:
    """Apply each restriction in priority order to the discounts it covers."""
    granted: list[str] = []
    explanation: dict[str, str] = {}
    for promotion in restrictions:
        rid, terms = promotion.promotion_id, promotion.terms
        assert isinstance(terms, Restriction)
        covered = [(i, k) for i, line in enumerate(discounts) for k, d in enumerate(line)]
        covered = [(i, k) for i, k in covered if terms.covers(discounts[i][k].rule_id)]
        given = sum(discounts[i][k].amount_minor for i, k in covered)
        if given <= 0:
            explanation[rid] = f"{rid}: skipped: no discount it covers on this receipt"
            continue
        refused = _grants_refused(terms, basis, rid)
        if refused is not None:
            keep = [0] * len(covered)
            what = f"{refused}: covered discounts of {money(given)} removed"
        else:
            cap: int | None = terms.max_discount_minor
            if terms.max_discount_percent is not None:
                share = percent_of(basis.subtotal, terms.max_discount_percent)
                cap = share if cap is None else min(cap, share)
            if cap is None or given <= cap:
                explanation[rid] = f"{rid}: applied: covered discounts {money(given)} within it"
                granted.append(rid)
                continue
            keep = allocate(cap, [discounts[i][k].amount_minor for i, k in covered])
            what = f"covered discounts {money(given)} capped at {money(cap)}"
        new = [list(line) for line in discounts]
        for (i, k), amount in zip(covered, keep, strict=True):
            new[i][k] = Discount(new[i][k].rule_id, amount)
        discounts = [[d for d in line if d.amount_minor] for line in new]
        if any(keep):
            granted.append(rid)
        explanation[rid] = f"{rid}: applied: {what}"
    return Restricted(discounts, tuple(granted), explanation)
