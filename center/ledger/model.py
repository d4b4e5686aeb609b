"""What the ledger holds and answers: movements, and a card's balance derived from its lots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["BURNING_WITHIN", "Balance", "Burning", "LedgerEntry", "Pending"]

BURNING_WITHIN = timedelta(days=30)
"""Default horizon of the "burning" figures of a balance."""


@dataclass(frozen=True, slots=True)
class Pending:
    """Points of one wallet accrued but not active before `active_from`."""

    wallet: str
    amount: int
    active_from: datetime


@dataclass(frozen=True, slots=True)
class Burning:
    """Active points of one wallet that expire at `expires_at` unless spent first."""

    wallet: str
    amount: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Balance:
    """Balance per wallet of one card at a moment, derived from its lots.

    `wallets` is the active, unexpired remainder of the lots minus the debt (so it may be
    negative after an offline overdraft); `debt` is what spends took beyond the lots and later
    accruals have not yet recovered.
    """

    card_no: str
    customer_id: str
    wallets: Mapping[str, int] = field(default_factory=dict)
    pending: tuple[Pending, ...] = ()
    burning: tuple[Burning, ...] = ()
    debt: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger movement; (source, wallet, kind, rule_id) is unique so replays never repeat it."""

    card_no: str
    wallet: str
    kind: str
    amount: int
    rule_id: str
    source: str
    created_at: datetime
    active_from: datetime | None = None
    expires_at: datetime | None = None
