"""Fraud signals and the rows the detectors read: plain frozen records, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loyalty_engine import format_minor

__all__ = [
    "DETECTORS",
    "REVIEW_STATUSES",
    "SEVERITIES",
    "Adjustment",
    "CouponUse",
    "FraudSettings",
    "Grant",
    "Money",
    "Receipt",
    "ReturnEvent",
    "Revision",
    "ScanInput",
    "Signal",
]

DETECTORS = (
    "accrual_outlier",
    "fast_travel",
    "return_burst",
    "adjustment_burst",
    "shared_coupon",
    "revision_jump",
)
"""Every detector, by the name stored with its signals."""
SEVERITIES = ("low", "medium", "high")
REVIEW_STATUSES = ("open", "confirmed", "dismissed")
"""A signal is open until a person confirms it (fraud) or dismisses it (legitimate)."""


@dataclass(frozen=True, slots=True)
class FraudSettings:
    """Thresholds of the detectors (docs/FRAUD.md says why each one is what it is)."""

    history_days: int = 90
    """Trailing history a subject's own normal is measured over."""
    recent_hours: int = 24
    """Events this recent are judged; older ones are history (a scan every few minutes
    overlaps the last one, and the signal key makes that harmless)."""
    register_history: int = 300
    """A register's most recent receipts its normal is measured over (a median needs no more)."""
    min_history: int = 8
    """Receipts with an accrual a card or register needs before its own history is trusted."""
    outlier_k: int = 8
    """An accrual is an outlier above median + k x spread of the subject's history."""
    min_spread_minor: int = 100
    """Floor of the spread, so a perfectly regular history does not flag a small change."""
    min_minutes_between_stores: int = 30
    """One card at two different stores closer than this is faster than travel allows (the
    master data holds no store coordinates)."""
    burst_window_minutes: int = 60
    burst_returns: int = 5
    """Returns by one register or card within the burst window that make a burst."""
    burst_adjustments: int = 5
    """Manual adjustments by one person or to one card within the burst window."""
    coupon_window_days: int = 7
    coupon_max_cards: int = 5
    """A code redeemed by more distinct cards than this within the window is shared."""
    revision_min_receipts: int = 3
    """Receipts a revision, and the one before it, need before their grants are compared."""
    revision_jump_ratio: int = 5
    """Grants per receipt this many times the previous revision's are a jump."""
    revision_min_increase_minor: int = 1000
    """...and at least this much more per receipt (a tiny rule doubling is not a case)."""
    max_sale_ids: int = 500
    """Sales kept per signal (the reason gives the full count)."""


@dataclass(frozen=True, slots=True)
class Money:
    """Shows minor units to people: major units with the chain's currency."""

    currency: str = ""
    exponent: int = 2

    def show(self, amount_minor: int) -> str:
        """'600.00 RUB' (the currency unnamed when the chain has not set one)."""
        return f"{format_minor(amount_minor, self.exponent)} {self.currency or 'currency units'}"


@dataclass(frozen=True, slots=True)
class Receipt:
    """One stored sale with a card, and the loyalty it accrued (every wallet, every rule)."""

    sale_id: str
    store_id: str
    register_id: str
    card_no: str
    closed_at: datetime
    accrued_minor: int


@dataclass(frozen=True, slots=True)
class Grant:
    """What one rule (promotion) accrued on the receipts priced at one master version within
    the history window (the database sums them: a rule may grant on millions of receipts)."""

    promotion_id: str
    promo_version: int
    receipts: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Revision:
    """A published revision of a constructor-managed promotion."""

    promotion_id: str
    revision: int
    published_version: int
    author: str


@dataclass(frozen=True, slots=True)
class ReturnEvent:
    """A return (refund) sale."""

    sale_id: str
    store_id: str
    register_id: str
    card_no: str | None
    at: datetime
    refund_minor: int


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A manual adjustment of a card's balance by a person."""

    key: str
    card_no: str
    actor: str
    amount_minor: int
    at: datetime


@dataclass(frozen=True, slots=True)
class CouponUse:
    """A code a sale with a card redeemed."""

    code: str
    card_no: str
    sale_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ScanInput:
    """Everything one scan reads, in one snapshot."""

    receipts: tuple[Receipt, ...] = ()
    grants: tuple[Grant, ...] = ()
    revisions: tuple[Revision, ...] = ()
    returns: tuple[ReturnEvent, ...] = ()
    adjustments: tuple[Adjustment, ...] = ()
    coupon_uses: tuple[CouponUse, ...] = ()
    money: Money = Money()


@dataclass(frozen=True, slots=True)
class Signal:
    """One suspicion: what fired, about whom, in which window, why, and the sales behind it."""

    detector: str
    subject_kind: str
    subject: str
    window: str
    """What makes the signal one case: a UTC day, or a promotion revision."""
    severity: str
    reason: str
    sale_ids: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    """Evidence that is not a sale (adjustment keys)."""

    @property
    def key(self) -> str:
        """The idempotency key: a re-scan finds the same case under the same key."""
        return f"{self.detector}|{self.subject_kind}|{self.subject}|{self.window}"
