"""The v1 envelope and the public codec: encode and decode messages, and canonical sales.

The work is done by the modules named after what they own: checks.py (semantic checks shared by
encode and decode), walk.py (the typed walk, the definition of every wire form and error),
fast.py (fast paths for sales, checked against the walk), packing.py (msgpack bytes, Limits).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack

from . import fast, walk
from .checks import expected, is_canonical_uuid, wire_name
from .errors import (
    MalformedMessage,
    ProtocolError,
    UnexpectedMessageType,
    UnknownMessageType,
    UnsupportedVersion,
)
from .identifiers import MAX_ID_LEN
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
from .packing import (
    DEFAULT_LIMITS,
    MAX_EXT_LEN,
    Limits,
    check_depth,
    pack,
    packer,
    unpack_unchecked,
)

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_LIMITS",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "Limits",
    "RefusedSale",
    "chain_hash",
    "decode",
    "decode_sale",
    "decode_sale_batch",
    "encode",
    "encode_sale",
    "encode_sale_batch",
    "payload_chain_hash",
    "payload_fingerprint",
    "sale_fingerprint",
    "split_sale_batch",
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
        or "\x00" in sender
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
    envelope = _envelope_head(_CLASS_TYPES[cls], sender, sent_at)
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


def _envelope_head(type_name: str, sender: str, sent_at: datetime | None) -> dict[str, Any]:
    """The envelope's fields before the body, checked, in wire order."""
    if type(sender) is not str:
        raise expected(("sender",), "str", sender)
    if not 1 <= len(sender) <= MAX_SENDER_LEN:
        raise MalformedMessage("sender", f"must be 1..{MAX_SENDER_LEN} chars", value=sender)
    when = (
        datetime.now(UTC) if sent_at is None else walk.encode_datetime(sent_at, ("sent_at",), False)
    )
    return {"v": PROTOCOL_VERSION, "type": type_name, "sender": sender, "sent_at": when}


def decode(
    data: bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    expect: type | tuple[type, ...] | None = None,
) -> Envelope:
    """Decode and validate one envelope; raise a ProtocolError naming the first problem."""
    return _decode_unpacked(unpack_unchecked(data, limits), limits, expect)


def _decode_unpacked(raw: Any, limits: Limits, expect: type | tuple[type, ...] | None) -> Envelope:
    """decode, from the unpacked object."""
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
    return payload_fingerprint(encode_sale(sale))


def payload_fingerprint(payload: bytes) -> str:
    """sale_fingerprint of the sale whose canonical bytes (encode_sale) are `payload`."""
    return hashlib.sha256(payload).hexdigest()


def chain_hash(sale: Sale) -> str:
    """Return the link the register's next sale carries as prev_hash: sha256(prev_hash + bytes)."""
    return payload_chain_hash(sale.prev_hash, encode_sale(sale))


def payload_chain_hash(prev_hash: str, payload: bytes) -> str:
    """chain_hash of the sale with this prev_hash whose canonical bytes are `payload`."""
    # The sale's own prev_hash is hashed in front of (and inside) its canonical bytes, so
    # changing any earlier sale changes every later link.
    return hashlib.sha256(prev_hash.encode("ascii") + payload).hexdigest()


def encode_sale_batch(
    payloads: Sequence[bytes], *, sender: str, sent_at: datetime | None = None
) -> bytes:
    """A sale_batch envelope around sales already encoded (encode_sale, or the payloads of
    decode_sale_batch), spliced in as they are: nothing is decoded or encoded again.

    The envelope is byte for byte what encode(SaleBatch(...)) writes around the same sale maps;
    encode() writes every field of a sale, encode_sale leaves defaults out, and decoders read
    both the same.
    """
    for i, payload in enumerate(payloads):
        if type(payload) is not bytes or not payload:
            raise MalformedMessage(
                f"body.sales[{i}]",
                f"expected the bytes of an encoded sale, got {wire_name(payload)}",
                hint="pass what encode_sale wrote",
            )
    envelope = _envelope_head(SaleBatch.TYPE, sender, sent_at)
    envelope["body"] = {"sales": []}
    # The empty array that ends the envelope is one byte (0x90): replace it by the header of
    # an array of len(payloads) and append the sales.
    empty = pack(envelope)
    return b"".join((empty[:-1], packer().pack_array_header(len(payloads)), *payloads))


