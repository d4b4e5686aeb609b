"""Fast paths for sales, both ways, checked against the typed walk.

Sales are most of the traffic and all of the storage: the Center encodes every received sale
for its row, fingerprint and chain hash. The typed walk (walk.py) pays for a field path and a
function call per field; these hand-written paths make the same checks inline. On anything
they do not handle (a wrong type, a failed check, a value msgpack refuses, a class whose
fields changed) they raise Unusual and the typed walk runs from the start instead, so every
error, with its field path, still comes from the walk, and the bytes and objects produced are
the walk's (tests/sync_protocol/test_protocol_fast.py compares them on generated sales).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from datetime import UTC, datetime
from typing import Any

from .checks import HASH_RE, MOVEMENT_KINDS, percent_ok
from .messages import (
    LineDiscount,
    LoyaltyMovement,
    Payment,
    Sale,
    SaleBatch,
    SaleLine,
    SaleOffer,
    SalePass,
    SalePromotion,
    SeenSeq,
)
from .packing import packer

__all__ = [
    "BATCH_DEPTH",
    "SALE_DEPTH",
    "Unusual",
    "is_canonical",
    "layout_ok",
    "pack_wire",
    "read_datetime",
    "read_sale",
    "sale_wire",
]


class Unusual(Exception):
    """A fast path met input it does not handle; the typed walk decides."""


_REQUIRED_FIELD = dataclasses.MISSING
_FAST_LAYOUT: dict[type, tuple[tuple[str, Any], ...]] = {
    LineDiscount: (("rule_id", _REQUIRED_FIELD), ("amount_minor", _REQUIRED_FIELD)),
    SaleLine: (
        ("line_no", _REQUIRED_FIELD),
        ("product_id", _REQUIRED_FIELD),
        ("qty_milli", _REQUIRED_FIELD),
        ("unit_price_minor", _REQUIRED_FIELD),
        ("amount_minor", _REQUIRED_FIELD),
        ("discounts", ()),
        ("weighed", False),
        ("known_product", True),
        ("certificate_code", ""),
    ),
    Payment: (("method", _REQUIRED_FIELD), ("amount_minor", _REQUIRED_FIELD), ("code", "")),
    SaleOffer: (
        ("offer_id", _REQUIRED_FIELD),
        ("product_ids", _REQUIRED_FIELD),
        ("percent", _REQUIRED_FIELD),
    ),
    SalePromotion: (("promotion_id", _REQUIRED_FIELD), ("qty_milli", 0)),
    SalePass: (
        ("promotion_id", _REQUIRED_FIELD),
        ("product_id", _REQUIRED_FIELD),
        ("valid_from", _REQUIRED_FIELD),
        ("valid_until", _REQUIRED_FIELD),
        ("units", _REQUIRED_FIELD),
        ("used", 0),
        ("used_before", 0),
        ("opened", False),
    ),
    SeenSeq: (("register_id", _REQUIRED_FIELD), ("seq", _REQUIRED_FIELD)),
    LoyaltyMovement: (
        ("wallet", _REQUIRED_FIELD),
        ("kind", _REQUIRED_FIELD),
        ("amount", _REQUIRED_FIELD),
        ("rule_id", ""),
        ("active_from", None),
        ("expires_at", None),
    ),
    Sale: (
        ("sale_id", _REQUIRED_FIELD),
        ("store_id", _REQUIRED_FIELD),
        ("register_id", _REQUIRED_FIELD),
        ("seq", _REQUIRED_FIELD),
        ("opened_at", _REQUIRED_FIELD),
        ("closed_at", _REQUIRED_FIELD),
        ("card_no", _REQUIRED_FIELD),
        ("lines", _REQUIRED_FIELD),
        ("payments", _REQUIRED_FIELD),
        ("loyalty", _REQUIRED_FIELD),
        ("subtotal_minor", _REQUIRED_FIELD),
        ("discount_minor", _REQUIRED_FIELD),
        ("total_minor", _REQUIRED_FIELD),
        ("promo_version", _REQUIRED_FIELD),
        ("prev_hash", ""),
        ("messages", ()),
        ("coupons_redeemed", ()),
        ("coupons_issued", ()),
        ("return_of", None),
        ("segments", ()),
        ("personal_offers", ()),
        ("promotions", ()),
        ("state_seen", ()),
        ("passes", ()),
        ("shown_messages", ()),
    ),
    SaleBatch: (("sales", _REQUIRED_FIELD),),
}
"""The fields (name, default) the fast paths are written for, in declaration order."""

_DISCOUNT_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[LineDiscount])
_LINE_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[SaleLine])
_PAYMENT_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[Payment])
_MOVEMENT_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[LoyaltyMovement])
_OFFER_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[SaleOffer])
_PROMOTION_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[SalePromotion])
_SEEN_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[SeenSeq])
_SALE_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[Sale])
_RARE_KEYS = frozenset({"passes", "shown_messages"})
SALE_DEPTH = 5  # sale map, lines, line map, discounts, discount map (offers: 4)
BATCH_DEPTH = 3 + SALE_DEPTH  # envelope, body, sales, then a sale
_LO = -(2**63)
_HI = 2**63 - 1
"""Every integer of a sale fits a signed 64-bit column; beyond it the typed walk names it."""
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""Exactly the strings s with str(uuid.UUID(s)) == s."""


