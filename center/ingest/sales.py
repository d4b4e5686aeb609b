"""What the Center checks in a sale before keeping it, and the ledger movements a sale makes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sync_protocol import Sale, sale_card_problem

__all__ = ["LOYALTY_KINDS", "Movement", "check_sale", "ledger_movements"]

LOYALTY_KINDS = ("accrue", "spend")
MAX_ID_LEN = 64


@dataclass(frozen=True, slots=True)
class Movement:
    """A signed ledger movement of one sale (accruals positive, spends negative)."""

    wallet: str
    kind: str
    rule_id: str
    amount: int
    active_from: datetime | None
    expires_at: datetime | None


def check_sale(sale: Sale) -> str | None:
    """What the Center refuses beyond the protocol's own checks, naming the field; or None.

    The decoder already guarantees the totals, line numbers and movement kinds; the Center
    adds the bounds of its storage and the ledger's need for a card.
    """
    for name in ("sale_id", "store_id", "register_id"):
        value = getattr(sale, name)
        if not value or len(value) > MAX_ID_LEN:
            return f"{name}: must be 1..{MAX_ID_LEN} characters, got {value[:80]!r}"
    if sale.seq < 1:
        return f"seq: must be >= 1, got {sale.seq}"
    card_problem = sale_card_problem(sale.card_no)
    if card_problem is not None:
        return card_problem
    for i, move in enumerate(sale.loyalty):
        if move.kind not in LOYALTY_KINDS:
            return (
                f"loyalty[{i}].kind: expected one of {', '.join(LOYALTY_KINDS)}, got {move.kind!r}"
            )
    if sale.loyalty and not sale.card_no:
        return "card_no: the sale has loyalty movements but no card"
    return None


def ledger_movements(sale: Sale) -> list[Movement]:
    """The sale's loyalty movements merged per (wallet, kind, rule_id), signed."""
    merged: dict[tuple[str, str, str], Movement] = {}
    for move in sale.loyalty:
        sign = 1 if move.kind == "accrue" else -1
        key = (move.wallet, move.kind, move.rule_id)
        before = merged.get(key)
        if before is None:
            merged[key] = Movement(
                move.wallet,
                move.kind,
                move.rule_id,
                sign * move.amount,
                move.active_from,
                move.expires_at,
            )
        else:
            merged[key] = Movement(
                before.wallet,
                before.kind,
                before.rule_id,
                before.amount + sign * move.amount,
                before.active_from,
                before.expires_at,
            )
    return list(merged.values())
