"""The fast sale paths against the typed walk: same bytes, same objects, same errors."""

from __future__ import annotations

import dataclasses
import re
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_protocol import (
    Envelope,
    Limits,
    LineDiscount,
    LoyaltyMovement,
    MalformedMessage,
    Payment,
    ProtocolError,
    Sale,
    SaleBatch,
    SaleLine,
    SaleOffer,
    SalePromotion,
    SeenSeq,
    chain_hash,
    codec,
    decode,
    decode_sale,
    decode_sale_batch,
    encode,
    encode_sale,
    encode_sale_batch,
    fast,
    packing,
    payload_chain_hash,
    payload_fingerprint,
    sale_fingerprint,
    walk,
)

FIXTURES = Path(__file__).parent / "fixtures"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)


# --- the reference: the typed walk, packed as the codec always packed it ---------------------


def reference_sale_bytes(sale: Any) -> bytes:
    """encode_sale as it was before the fast path: the typed walk, then msgpack.packb."""
    wire = walk.encoder(Sale)(sale, ("sale",), True)
    try:
        data: bytes = msgpack.packb(wire, use_bin_type=True, datetime=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedMessage("payload", f"cannot encode: {exc}") from exc
    return data


def reference_batch_bytes(message: SaleBatch, sent_at: datetime, sender: str = "367-1") -> bytes:
    """encode(SaleBatch) as it was before the fast path."""
    envelope = {
        "v": 1,
        "type": "sale_batch",
        "sender": sender,
        "sent_at": sent_at.astimezone(UTC),
        "body": walk.encoder(SaleBatch)(message, ("body",), False),
    }
    try:
        data: bytes = msgpack.packb(envelope, use_bin_type=True, datetime=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedMessage("payload", f"cannot encode: {exc}") from exc
    return data


def reference_decode_sale(data: bytes, limits: Limits) -> Sale:
    """decode_sale as it was before the fast path."""
    sale: Sale = walk.decoder(Sale)(packing.unpack(data, limits), ("sale",))
    return sale


def outcome(call: Any, *args: Any, **kwargs: Any) -> Any:
    """The result of the call, or the error it raised as (class, message, path)."""
    try:
        return call(*args, **kwargs)
    except ProtocolError as exc:
        return (type(exc), str(exc), exc.path)
    except OverflowError as exc:
        # datetime.astimezone(UTC) of a time near year 1 or 9999: not a ProtocolError, but
        # it must still come from the same field.
        return (type(exc), str(exc), "")


# --- generated sales ---------------------------------------------------------------------------

money = st.integers(min_value=-(10**12), max_value=10**12)
# NUL is refused on the wire (no database stores it): tests/sync_protocol/test_protocol_errors.py
text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
nonempty = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=12
)
offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
aware = st.datetimes(timezones=st.just(UTC)) | st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
# "0".."100" as plain decimal strings, with leading and trailing zeros now and then.
percents = st.decimals(min_value=0, max_value=100, places=3).map(
    lambda d: format(d, "f")
) | st.sampled_from(["0", "100", "12.5", "007", "99.999999999999999999", "100.000"])
sale_offers = st.builds(
    SaleOffer,
    offer_id=nonempty,
    product_ids=st.lists(nonempty, max_size=3).map(tuple),
    percent=percents,
)
sale_promotions = st.builds(SalePromotion, promotion_id=nonempty, qty_milli=st.integers(0, 2**40))


def seq_of(draw: st.DrawFn, items: list[Any]) -> Any:
    """A tuple, or now and then a list (the walk accepts both)."""
    return list(items) if draw(st.integers(0, 9)) == 0 else tuple(items)


@st.composite
def sales(draw: st.DrawFn) -> Sale:
    line_nos = draw(st.lists(st.integers(-(2**40), 2**40), unique=True, max_size=8))
    lines = []
    for line_no in line_nos:
        discounts = [LineDiscount(draw(text), draw(money)) for _ in range(draw(st.integers(0, 3)))]
        lines.append(
            SaleLine(
                line_no,
                draw(text),
                draw(st.integers(-(10**9), 10**9)),
                draw(money),
                draw(money),
                seq_of(draw, discounts),
                weighed=draw(st.booleans()),
                known_product=draw(st.booleans()),
                certificate_code=draw(st.sampled_from(["", "", "GC-1234"]) | text),
            )
        )
    subtotal = sum(line.amount_minor for line in lines)
    discount = sum(d.amount_minor for line in lines for d in line.discounts)
    total = subtotal - discount
    parts = draw(st.lists(money, max_size=3))
    methods = st.sampled_from(["cash", "card", "bonus", "gift-card"])
    codes = st.sampled_from(["", "", "GC-0042"]) | text
    payments = [Payment(draw(methods), amount, draw(codes)) for amount in parts]
    payments.append(Payment(draw(methods), total - sum(parts), draw(codes)))
    movements = draw(
        st.lists(
            st.builds(
                LoyaltyMovement,
                wallet=nonempty,
                kind=st.sampled_from(["accrue", "spend"]),
                amount=st.integers(min_value=0, max_value=2**63 - 1),
                rule_id=text,
                active_from=st.none() | aware,
                expires_at=st.none() | aware,
            ),
            max_size=3,
        )
    )
    sale_id = str(draw(st.uuids()))
    return_of = draw(st.none() | st.uuids().map(str).filter(lambda u: u != sale_id))
    return Sale(
        sale_id=sale_id,
        store_id=draw(nonempty),
        register_id=draw(nonempty),
        seq=draw(st.integers(min_value=1, max_value=2**63 - 1)),
        opened_at=draw(aware),
        closed_at=draw(aware),
        card_no=draw(st.none() | text),
        lines=seq_of(draw, lines),
        payments=seq_of(draw, payments),
        loyalty=seq_of(draw, movements),
        subtotal_minor=subtotal,
        discount_minor=discount,
        total_minor=total,
        promo_version=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        prev_hash=draw(st.just("") | hexes),
        messages=seq_of(draw, draw(st.lists(text, max_size=3))),
        coupons_redeemed=seq_of(draw, draw(st.lists(nonempty, max_size=2))),
        coupons_issued=seq_of(draw, draw(st.lists(nonempty, max_size=2))),
        return_of=return_of,
        segments=seq_of(draw, draw(st.lists(nonempty, max_size=3))),
        personal_offers=seq_of(draw, draw(st.lists(sale_offers, max_size=3))),
        promotions=seq_of(draw, draw(st.lists(sale_promotions, max_size=3))),
        state_seen=seq_of(
            draw,
            draw(
                st.lists(
                    st.builds(
                        SeenSeq,
                        register_id=nonempty,
                        seq=st.integers(min_value=1, max_value=2**63 - 1),
                    ),
                    max_size=3,
                )
            ),
        ),
    )


# --- valid sales: the fast path is taken and agrees ------------------------------------------


def test_fast_paths_are_written_for_the_current_message_classes() -> None:
    # Fails when a field is added to a sale part: update _FAST_LAYOUT and the fast paths (fast.py).
    # (Until then the codec stays correct, only slower: every sale takes the typed walk.)
    assert fast.layout_ok()


@SETTINGS
@given(sales())
def test_fast_encode_sale_is_byte_identical_to_the_reference(sale: Sale) -> None:
    quick = fast.pack_wire(fast.sale_wire(sale, True))  # raises Unusual if not taken
    assert quick == reference_sale_bytes(sale)
    assert encode_sale(sale) == quick
    assert codec._encode_sale_reference(sale) == quick


@SETTINGS
@given(sales())
def test_fast_decode_sale_equals_the_reference(sale: Sale) -> None:
    data = encode_sale(sale)
    quick = fast.read_sale(msgpack.unpackb(data, timestamp=3))
    assert quick == reference_decode_sale(data, Limits())
    assert decode_sale(data) == quick
    assert [type(line) for line in quick.lines] == [SaleLine] * len(sale.lines)
    assert encode_sale(quick) == data


@SETTINGS
@given(st.lists(sales(), max_size=3), st.just(T) | aware)
def test_fast_sale_batches_equal_the_reference(batch: list[Sale], sent_at: datetime) -> None:
    message = SaleBatch(tuple(batch))
    data = encode(message, sender="367-1", sent_at=sent_at)
    assert data == reference_batch_bytes(message, sent_at)
    raw = msgpack.unpackb(data, timestamp=3)
    envelope = codec._fast_read_batch(raw, SaleBatch)
    assert envelope == codec._decode_reference(raw, Limits(), SaleBatch)
    assert envelope == Envelope(1, "sale_batch", "367-1", sent_at, decode(data).message)


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("sale_v1.msgpack", "sale"),
        ("sale_v1_coupons.msgpack", "sale"),
        ("sale_batch_v1.msgpack", "batch"),
        ("sale_batch_v1_coupons.msgpack", "batch"),
        ("sale_v1_context.msgpack", "sale"),
        ("sale_batch_v1_context.msgpack", "batch"),
        ("sale_v1_certificates.msgpack", "sale"),
    ],
)
def test_golden_fixtures_take_the_fast_paths(fixture: str, kind: str) -> None:
    data = (FIXTURES / fixture).read_bytes()
    raw = msgpack.unpackb(data, timestamp=3)
    if kind == "sale":
        sale = fast.read_sale(raw)
        assert fast.pack_wire(fast.sale_wire(sale, True)) == data
    else:
        envelope = codec._fast_read_batch(raw, None)
        assert isinstance(envelope.message, SaleBatch)
        # Fields added since the fixture was written are now sent (with their defaults).
        again = encode(envelope.message, sender=envelope.sender, sent_at=envelope.sent_at)
        assert again == reference_batch_bytes(envelope.message, envelope.sent_at, envelope.sender)
        assert decode(again) == envelope


