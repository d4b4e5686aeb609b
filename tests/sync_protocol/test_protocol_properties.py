"""Property tests: generated sales round trip; no input makes decode raise anything else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgpack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync_protocol import (
    Envelope,
    LineDiscount,
    LoyaltyMovement,
    Payment,
    ProtocolError,
    Sale,
    SaleBatch,
    SaleLine,
    decode,
    decode_sale,
    encode,
    encode_sale,
    sale_fingerprint,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

money = st.integers(min_value=-(10**9), max_value=10**12)
_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # NUL: refused
short_text = st.text(_CHARS, max_size=24)
utc_times = st.datetimes(timezones=st.just(UTC))


@st.composite
def sales(draw: st.DrawFn) -> Sale:
    lines = []
    for i in range(draw(st.integers(min_value=0, max_value=8))):
        discounts = draw(st.lists(st.builds(LineDiscount, short_text, money), max_size=3))
        lines.append(
            SaleLine(
                line_no=i + 1,
                product_id=draw(short_text),
                qty_milli=draw(st.integers(min_value=-(10**9), max_value=10**9)),
                unit_price_minor=draw(money),
                amount_minor=draw(money),
                discounts=tuple(discounts),
                weighed=draw(st.booleans()),
                known_product=draw(st.booleans()),
            )
        )
    subtotal = sum(line.amount_minor for line in lines)
    discount = sum(d.amount_minor for line in lines for d in line.discounts)
    total = subtotal - discount
    parts = draw(st.lists(money, max_size=3))
    methods = st.sampled_from(["cash", "card", "bonus", "gift-card"])
    payments = [Payment(draw(methods), amount) for amount in parts]
    payments.append(Payment(draw(methods), total - sum(parts)))
    movements = draw(
        st.lists(
            st.builds(
                LoyaltyMovement,
                wallet=st.sampled_from(["bonus", "stamps"]),
                kind=st.sampled_from(["accrue", "spend"]),
                amount=st.integers(min_value=0, max_value=10**9),
                rule_id=short_text,
                active_from=st.none() | utc_times,
                expires_at=st.none() | utc_times,
            ),
            max_size=3,
        )
    )
    return Sale(
        sale_id=str(draw(st.uuids())),
        store_id=draw(st.text(_CHARS, min_size=1, max_size=8)),
        register_id=draw(st.text(_CHARS, min_size=1, max_size=8)),
        seq=draw(st.integers(min_value=1, max_value=2**63 - 1)),
        opened_at=draw(utc_times),
        closed_at=draw(utc_times),
        card_no=draw(st.none() | short_text),
        lines=tuple(lines),
        payments=tuple(payments),
        loyalty=tuple(movements),
        subtotal_minor=subtotal,
        discount_minor=discount,
        total_minor=total,
        promo_version=draw(st.integers(min_value=0, max_value=2**31)),
        prev_hash=draw(st.sampled_from(["", "ab" * 32])),
        messages=tuple(draw(st.lists(short_text, max_size=3))),
    )


@FAST
@given(st.lists(sales(), max_size=4), utc_times)
def test_generated_sale_batches_round_trip(batch: list[Sale], sent_at: datetime) -> None:
    message = SaleBatch(tuple(batch))
    envelope = decode(encode(message, sender="367-1", sent_at=sent_at), expect=SaleBatch)
    assert envelope == Envelope(1, "sale_batch", "367-1", sent_at, message)


@FAST
@given(sales())
def test_generated_sales_round_trip_canonically(sale: Sale) -> None:
    data = encode_sale(sale)
    again = decode_sale(data)
    assert again == sale
    assert encode_sale(again) == data
    assert sale_fingerprint(again) == sale_fingerprint(sale)


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        envelope = decode(data)
    except ProtocolError:
        return
    assert isinstance(envelope, Envelope)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
@example(b"\x91" * 3000)
@example(b"\xdd\xff\xff\xff\xff")
@example(b"\xdf\xff\xff\xff\xff")
@example(b"\xc7\x0c\xff" + bytes(4) + (2**63 - 1).to_bytes(8, "big"))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    _decode_or_protocol_error(data)
    try:
        sale = decode_sale(data)
    except ProtocolError:
        return
    assert isinstance(sale, Sale)


_VALID = encode(
    SaleBatch(
        (
            Sale(
                "3f2b8c1e-5a6d-4f7e-9b0c-1d2e3f4a5b6c",
                "367",
                "367-1",
                5,
                datetime(2024, 5, 17, 9, 30, tzinfo=UTC),
                datetime(2024, 5, 17, 9, 31, 0, 500, tzinfo=UTC),
                "2770000012345",
                (SaleLine(1, "p", 1500, 1000, 1500, (LineDiscount("r", 100),), weighed=True),),
                (Payment("bonus", 400), Payment("cash", 1000)),
                (LoyaltyMovement("bonus", "spend", 400),),
                1500,
                100,
                1400,
                3,
            ),
        )
    ),
    sender="367-1",
    sent_at=datetime(2024, 5, 17, 9, 32, tzinfo=UTC),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(_VALID) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    ),
    st.integers(min_value=0, max_value=len(_VALID)),
)
def test_mutated_valid_messages_raise_only_protocol_errors(
    edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(_VALID)
    for index, byte in edits:
        data[index] = byte
    _decode_or_protocol_error(bytes(data))
    _decode_or_protocol_error(bytes(data[:cut]) + bytes(data[cut + 1 :]))


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | utc_times
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "sales",
        "lines",
        "payments",
        "loyalty",
        "sale_id",
        "seq",
        "qty_milli",
        "amount_minor",
        "discounts",
        "tables",
        "upserts",
        "deletes",
        "devices",
        "version",
        "role",
        "sent_at",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["sale_batch", "ack", "master_snapshot", "master_delta", "heartbeat"]),
    st.dictionaries(field_names, msgpack_values, max_size=6),
    st.dictionaries(field_names, msgpack_values, max_size=4),
)
def test_structured_garbage_raises_only_protocol_errors(
    type_name: str, body: dict[str, Any], nested: dict[str, Any]
) -> None:
    for key in ("sales", "lines", "rejected"):
        if key in body:
            body[key] = [nested]
    envelope = {
        "v": 1,
        "type": type_name,
        "sender": "s",
        "sent_at": datetime(2024, 1, 1, tzinfo=UTC),
        "body": body,
    }
    _decode_or_protocol_error(msgpack.packb(envelope, use_bin_type=True, datetime=True))