def decode_sale_batch(
    data: bytes, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[Envelope, tuple[bytes, ...]]:
    """Decode a sale_batch like decode(data, expect=SaleBatch), and return with it each sale's
    canonical bytes (what encode_sale writes for it), in the order of envelope.message.sales.

    A sale that arrived in canonical form is returned as the slice of `data` it occupies, not
    encoded again; any other (an older sender, unknown keys, defaults written out) is encoded.
    """
    found = _unpack_sale_batch(data, limits)
    if found is None:
        # Anything unusual: decode() raises its usual error, or (never seen) accepts what the
        # quick unpacking did not, and the sales are located again.
        envelope = decode(data, limits=limits, expect=SaleBatch)
        found = _unpack_sale_batch(bytes(data), limits) or (None, [], [])
    else:
        envelope = _decode_unpacked(found[0], limits, SaleBatch)
    _, raws, pieces = found
    sales = envelope.message.sales  # type: ignore[union-attr]
    if len(pieces) != len(sales):  # cannot happen: decode read the same array
        return envelope, tuple(encode_sale(sale) for sale in sales)
    return envelope, tuple(
        piece if fast.is_canonical(raw, piece) else encode_sale(sale)
        for sale, raw, piece in zip(sales, raws, pieces, strict=True)
    )


@dataclass(frozen=True, slots=True)
class RefusedSale:
    """A sale of a batch that does not decode but names its sale_id: the decoder's reason, the
    fields that could be read ("" or 0 otherwise) and the bytes as they arrived."""

    index: int
    sale_id: str
    store_id: str
    register_id: str
    seq: int
    payload: bytes
    reason: str


# A sale map sits in body.sales of the envelope: envelope 1, body 2, sales 3, the sale 4.
_SALE_DEPTH_IN_BATCH = 4


def split_sale_batch(
    data: bytes, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[Envelope, tuple[bytes, ...], tuple[RefusedSale, ...]]:
    """decode_sale_batch, except that each sale that does not decode yet names a canonical
    sale_id is set aside as a RefusedSale: the envelope then carries the other sales only.

    Anything else wrong (the envelope, a sale without a readable sale_id) raises the error
    decode_sale_batch raises; a batch that decodes costs nothing more than decode_sale_batch.
    """
    try:
        envelope, payloads = decode_sale_batch(data, limits=limits)
    except ProtocolError as exc:
        first = exc
    else:
        return envelope, payloads, ()
    found = _unpack_sale_batch(data, limits)
    if found is None:
        raise first
    raw, raws, pieces = found
    kept: list[int] = []
    refused: list[RefusedSale] = []
    for i, item in enumerate(raws):
        path = ("body", "sales", i)
        try:
            check_depth(item, _SALE_DEPTH_IN_BATCH, path, limits.max_depth)
            walk.decoder(Sale)(item, path)
        except ProtocolError as exc:
            sale_id = item.get("sale_id") if type(item) is dict else None
            if type(sale_id) is not str or not is_canonical_uuid(sale_id):
                raise first from None
            refused.append(_refused(i, item, pieces[i], str(exc)))
        else:
            kept.append(i)
    if not refused:
        raise first
    # The rest is decoded the usual way, so that a problem outside the sales still raises.
    body = raw.get("body")
    if type(body) is not dict:
        raise first
    stripped = {**raw, "body": {**body, "sales": [raws[i] for i in kept]}}
    envelope = _decode_unpacked(stripped, limits, SaleBatch)
    sales = envelope.message.sales  # type: ignore[union-attr]
    payloads = tuple(
        pieces[i] if fast.is_canonical(raws[i], pieces[i]) else encode_sale(sale)
        for i, sale in zip(kept, sales, strict=True)
    )
    return envelope, payloads, tuple(refused)


def _refused(index: int, item: dict[str, Any], piece: bytes, reason: str) -> RefusedSale:
    def text(name: str) -> str:
        value = item.get(name)
        if type(value) is str and 0 < len(value) <= MAX_ID_LEN and "\x00" not in value:
            return value
        return ""

    seq = item.get("seq")
    return RefusedSale(
        index=index,
        sale_id=item["sale_id"],
        store_id=text("store_id"),
        register_id=text("register_id"),
        seq=seq if type(seq) is int and 0 < seq < 2**63 else 0,
        payload=piece,
        reason=reason,
    )


def _unpack_sale_batch(data: Any, limits: Limits) -> tuple[Any, list[Any], list[bytes]] | None:
    """Unpack an envelope as decode() does, keeping each element of body.sales both unpacked and
    as its bytes; None on anything unusual (decode() then names the problem)."""
    if type(data) is not bytes or not 0 < len(data) <= limits.max_bytes:
        return None
    unpacker = msgpack.Unpacker(
        raw=False,
        timestamp=3,
        strict_map_key=True,
        use_list=True,
        max_buffer_size=len(data),
        max_str_len=limits.max_str_len,
        max_bin_len=limits.max_bin_len,
        max_array_len=limits.max_array_len,
        max_map_len=limits.max_map_len,
        max_ext_len=MAX_EXT_LEN,
    )
    unpacker.feed(data)
    envelope: dict[str, Any] = {}
    raws: list[Any] = []
    pieces: list[bytes] = []
    try:
        # The headers are read by hand to find the sales; the limits unpackb applies to every
        # map and array are applied to them here, and keys must be str as strict_map_key wants.
        size = unpacker.read_map_header()
        if size > limits.max_map_len:
            return None
        for _ in range(size):
            key = unpacker.unpack()
            if type(key) is not str:
                return None
            if key != "body":
                envelope[key] = unpacker.unpack()
                continue
            body: dict[str, Any] = {}
            size = unpacker.read_map_header()
            if size > limits.max_map_len:
                return None
            for _ in range(size):
                name = unpacker.unpack()
                if type(name) is not str:
                    return None
                if name != "sales":
                    body[name] = unpacker.unpack()
                    continue
                count = unpacker.read_array_header()
                if count > limits.max_array_len:
                    return None
                raws, pieces = [], []
                for _ in range(count):
                    start = unpacker.tell()
                    raws.append(unpacker.unpack())
                    pieces.append(data[start : unpacker.tell()])
                body[name] = raws
            envelope[key] = body
    except Exception:
        return None
    if unpacker.tell() != len(data):
        return None  # extra bytes after the envelope
    return envelope, raws, pieces


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
