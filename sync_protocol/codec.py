"""The v1 envelope and the public codec: encode and decode messages, and canonical sales.

The work is done by the modules named after what they own: checks.py (semantic checks shared by
encode and decode), walk.py (the typed walk, the definition of every wire form and error),
fast.py (fast paths for sales, checked against the walk), packing.py (msgpack bytes, Limits).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from . import fast, walk
from .checks import expected, wire_name
from .errors import (
    MalformedMessage,
    UnexpectedMessageType,
    UnknownMessageType,
    UnsupportedVersion,
)
from .messages import (
    Ack,
    Envelope,
    Heartbeat,
    MasterDelta,
    MasterSnapshot,
    Message,
    Sale,
    SaleBatch,
)
from .packing import DEFAULT_LIMITS, Limits, check_depth, pack, unpack_unchecked

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

_BATCH_KEYS = frozenset(("sales",))
_ENVELOPE_KEYS = frozenset(("v", "type", "sender", "sent_at", "body"))


def _fast_read_batch(raw: Any, expect: type | tuple[type, ...] | None) -> Envelope:
    """A sale_batch envelope from its unpacked map, when every key is known and valid."""
    if type(raw) is not dict or not raw.keys() <= _ENVELOPE_KEYS:
        raise fast.Unusual
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
        raise fast.Unusual
    if expect is not None and SaleBatch not in (expect if isinstance(expect, tuple) else (expect,)):
        raise fast.Unusual
    sales = body["sales"]
    if type(sales) is not list:
        raise fast.Unusual
    batch = SaleBatch(tuple([fast.read_sale(item) for item in sales]))
    return Envelope(version, SaleBatch.TYPE, sender, fast.read_datetime(sent_at), batch)


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
        raise expected(("sender",), "str", sender)
    if not 1 <= len(sender) <= MAX_SENDER_LEN:
        raise MalformedMessage("sender", f"must be 1..{MAX_SENDER_LEN} chars", value=sender)
    when = (
        datetime.now(UTC) if sent_at is None else walk.encode_datetime(sent_at, ("sent_at",), False)
    )
    envelope = {"v": PROTOCOL_VERSION, "type": _CLASS_TYPES[cls], "sender": sender, "sent_at": when}
    if cls is SaleBatch and fast.layout_ok():
        try:
            sales = message.sales  # type: ignore[union-attr]
            if type(sales) is not tuple and type(sales) is not list:
                raise fast.Unusual
            envelope["body"] = {"sales": [fast.sale_wire(sale, False) for sale in sales]}
            return fast.pack_wire(envelope)
        except fast.Unusual:
            pass
    envelope["body"] = walk.encoder(cls)(message, ("body",), False)
    return pack(envelope)


def decode(
    data: bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    expect: type | tuple[type, ...] | None = None,
) -> Envelope:
    """Decode and validate one envelope; raise a ProtocolError naming the first problem."""
    raw = unpack_unchecked(data, limits)
    if limits.max_depth >= fast.BATCH_DEPTH and fast.layout_ok():
        try:
            return _fast_read_batch(raw, expect)
        except (fast.Unusual, KeyError):
            pass
    return _decode_reference(raw, limits, expect)


def _decode_reference(raw: Any, limits: Limits, expect: type | tuple[type, ...] | None) -> Envelope:
    """decode by the typed walk, from the unpacked object: the definition, and its errors."""
    check_depth(raw, 1, (), limits.max_depth)
    if type(raw) is not dict:
        raise MalformedMessage("envelope", f"expected map, got {wire_name(raw)}", value=raw)
    version = _required(raw, "v")
    if type(version) is not int:
        raise expected(("v",), "int", version)
    if version > PROTOCOL_VERSION:
        raise UnsupportedVersion(version, PROTOCOL_VERSION)
    if version < 1:
        raise MalformedMessage("v", "protocol version must be >= 1", value=version)
    type_name = walk.decode_str(_required(raw, "type"), ("type",))
    cls = MESSAGE_TYPES.get(type_name)
    if cls is None:
        raise UnknownMessageType(type_name, tuple(MESSAGE_TYPES))
    if expect is not None:
        wanted = expect if isinstance(expect, tuple) else (expect,)
        if cls not in wanted:
            raise UnexpectedMessageType(type_name, tuple(_type_name(c) for c in wanted))
    sender = walk.decode_str(_required(raw, "sender"), ("sender",))
    if not 1 <= len(sender) <= MAX_SENDER_LEN:
        raise MalformedMessage("sender", f"must be 1..{MAX_SENDER_LEN} chars", value=sender)
    sent_at = walk.decode_datetime(_required(raw, "sent_at"), ("sent_at",))
    message = walk.decoder(cls)(_required(raw, "body"), ("body",))
    return Envelope(v=version, type=type_name, sender=sender, sent_at=sent_at, message=message)


def encode_sale(sale: Sale) -> bytes:
    """Encode one sale canonically (field order, defaults left out) for storage and hashing."""
    if fast.layout_ok():
        try:
            return fast.pack_wire(fast.sale_wire(sale, True))
        except fast.Unusual:
            pass
    return _encode_sale_reference(sale)


def _encode_sale_reference(sale: Sale) -> bytes:
    """encode_sale by the typed walk: the definition of the canonical bytes, and its errors."""
    return pack(walk.encoder(Sale)(sale, ("sale",), True))


def decode_sale(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Sale:
    """Decode and validate a sale written by encode_sale."""
    raw = unpack_unchecked(data, limits)
    if limits.max_depth >= fast.SALE_DEPTH and fast.layout_ok():
        try:
            return fast.read_sale(raw)
        except (fast.Unusual, KeyError):
            pass
    return _decode_sale_reference(raw, limits)


def _decode_sale_reference(raw: Any, limits: Limits) -> Sale:
    """decode_sale by the typed walk, from the unpacked object: the definition, and its errors."""
    check_depth(raw, 1, (), limits.max_depth)
    sale: Sale = walk.decoder(Sale)(raw, ("sale",))
    return sale


def sale_fingerprint(sale: Sale) -> str:
    """Return the sha256 hex digest of the sale's canonical encoding."""
    return hashlib.sha256(encode_sale(sale)).hexdigest()


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
