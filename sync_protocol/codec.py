"""Encode and decode sync_protocol envelopes, and canonical sales for storage."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import threading
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgpack

from .errors import (
    MalformedMessage,
    PayloadTooLarge,
    UnexpectedMessageType,
    UnknownMessageType,
    UnsupportedVersion,
)
from .messages import (
    Ack,
    Envelope,
    Heartbeat,
    LineDiscount,
    LoyaltyMovement,
    MasterDelta,
    MasterSnapshot,
    Message,
    Payment,
    Sale,
    SaleBatch,
    SaleLine,
    SaleOffer,
)

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_LIMITS",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "Limits",
    "chain_hash",
    "decode",
    "decode_sale",
    "encode",
    "encode_sale",
    "sale_fingerprint",
]

PROTOCOL_VERSION = 1
CONTENT_TYPE = "application/x-msgpack"
MAX_SENDER_LEN = 64

MESSAGE_TYPES: dict[str, type[Any]] = {
    cls.TYPE: cls for cls in (SaleBatch, Ack, MasterSnapshot, MasterDelta, Heartbeat)
}

# A msgpack Timestamp (ext type -1) is at most 12 bytes; no other ext type is used.
_MAX_EXT_LEN = 12
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_HEARTBEAT_ROLES = ("register", "store")
_MOVEMENT_KINDS = ("accrue", "spend")


@dataclass(frozen=True, slots=True)
class Limits:
    """Decoding limits; anything beyond them is rejected before or while unpacking."""

    max_bytes: int = 8 * 1024 * 1024
    max_depth: int = 16
    max_str_len: int = 4096
    max_array_len: int = 200_000
    max_map_len: int = 1024
    max_bin_len: int = 1024 * 1024

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{f.name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = Limits()

Path = tuple[str | int, ...]
Decoder = Callable[[Any, Path], Any]
Encoder = Callable[[Any, Path, bool], Any]

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


def _fmt(path: Path) -> str:
    """Render a path as `body.sales[3].lines[0].qty_milli`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (part if isinstance(part, str) else repr(part))
    return out


def _got(value: object) -> str:
    """Name the wire type of a value for error messages."""
    return _WIRE_NAMES.get(type(value), type(value).__name__)


def _expected(path: Path, name: str, value: object) -> MalformedMessage:
    return MalformedMessage(_fmt(path), f"expected {name}, got {_got(value)}", value=value)


# --- semantic checks, shared by encode and decode -------------------------------------------


def _check_nonempty(value: str, path: Path) -> None:
    if not value:
        raise MalformedMessage(_fmt(path), "must not be empty", value=value)


def _check_min(value: int, minimum: int, path: Path) -> None:
    if value < minimum:
        raise MalformedMessage(_fmt(path), f"must be >= {minimum}", value=value)


_HASH_RE = re.compile(r"[0-9a-f]{64}")
_PERCENT_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]+)?")
"""A plain decimal (no sign, exponent or spaces); _percent_ok also caps it at 100."""
_HUNDRED = Decimal(100)


def _percent_ok(value: str) -> bool:
    return _PERCENT_RE.fullmatch(value) is not None and Decimal(value) <= _HUNDRED


def _check_sale(sale: Sale, path: Path) -> None:
    try:
        canonical = str(uuid.UUID(sale.sale_id))
    except ValueError:
        canonical = ""
    if canonical != sale.sale_id:
        raise MalformedMessage(
            _fmt((*path, "sale_id")),
            "expected a canonical lower-case UUID",
            value=sale.sale_id,
            hint="use str(uuid.uuid4())",
        )
    _check_nonempty(sale.store_id, (*path, "store_id"))
    _check_nonempty(sale.register_id, (*path, "register_id"))
    _check_min(sale.seq, 1, (*path, "seq"))
    _check_min(sale.promo_version, 0, (*path, "promo_version"))
    if sale.prev_hash and not _HASH_RE.fullmatch(sale.prev_hash):
        raise MalformedMessage(
            _fmt((*path, "prev_hash")),
            'expected "" (first sale of a register) or 64 lower-case hex digits',
            value=sale.prev_hash[:80],
            hint="use sync_protocol.chain_hash(previous_sale)",
        )
    for name in ("coupons_redeemed", "coupons_issued", "segments"):
        for i, code in enumerate(getattr(sale, name)):
            _check_nonempty(code, (*path, name, i))
    if sale.return_of is not None and (
        not _is_canonical_uuid(sale.return_of) or sale.return_of == sale.sale_id
    ):
        raise MalformedMessage(
            _fmt((*path, "return_of")),
            "expected the canonical lower-case UUID of another sale",
            value=sale.return_of[:80],
        )
    seen: set[int] = set()
    for i, line in enumerate(sale.lines):
        if line.line_no in seen:
            raise MalformedMessage(
                _fmt((*path, "lines", i, "line_no")), "duplicate line_no", value=line.line_no
            )
        seen.add(line.line_no)
    subtotal = sum(line.amount_minor for line in sale.lines)
    if sale.subtotal_minor != subtotal:
        raise MalformedMessage(
            _fmt((*path, "subtotal_minor")),
            f"is {sale.subtotal_minor} but the lines' amount_minor sum to {subtotal}",
        )
    discount = sum(d.amount_minor for line in sale.lines for d in line.discounts)
    if sale.discount_minor != discount:
        raise MalformedMessage(
            _fmt((*path, "discount_minor")),
            f"is {sale.discount_minor} but the line discounts sum to {discount}",
        )
    if sale.total_minor != subtotal - discount:
        raise MalformedMessage(
            _fmt((*path, "total_minor")),
            f"is {sale.total_minor} but subtotal_minor - discount_minor is {subtotal - discount}",
        )
    paid = sum(p.amount_minor for p in sale.payments)
    if paid != sale.total_minor:
        raise MalformedMessage(
            _fmt((*path, "payments")),
            f"sum to {paid} but total_minor is {sale.total_minor}",
        )