@functools.cache
def layout_ok() -> bool:
    """True while the message classes still have the fields the fast paths were written for."""
    for cls, layout in _FAST_LAYOUT.items():
        fields = dataclasses.fields(cls)
        if len(fields) != len(layout):
            return False
        for f, (name, default) in zip(fields, layout, strict=True):
            if f.name != name or f.default_factory is not dataclasses.MISSING:
                return False
            if f.default is not default and f.default != default:
                return False
    return True


def _fast_datetime(value: Any) -> datetime:
    if type(value) is datetime:
        tz = value.tzinfo
        if tz is UTC:
            return value
        if tz is not None and value.utcoffset() is not None:
            return value.astimezone(UTC)
    raise Unusual


def _fast_strs(values: Any, nonempty: bool) -> Any:
    """A tuple or list of str as is (msgpack packs both as an array)."""
    if type(values) is not tuple and type(values) is not list:
        raise Unusual
    for value in values:
        if type(value) is not str or (nonempty and not value) or "\x00" in value:
            raise Unusual
    return values


def _fast_lines(lines: Any, omit: bool) -> tuple[list[dict[str, Any]], int, int]:
    """Wire maps of a sale's lines, the sum of their amounts and of their discounts."""
    if type(lines) is not tuple and type(lines) is not list:
        raise Unusual
    out = []
    seen = set()
    subtotal = 0
    discount = 0
    for line in lines:
        if type(line) is not SaleLine:
            raise Unusual
        line_no = line.line_no
        product_id = line.product_id
        qty = line.qty_milli
        price = line.unit_price_minor
        amount = line.amount_minor
        discounts = line.discounts
        weighed = line.weighed
        known = line.known_product
        certificate = line.certificate_code
        if (
            type(certificate) is not str
            or "\x00" in certificate
            or type(line_no) is not int
            or type(product_id) is not str
            or "\x00" in product_id
            or type(qty) is not int
            or type(price) is not int
            or type(amount) is not int
            or (type(discounts) is not tuple and type(discounts) is not list)
            or (weighed is not True and weighed is not False)
            or (known is not True and known is not False)
            or line_no in seen
            or not _LO <= line_no <= _HI
            or not _LO <= qty <= _HI
            or not _LO <= price <= _HI
            or not _LO <= amount <= _HI
        ):
            raise Unusual
        seen.add(line_no)
        subtotal += amount
        wire = {
            "line_no": line_no,
            "product_id": product_id,
            "qty_milli": qty,
            "unit_price_minor": price,
            "amount_minor": amount,
        }
        if discounts or not omit:
            items = []
            for item in discounts:
                if type(item) is not LineDiscount:
                    raise Unusual
                rule_id = item.rule_id
                item_amount = item.amount_minor
                if (
                    type(rule_id) is not str
                    or "\x00" in rule_id
                    or type(item_amount) is not int
                    or not _LO <= item_amount <= _HI
                ):
                    raise Unusual
                discount += item_amount
                items.append({"rule_id": rule_id, "amount_minor": item_amount})
            wire["discounts"] = items
        if weighed or not omit:
            wire["weighed"] = weighed
        if not known or not omit:
            wire["known_product"] = known
        # Left out when empty even in envelopes (metadata omit_empty).
        if certificate:
            wire["certificate_code"] = certificate
        out.append(wire)
    return out, subtotal, discount