# --- invalid sales: the same error, with the same path, as the typed walk ---------------------

BAD_VALUES = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        1,
        1.5,
        "",
        "x",
        "0B7E6A7C-3F5D-4E0A-9A51-2F4C8D1E6B90",
        "0b7e6a7c-3f5d-4e0a-9a51-2f4c8d1e6b90",
        "ab" * 32,
        "accrue",
        2**64,
        -(2**63) - 1,
        2**63,
        (),
        [],
        ("",),
        ("ok", 5),
        b"bin",
        datetime(2024, 5, 17, 12, 0),
        T,
        {"rule_id": "r"},
        LineDiscount("r", 1),
        Payment("cash", 1),
        ("\ud800",),
        "12.5",
        "101",
        "1e1",
        ("gold",),
        (SaleOffer("po-1", ("4600001",), "12.5"),),
        SaleOffer("po-1", (), "100.01"),
    ]
)


@st.composite
def broken_sales(draw: st.DrawFn) -> Any:
    """A generated sale with one field, of the sale or of one of its parts, replaced."""
    sale = draw(sales())
    value = draw(BAD_VALUES)
    targets: list[tuple[str, int, Any]] = [("", 0, sale)]
    for name in ("lines", "payments", "loyalty", "personal_offers", "promotions"):
        targets += [(name, i, item) for i, item in enumerate(getattr(sale, name))]
    targets += [
        (f"lines.{i}.discounts", j, d)
        for i, line in enumerate(sale.lines)
        for j, d in enumerate(line.discounts)
    ]
    where, index, target = draw(st.sampled_from(targets))
    field = draw(st.sampled_from([f.name for f in dataclasses.fields(target)]))
    changed = dataclasses.replace(target, **{field: value})
    if where == "":
        return changed
    if where.startswith("lines."):
        line_index = int(where.split(".")[1])
        line = sale.lines[line_index]
        discounts = list(line.discounts)
        discounts[index] = changed
        changed = dataclasses.replace(line, discounts=tuple(discounts))
        where, index = "lines", line_index
    items = list(getattr(sale, where))
    items[index] = changed
    return dataclasses.replace(sale, **{where: tuple(items)})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_sales())