def _check_offer(offer: SaleOffer, path: Path) -> None:
    _check_nonempty(offer.offer_id, (*path, "offer_id"))
    for i, product_id in enumerate(offer.product_ids):
        _check_nonempty(product_id, (*path, "product_ids", i))
    if not _percent_ok(offer.percent):
        raise MalformedMessage(
            _fmt((*path, "percent")),
            "expected a decimal string from 0 to 100",
            value=offer.percent[:80],
            hint='digits with an optional fraction, e.g. "12.5" (format(Decimal, "f"))',
        )


def _check_payment(payment: Payment, path: Path) -> None:
    _check_nonempty(payment.method, (*path, "method"))


def _check_movement(movement: LoyaltyMovement, path: Path) -> None:
    _check_nonempty(movement.wallet, (*path, "wallet"))
    if movement.kind not in _MOVEMENT_KINDS:
        raise MalformedMessage(
            _fmt((*path, "kind")),
            f"expected one of {', '.join(_MOVEMENT_KINDS)}",
            value=movement.kind,
        )
    _check_min(movement.amount, 0, (*path, "amount"))


def _check_heartbeat(beat: Heartbeat, path: Path) -> None:
    _check_nonempty(beat.node_id, (*path, "node_id"))
    if beat.role not in _HEARTBEAT_ROLES:
        raise MalformedMessage(
            _fmt((*path, "role")), f"expected one of {', '.join(_HEARTBEAT_ROLES)}", value=beat.role
        )
    _check_min(beat.last_seq, 0, (*path, "last_seq"))
    _check_min(beat.queue_depth, 0, (*path, "queue_depth"))
    _check_min(beat.master_version, 0, (*path, "master_version"))


def _check_snapshot(snapshot: MasterSnapshot, path: Path) -> None:
    _check_min(snapshot.version, 0, (*path, "version"))


def _check_delta(delta: MasterDelta, path: Path) -> None:
    _check_min(delta.from_version, 0, (*path, "from_version"))
    _check_min(delta.to_version, delta.from_version, (*path, "to_version"))


_CHECKS: dict[type, Callable[[Any, Path], None]] = {
    Sale: _check_sale,
    SaleOffer: _check_offer,
    Payment: _check_payment,
    LoyaltyMovement: _check_movement,
    Heartbeat: _check_heartbeat,
    MasterSnapshot: _check_snapshot,
    MasterDelta: _check_delta,
}


# --- typed walk: schema compiled once per dataclass -----------------------------------------