def _fast_payments(payments: Any) -> tuple[list[dict[str, Any]], int]:
    """Wire maps of a sale's payments and their sum."""
    if type(payments) is not tuple and type(payments) is not list:
        raise Unusual
    out = []
    paid = 0
    for payment in payments:
        if type(payment) is not Payment:
            raise Unusual
        method = payment.method
        amount = payment.amount_minor
        code = payment.code
        if (
            type(code) is not str
            or "\x00" in code
            or type(method) is not str
            or not method
            or "\x00" in method
            or type(amount) is not int
            or not _LO <= amount <= _HI
        ):
            raise Unusual
        paid += amount
        wire = {"method": method, "amount_minor": amount}
        if code:
            wire["code"] = code
        out.append(wire)
    return out, paid


def _fast_movements(movements: Any, omit: bool) -> list[dict[str, Any]]:
    """Wire maps of a sale's loyalty movements."""
    if type(movements) is not tuple and type(movements) is not list:
        raise Unusual
    out = []
    for movement in movements:
        if type(movement) is not LoyaltyMovement:
            raise Unusual
        wallet = movement.wallet
        kind = movement.kind
        amount = movement.amount
        rule_id = movement.rule_id
        if (
            type(wallet) is not str
            or not wallet
            or "\x00" in wallet
            or type(kind) is not str
            or kind not in MOVEMENT_KINDS
            or type(amount) is not int
            or not 0 <= amount <= _HI
            or type(rule_id) is not str
            or "\x00" in rule_id
        ):
            raise Unusual
        wire: dict[str, Any] = {"wallet": wallet, "kind": kind, "amount": amount}
        if rule_id or not omit:
            wire["rule_id"] = rule_id
        active_from = movement.active_from
        if active_from is not None:
            wire["active_from"] = _fast_datetime(active_from)
        elif not omit:
            wire["active_from"] = None
        expires_at = movement.expires_at
        if expires_at is not None:
            wire["expires_at"] = _fast_datetime(expires_at)
        elif not omit:
            wire["expires_at"] = None
        out.append(wire)
    return out


def _fast_offers(offers: Any) -> Any:
    """Wire maps of a sale's personal offers."""
    if type(offers) is not tuple and type(offers) is not list:
        raise Unusual
    out = []
    for offer in offers:
        if type(offer) is not SaleOffer:
            raise Unusual
        offer_id = offer.offer_id
        percent = offer.percent
        if (
            type(offer_id) is not str
            or not offer_id
            or "\x00" in offer_id
            or type(percent) is not str
            or not percent_ok(percent)
        ):
            raise Unusual
        product_ids = _fast_strs(offer.product_ids, True)
        out.append({"offer_id": offer_id, "product_ids": product_ids, "percent": percent})
    return out


def _fast_promotions(promotions: Any, omit: bool) -> Any:
    """Wire maps of the promotions a sale fired (qty_milli 0 left out when omitting)."""
    if type(promotions) is not tuple and type(promotions) is not list:
        raise Unusual
    out = []
    for item in promotions:
        if type(item) is not SalePromotion:
            raise Unusual
        promotion_id = item.promotion_id
        qty = item.qty_milli
        if (
            type(promotion_id) is not str
            or not promotion_id
            or type(qty) is not int
            or not 0 <= qty <= _HI
        ):
            raise Unusual
        wire: dict[str, Any] = {"promotion_id": promotion_id}
        if qty or not omit:
            wire["qty_milli"] = qty
        out.append(wire)
    return out