def test_broken_sales_fail_exactly_as_in_the_reference(sale: Any) -> None:
    assert outcome(encode_sale, sale) == outcome(reference_sale_bytes, sale)
    message = SaleBatch((sale,))
    assert outcome(encode, message, sender="367-1", sent_at=T) == outcome(
        reference_batch_bytes, message, T
    )


WIRE_KEYS = [f.name for f in dataclasses.fields(Sale)] + ["extra"]
PART_KEYS = sorted(
    {
        f.name
        for cls in (SaleLine, LineDiscount, Payment, LoyaltyMovement, SaleOffer, SalePromotion)
        for f in dataclasses.fields(cls)
    }
    | {"extra"}
)


def _nest(n: int) -> Any:
    value: Any = 0
    for _ in range(n):
        value = {"x": value}
    return value


WIRE_VALUES = st.sampled_from(
    [
        None,
        True,
        0,
        -1,
        1,
        1.5,
        "",
        "x",
        "0B7E6A7C-3F5D-4E0A-9A51-2F4C8D1E6B90",
        "0b7e6a7c-3f5d-4e0a-9a51-2f4c8d1e6b90",
        "ab" * 32,
        "spend",
        2**63,
        [],
        [""],
        ["ok", 5],
        [{"rule_id": "r", "amount_minor": 1}],
        [{"method": "cash", "amount_minor": 1}],
        ["gold"],
        [{"offer_id": "po-1", "product_ids": ["4600001"], "percent": "12.5"}],
        [{"offer_id": "po-1", "product_ids": [], "percent": 12.5}],
        "12.5",
        "100.5",
        b"bin",
        T,
        {"rule_id": "r"},
    ]
) | st.integers(1, 12).map(_nest)