_REQUIRED = 0
_DEFAULT = 1
_FACTORY = 2
_NONE = 3  # an `X | None` field without a dataclass default: missing means None
_NO_DEFAULT = object()


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """Return (inner type, True) for `X | None`, else (tp, False)."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        raise TypeError(f"unsupported union {tp!r}")
    return tp, False


def _field_specs(cls: type) -> list[tuple[str, Any, int, Any]]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if f.default is not dataclasses.MISSING:
            specs.append((f.name, tp, _DEFAULT, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            specs.append((f.name, tp, _FACTORY, f.default_factory))
        elif _split_optional(tp)[1]:
            specs.append((f.name, tp, _NONE, None))
        else:
            specs.append((f.name, tp, _REQUIRED, None))
    return specs


def _dec_int(value: Any, path: Path) -> int:
    if type(value) is not int:
        raise _expected(path, "int", value)
    return value


def _dec_str(value: Any, path: Path) -> str:
    if type(value) is not str:
        raise _expected(path, "str", value)
    return value


def _dec_bool(value: Any, path: Path) -> bool:
    if type(value) is not bool:
        raise _expected(path, "bool", value)
    return value


def _dec_datetime(value: Any, path: Path) -> datetime:
    if type(value) is not datetime or value.tzinfo is None:
        raise _expected(path, "timestamp", value)
    return value


def _dec_any(value: Any, path: Path) -> Any:
    kind = type(value)
    if kind is list:
        for i, item in enumerate(value):
            _dec_any(item, (*path, i))
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise MalformedMessage(
                    _fmt(path), f"map keys must be str, got {_got(key)}", value=key
                )
            _dec_any(item, (*path, key))
    elif kind not in (str, int, bool, float, bytes, type(None), datetime):
        raise MalformedMessage(_fmt(path), f"unsupported value of type {_got(value)}")
    return value


_DECODERS: dict[Any, Decoder] = {
    int: _dec_int,
    str: _dec_str,
    bool: _dec_bool,
    datetime: _dec_datetime,
    Any: _dec_any,
    dict: _dec_any,
}


def _decoder(tp: Any) -> Decoder:
    """Compile (and cache) a function that validates a decoded msgpack value as `tp`."""
    cached = _DECODERS.get(tp)
    if cached is not None:
        return cached
    inner, optional = _split_optional(tp)
    origin = typing.get_origin(tp)
    conv: Decoder
    if optional:
        inner_conv = _decoder(inner)

        def conv(value: Any, path: Path) -> Any:
            return None if value is None else inner_conv(value, path)

    elif origin is tuple:
        item_conv = _decoder(typing.get_args(tp)[0])

        def conv(value: Any, path: Path) -> Any:
            if type(value) is not list:
                raise _expected(path, "array", value)
            return tuple([item_conv(item, (*path, i)) for i, item in enumerate(value)])

    elif origin is dict:
        value_conv = _decoder(typing.get_args(tp)[1])

        def conv(value: Any, path: Path) -> Any:
            if type(value) is not dict:
                raise _expected(path, "map", value)
            out = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise MalformedMessage(
                        _fmt(path), f"map keys must be str, got {_got(key)}", value=key
                    )
                out[key] = value_conv(item, (*path, key))
            return out

    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        conv = _dataclass_decoder(tp)
    else:
        raise TypeError(f"no decoder for {tp!r}")
    _DECODERS[tp] = conv
    return conv


def _dataclass_decoder(cls: type) -> Decoder:
    specs = [(name, _decoder(tp), kind, default) for name, tp, kind, default in _field_specs(cls)]
    check = _CHECKS.get(cls)

    def conv(value: Any, path: Path) -> Any:
        if type(value) is not dict:
            raise _expected(path, "map", value)
        kwargs: dict[str, Any] = {}
        for name, field_conv, kind, default in specs:
            if name in value:
                kwargs[name] = field_conv(value[name], (*path, name))
            elif kind == _REQUIRED:
                raise MalformedMessage(_fmt((*path, name)), "required field missing")
            elif kind == _FACTORY:
                kwargs[name] = default()
            else:
                kwargs[name] = default
        obj = cls(**kwargs)
        if check is not None:
            check(obj, path)
        return obj

    return conv


def _enc_int(value: Any, path: Path, omit: bool) -> int:
    if type(value) is not int:
        raise _expected(path, "int", value)
    if not _INT_MIN <= value <= _INT_MAX:
        raise MalformedMessage(_fmt(path), "integer out of msgpack range", value=value)
    return value


def _enc_str(value: Any, path: Path, omit: bool) -> str:
    if type(value) is not str:
        raise _expected(path, "str", value)
    return value


def _enc_bool(value: Any, path: Path, omit: bool) -> bool:
    if type(value) is not bool:
        raise _expected(path, "bool", value)
    return value


def _enc_datetime(value: Any, path: Path, omit: bool) -> datetime:
    if not isinstance(value, datetime):
        raise _expected(path, "datetime", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise MalformedMessage(
            _fmt(path),
            "naive datetime (no tzinfo)",
            value=value,
            hint="times of facts are aware UTC, e.g. datetime.now(UTC)",
        )
    return value.astimezone(UTC)


def _enc_any(value: Any, path: Path, omit: bool) -> Any:
    kind = type(value)
    if kind is list or kind is tuple:
        return [_enc_any(item, (*path, i), omit) for i, item in enumerate(value)]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise MalformedMessage(
                    _fmt(path), f"map keys must be str, got {_got(key)}", value=key
                )
            out[key] = _enc_any(item, (*path, key), omit)
        return out
    if kind is int:
        return _enc_int(value, path, omit)
    if isinstance(value, datetime):
        return _enc_datetime(value, path, omit)
    if kind in (str, bool, float, bytes, type(None)):
        return value
    raise MalformedMessage(_fmt(path), f"cannot encode a value of type {_got(value)}")


_ENCODERS: dict[Any, Encoder] = {
    int: _enc_int,
    str: _enc_str,
    bool: _enc_bool,
    datetime: _enc_datetime,
    Any: _enc_any,
    dict: _enc_any,
}


def _encoder(tp: Any) -> Encoder:
    """Compile (and cache) a function that checks `tp` values and turns them into msgpack data."""
    cached = _ENCODERS.get(tp)
    if cached is not None:
        return cached
    inner, optional = _split_optional(tp)
    origin = typing.get_origin(tp)
    conv: Encoder
    if optional:
        inner_conv = _encoder(inner)

        def conv(value: Any, path: Path, omit: bool) -> Any:
            return None if value is None else inner_conv(value, path, omit)

    elif origin is tuple:
        item_conv = _encoder(typing.get_args(tp)[0])

        def conv(value: Any, path: Path, omit: bool) -> Any:
            if type(value) is not tuple and type(value) is not list:
                raise _expected(path, "tuple", value)
            return [item_conv(item, (*path, i), omit) for i, item in enumerate(value)]

    elif origin is dict:
        value_conv = _encoder(typing.get_args(tp)[1])

        def conv(value: Any, path: Path, omit: bool) -> Any:
            if type(value) is not dict:
                raise _expected(path, "dict", value)
            out = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise MalformedMessage(
                        _fmt(path), f"map keys must be str, got {_got(key)}", value=key
                    )
                out[key] = value_conv(item, (*path, key), omit)
            return out

    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        conv = _dataclass_encoder(tp)
    else:
        raise TypeError(f"no encoder for {tp!r}")
    _ENCODERS[tp] = conv
    return conv


def _dataclass_encoder(cls: type) -> Encoder:
    specs = []
    always = {f.name for f in dataclasses.fields(cls) if f.metadata.get("omit_empty")}
    for name, tp, kind, default in _field_specs(cls):
        field_conv = _encoder(tp)
        if kind == _DEFAULT:
            wire_default = field_conv(default, (), False)
        elif kind == _FACTORY:
            wire_default = field_conv(default(), (), False)
        else:
            wire_default = _NO_DEFAULT
        specs.append((name, field_conv, wire_default, name in always))
    check = _CHECKS.get(cls)

    def conv(value: Any, path: Path, omit: bool) -> Any:
        if type(value) is not cls:
            raise _expected(path, cls.__name__, value)
        out: dict[str, Any] = {}
        for name, field_conv, wire_default, omit_empty in specs:
            wire = field_conv(getattr(value, name), (*path, name), omit)
            # Leaving out defaults keeps canonical bytes (and fingerprints) of old sales
            # unchanged when a later version adds a field with a default.
            if (omit or omit_empty) and type(wire) is type(wire_default) and wire == wire_default:
                continue
            out[name] = wire
        if check is not None:
            check(value, path)
        return out

    return conv


# --- bytes ------------------------------------------------------------------------------


def _pack(obj: Any) -> bytes:
    try:
        data: bytes = _packer().pack(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedMessage("payload", f"cannot encode: {exc}") from exc
    return data


def _unpack(data: Any, limits: Limits) -> Any:
    obj = _unpack_unchecked(data, limits)
    _check_depth(obj, 1, (), limits.max_depth)
    return obj


def _unpack_unchecked(data: Any, limits: Limits) -> Any:
    """Unpack within limits, except max_depth: the caller checks it (or knows it holds)."""
    if isinstance(data, memoryview):
        size = data.nbytes
    elif isinstance(data, bytes | bytearray):
        size = len(data)
    else:
        raise MalformedMessage("payload", f"expected bytes, got {type(data).__name__}")
    if size > limits.max_bytes:
        raise PayloadTooLarge(size, limits.max_bytes)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            timestamp=3,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=_MAX_EXT_LEN,
        )
    except msgpack.ExtraData as exc:
        raise MalformedMessage(
            "payload", "extra bytes after the message", hint="send exactly one msgpack object"
        ) from exc
    except msgpack.StackError as exc:
        raise MalformedMessage("payload", f"nesting deeper than {limits.max_depth}") from exc
    except Exception as exc:
        # msgpack reports bad input as ValueError, TypeError, OverflowError, UnicodeDecodeError
        # or its own classes; all of them mean the same thing to the caller.
        reason = str(exc) or type(exc).__name__
        raise MalformedMessage("payload", f"not valid msgpack: {reason}") from exc
    return obj


def _check_depth(obj: Any, depth: int, path: Path, max_depth: int) -> None:
    """Reject containers nested deeper than max_depth (the top-level map is depth 1)."""
    if type(obj) is dict:
        items: Any = obj.items()
    elif type(obj) is list:
        items = enumerate(obj)
    else:
        return
    if depth > max_depth:
        raise MalformedMessage(_fmt(path) or "payload", f"nesting deeper than {max_depth}")
    for key, item in items:
        if type(item) is dict or type(item) is list:
            _check_depth(item, depth + 1, (*path, key), max_depth)


# --- fast paths for sales ---------------------------------------------------------------------
#
# Sales are most of the traffic and all of the storage: the Center encodes every received sale
# for its row, fingerprint and chain hash. The typed walk above pays for a field path and a
# function call per field; these hand-written paths make the same checks inline. On anything
# they do not handle (a wrong type, a failed check, a value msgpack refuses, a class whose
# fields changed) they raise _Unusual and the typed walk runs from the start instead, so every
# error, with its field path, still comes from the walk, and the bytes and objects produced are
# the walk's (tests/sync_protocol/test_protocol_fast.py compares them on generated sales).


class _Unusual(Exception):
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
    ),
    Payment: (("method", _REQUIRED_FIELD), ("amount_minor", _REQUIRED_FIELD)),
    SaleOffer: (
        ("offer_id", _REQUIRED_FIELD),
        ("product_ids", _REQUIRED_FIELD),
        ("percent", _REQUIRED_FIELD),
    ),
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
    ),
    SaleBatch: (("sales", _REQUIRED_FIELD),),
}
"""The fields (name, default) the fast paths are written for, in declaration order."""

_DISCOUNT_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[LineDiscount])
_LINE_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[SaleLine])
_PAYMENT_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[Payment])
_MOVEMENT_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[LoyaltyMovement])
_OFFER_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[SaleOffer])
_SALE_KEYS = frozenset(name for name, _ in _FAST_LAYOUT[Sale])
_BATCH_KEYS = frozenset(("sales",))
_ENVELOPE_KEYS = frozenset(("v", "type", "sender", "sent_at", "body"))
_SALE_DEPTH = 5  # sale map, lines, line map, discounts, discount map (offers: 4)
_BATCH_DEPTH = 3 + _SALE_DEPTH  # envelope, body, sales, then a sale
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""Exactly the strings s with str(uuid.UUID(s)) == s."""

