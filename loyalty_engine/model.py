"""Input and output data of the engine: receipts in, calculations out (frozen, slotted)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "Accrual",
    "Calculation",
    "ComplimentPass",
    "CustomerState",
    "Discount",
    "IssuedCoupon",
    "LineResult",
    "Messages",
    "Movement",
    "PersonalOffer",
    "Receipt",
    "ReceiptLine",
]


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    """One line of a receipt; ``amount_minor`` is the amount before any discount."""

    line_no: int
    product_id: str
    qty_milli: int
    unit_price_minor: int
    amount_minor: int
    department: str = ""
    category: str = ""
    brand: str = ""
    # Product type (e.g. "alcohol", "service") and unit cost, when the master data knows them.
    type: str = ""
    cost_minor: int | None = None


@dataclass(frozen=True, slots=True)
class PersonalOffer:
    """A per-customer offer from the Center's models: ``percent`` off the listed products."""

    offer_id: str
    product_ids: tuple[str, ...]
    percent: Decimal


@dataclass(frozen=True, slots=True)
class ComplimentPass:
    """A compliment spent on ``product_id``: its discount on up to ``units`` whole units bought
    from ``valid_from`` until ``valid_until`` (a week), ``used`` of them already."""

    promotion_id: str
    product_id: str
    valid_from: datetime
    valid_until: datetime
    units: int
    used: int = 0

    @property
    def key(self) -> tuple[str, str, datetime]:
        """What identifies the pass in the customer's state (upsert by it)."""
        return (self.promotion_id, self.product_id, self.valid_from)

    def active_at(self, now: datetime) -> bool:
        """Whether the pass gives its discount at ``now`` (an aware time) on a unit left."""
        return self.valid_from <= now < self.valid_until and self.used < self.units


@dataclass(frozen=True, slots=True)
class CustomerState:
    """What the engine knows of the card holder; the caller loads it, the engine never does I/O.

    ``counters`` are free-named (``purchases``, ``visits_30d``, ``compliment_week``...);
    ``fired_day`` / ``fired_month`` count the times each promotion fired for this customer
    today / this month / ever, ``qty_day_milli`` / ``qty_month_milli`` the promo quantity bought.
    """

    tier: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    favourite_categories: tuple[str, ...] = ()
    personal_offers: tuple[PersonalOffer, ...] = ()
    wallets: Mapping[str, int] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    fired_day: Mapping[str, int] = field(default_factory=dict)
    fired_month: Mapping[str, int] = field(default_factory=dict)
    fired_total: Mapping[str, int] = field(default_factory=dict)
    qty_day_milli: Mapping[str, int] = field(default_factory=dict)
    qty_month_milli: Mapping[str, int] = field(default_factory=dict)
    used_coupons: frozenset[str] = frozenset()
    # The card number of the customer who referred this one ("" if nobody did).
    referrer: str = ""
    # Compliment passes bought with compliments (active or not; the engine checks the dates).
    compliment_passes: tuple[ComplimentPass, ...] = ()


@dataclass(frozen=True, slots=True)
class Receipt:
    """A receipt to price; ``now`` is an aware datetime, ``bonus_balance`` the spendable bonus."""

    lines: tuple[ReceiptLine, ...]
    now: datetime
    store_id: str = ""
    store_format: str = ""
    card_no: str | None = None
    segment: str = ""
    bonus_balance: int = 0
    receipt_id: str = ""
    region: str = ""
    coupon_codes: tuple[str, ...] = ()
    payment_types: tuple[str, ...] = ()
    customer: CustomerState | None = None
    # The store's IANA time zone for schedules; empty: the chain's ``timezone`` setting.
    timezone: str = ""
    # Every segment the customer belongs to (the Center's segments); ``segment`` still counts.
    segments: tuple[str, ...] = ()

    @property
    def all_segments(self) -> tuple[str, ...]:
        """``segment`` (when set) and ``segments``, without repeats."""
        given = (self.segment, *self.segments) if self.segment else self.segments
        return tuple(dict.fromkeys(given))