@st.composite
def broken_wire(draw: st.DrawFn) -> dict[str, Any]:
    """The unpacked map of a generated sale with one key, of the sale or a part, set or dropped."""
    raw: dict[str, Any] = msgpack.unpackb(encode_sale(draw(sales())), timestamp=3)
    maps: list[tuple[dict[str, Any], list[str]]] = [(raw, WIRE_KEYS)]
    for name in ("lines", "payments", "loyalty", "personal_offers", "promotions"):
        maps += [(item, PART_KEYS) for item in raw.get(name, [])]
    for line in raw.get("lines", []):
        maps += [(d, PART_KEYS) for d in line.get("discounts", [])]
    target, keys = draw(st.sampled_from(maps))
    key = draw(st.sampled_from(keys))
    if draw(st.booleans()) and key in target:
        del target[key]
    else:
        target[key] = draw(WIRE_VALUES)
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_wire(), st.sampled_from([1, 3, 4, 5, 6, 7, 8, 16]))
def test_broken_wire_sales_fail_exactly_as_in_the_reference(
    raw: dict[str, Any], max_depth: int
) -> None:
    limits = Limits(max_depth=max_depth)
    data = msgpack.packb(raw, use_bin_type=True, datetime=True)
    assert outcome(decode_sale, data, limits=limits) == outcome(reference_decode_sale, data, limits)
    envelope = {"v": 1, "type": "sale_batch", "sender": "s", "sent_at": T, "body": {"sales": [raw]}}
    batch = msgpack.packb(envelope, use_bin_type=True, datetime=True)
    unpacked = packing.unpack_unchecked(batch, limits)
    assert outcome(decode, batch, limits=limits) == outcome(
        codec._decode_reference, unpacked, limits, None
    )


def test_an_int_msgpack_refuses_takes_the_walk_and_leaves_the_packer_usable() -> None:
    data = (FIXTURES / "sale_v1.msgpack").read_bytes()
    sale = decode_sale(data)
    with pytest.raises(
        MalformedMessage, match=r"^sale\.seq: integer out of the signed 64-bit range"
    ):
        encode_sale(dataclasses.replace(sale, seq=2**64))
    assert encode_sale(sale) == data