_THREAD = threading.local()


@functools.cache
def _fast_layout_ok() -> bool:
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


def _packer() -> msgpack.Packer:
    """This thread's Packer: building one per call costs more than packing a small sale."""
    try:
        packer: msgpack.Packer = _THREAD.packer
    except AttributeError:
        packer = _THREAD.packer = msgpack.Packer(use_bin_type=True, datetime=True, autoreset=True)
    return packer


def _fast_datetime(value: Any) -> datetime:
    if type(value) is datetime:
        tz = value.tzinfo
        if tz is UTC:
            return value
        if tz is not None and value.utcoffset() is not None:
            return value.astimezone(UTC)
    raise _Unusual


def _fast_strs(values: Any, nonempty: bool) -> Any:
    """A tuple or list of str as is (msgpack packs both as an array)."""
    if type(values) is not tuple and type(values) is not list:
        raise _Unusual
    for value in values:
        if type(value) is not str or (nonempty and not value):
            raise _Unusual
    return values


def _fast_lines(lines: Any, omit: bool) -> tuple[list[dict[str, Any]], int, int]:
    """Wire maps of a sale's lines, the sum of their amounts and of their discounts."""
    if type(lines) is not tuple and type(lines) is not list:
        raise _Unusual
    out = []
    seen = set()
    subtotal = 0
    discount = 0
    for line in lines:
        if type(line) is not SaleLine:
            raise _Unusual
        line_no = line.line_no
        product_id = line.product_id
        qty = line.qty_milli
        price = line.unit_price_minor
        amount = line.amount_minor
        discounts = line.discounts
        weighed = line.weighed
        known = line.known_product
        if (
            type(line_no) is not int
            or type(product_id) is not str
            or type(qty) is not int
            or type(price) is not int
            or type(amount) is not int
            or (type(discounts) is not tuple and type(discounts) is not list)
            or (weighed is not True and weighed is not False)
            or (known is not True and known is not False)
            or line_no in seen
        ):
            raise _Unusual
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
                    raise _Unusual
                rule_id = item.rule_id
                item_amount = item.amount_minor
                if type(rule_id) is not str or type(item_amount) is not int:
                    raise _Unusual
                discount += item_amount
                items.append({"rule_id": rule_id, "amount_minor": item_amount})
            wire["discounts"] = items
        if weighed or not omit:
            wire["weighed"] = weighed
        if not known or not omit:
            wire["known_product"] = known
        out.append(wire)
    return out, subtotal, discount