def _fast_seen(seen: Any) -> Any:
    """Wire maps of a sale's state basis (register_id, seq)."""
    if type(seen) is not tuple and type(seen) is not list:
        raise Unusual
    out = []
    for item in seen:
        if type(item) is not SeenSeq:
            raise Unusual
        register_id = item.register_id
        seq = item.seq
        if type(register_id) is not str or not register_id or "\x00" in register_id:
            raise Unusual
        if type(seq) is not int or not 1 <= seq <= _HI:
            raise Unusual
        out.append({"register_id": register_id, "seq": seq})
    return out


def _check_usual_head(
    sale_id: Any,
    store_id: Any,
    register_id: Any,
    seq: Any,
    card_no: Any,
    subtotal: Any,
    discount: Any,
    total: Any,
    promo_version: Any,
    prev_hash: Any,
    return_of: Any,
) -> None:
    """The fast paths' check of a sale's scalar fields, both ways: Unusual sends the sale to
    the typed walk, which names what is wrong."""
    if (
        type(sale_id) is not str
        or type(store_id) is not str
        or not store_id
        or "\x00" in store_id
        or type(register_id) is not str
        or not register_id
        or "\x00" in register_id
        or type(seq) is not int
        or not 1 <= seq <= _HI
        or (card_no is not None and (type(card_no) is not str or "\x00" in card_no))
        or type(subtotal) is not int
        or type(discount) is not int
        or type(total) is not int
        or type(promo_version) is not int
        or not 0 <= promo_version <= _HI
        or not _LO <= subtotal <= _HI
        or not _LO <= discount <= _HI
        or not _LO <= total <= _HI
        or type(prev_hash) is not str
        or (prev_hash and not HASH_RE.fullmatch(prev_hash))
        or not _UUID_RE.fullmatch(sale_id)
    ):
        raise Unusual
    if return_of is not None and (
        type(return_of) is not str or return_of == sale_id or not _UUID_RE.fullmatch(return_of)
    ):
        raise Unusual


def sale_wire(sale: Any, omit: bool) -> dict[str, Any]:
    """The wire map of a well-formed sale; `omit` leaves out fields equal to their default."""
    if type(sale) is not Sale:
        raise Unusual
    sale_id = sale.sale_id
    store_id = sale.store_id
    register_id = sale.register_id
    seq = sale.seq
    card_no = sale.card_no
    subtotal = sale.subtotal_minor
    discount = sale.discount_minor
    total = sale.total_minor
    promo_version = sale.promo_version
    prev_hash = sale.prev_hash
    return_of = sale.return_of
    _check_usual_head(
        sale_id, store_id, register_id, seq, card_no, subtotal, discount, total,
        promo_version, prev_hash, return_of,
    )  # fmt: skip
    lines, line_sum, discount_sum = _fast_lines(sale.lines, omit)
    payments, paid = _fast_payments(sale.payments)
    if subtotal != line_sum or discount != discount_sum or total != subtotal - discount:
        raise Unusual
    if paid != total:
        raise Unusual
    wire = {
        "sale_id": sale_id,
        "store_id": store_id,
        "register_id": register_id,
        "seq": seq,
        "opened_at": _fast_datetime(sale.opened_at),
        "closed_at": _fast_datetime(sale.closed_at),
        "card_no": card_no,
        "lines": lines,
        "payments": payments,
        "loyalty": _fast_movements(sale.loyalty, omit),
        "subtotal_minor": subtotal,
        "discount_minor": discount,
        "total_minor": total,
        "promo_version": promo_version,
    }
    if prev_hash or not omit:
        wire["prev_hash"] = prev_hash
    messages = _fast_strs(sale.messages, False)
    if messages or not omit:
        wire["messages"] = messages
    redeemed = _fast_strs(sale.coupons_redeemed, True)
    if redeemed or not omit:
        wire["coupons_redeemed"] = redeemed
    issued = _fast_strs(sale.coupons_issued, True)
    if issued or not omit:
        wire["coupons_issued"] = issued
    if return_of is not None or not omit:
        wire["return_of"] = return_of
    # Left out when empty even in envelopes (metadata omit_empty on the Sale fields).
    segments = _fast_strs(sale.segments, True)
    if segments:
        wire["segments"] = segments
    offers = _fast_offers(sale.personal_offers)
    if offers:
        wire["personal_offers"] = offers
    promotions = _fast_promotions(sale.promotions, omit)
    if promotions:
        wire["promotions"] = promotions
    seen = _fast_seen(sale.state_seen)
    if seen:
        wire["state_seen"] = seen
    if sale.passes or sale.shown_messages:
        raise Unusual  # rare (compliment passes, personal messages): the typed walk writes them
    return wire


