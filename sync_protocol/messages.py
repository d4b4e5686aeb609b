"""The message dataclasses of sync_protocol v1 (see docs/PROTOCOL.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

__all__ = [
    "Ack",
    "Envelope",
    "Heartbeat",
    "LineDiscount",
    "LoyaltyMovement",
    "MasterDelta",
    "MasterSnapshot",
    "Message",
    "Payment",
    "Rejection",
    "Sale",
    "SaleBatch",
    "SaleLine",
    "SaleOffer",
    "SalePass",
    "SalePromotion",
    "SeenSeq",
]

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LineDiscount:
    """A discount on one line and the promotion rule that gave it."""

    rule_id: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class SaleLine:
    """One receipt line; amount_minor is before discounts."""

    line_no: int
    product_id: str
    qty_milli: int
    unit_price_minor: int
    amount_minor: int
    discounts: tuple[LineDiscount, ...] = ()
    weighed: bool = False
    known_product: bool = True
    certificate_code: str = field(default="", metadata={"omit_empty": True})
    """The gift certificate this line sold (its product is a certificate nominal); activated
    when the sale reaches the Center."""


@dataclass(frozen=True, slots=True)
class Payment:
    """One tender of a sale (`cash`, `card`, `bonus`, `certificate`, ...)."""

    method: str
    amount_minor: int
    code: str = field(default="", metadata={"omit_empty": True})
    """The gift certificate a `certificate` tender was paid from (empty for other tenders)."""


@dataclass(frozen=True, slots=True)
class LoyaltyMovement:
    """Points accrued to or spent from one wallet by a sale."""

    wallet: str
    kind: str
    amount: int
    rule_id: str = ""
    active_from: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SaleOffer:
    """A personal offer of the card's customer that the register priced the sale with."""

    offer_id: str
    product_ids: tuple[str, ...]
    percent: str
    """Percent off the listed products as a plain decimal string 0..100 ("12.5"), never a float."""


@dataclass(frozen=True, slots=True)
class SalePromotion:
    """A promotion that gave something on the sale, and the units it discounted."""

    promotion_id: str
    qty_milli: int = 0
    """Milli-units the promotion discounted (0 for accruals): per-customer quantity caps count
    these at every tier."""


@dataclass(frozen=True, slots=True)
class SalePass:
    """A compliment pass the sale opened or used: a compliment spent on ``product_id`` gives
    its discount on up to ``units`` whole units from ``valid_from`` until ``valid_until``."""

    promotion_id: str
    product_id: str
    valid_from: datetime
    valid_until: datetime
    units: int
    used: int = 0
    """Units of the pass this sale used: a customer state adds these up."""
    used_before: int = 0
    """Units the state the register priced with said were used already (0 when opened here)."""
    opened: bool = False
    """Whether this sale opened the pass (spent the compliment)."""


@dataclass(frozen=True, slots=True)
class SeenSeq:
    """One register's highest sequence number folded into a customer state."""

    register_id: str
    seq: int


# Left out of every encoding (envelopes too) when empty: a sale without this context keeps
# the exact bytes it had before these fields existed, and older receivers' fast paths.
_OMIT_EMPTY = {"omit_empty": True}


@dataclass(frozen=True, slots=True)
class Sale:
    """A finished, confirmed receipt as made by a register."""

    sale_id: str
    store_id: str
    register_id: str
    seq: int
    opened_at: datetime
    closed_at: datetime
    card_no: str | None
    lines: tuple[SaleLine, ...]
    payments: tuple[Payment, ...]
    loyalty: tuple[LoyaltyMovement, ...]
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    promo_version: int
    prev_hash: str = ""
    messages: tuple[str, ...] = ()
    coupons_redeemed: tuple[str, ...] = ()
    coupons_issued: tuple[str, ...] = ()
    return_of: str | None = None
    """The sale_id of the original sale when this one is a return (refund) of some of its lines."""
    segments: tuple[str, ...] = field(default=(), metadata=_OMIT_EMPTY)
    """Every segment of the card's customer the register priced with (the Center recomputes)."""
    personal_offers: tuple[SaleOffer, ...] = field(default=(), metadata=_OMIT_EMPTY)
    """The customer's personal offers valid at pricing, all of them handed to the engine."""
    promotions: tuple[SalePromotion, ...] = field(default=(), metadata=_OMIT_EMPTY)
    """Every promotion that fired, in priority order, with the units it discounted: the
    customer's per-promotion counters (fires, promo quantities) at every tier count these."""
    state_seen: tuple[SeenSeq, ...] = field(default=(), metadata=_OMIT_EMPTY)
    """The basis of the customer state the register priced with (its ``seen``: register ->
    highest seq folded, by register_id): the Center rebuilds that state to verify the sale."""
    passes: tuple[SalePass, ...] = field(default=(), metadata=_OMIT_EMPTY)
    """The compliment passes the sale opened or used (every tier's customer state counts
    their use; the Center prices the sale again with them)."""
    shown_messages: tuple[str, ...] = field(default=(), metadata=_OMIT_EMPTY)
    """The personal messages for the card's customer this receipt showed (cashier, display,
    slip): the Center marks them delivered and no tier shows them again."""


@dataclass(frozen=True, slots=True)
class SaleBatch:
    """Sales sent upstream: register to store node, store node to Center."""

    TYPE: ClassVar[str] = "sale_batch"

    sales: tuple[Sale, ...]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A sale the receiver refuses for good, with the reason."""

    sale_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ack:
    """Reply to a sale_batch, sent only after the receiver's commit."""

    TYPE: ClassVar[str] = "ack"

    accepted: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = ()


@dataclass(frozen=True, slots=True)
class MasterSnapshot:
    """Every row of every master-data table at one version."""

    TYPE: ClassVar[str] = "master_snapshot"

    version: int
    tables: dict[str, tuple[Row, ...]] = field(default_factory=dict)
    checksum: str = ""
    """replica_checksum() of the tables; "" when the sender did not compute one."""


@dataclass(frozen=True, slots=True)
class MasterDelta:
    """Master-data changes from one version to a later one."""

    TYPE: ClassVar[str] = "master_delta"

    from_version: int
    to_version: int
    upserts: dict[str, tuple[Row, ...]] = field(default_factory=dict)
    deletes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    checksum: str = ""
    """replica_checksum() of the whole replica after applying the delta; "" if not computed."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Health of a register or store node."""

    TYPE: ClassVar[str] = "heartbeat"

    node_id: str
    role: str
    store_id: str
    sent_at: datetime
    last_seq: int = 0
    queue_depth: int = 0
    oldest_queued_at: datetime | None = None
    master_version: int = 0
    devices: dict[str, str] = field(default_factory=dict)


Message = SaleBatch | Ack | MasterSnapshot | MasterDelta | Heartbeat


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded message with its protocol version, type name, sender node and send time."""

    v: int
    type: str
    sender: str
    sent_at: datetime
    message: Message