def _fast_payments(payments: Any) -> tuple[list[dict[str, Any]], int]:
    """Wire maps of a sale's payments and their sum."""
    if type(payments) is not tuple and type(payments) is not list:
        raise _Unusual
    out = []
    paid = 0
    for payment in payments:
        if type(payment) is not Payment:
            raise _Unusual
        method = payment.method
        amount = payment.amount_minor
        if type(method) is not str or not method or type(amount) is not int:
            raise _Unusual
        paid += amount
        out.append({"method": method, "amount_minor": amount})
    return out, paid


def _fast_movements(movements: Any, omit: bool) -> list[dict[str, Any]]:
    """Wire maps of a sale's loyalty movements."""
    if type(movements) is not tuple and type(movements) is not list:
        raise _Unusual
    out = []
    for movement in movements:
        if type(movement) is not LoyaltyMovement:
            raise _Unusual
        wallet = movement.wallet
        kind = movement.kind
        amount = movement.amount
        rule_id = movement.rule_id
        if (
            type(wallet) is not str
            or not wallet
            or type(kind) is not str
            or kind not in _MOVEMENT_KINDS
            or type(amount) is not int
            or amount < 0
            or type(rule_id) is not str
        ):
            raise _Unusual
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
        raise _Unusual
    out = []
    for offer in offers:
        if type(offer) is not SaleOffer:
            raise _Unusual
        offer_id = offer.offer_id
        percent = offer.percent
        if (
            type(offer_id) is not str
            or not offer_id
            or type(percent) is not str
            or not _percent_ok(percent)
        ):
            raise _Unusual
        product_ids = _fast_strs(offer.product_ids, True)
        out.append({"offer_id": offer_id, "product_ids": product_ids, "percent": percent})
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
    """The fast paths' check of a sale's scalar fields, both ways: _Unusual sends the sale to
    the typed walk, which names what is wrong."""
    if (
        type(sale_id) is not str
        or type(store_id) is not str
        or not store_id
        or type(register_id) is not str
        or not register_id
        or type(seq) is not int
        or seq < 1
        or (card_no is not None and type(card_no) is not str)
        or type(subtotal) is not int
        or type(discount) is not int
        or type(total) is not int
        or type(promo_version) is not int
        or promo_version < 0
        or type(prev_hash) is not str
        or (prev_hash and not _HASH_RE.fullmatch(prev_hash))
        or not _UUID_RE.fullmatch(sale_id)
    ):
        raise _Unusual
    if return_of is not None and (
        type(return_of) is not str or return_of == sale_id or not _UUID_RE.fullmatch(return_of)
    ):
        raise _Unusual