def pack_wire(wire: Any) -> bytes:
    try:
        data: bytes = packer().pack(wire)
    except (TypeError, ValueError, OverflowError) as exc:
        # An int out of msgpack's range, say: the typed walk names the field.
        raise Unusual from exc
    return data


def read_datetime(value: Any) -> datetime:
    if type(value) is not datetime or value.tzinfo is None:
        raise Unusual
    return value


def _fast_read_strs(values: Any, nonempty: bool) -> tuple[str, ...]:
    if type(values) is not list:
        raise Unusual
    for value in values:
        if type(value) is not str or (nonempty and not value) or "\x00" in value:
            raise Unusual
    return tuple(values)


def _fast_read_lines(raw: Any) -> tuple[tuple[SaleLine, ...], int, int]:
    """Lines from their wire maps, the sum of their amounts and of their discounts."""
    if type(raw) is not list:
        raise Unusual
    out = []
    seen = set()
    subtotal = 0
    discount = 0
    for item in raw:
        if type(item) is not dict or not item.keys() <= _LINE_KEYS:
            raise Unusual
        line_no = item["line_no"]
        product_id = item["product_id"]
        qty = item["qty_milli"]
        price = item["unit_price_minor"]
        amount = item["amount_minor"]
        weighed = item.get("weighed", False)
        known = item.get("known_product", True)
        certificate = item.get("certificate_code", "")
        if (
            type(certificate) is not str
            or "\x00" in certificate
            or type(line_no) is not int
            or type(product_id) is not str
            or "\x00" in product_id
            or type(qty) is not int
            or type(price) is not int
            or type(amount) is not int
            or (weighed is not True and weighed is not False)
            or (known is not True and known is not False)
            or line_no in seen
            or not _LO <= line_no <= _HI
            or not _LO <= qty <= _HI
            or not _LO <= price <= _HI
            or not _LO <= amount <= _HI
        ):
            raise Unusual
        seen.add(line_no)
        subtotal += amount
        discounts: tuple[LineDiscount, ...] = ()
        if "discounts" in item:
            raw_discounts = item["discounts"]
            if type(raw_discounts) is not list:
                raise Unusual
            parts = []
            for part in raw_discounts:
                if type(part) is not dict or not part.keys() <= _DISCOUNT_KEYS:
                    raise Unusual
                rule_id = part["rule_id"]
                part_amount = part["amount_minor"]
                if (
                    type(rule_id) is not str
                    or "\x00" in rule_id
                    or type(part_amount) is not int
                    or not _LO <= part_amount <= _HI
                ):
                    raise Unusual
                discount += part_amount
                parts.append(LineDiscount(rule_id, part_amount))
            discounts = tuple(parts)
        out.append(
            SaleLine(
                line_no, product_id, qty, price, amount, discounts, weighed, known, certificate
            )
        )
    return tuple(out), subtotal, discount


def _fast_read_payments(raw: Any) -> tuple[tuple[Payment, ...], int]:
    if type(raw) is not list:
        raise Unusual
    out = []
    paid = 0
    for item in raw:
        if type(item) is not dict or not item.keys() <= _PAYMENT_KEYS:
            raise Unusual
        method = item["method"]
        amount = item["amount_minor"]
        code = item.get("code", "")
        if (
            type(code) is not str
            or "\x00" in code
            or type(method) is not str
            or not method
            or "\x00" in method
            or type(amount) is not int
            or not _LO <= amount <= _HI
        ):
            raise Unusual
        paid += amount
        out.append(Payment(method, amount, code))
    return tuple(out), paid


