"""Limits and malformed input: every rejection is a ProtocolError naming what was wrong."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest

from sync_protocol import (
    Ack,
    Heartbeat,
    Limits,
    LoyaltyMovement,
    MalformedMessage,
    MasterDelta,
    MasterSnapshot,
    PayloadTooLarge,
    Payment,
    ProtocolError,
    Sale,
    SaleBatch,
    SaleLine,
    SaleOffer,
    UnexpectedMessageType,
    UnknownMessageType,
    UnsupportedVersion,
    decode,
    decode_sale,
    decode_sale_batch,
    encode,
    encode_sale,
)

T = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
MakeSale = Callable[..., Sale]


def _envelope(body_: Any, **overrides: Any) -> dict[str, Any]:
    envelope = {"v": 1, "type": "sale_batch", "sender": "367-1", "sent_at": T, "body": body_}
    envelope.update(overrides)
    return envelope


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True, datetime=True)
    return data


def _raw_batch(make_sale: MakeSale) -> dict[str, Any]:
    raw: dict[str, Any] = msgpack.unpackb(
        encode(SaleBatch((make_sale(),) * 4), sender="367-1", sent_at=T), timestamp=3
    )
    return raw


def _reject(data: bytes, error: type[ProtocolError], message: str, **kwargs: Any) -> ProtocolError:
    with pytest.raises(error, match=re.escape(message)) as info:
        decode(data, **kwargs)
    return info.value


# --- limits ---------------------------------------------------------------------------------


def test_payload_over_max_bytes_is_rejected_before_unpacking() -> None:
    data = encode(Ack(accepted=("x" * 50,) * 20), sender="s", sent_at=T)
    error = _reject(data, PayloadTooLarge, "exceeds max_bytes=100", limits=Limits(max_bytes=100))
    assert isinstance(error, PayloadTooLarge)
    assert error.size == len(data)
    assert error.limit == 100
    assert decode(data, limits=Limits(max_bytes=len(data))).message == Ack(("x" * 50,) * 20)


def test_nesting_deeper_than_max_depth_names_the_path() -> None:
    deep: Any = "leaf"
    for _ in range(20):
        deep = [deep]
    body = {"version": 1, "tables": {"products": [{"product_id": "p", "doc": deep}]}}
    data = _pack(_envelope(body, type="master_snapshot"))
    # envelope=1, body=2, tables=3, products=4, row=5, doc=6: the 11th nested list is depth 17.
    path = "body.tables.products[0].doc" + "[0]" * 11
    _reject(data, MalformedMessage, f"{path}: nesting deeper than 16")
    got = decode(data, limits=Limits(max_depth=30)).message
    assert isinstance(got, MasterSnapshot)


def test_nesting_in_ignored_keys_is_still_limited() -> None:
    deep: Any = {}
    for _ in range(40):
        deep = {"x": deep}
    data = _pack(_envelope({}, type="ack", extension=deep))
    _reject(data, MalformedMessage, "extension.x.x")


def test_nesting_beyond_msgpack_stack_is_malformed() -> None:
    _reject(b"\x91" * 5000 + b"\x00", MalformedMessage, "payload: nesting deeper than 16")


@pytest.mark.parametrize(
    ("limit", "value"),
    [
        ("max_str_len", {"accepted": ["x" * 200]}),
        ("max_array_len", {"accepted": ["x"] * 200}),
        ("max_map_len", {f"k{i}": i for i in range(200)}),
        ("max_bin_len", {"blob": b"\x00" * 200}),
    ],
)
def test_each_msgpack_limit_is_enforced(limit: str, value: dict[str, Any]) -> None:
    data = _pack(_envelope(value, type="ack"))
    _reject(
        data,
        MalformedMessage,
        f"payload: not valid msgpack: 200 exceeds {limit}(100)",
        limits=Limits(**{limit: 100}),
    )
    assert decode(data, limits=Limits(**{limit: 200})).type == "ack"


def test_default_limits_are_the_documented_ones() -> None:
    assert Limits() == Limits(
        max_bytes=8 * 1024 * 1024,
        max_depth=16,
        max_str_len=4096,
        max_array_len=200_000,
        max_map_len=1024,
        max_bin_len=1024 * 1024,
    )


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_limits_must_be_positive_ints(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"Limits\.max_depth must be a positive int"):
        Limits(max_depth=bad)


def test_unknown_extension_types_are_refused() -> None:
    body = {"accepted": [msgpack.ExtType(5, b"abc")]}
    _reject(
        _pack(_envelope(body, type="ack")),
        MalformedMessage,
        "body.accepted[0]: expected str, got ext",
    )
    long_ext = msgpack.ExtType(5, b"x" * 100)
    _reject(_pack(_envelope({"x": long_ext}, type="ack")), MalformedMessage, "max_ext_len")


# --- bytes that are not one msgpack envelope -------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "payload: not valid msgpack: Unpack failed: incomplete input"),
        (b"\xc1", "payload: not valid msgpack"),
        (b"GET / HTTP/1.1\r\n", "payload: extra bytes after the message"),
        (b'{"v": 1}', "payload: extra bytes after the message"),
        (_pack(_envelope({})) + b"\x00", "payload: extra bytes after the message"),
        (_pack([1, 2, 3]), "envelope: expected map, got array"),
        (_pack("sale_batch"), "envelope: expected map, got str"),
        (_pack({1: 2}), "payload: not valid msgpack: int is not allowed for map key"),
        (b"\xa3\xff\xfe\xfd", "payload: not valid msgpack: 'utf-8' codec can't decode"),
        (b"\xc7\x05\xff12345", "payload: not valid msgpack: invalid timestamp data"),
        (b"\xc7\x0c\xff" + bytes(4) + (2**63 - 1).to_bytes(8, "big"), "too large"),
    ],
)
def test_garbage_bytes_are_malformed(data: bytes, message: str) -> None:
    _reject(data, MalformedMessage, message)


def test_non_bytes_input_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="payload: expected bytes, got str"):
        decode("not bytes")  # type: ignore[arg-type]


def test_every_truncation_of_a_valid_message_is_malformed(make_sale: MakeSale) -> None:
    data = encode(SaleBatch((make_sale(),)), sender="367-1", sent_at=T)
    for end in range(len(data)):
        with pytest.raises(MalformedMessage, match=r"^payload: not valid msgpack"):
            decode(data[:end])


# --- envelope ---------------------------------------------------------------------------------


def test_newer_protocol_version_is_unsupported() -> None:
    error = _reject(
        _pack(_envelope({}, v=2)),
        UnsupportedVersion,
        "v: protocol version 2 is newer than supported version 1",
    )
    assert isinstance(error, UnsupportedVersion)
    assert error.version == 2
    assert "upgrade the receiver first" in str(error)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"v": 0}, "v: protocol version must be >= 1 (0)"),
        ({"v": True}, "v: expected int, got bool (True)"),
        ({"v": "1"}, "v: expected int, got str ('1')"),
        ({"type": 7}, "type: expected str, got int (7)"),
        ({"sender": ""}, "sender: must be 1..64 chars ('')"),
        ({"sender": "s" * 65}, "sender: must be 1..64 chars"),
        ({"sender": None}, "sender: expected str, got nil"),
        ({"sent_at": 1715940000}, "sent_at: expected timestamp, got int (1715940000)"),
        ({"sent_at": "2024-05-17T12:00:00Z"}, "sent_at: expected timestamp, got str"),
        ({"body": []}, "body: expected map, got array ([])"),
    ],
)
def test_bad_envelope_fields_are_named(overrides: dict[str, Any], message: str) -> None:
    _reject(_pack(_envelope({"sales": []}, **overrides)), MalformedMessage, message)


@pytest.mark.parametrize("key", ["v", "type", "sender", "sent_at", "body"])
def test_missing_envelope_fields_are_named(key: str) -> None:
    envelope = _envelope({"sales": []})
    del envelope[key]
    _reject(_pack(envelope), MalformedMessage, f"{key}: required field missing")


def test_unknown_message_type() -> None:
    error = _reject(
        _pack(_envelope({}, type="sale_return")),
        UnknownMessageType,
        "type: unknown message type 'sale_return'; known: sale_batch, ack",
    )
    assert error.value == "sale_return"


def test_unexpected_message_type_is_refused_before_the_body_is_read() -> None:
    data = _pack(_envelope({"garbage": True}, type="heartbeat"))
    _reject(
        data,
        UnexpectedMessageType,
        "type: expected sale_batch or ack, got 'heartbeat'",
        expect=(SaleBatch, Ack),
    )
    with pytest.raises(TypeError, match="expect must name message classes"):
        decode(data, expect=Sale)


# --- body fields: types and presence ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda b: b["body"]["sales"][3]["lines"][0].update(qty_milli="1.5"),
            "body.sales[3].lines[0].qty_milli: expected int, got str ('1.5')",
        ),
        (
            lambda b: b["body"]["sales"][0]["lines"][0].update(qty_milli=1.5),
            "body.sales[0].lines[0].qty_milli: expected int, got float (1.5)",
        ),
        (
            lambda b: b["body"]["sales"][1].update(seq=True),
            "body.sales[1].seq: expected int, got bool (True)",
        ),
        (
            lambda b: b["body"]["sales"][0]["lines"][1].update(weighed=1),
            "body.sales[0].lines[1].weighed: expected bool, got int (1)",
        ),
        (
            lambda b: b["body"]["sales"][0]["lines"][0]["discounts"][0].pop("rule_id"),
            "body.sales[0].lines[0].discounts[0].rule_id: required field missing",
        ),
        (
            lambda b: b["body"]["sales"][2].pop("seq"),
            "body.sales[2].seq: required field missing",
        ),
        (
            lambda b: b["body"]["sales"][0].update(lines={"0": {}}),
            "body.sales[0].lines: expected array, got map",
        ),
        (
            lambda b: b["body"]["sales"][0].update(card_no=2770000012345),
            "body.sales[0].card_no: expected str, got int (2770000012345)",
        ),
        (
            lambda b: b["body"]["sales"][0].update(closed_at=None),
            "body.sales[0].closed_at: expected timestamp, got nil",
        ),
        (
            lambda b: b["body"]["sales"][0]["payments"].__setitem__(0, "cash"),
            "body.sales[0].payments[0]: expected map, got str ('cash')",
        ),
        (
            lambda b: b["body"]["sales"][0]["loyalty"][1].update(expires_at="2025-01-01"),
            "body.sales[0].loyalty[1].expires_at: expected timestamp, got str",
        ),
        (
            lambda b: b["body"]["sales"][0].update(messages=["ok", b"bin"]),
            "body.sales[0].messages[1]: expected str, got bin",
        ),
        (
            lambda b: b["body"]["sales"][0].update(coupons_redeemed=["NEXT5-1", 5]),
            "body.sales[0].coupons_redeemed[1]: expected str, got int (5)",
        ),
        (
            lambda b: b["body"]["sales"][0].update(coupons_issued="NEXT5-1"),
            "body.sales[0].coupons_issued: expected array, got str",
        ),
        (
            lambda b: b["body"]["sales"][0].update(segments=["gold", 5]),
            "body.sales[0].segments[1]: expected str, got int (5)",
        ),
        (
            lambda b: b["body"]["sales"][1].update(segments="gold"),
            "body.sales[1].segments: expected array, got str ('gold')",
        ),
        (
            lambda b: b["body"]["sales"][0].update(
                personal_offers=[{"offer_id": "po-1", "product_ids": ["4600001"], "percent": 12.5}]
            ),
            "body.sales[0].personal_offers[0].percent: expected str, got float (12.5)",
        ),
        (
            lambda b: b["body"]["sales"][2].update(
                personal_offers=[
                    {"offer_id": "po-1", "product_ids": ["4600001"], "percent": "10"},
                    {"offer_id": "po-2", "product_ids": "4600001", "percent": "10"},
                ]
            ),
            "body.sales[2].personal_offers[1].product_ids: expected array, got str",
        ),
        (
            lambda b: b["body"]["sales"][0].update(
                personal_offers=[{"product_ids": [], "percent": "10"}]
            ),
            "body.sales[0].personal_offers[0].offer_id: required field missing",
        ),
        (
            lambda b: b["body"]["sales"][0].update(personal_offers={"po-1": {}}),
            "body.sales[0].personal_offers: expected array, got map",
        ),
        (lambda b: b["body"].pop("sales"), "body.sales: required field missing"),
    ],
)
def test_wrong_body_fields_are_named_by_path(
    make_sale: MakeSale, mutate: Callable[[dict[str, Any]], Any], message: str
) -> None:
    raw = _raw_batch(make_sale)
    mutate(raw)
    error = _reject(_pack(raw), MalformedMessage, message)
    assert str(error).startswith(message)


def test_error_carries_path_value_and_hint(make_sale: MakeSale) -> None:
    raw = _raw_batch(make_sale)
    raw["body"]["sales"][1]["sale_id"] = "0B7E6A7C-3F5D-4E0A-9A51-2F4C8D1E6B90"
    error = _reject(
        _pack(raw), MalformedMessage, "body.sales[1].sale_id: expected a canonical lower-case UUID"
    )
    assert isinstance(error, MalformedMessage)
    assert error.path == "body.sales[1].sale_id"
    assert error.value == "0B7E6A7C-3F5D-4E0A-9A51-2F4C8D1E6B90"
    assert error.hint == "use str(uuid.uuid4())"
    assert str(error).endswith("; hint: use str(uuid.uuid4())")


def test_long_values_are_cut_in_messages(make_sale: MakeSale) -> None:
    raw = _raw_batch(make_sale)
    raw["body"]["sales"][0]["seq"] = "9" * 1000
    error = _reject(_pack(raw), MalformedMessage, "body.sales[0].seq: expected int, got str")
    assert len(str(error)) < 150


def test_map_keys_must_be_strings_in_tables() -> None:
    body = {"version": 1, "tables": {"products": [{b"product_id": "p"}]}}
    _reject(
        _pack(_envelope(body, type="master_snapshot")),
        MalformedMessage,
        "body.tables.products[0]: map keys must be str, got bin (b'product_id')",
    )
    body = {"version": 1, "tables": {b"products": []}}
    _reject(
        _pack(_envelope(body, type="master_snapshot")),
        MalformedMessage,
        "body.tables: map keys must be str, got bin",
    )
    body = {"node_id": "n", "role": "store", "store_id": "1", "sent_at": T, "devices": {"p": 1}}
    _reject(
        _pack(_envelope(body, type="heartbeat")),
        MalformedMessage,
        "body.devices.p: expected str, got int (1)",
    )


# --- body fields: meaning -------------------------------------------------------------------


def _line(no: int, amount: int, discount: int = 0) -> SaleLine:
    from sync_protocol import LineDiscount

    discounts = (LineDiscount("r", discount),) if discount else ()
    return SaleLine(no, f"p{no}", 1000, amount, amount, discounts)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sale_id": "not-a-uuid"}, "sale.sale_id: expected a canonical lower-case UUID"),
        ({"sale_id": "0b7e6a7c3f5d4e0a9a512f4c8d1e6b90"}, "sale.sale_id: expected a canonical"),
        ({"sale_id": "{0b7e6a7c-3f5d-4e0a-9a51-2f4c8d1e6b90}"}, "sale.sale_id: expected a"),
        ({"seq": 0}, "sale.seq: must be >= 1 (0)"),
        ({"store_id": ""}, "sale.store_id: must not be empty"),
        ({"register_id": ""}, "sale.register_id: must not be empty"),
        ({"promo_version": -1}, "sale.promo_version: must be >= 0 (-1)"),
        ({"subtotal_minor": 1}, "sale.subtotal_minor: is 1 but the lines' amount_minor sum to"),
        ({"discount_minor": 0}, "sale.discount_minor: is 0 but the line discounts sum to 1798"),
        ({"total_minor": 0}, "sale.total_minor: is 0 but subtotal_minor - discount_minor is"),
        (
            {"payments": (Payment("cash", 100),)},
            "sale.payments: sum to 100 but total_minor is 67557",
        ),
        ({"payments": (Payment("", 67557),)}, "sale.payments[0].method: must not be empty"),
        (
            {"lines": (_line(1, 100), _line(1, 200)), "payments": (Payment("cash", 300),)},
            "sale.lines[1].line_no: duplicate line_no (1)",
        ),
        (
            {"loyalty": (LoyaltyMovement("bonus", "gift", 1),)},
            "sale.loyalty[0].kind: expected one of accrue, spend ('gift')",
        ),
        (
            {"loyalty": (LoyaltyMovement("bonus", "spend", -5),)},
            "sale.loyalty[0].amount: must be >= 0 (-5)",
        ),
        (
            {"loyalty": (LoyaltyMovement("", "spend", 5),)},
            "sale.loyalty[0].wallet: must not be empty",
        ),
        ({"coupons_redeemed": ("",)}, "sale.coupons_redeemed[0]: must not be empty"),
        ({"coupons_issued": ("NEXT5-1", "")}, "sale.coupons_issued[1]: must not be empty"),
        ({"return_of": "R-17"}, "sale.return_of: expected the canonical lower-case UUID"),
        ({"segments": ("gold", "")}, "sale.segments[1]: must not be empty"),
        (
            {"personal_offers": (SaleOffer("", ("4600001",), "10"),)},
            "sale.personal_offers[0].offer_id: must not be empty",
        ),
        (
            {"personal_offers": (SaleOffer("po-1", ("4600001", ""), "10"),)},
            "sale.personal_offers[0].product_ids[1]: must not be empty",
        ),
        *(
            (
                {
                    "personal_offers": (
                        SaleOffer("po-1", ("4600001",), "5"),
                        SaleOffer("po-2", (), bad),
                    )
                },
                "sale.personal_offers[1].percent: expected a decimal string from 0 to 100 "
                f"({bad!r})",
            )
            for bad in (
                "100.01",
                "101",
                "1e1",
                "-5",
                "12,5",
                " 12",
                "12.",
                ".5",
                "",
                "NaN",
                "Infinity",
                "١٢",
            )
        ),
    ],
)
def test_inconsistent_sales_are_refused_on_encode_and_decode(
    make_sale: MakeSale, overrides: dict[str, Any], message: str
) -> None:
    sale = make_sale(**overrides)
    with pytest.raises(MalformedMessage, match=re.escape(message)):
        encode_sale(sale)
    with pytest.raises(
        MalformedMessage, match=re.escape(message.replace("sale.", "body.sales[0].", 1))
    ):
        encode(SaleBatch((sale,)), sender="s", sent_at=T)
    # The same sale built by a foreign encoder is refused on decode.
    raw = msgpack.unpackb(encode_sale(make_sale()), timestamp=3)
    raw.update(msgpack.unpackb(_pack(_sale_fields(sale)), timestamp=3))
    with pytest.raises(MalformedMessage, match=re.escape(message)):
        decode_sale(_pack(raw))


def _sale_fields(sale: Sale) -> dict[str, Any]:
    return {f.name: _plain(getattr(sale, f.name)) for f in dataclasses.fields(sale)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (Heartbeat("n", "center", "1", T), "body.role: expected one of register, store ('center')"),
        (Heartbeat("", "store", "1", T), "body.node_id: must not be empty"),
        (Heartbeat("n", "store", "1", T, queue_depth=-1), "body.queue_depth: must be >= 0 (-1)"),
        (Heartbeat("n", "store", "1", T, last_seq=-1), "body.last_seq: must be >= 0 (-1)"),
        (
            Heartbeat("n", "store", "1", T, master_version=-2),
            "body.master_version: must be >= 0 (-2)",
        ),
        (
            Heartbeat("n", "store", "1", T, devices={"printer": 1}),  # type: ignore[dict-item]
            "body.devices.printer: expected str, got int (1)",
        ),
        (MasterSnapshot(-1, {}), "body.version: must be >= 0 (-1)"),
        (MasterDelta(5, 4), "body.to_version: must be >= 5 (4)"),
        (MasterDelta(-1, 4), "body.from_version: must be >= 0 (-1)"),
        (
            MasterSnapshot(1, {"products": ({"price": object()},)}),
            "body.tables.products[0].price: cannot encode a value of type object",
        ),
        (
            MasterSnapshot(1, {"products": ({"at": datetime(2024, 1, 1)},)}),
            "body.tables.products[0].at: naive datetime (no tzinfo)",
        ),
        (
            MasterSnapshot(1, {"products": ({"n": 2**64},)}),
            "body.tables.products[0].n: integer out of the signed 64-bit range",
        ),
        (
            MasterSnapshot(1, {"products": ({"name": "a\x00b"},)}),
            "body.tables.products[0].name: contains a NUL character",
        ),
        (Heartbeat("n\x00", "store", "1", T), "body.node_id: contains a NUL character"),
        (Ack(accepted=(1,)), "body.accepted[0]: expected str, got int (1)"),  # type: ignore[arg-type]
        (Ack(accepted="abc"), "body.accepted: expected tuple, got str ('abc')"),  # type: ignore[arg-type]
    ],
)
def test_bad_messages_are_refused_on_encode(message: Any, error: str) -> None:
    with pytest.raises(MalformedMessage, match=re.escape(error)):
        encode(message, sender="s", sent_at=T)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda s: s.update(store_id="3\x0067"), "body.sales[0].store_id"),
        (lambda s: s.update(card_no="29\x00"), "body.sales[0].card_no"),
        (lambda s: s["lines"][0].update(product_id="p\x00"), "body.sales[0].lines[0].product_id"),
        (lambda s: s["payments"][0].update(method="ca\x00sh"), "body.sales[0].payments[0].method"),
        (lambda s: s.update(messages=["hi\x00"]), "body.sales[0].messages[0]"),
        (lambda s: s.update(seq=2**63), "body.sales[0].seq"),
        (
            lambda s: s["lines"][0].update(amount_minor=2**64 - 1),
            "body.sales[0].lines[0].amount_minor",
        ),
    ],
)
def test_a_nul_or_a_64_bit_overflow_is_refused_by_both_decoders(
    make_sale: MakeSale, change: Any, where: str
) -> None:
    raw = msgpack.unpackb(encode(SaleBatch((make_sale(),)), sender="s", sent_at=T), timestamp=3)
    change(raw["body"]["sales"][0])
    data = msgpack.packb(raw, datetime=True)
    for decoder in (decode, decode_sale_batch):
        with pytest.raises(MalformedMessage, match="^" + re.escape(where) + ": "):
            decoder(data)
    with pytest.raises(MalformedMessage, match=r"^sale\."):
        decode_sale(msgpack.packb(raw["body"]["sales"][0], datetime=True))


def test_naive_datetimes_are_refused_on_encode_with_a_hint(make_sale: MakeSale) -> None:
    naive = datetime(2024, 5, 17, 12, 0)
    sale = make_sale(closed_at=naive)
    expected = (
        "body.sales[0].closed_at: naive datetime (no tzinfo) "
        "(datetime.datetime(2024, 5, 17, 12, 0)); hint: times of facts are aware UTC"
    )
    with pytest.raises(MalformedMessage, match=re.escape(expected)):
        encode(SaleBatch((sale,)), sender="s", sent_at=T)
    with pytest.raises(MalformedMessage, match=re.escape("sent_at: naive datetime")):
        encode(Ack(), sender="s", sent_at=naive)


def test_encode_refuses_objects_that_are_not_messages(make_sale: MakeSale) -> None:
    with pytest.raises(UnknownMessageType, match="type: unknown message type 'Sale'") as info:
        encode(make_sale(), sender="s")  # type: ignore[arg-type]
    assert info.value.hint.startswith("encode() takes SaleBatch")
    with pytest.raises(MalformedMessage, match=re.escape("sender: must be 1..64 chars")):
        encode(Ack(), sender="")
    with pytest.raises(MalformedMessage, match="sender: expected str, got int"):
        encode(Ack(), sender=5)  # type: ignore[arg-type]
    with pytest.raises(MalformedMessage, match="sale: expected Sale, got map"):
        encode_sale({"sale_id": "x"})  # type: ignore[arg-type]


def test_all_errors_share_the_base_class() -> None:
    for cls in (
        MalformedMessage,
        PayloadTooLarge,
        UnsupportedVersion,
        UnknownMessageType,
        UnexpectedMessageType,
    ):
        assert issubclass(cls, ProtocolError)
    assert not issubclass(ProtocolError, ValueError)