def _fast_sale(sale: Any, omit: bool) -> dict[str, Any]:
    """The wire map of a well-formed sale; `omit` leaves out fields equal to their default."""
    if type(sale) is not Sale:
        raise _Unusual
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
        raise _Unusual
    if paid != total:
        raise _Unusual
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
    return wire


def _fast_pack(wire: Any) -> bytes:
    try:
        data: bytes = _packer().pack(wire)
    except (TypeError, ValueError, OverflowError) as exc:
        # An int out of msgpack's range, say: the typed walk names the field.
        raise _Unusual from exc
    return data


def _fast_read_datetime(value: Any) -> datetime:
    if type(value) is not datetime or value.tzinfo is None:
        raise _Unusual
    return value


def _fast_read_strs(values: Any, nonempty: bool) -> tuple[str, ...]:
    if type(values) is not list:
        raise _Unusual
    for value in values:
        if type(value) is not str or (nonempty and not value):
            raise _Unusual
    return tuple(values)


def _fast_read_lines(raw: Any) -> tuple[tuple[SaleLine, ...], int, int]:
    """Lines from their wire maps, the sum of their amounts and of their discounts."""
    if type(raw) is not list:
        raise _Unusual
    out = []
    seen = set()
    subtotal = 0
    discount = 0
    for item in raw:
        if type(item) is not dict or not item.keys() <= _LINE_KEYS:
            raise _Unusual
        line_no = item["line_no"]
        product_id = item["product_id"]
        qty = item["qty_milli"]
        price = item["unit_price_minor"]
        amount = item["amount_minor"]
        weighed = item.get("weighed", False)
        known = item.get("known_product", True)
        if (
            type(line_no) is not int
            or type(product_id) is not str
            or type(qty) is not int
            or type(price) is not int
            or type(amount) is not int
            or (weighed is not True and weighed is not False)
            or (known is not True and known is not False)
            or line_no in seen
        ):
            raise _Unusual
        seen.add(line_no)
        subtotal += amount
        discounts: tuple[LineDiscount, ...] = ()
        if "discounts" in item:
            raw_discounts = item["discounts"]
            if type(raw_discounts) is not list:
                raise _Unusual
            parts = []
            for part in raw_discounts:
                if type(part) is not dict or not part.keys() <= _DISCOUNT_KEYS:
                    raise _Unusual
                rule_id = part["rule_id"]
                part_amount = part["amount_minor"]
                if type(rule_id) is not str or type(part_amount) is not int:
                    raise _Unusual
                discount += part_amount
                parts.append(LineDiscount(rule_id, part_amount))
            discounts = tuple(parts)
        out.append(SaleLine(line_no, product_id, qty, price, amount, discounts, weighed, known))
    return tuple(out), subtotal, discount