def _fast_read_movements(raw: Any) -> tuple[LoyaltyMovement, ...]:
    if type(raw) is not list:
        raise Unusual
    out = []
    for item in raw:
        if type(item) is not dict or not item.keys() <= _MOVEMENT_KEYS:
            raise Unusual
        wallet = item["wallet"]
        kind = item["kind"]
        amount = item["amount"]
        rule_id = item.get("rule_id", "")
        active_from = item.get("active_from")
        expires_at = item.get("expires_at")
        if (
            type(wallet) is not str
            or not wallet
            or "\x00" in wallet
            or type(kind) is not str
            or kind not in MOVEMENT_KINDS
            or type(amount) is not int
            or not 0 <= amount <= _HI
            or type(rule_id) is not str
            or "\x00" in rule_id
        ):
            raise Unusual
        if active_from is not None:
            read_datetime(active_from)
        if expires_at is not None:
            read_datetime(expires_at)
        out.append(LoyaltyMovement(wallet, kind, amount, rule_id, active_from, expires_at))
    return tuple(out)


def _fast_read_offers(raw: Any) -> tuple[SaleOffer, ...]:
    if type(raw) is not list:
        raise Unusual
    out = []
    for item in raw:
        if type(item) is not dict or not item.keys() <= _OFFER_KEYS:
            raise Unusual
        offer_id = item["offer_id"]
        percent = item["percent"]
        if (
            type(offer_id) is not str
            or not offer_id
            or "\x00" in offer_id
            or type(percent) is not str
            or not percent_ok(percent)
        ):
            raise Unusual
        out.append(SaleOffer(offer_id, _fast_read_strs(item["product_ids"], True), percent))
    return tuple(out)


def _fast_read_promotions(raw: Any) -> tuple[SalePromotion, ...]:
    if type(raw) is not list:
        raise Unusual
    out = []
    for item in raw:
        if type(item) is not dict or not item.keys() <= _PROMOTION_KEYS:
            raise Unusual
        promotion_id = item["promotion_id"]
        qty = item.get("qty_milli", 0)
        if (
            type(promotion_id) is not str
            or not promotion_id
            or type(qty) is not int
            or not 0 <= qty <= _HI
        ):
            raise Unusual
        out.append(SalePromotion(promotion_id, qty))
    return tuple(out)


def _fast_read_seen(raw: Any) -> tuple[SeenSeq, ...]:
    if type(raw) is not list:
        raise Unusual
    out = []
    for item in raw:
        if type(item) is not dict or item.keys() != _SEEN_KEYS:
            raise Unusual
        register_id = item["register_id"]
        seq = item["seq"]
        if type(register_id) is not str or not register_id or "\x00" in register_id:
            raise Unusual
        if type(seq) is not int or not 1 <= seq <= _HI:
            raise Unusual
        out.append(SeenSeq(register_id, seq))
    return tuple(out)