def test_each_thread_packs_with_its_own_packer() -> None:
    data = (FIXTURES / "sale_v1.msgpack").read_bytes()
    sale = decode_sale(data)
    results: list[bool] = []

    def work() -> None:
        results.append(all(encode_sale(sale) == data for _ in range(300)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 4


def test_without_the_fast_paths_the_codec_gives_the_same_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = (FIXTURES / "sale_v1.msgpack").read_bytes()
    batch = (FIXTURES / "sale_batch_v1.msgpack").read_bytes()
    sale = decode_sale(data)
    envelope = decode(batch)
    monkeypatch.setattr(fast, "layout_ok", lambda: False)
    monkeypatch.setattr(fast, "sale_wire", None)  # would fail if still called
    monkeypatch.setattr(fast, "read_sale", None)
    assert encode_sale(sale) == data
    assert decode_sale(data) == sale
    assert decode(batch) == envelope
    again = encode(envelope.message, sender=envelope.sender, sent_at=envelope.sent_at)
    assert again == reference_batch_bytes(envelope.message, envelope.sent_at, envelope.sender)


# --- sale batches from and to stored sale bytes ----------------------------------------------


def wire_form(sale: Sale) -> bytes:
    """A sale as encode() writes it inside a SaleBatch: every field, defaults included."""
    data: bytes = msgpack.packb(
        walk.encoder(Sale)(sale, ("sale",), False), use_bin_type=True, datetime=True
    )
    return data


@SETTINGS
@given(st.lists(sales(), max_size=4), st.just(T) | aware, st.sampled_from(["367-1", "s" * 64]))
def test_a_batch_spliced_from_sale_bytes_is_byte_identical_to_encode(
    batch: list[Sale], sent_at: datetime, sender: str
) -> None:
    message = SaleBatch(tuple(batch))
    spliced = encode_sale_batch([wire_form(s) for s in batch], sender=sender, sent_at=sent_at)
    assert spliced == encode(message, sender=sender, sent_at=sent_at)


@SETTINGS
@given(st.lists(sales(), max_size=4), st.just(T) | aware)
def test_a_batch_of_canonical_sales_decodes_to_the_same_sales_and_gives_back_their_bytes(
    batch: list[Sale], sent_at: datetime
) -> None:
    stored = [encode_sale(s) for s in batch]
    data = encode_sale_batch(stored, sender="367-1", sent_at=sent_at)
    envelope, payloads = decode_sale_batch(data)
    assert envelope == decode(data)
    assert envelope == decode(encode(SaleBatch(tuple(batch)), sender="367-1", sent_at=sent_at))
    assert payloads == tuple(stored)
    _, raws, pieces = codec._unpack_sale_batch(data, Limits())
    assert pieces == stored
    assert all(fast.is_canonical(raw, piece) for raw, piece in zip(raws, pieces, strict=True))


@SETTINGS
@given(st.lists(sales(), min_size=1, max_size=4))
def test_sales_sent_by_encode_are_stored_in_canonical_form(batch: list[Sale]) -> None:
    data = encode(SaleBatch(tuple(batch)), sender="367-1", sent_at=T)
    envelope, payloads = decode_sale_batch(data)
    assert envelope == decode(data)
    assert payloads == tuple(encode_sale(s) for s in envelope.message.sales)  # type: ignore[union-attr]
    _, raws, pieces = codec._unpack_sale_batch(data, Limits())
    for sale, raw, piece in zip(batch, raws, pieces, strict=True):
        assert fast.is_canonical(raw, piece) == (piece == encode_sale(sale))


BATCH_FIXTURES = [
    "sale_batch_v1.msgpack",
    "sale_batch_v1_coupons.msgpack",
    "sale_batch_v1_context.msgpack",
]


@pytest.mark.parametrize("fixture", [*BATCH_FIXTURES, "sale_batch_v1_unknown_fields.msgpack"])
def test_golden_batches_give_canonical_bytes_and_splice_back_byte_for_byte(fixture: str) -> None:
    data = (FIXTURES / fixture).read_bytes()
    envelope, payloads = decode_sale_batch(data)
    assert envelope == decode(data)
    sales = envelope.message.sales  # type: ignore[union-attr]
    assert payloads == tuple(encode_sale(s) for s in sales)
    _, _, pieces = codec._unpack_sale_batch(data, Limits())
    spliced = encode_sale_batch(pieces, sender=envelope.sender, sent_at=envelope.sent_at)
    if fixture in BATCH_FIXTURES:
        assert spliced == data
    else:  # its envelope and body carry unknown keys, which a new batch does not
        assert decode(spliced).message == envelope.message
    again = encode_sale_batch(payloads, sender=envelope.sender, sent_at=envelope.sent_at)
    assert decode_sale_batch(again) == (decode(again), payloads)
    assert decode(again).message == envelope.message


def test_non_canonical_sales_are_encoded_again() -> None:
    sale = decode_sale((FIXTURES / "sale_v1.msgpack").read_bytes())
    canonical = encode_sale(sale)
    raw = msgpack.unpackb(canonical, timestamp=3)
    reordered = dict(reversed(list(raw.items())))
    with_default = {**raw, "coupons_issued": []}
    unknown = {**raw, "extra": 1}
    line_default = {**raw, "lines": [{**raw["lines"][0], "weighed": False}, *raw["lines"][1:]]}
    variants = [
        msgpack.packb(v, use_bin_type=True, datetime=True)
        for v in (reordered, with_default, unknown, line_default)
    ]
    # seq 1001 written as uint64 (0xcf) instead of uint16: same value, longer form.
    packed_seq = msgpack.packb(1001)
    longer = canonical.replace(b"\xa3seq" + packed_seq, b"\xa3seq\xcf" + (1001).to_bytes(8, "big"))
    assert longer != canonical
    variants.append(longer)
    for variant in variants:
        assert decode_sale(variant) == sale
        assert not fast.is_canonical(msgpack.unpackb(variant, timestamp=3), variant)
        data = encode_sale_batch([variant], sender="367-1", sent_at=T)
        envelope, payloads = decode_sale_batch(data)
        assert envelope.message == SaleBatch((sale,))
        assert payloads == (canonical,)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_wire(), st.sampled_from([1, 3, 4, 5, 6, 7, 8, 16]))
def test_broken_batches_fail_in_decode_sale_batch_exactly_as_in_decode(
    raw: dict[str, Any], max_depth: int
) -> None:
    limits = Limits(max_depth=max_depth)
    envelope = {"v": 1, "type": "sale_batch", "sender": "s", "sent_at": T, "body": {"sales": [raw]}}
    batch = msgpack.packb(envelope, use_bin_type=True, datetime=True)
    got = outcome(decode_sale_batch, batch, limits=limits)
    want = outcome(decode, batch, limits=limits)
    if isinstance(want, Envelope):
        assert got[0] == want
        (payload,) = got[1]
        assert payload == encode_sale(want.message.sales[0])  # type: ignore[union-attr]
        piece = msgpack.packb(raw, use_bin_type=True, datetime=True)
        if fast.is_canonical(raw, piece):
            assert piece == payload
    else:
        assert got == want


def _envelope(**fields: Any) -> bytes:
    """An envelope map with these fields (a body of None is left out), packed as is."""
    head: dict[Any, Any] = {"v": 1, "type": "sale_batch", "sender": "s", "sent_at": T}
    head.update(fields)
    data: bytes = msgpack.packb(head, use_bin_type=True, datetime=True)
    return data


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x93\x01\x02\x03",
        (FIXTURES / "ack_v1.msgpack").read_bytes(),
        (FIXTURES / "sale_batch_v1.msgpack").read_bytes()[:-3],
        (FIXTURES / "sale_batch_v1.msgpack").read_bytes() + b"\x00",
        _envelope(),
        _envelope(body=[]),
        _envelope(body={"sales": {}}),
        _envelope(body={"sales": [1]}),
        _envelope(body={"sales": []}, v=2),
        _envelope(body={"sales": []}, extra={"sales": [1]}),
        msgpack.packb({1: 2}),
        _envelope(**{"body": {"sales": []}, "5": 1}).replace(b"\xa15", b"\x05"),  # an int key
        _envelope(body={"sales": [], "x": 1}).replace(b"\xa1x", b"\x07"),  # an int key in body
    ],
)
@pytest.mark.parametrize("limits", [Limits(), Limits(max_array_len=1, max_map_len=4)])
def test_bad_batches_fail_in_decode_sale_batch_as_in_decode(data: bytes, limits: Limits) -> None:
    want = outcome(decode, data, limits=limits, expect=SaleBatch)
    got = outcome(decode_sale_batch, data, limits=limits)
    assert got == (want if not isinstance(want, Envelope) else (want, ()))
    assert not isinstance(want, Envelope) or want.message == SaleBatch(())