def _fast_read_payments(raw: Any) -> tuple[tuple[Payment, ...], int]:
    if type(raw) is not list:
        raise _Unusual
    out = []
    paid = 0
    for item in raw:
        if type(item) is not dict or not item.keys() <= _PAYMENT_KEYS:
            raise _Unusual
        method = item["method"]
        amount = item["amount_minor"]
        if type(method) is not str or not method or type(amount) is not int:
            raise _Unusual
        paid += amount
        out.append(Payment(method, amount))
    return tuple(out), paid


def _fast_read_movements(raw: Any) -> tuple[LoyaltyMovement, ...]:
    if type(raw) is not list:
        raise _Unusual
    out = []
    for item in raw:
        if type(item) is not dict or not item.keys() <= _MOVEMENT_KEYS:
            raise _Unusual
        wallet = item["wallet"]
        kind = item["kind"]
        amount = item["amount"]
        rule_id = item.get("rule_id", "")
        active_from = item.get("active_from")
        expires_at = item.get("expires_at")
        if (
            type(wallet) is not str
            or not wallet
            or type(kind) is not str
            or kind not in _MOVEMENT_KINDS
            or type(amount) is not int
            or amount < 0
            or type(rule_id) is not str
        ):
            raise _Unusual
        if active_from is not None:
            _fast_read_datetime(active_from)
        if expires_at is not None:
            _fast_read_datetime(expires_at)
        out.append(LoyaltyMovement(wallet, kind, amount, rule_id, active_from, expires_at))
    return tuple(out)


def _fast_read_offers(raw: Any) -> tuple[SaleOffer, ...]:
    if type(raw) is not list:
        raise _Unusual
    out = []
    for item in raw:
        if type(item) is not dict or not item.keys() <= _OFFER_KEYS:
            raise _Unusual
        offer_id = item["offer_id"]
        percent = item["percent"]
        if (
            type(offer_id) is not str
            or not offer_id
            or type(percent) is not str
            or not _percent_ok(percent)
        ):
            raise _Unusual
        out.append(SaleOffer(offer_id, _fast_read_strs(item["product_ids"], True), percent))
    return tuple(out)


def _fast_read_sale(raw: Any) -> Sale:
    """A sale from its wire map, when every key is known and every check passes."""
    if type(raw) is not dict or not raw.keys() <= _SALE_KEYS:
        raise _Unusual
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
        raise _Unusual
    if paid != total:
        raise _Unusual
    return Sale(
        sale_id,
        store_id,
        register_id,
        seq,
        _fast_read_datetime(raw["opened_at"]),
        _fast_read_datetime(raw["closed_at"]),
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
    )


def _fast_read_batch(raw: Any, expect: type | tuple[type, ...] | None) -> Envelope:
    """A sale_batch envelope from its unpacked map, when every key is known and valid."""
    if type(raw) is not dict or not raw.keys() <= _ENVELOPE_KEYS:
        raise _Unusual
    version = raw["v"]
    sender = raw["sender"]
    sent_at = raw["sent_at"]
    body = raw["body"]
    if (
        raw["type"] != SaleBatch.TYPE
        or type(version) is not int
        or not 1 <= version <= PROTOCOL_VERSION
        or type(sender) is not str
        or not 1 <= len(sender) <= MAX_SENDER_LEN
        or type(body) is not dict
        or not body.keys() <= _BATCH_KEYS
    ):
        raise _Unusual
    if expect is not None and SaleBatch not in (expect if isinstance(expect, tuple) else (expect,)):
        raise _Unusual
    sales = body["sales"]
    if type(sales) is not list:
        raise _Unusual
    batch = SaleBatch(tuple([_fast_read_sale(item) for item in sales]))
    return Envelope(version, SaleBatch.TYPE, sender, _fast_read_datetime(sent_at), batch)


# --- public API --------------------------------------------------------------------------


def encode(message: Message, *, sender: str, sent_at: datetime | None = None) -> bytes:
    """Check `message` and encode it in a v1 envelope from node `sender`."""
    cls = type(message)
    if cls not in _CLASS_TYPES:
        raise UnknownMessageType(
            cls.__name__,
            tuple(MESSAGE_TYPES),
            hint="encode() takes SaleBatch, Ack, MasterSnapshot, MasterDelta or Heartbeat",
        )
    if type(sender) is not str:
        raise _expected(("sender",), "str", sender)
    if not 1 <= len(sender) <= MAX_SENDER_LEN:
        raise MalformedMessage("sender", f"must be 1..{MAX_SENDER_LEN} chars", value=sender)
    when = datetime.now(UTC) if sent_at is None else _enc_datetime(sent_at, ("sent_at",), False)
    envelope = {"v": PROTOCOL_VERSION, "type": _CLASS_TYPES[cls], "sender": sender, "sent_at": when}
    if cls is SaleBatch and _fast_layout_ok():
        try:
            sales = message.sales  # type: ignore[union-attr]
            if type(sales) is not tuple and type(sales) is not list:
                raise _Unusual
            envelope["body"] = {"sales": [_fast_sale(sale, False) for sale in sales]}
            return _fast_pack(envelope)
        except _Unusual:
            pass
    envelope["body"] = _encoder(cls)(message, ("body",), False)
    return _pack(envelope)


