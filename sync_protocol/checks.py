"""Semantic checks of messages, shared by encode and decode, and how errors name a field."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgpack

from .errors import MalformedMessage
from .messages import (
    Heartbeat,
    LoyaltyMovement,
    MasterDelta,
    MasterSnapshot,
    Payment,
    Sale,
    SaleOffer,
    SalePass,
    SalePromotion,
    SeenSeq,
)

__all__ = [
    "CHECKS",
    "HASH_RE",
    "MOVEMENT_KINDS",
    "Path",
    "expected",
    "fmt_path",
    "is_canonical_uuid",
    "percent_ok",
    "wire_name",
]

_HEARTBEAT_ROLES = ("register", "store")
MOVEMENT_KINDS = ("accrue", "spend")

Path = tuple[str | int, ...]

_WIRE_NAMES: dict[type, str] = {
    dict: "map",
    list: "array",
    tuple: "array",
    type(None): "nil",
    bytes: "bin",
    bytearray: "bin",
    str: "str",
    int: "int",
    bool: "bool",
    float: "float",
    datetime: "timestamp",
    msgpack.ExtType: "ext",
}


def fmt_path(path: Path) -> str:
    """Render a path as `body.sales[3].lines[0].qty_milli`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (part if isinstance(part, str) else repr(part))
    return out


def wire_name(value: object) -> str:
    """Name the wire type of a value for error messages."""
    return _WIRE_NAMES.get(type(value), type(value).__name__)


def expected(path: Path, name: str, value: object) -> MalformedMessage:
    return MalformedMessage(fmt_path(path), f"expected {name}, got {wire_name(value)}", value=value)


def _check_nonempty(value: str, path: Path) -> None:
    if not value:
        raise MalformedMessage(fmt_path(path), "must not be empty", value=value)


def _check_min(value: int, minimum: int, path: Path) -> None:
    if value < minimum:
        raise MalformedMessage(fmt_path(path), f"must be >= {minimum}", value=value)


HASH_RE = re.compile(r"[0-9a-f]{64}")
_PERCENT_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]+)?")
"""A plain decimal (no sign, exponent or spaces); percent_ok also caps it at 100."""
_HUNDRED = Decimal(100)


def percent_ok(value: str) -> bool:
    return _PERCENT_RE.fullmatch(value) is not None and Decimal(value) <= _HUNDRED


def _check_sale(sale: Sale, path: Path) -> None:
    try:
        canonical = str(uuid.UUID(sale.sale_id))
    except ValueError:
        canonical = ""
    if canonical != sale.sale_id:
        raise MalformedMessage(
            fmt_path((*path, "sale_id")),
            "expected a canonical lower-case UUID",
            value=sale.sale_id,
            hint="use str(uuid.uuid4())",
        )
    _check_nonempty(sale.store_id, (*path, "store_id"))
    _check_nonempty(sale.register_id, (*path, "register_id"))
    _check_min(sale.seq, 1, (*path, "seq"))
    _check_min(sale.promo_version, 0, (*path, "promo_version"))
    if sale.prev_hash and not HASH_RE.fullmatch(sale.prev_hash):
        raise MalformedMessage(
            fmt_path((*path, "prev_hash")),
            'expected "" (first sale of a register) or 64 lower-case hex digits',
            value=sale.prev_hash[:80],
            hint="use sync_protocol.chain_hash(previous_sale)",
        )
    for name in ("coupons_redeemed", "coupons_issued", "segments", "shown_messages"):
        for i, code in enumerate(getattr(sale, name)):
            _check_nonempty(code, (*path, name, i))
    if sale.return_of is not None and (
        not is_canonical_uuid(sale.return_of) or sale.return_of == sale.sale_id
    ):
        raise MalformedMessage(
            fmt_path((*path, "return_of")),
            "expected the canonical lower-case UUID of another sale",
            value=sale.return_of[:80],
        )
    seen: set[int] = set()
    for i, line in enumerate(sale.lines):
        if line.line_no in seen:
            raise MalformedMessage(
                fmt_path((*path, "lines", i, "line_no")), "duplicate line_no", value=line.line_no
            )
        seen.add(line.line_no)
    subtotal = sum(line.amount_minor for line in sale.lines)
    if sale.subtotal_minor != subtotal:
        raise MalformedMessage(
            fmt_path((*path, "subtotal_minor")),
            f"is {sale.subtotal_minor} but the lines' amount_minor sum to {subtotal}",
        )
    discount = sum(d.amount_minor for line in sale.lines for d in line.discounts)
    if sale.discount_minor != discount:
        raise MalformedMessage(
            fmt_path((*path, "discount_minor")),
            f"is {sale.discount_minor} but the line discounts sum to {discount}",
        )
    if sale.total_minor != subtotal - discount:
        raise MalformedMessage(
            fmt_path((*path, "total_minor")),
            f"is {sale.total_minor} but subtotal_minor - discount_minor is {subtotal - discount}",
        )
    paid = sum(p.amount_minor for p in sale.payments)
    if paid != sale.total_minor:
        raise MalformedMessage(
            fmt_path((*path, "payments")),
            f"sum to {paid} but total_minor is {sale.total_minor}",
        )