@dataclass(frozen=True, slots=True)
class Discount:
    """The part of one line's discount given by one rule."""

    rule_id: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class LineResult:
    """A priced line: its amount before discounts and the discounts given on it."""

    line_no: int
    product_id: str
    amount_minor: int
    discounts: tuple[Discount, ...] = ()

    @property
    def discount_minor(self) -> int:
        """Sum of this line's discounts."""
        return sum(d.amount_minor for d in self.discounts)

    @property
    def total_minor(self) -> int:
        """The line amount after its discounts."""
        return self.amount_minor - self.discount_minor


@dataclass(frozen=True, slots=True)
class Accrual:
    """Points credited to ``wallet`` by one rule (bonus wallet: 1 point = 1 minor unit)."""

    wallet: str
    amount: int
    rule_id: str
    active_from: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Movement:
    """A wallet movement: ``accrued`` (now), ``pending`` (from ``active_from``) or ``spent``."""

    wallet: str
    kind: str
    amount: int
    rule_id: str
    active_from: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    """A coupon a rule issued on this receipt for a later visit (offline-verifiable code)."""

    code: str
    rule_id: str
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Messages:
    """Texts produced by the rules that applied, per output channel."""

    slip: tuple[str, ...] = ()
    cashier: tuple[str, ...] = ()
    display: tuple[str, ...] = ()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class Calculation:
    """The priced receipt: discounts, totals, bonus limits, accruals, messages, explanation."""

    lines: tuple[LineResult, ...]
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    accruals: tuple[Accrual, ...]
    bonus_payable_max: int
    bonus_to_spend: int
    to_pay_minor: int
    messages: Messages = field(default_factory=Messages)
    promo_version: int = 0
    explanation: tuple[str, ...] = ()
    movements: tuple[Movement, ...] = ()
    coupons_consumed: tuple[str, ...] = ()
    coupons_issued: tuple[IssuedCoupon, ...] = ()
    # Promotions that gave something, in priority order (the caller bumps fire counters).
    fired: tuple[str, ...] = ()
    # Per discount promotion that fired, the quantity of the lines it discounted (the caller
    # adds it to the customer's per-day / per-month quantity counters).
    promo_qty_milli: tuple[tuple[str, int], ...] = ()
    # Compliment passes opened or used on this receipt, as they stand after it (the caller
    # upserts them into the customer's state by ``ComplimentPass.key``).
    passes: tuple[ComplimentPass, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the calculation shape of docs/API.md (plus ``explanation``)."""
        return {
            "lines": [
                {
                    "line_no": line.line_no,
                    "product_id": line.product_id,
                    "amount_minor": line.amount_minor,
                    "discounts": [
                        {"rule_id": d.rule_id, "amount_minor": d.amount_minor}
                        for d in line.discounts
                    ],
                }
                for line in self.lines
            ],
            "subtotal_minor": self.subtotal_minor,
            "discount_minor": self.discount_minor,
            "total_minor": self.total_minor,
            "accrual": [
                {
                    "wallet": a.wallet,
                    "amount": a.amount,
                    "rule_id": a.rule_id,
                    "active_from": _iso(a.active_from),
                    "expires_at": _iso(a.expires_at),
                }
                for a in self.accruals
            ],
            "bonus_payable_max": self.bonus_payable_max,
            "bonus_to_spend": self.bonus_to_spend,
            "to_pay_minor": self.to_pay_minor,
            "messages": {
                "slip": list(self.messages.slip),
                "cashier": list(self.messages.cashier),
                "display": list(self.messages.display),
            },
            "promo_version": self.promo_version,
            "explanation": list(self.explanation),
            "movements": [
                {
                    "wallet": m.wallet,
                    "kind": m.kind,
                    "amount": m.amount,
                    "rule_id": m.rule_id,
                    "active_from": _iso(m.active_from),
                    "expires_at": _iso(m.expires_at),
                }
                for m in self.movements
            ],
            "coupons_consumed": list(self.coupons_consumed),
            "coupons_issued": [
                {"code": c.code, "rule_id": c.rule_id, "valid_until": _iso(c.valid_until)}
                for c in self.coupons_issued
            ],
            "fired": list(self.fired),
            "promo_qty_milli": dict(self.promo_qty_milli),
            "passes": [
                {
                    "promotion_id": p.promotion_id,
                    "product_id": p.product_id,
                    "valid_from": p.valid_from.isoformat(),
                    "valid_until": p.valid_until.isoformat(),
                    "units": p.units,
                    "used": p.used,
                }
                for p in self.passes
            ],
        }
