"""What a sale gave of each promotion: the one measure of a supplier budget's use, the same at
the store node (its budget lease) and at the Center (the budget account)."""

from __future__ import annotations

from .messages import Sale

__all__ = ["promotion_amounts"]


def promotion_amounts(sale: Sale) -> dict[str, int]:
    """promotion_id -> minor units the sale gave by it: its line discounts plus its accruals
    (every wallet's units count at face value; a return's lines give back, see the Center)."""
    out: dict[str, int] = {}
    for line in sale.lines:
        for discount in line.discounts:
            if discount.rule_id and discount.amount_minor:
                out[discount.rule_id] = out.get(discount.rule_id, 0) + discount.amount_minor
    for movement in sale.loyalty:
        if movement.kind == "accrue" and movement.rule_id and movement.amount:
            out[movement.rule_id] = out.get(movement.rule_id, 0) + movement.amount
    return out