def _check_offer(offer: SaleOffer, path: Path) -> None:
    _check_nonempty(offer.offer_id, (*path, "offer_id"))
    for i, product_id in enumerate(offer.product_ids):
        _check_nonempty(product_id, (*path, "product_ids", i))
    if not percent_ok(offer.percent):
        raise MalformedMessage(
            fmt_path((*path, "percent")),
            "expected a decimal string from 0 to 100",
            value=offer.percent[:80],
            hint='digits with an optional fraction, e.g. "12.5" (format(Decimal, "f"))',
        )


def _check_promotion(promotion: SalePromotion, path: Path) -> None:
    _check_nonempty(promotion.promotion_id, (*path, "promotion_id"))
    _check_min(promotion.qty_milli, 0, (*path, "qty_milli"))


def _check_pass(sale_pass: SalePass, path: Path) -> None:
    _check_nonempty(sale_pass.promotion_id, (*path, "promotion_id"))
    _check_nonempty(sale_pass.product_id, (*path, "product_id"))
    _check_min(sale_pass.units, 0, (*path, "units"))
    _check_min(sale_pass.used, 0, (*path, "used"))
    _check_min(sale_pass.used_before, 0, (*path, "used_before"))
    if sale_pass.valid_until <= sale_pass.valid_from:
        raise MalformedMessage(
            fmt_path((*path, "valid_until")),
            "expected a time after valid_from",
            value=sale_pass.valid_until.isoformat(),
        )


def _check_seen(seen: SeenSeq, path: Path) -> None:
    _check_nonempty(seen.register_id, (*path, "register_id"))
    _check_min(seen.seq, 1, (*path, "seq"))


def _check_payment(payment: Payment, path: Path) -> None:
    _check_nonempty(payment.method, (*path, "method"))


def _check_movement(movement: LoyaltyMovement, path: Path) -> None:
    _check_nonempty(movement.wallet, (*path, "wallet"))
    if movement.kind not in MOVEMENT_KINDS:
        raise MalformedMessage(
            fmt_path((*path, "kind")),
            f"expected one of {', '.join(MOVEMENT_KINDS)}",
            value=movement.kind,
        )
    _check_min(movement.amount, 0, (*path, "amount"))


def _check_heartbeat(beat: Heartbeat, path: Path) -> None:
    _check_nonempty(beat.node_id, (*path, "node_id"))
    if beat.role not in _HEARTBEAT_ROLES:
        raise MalformedMessage(
            fmt_path((*path, "role")),
            f"expected one of {', '.join(_HEARTBEAT_ROLES)}",
            value=beat.role,
        )
    _check_min(beat.last_seq, 0, (*path, "last_seq"))
    _check_min(beat.queue_depth, 0, (*path, "queue_depth"))
    _check_min(beat.master_version, 0, (*path, "master_version"))


def _check_snapshot(snapshot: MasterSnapshot, path: Path) -> None:
    _check_min(snapshot.version, 0, (*path, "version"))


def _check_delta(delta: MasterDelta, path: Path) -> None:
    _check_min(delta.from_version, 0, (*path, "from_version"))
    _check_min(delta.to_version, delta.from_version, (*path, "to_version"))


CHECKS: dict[type, Callable[[Any, Path], None]] = {
    Sale: _check_sale,
    SaleOffer: _check_offer,
    SalePromotion: _check_promotion,
    SalePass: _check_pass,
    SeenSeq: _check_seen,
    Payment: _check_payment,
    LoyaltyMovement: _check_movement,
    Heartbeat: _check_heartbeat,
    MasterSnapshot: _check_snapshot,
    MasterDelta: _check_delta,
}


def is_canonical_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