def test_limits_apply_to_the_sales_array_and_the_maps_read_by_hand() -> None:
    data = (FIXTURES / "sale_batch_v1.msgpack").read_bytes()  # two sales
    for limits in (Limits(max_array_len=1), Limits(max_map_len=4), Limits(max_bytes=len(data) - 1)):
        assert codec._unpack_sale_batch(data, limits) is None
        with pytest.raises(ProtocolError) as want:
            decode(data, limits=limits)
        with pytest.raises(type(want.value), match=re.escape(str(want.value))):
            decode_sale_batch(data, limits=limits)


def test_encode_sale_batch_checks_what_it_does_not_decode() -> None:
    payload = (FIXTURES / "sale_v1.msgpack").read_bytes()
    with pytest.raises(MalformedMessage, match=r"^body\.sales\[1\]: expected the bytes"):
        encode_sale_batch([payload, "x"], sender="s", sent_at=T)  # type: ignore[list-item]
    with pytest.raises(MalformedMessage, match=r"^body\.sales\[0\]: expected the bytes"):
        encode_sale_batch([b""], sender="s", sent_at=T)
    for sender in ("", "s" * 65):
        with pytest.raises(MalformedMessage, match=r"^sender: must be 1\.\.64 chars"):
            encode_sale_batch([payload], sender=sender, sent_at=T)
    with pytest.raises(MalformedMessage, match=r"^sent_at: naive datetime"):
        encode_sale_batch([payload], sender="s", sent_at=datetime(2024, 5, 17))
    empty = encode_sale_batch([], sender="s", sent_at=T)
    assert empty == encode(SaleBatch(()), sender="s", sent_at=T)


@SETTINGS
@given(sales())
def test_hashes_of_stored_bytes_equal_the_hashes_of_the_sale(sale: Sale) -> None:
    payload = encode_sale(sale)
    assert payload_fingerprint(payload) == sale_fingerprint(sale)
    assert payload_chain_hash(sale.prev_hash, payload) == chain_hash(sale)