def decode(
    data: bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    expect: type | tuple[type, ...] | None = None,
) -> Envelope:
    """Decode and validate one envelope; raise a ProtocolError naming the first problem."""
    raw = _unpack_unchecked(data, limits)
    if limits.max_depth >= _BATCH_DEPTH and _fast_layout_ok():
        try:
            return _fast_read_batch(raw, expect)
        except (_Unusual, KeyError):
            pass
    return _decode_reference(raw, limits, expect)


def _decode_reference(raw: Any, limits: Limits, expect: type | tuple[type, ...] | None) -> Envelope:
    """decode by the typed walk, from the unpacked object: the definition, and its errors."""
    _check_depth(raw, 1, (), limits.max_depth)
    if type(raw) is not dict:
        raise MalformedMessage("envelope", f"expected map, got {_got(raw)}", value=raw)
    version = _required(raw, "v")
    if type(version) is not int:
        raise _expected(("v",), "int", version)
    if version > PROTOCOL_VERSION:
        raise UnsupportedVersion(version, PROTOCOL_VERSION)
    if version < 1:
        raise MalformedMessage("v", "protocol version must be >= 1", value=version)
    type_name = _dec_str(_required(raw, "type"), ("type",))
    cls = MESSAGE_TYPES.get(type_name)
    if cls is None:
        raise UnknownMessageType(type_name, tuple(MESSAGE_TYPES))
    if expect is not None:
        expected = expect if isinstance(expect, tuple) else (expect,)
        if cls not in expected:
            raise UnexpectedMessageType(type_name, tuple(_type_name(c) for c in expected))
    sender = _dec_str(_required(raw, "sender"), ("sender",))
    if not 1 <= len(sender) <= MAX_SENDER_LEN:
        raise MalformedMessage("sender", f"must be 1..{MAX_SENDER_LEN} chars", value=sender)
    sent_at = _dec_datetime(_required(raw, "sent_at"), ("sent_at",))
    message = _decoder(cls)(_required(raw, "body"), ("body",))
    return Envelope(v=version, type=type_name, sender=sender, sent_at=sent_at, message=message)


def encode_sale(sale: Sale) -> bytes:
    """Encode one sale canonically (field order, defaults left out) for storage and hashing."""
    if _fast_layout_ok():
        try:
            return _fast_pack(_fast_sale(sale, True))
        except _Unusual:
            pass
    return _encode_sale_reference(sale)


def _encode_sale_reference(sale: Sale) -> bytes:
    """encode_sale by the typed walk: the definition of the canonical bytes, and its errors."""
    return _pack(_encoder(Sale)(sale, ("sale",), True))


def decode_sale(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Sale:
    """Decode and validate a sale written by encode_sale."""
    raw = _unpack_unchecked(data, limits)
    if limits.max_depth >= _SALE_DEPTH and _fast_layout_ok():
        try:
            return _fast_read_sale(raw)
        except (_Unusual, KeyError):
            pass
    return _decode_sale_reference(raw, limits)


def _decode_sale_reference(raw: Any, limits: Limits) -> Sale:
    """decode_sale by the typed walk, from the unpacked object: the definition, and its errors."""
    _check_depth(raw, 1, (), limits.max_depth)
    sale: Sale = _decoder(Sale)(raw, ("sale",))
    return sale


def sale_fingerprint(sale: Sale) -> str:
    """Return the sha256 hex digest of the sale's canonical encoding."""
    return hashlib.sha256(encode_sale(sale)).hexdigest()


def _is_canonical_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def chain_hash(sale: Sale) -> str:
    """Return the link the register's next sale carries as prev_hash: sha256(prev_hash + bytes)."""
    # The sale's own prev_hash is hashed in front of (and inside) its canonical bytes, so
    # changing any earlier sale changes every later link.
    return hashlib.sha256(sale.prev_hash.encode("ascii") + encode_sale(sale)).hexdigest()


_CLASS_TYPES: dict[type, str] = {cls: name for name, cls in MESSAGE_TYPES.items()}


def _type_name(cls: type) -> str:
    name = _CLASS_TYPES.get(cls)
    if name is None:
        raise TypeError(f"expect must name message classes, got {cls!r}")
    return name


def _required(raw: dict[Any, Any], key: str) -> Any:
    if key not in raw:
        raise MalformedMessage(key, "required field missing")
    return raw[key]