def read_sale(raw: Any) -> Sale:
    """A sale from its wire map, when every key is known and every check passes."""
    if type(raw) is not dict or not raw.keys() <= _SALE_KEYS or raw.keys() & _RARE_KEYS:
        raise Unusual  # compliment passes, personal messages: rare, the typed walk reads them
    sale_id = raw["sale_id"]
    store_id = raw["store_id"]
    register_id = raw["register_id"]
    seq = raw["seq"]
    card_no = raw.get("card_no")
    subtotal = raw["subtotal_minor"]
    discount = raw["discount_minor"]
    total = raw["total_minor"]
    promo_version = raw["promo_version"]
    prev_hash = raw.get("prev_hash", "")
    return_of = raw.get("return_of")
    _check_usual_head(
        sale_id, store_id, register_id, seq, card_no, subtotal, discount, total,
        promo_version, prev_hash, return_of,
    )  # fmt: skip
    lines, line_sum, discount_sum = _fast_read_lines(raw["lines"])
    payments, paid = _fast_read_payments(raw["payments"])
    if subtotal != line_sum or discount != discount_sum or total != subtotal - discount:
        raise Unusual
    if paid != total:
        raise Unusual
    return Sale(
        sale_id,
        store_id,
        register_id,
        seq,
        read_datetime(raw["opened_at"]),
        read_datetime(raw["closed_at"]),
        card_no,
        lines,
        payments,
        _fast_read_movements(raw["loyalty"]),
        subtotal,
        discount,
        total,
        promo_version,
        prev_hash,
        _fast_read_strs(raw["messages"], False) if "messages" in raw else (),
        _fast_read_strs(raw["coupons_redeemed"], True) if "coupons_redeemed" in raw else (),
        _fast_read_strs(raw["coupons_issued"], True) if "coupons_issued" in raw else (),
        return_of,
        _fast_read_strs(raw["segments"], True) if "segments" in raw else (),
        _fast_read_offers(raw["personal_offers"]) if "personal_offers" in raw else (),
        _fast_read_promotions(raw["promotions"]) if "promotions" in raw else (),
        _fast_read_seen(raw["state_seen"]) if "state_seen" in raw else (),
    )


# --- canonical form of an unpacked sale ------------------------------------------------------

_NESTED: dict[type, tuple[tuple[str, type], ...]] = {
    Sale: (
        ("lines", SaleLine),
        ("payments", Payment),
        ("loyalty", LoyaltyMovement),
        ("personal_offers", SaleOffer),
        ("promotions", SalePromotion),
        ("state_seen", SeenSeq),
        ("passes", SalePass),
    ),
    SaleLine: (("discounts", LineDiscount),),
    LineDiscount: (),
    Payment: (),
    LoyaltyMovement: (),
    SaleOffer: (),
    SalePromotion: (),
    SalePass: (),
    SeenSeq: (),
}
"""For each sale part, its fields that hold arrays of part maps, and the class of those parts."""
_ABSENT = object()


def _canonical_layout(cls: type) -> tuple[frozenset[tuple[str, ...]], tuple[tuple[str, Any], ...]]:
    """Every key order encode_sale can write for `cls`, and its optional fields' wire defaults."""
    layout = _FAST_LAYOUT[cls]
    optional = tuple(
        (name, [] if default == () else default)
        for name, default in layout
        if default is not _REQUIRED_FIELD
    )
    orders = set()
    for mask in range(2 ** len(optional)):
        left_out = {name for i, (name, _) in enumerate(optional) if mask >> i & 1}
        orders.add(tuple(name for name, _ in layout if name not in left_out))
    return frozenset(orders), optional


_CANONICAL = {cls: _canonical_layout(cls) for cls in _NESTED}


def _canonical_map(raw: Any, cls: type) -> bool:
    # The keys, as one tuple, must be in declaration order with every required field (one set
    # lookup), and a field present must not hold its default (encode_sale leaves those out).
    orders, optional = _CANONICAL[cls]
    if type(raw) is not dict or tuple(raw) not in orders:
        return False
    for name, default in optional:
        value = raw.get(name, _ABSENT)
        if type(value) is type(default) and value == default:
            return False
    for name, part in _NESTED[cls]:
        for item in raw.get(name, ()):
            if not _canonical_map(item, part):
                return False
    return True


def is_canonical(raw: Any, data: bytes) -> bool:
    """True when `data`, which unpacks to `raw` and decodes as a valid sale, is already exactly
    what encode_sale writes for that sale (so it can be stored without encoding it again).

    Canonical means: fields in declaration order, defaults left out, no unknown keys (checked
    here, as sale_wire(sale, omit=True) builds them) and msgpack's shortest forms (checked by
    packing `raw` again: this thread's Packer writes what encode_sale writes).
    """
    if not layout_ok() or type(raw) is not dict or not _canonical_map(raw, Sale):
        return False
    try:
        return bool(packer().pack(raw) == data)
    except (TypeError, ValueError, OverflowError):
        return False
