"""Round trips of every message type, canonical sales and fingerprints."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import msgpack
import pytest

from sync_protocol import (
    CONTENT_TYPE,
    PROTOCOL_VERSION,
    Ack,
    Envelope,
    Heartbeat,
    LineDiscount,
    MasterDelta,
    MasterSnapshot,
    Message,
    Payment,
    Rejection,
    Sale,
    SaleBatch,
    SaleLine,
    SaleOffer,
    SalePass,
    SalePromotion,
    SeenSeq,
    chain_hash,
    decode,
    decode_sale,
    encode,
    encode_sale,
    sale_fingerprint,
)

T = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
MakeSale = Callable[..., Sale]


def _messages(make_sale: MakeSale) -> dict[str, Message]:
    return {
        "sale_batch": SaleBatch(
            (make_sale(), make_sale(sale_id="5d3f0c7e-9b1a-4c2e-8f6d-7a0b1c2d3e4f", seq=43))
        ),
        "ack": Ack(
            accepted=("0b7e6a7c-3f5d-4e0a-9a51-2f4c8d1e6b90",),
            duplicates=("5d3f0c7e-9b1a-4c2e-8f6d-7a0b1c2d3e4f",),
            rejected=(Rejection("a1a1a1a1-0000-4000-8000-000000000001", "unknown register"),),
        ),
        "master_snapshot": MasterSnapshot(
            version=12,
            tables={
                "products": (
                    {"product_id": "4600001", "name": "Milk 1 l", "price_minor": 8990},
                    {"product_id": "2000123", "name": "Cheese", "weighed": True, "img": b"\x00"},
                ),
                "promotions": (
                    {
                        "promotion_id": "accrual-1pct",
                        "version": 3,
                        "doc": {"kind": "accrual_percent", "percent": "1", "tags": ["a", "b"]},
                    },
                ),
                "settings": ({"name": "bonus_max_share", "value": "0.5"},),
                "cards": (),
            },
        ),
        "master_delta": MasterDelta(
            from_version=12,
            to_version=13,
            upserts={"cards": ({"card_no": "2770000012345", "segment": "gold"},)},
            deletes={"products": ("4600001",), "promotions": ()},
        ),
        "heartbeat": Heartbeat(
            node_id="367-1",
            role="register",
            store_id="367",
            sent_at=T,
            last_seq=42,
            queue_depth=3,
            oldest_queued_at=T - timedelta(minutes=5),
            master_version=12,
            devices={"printer": "online", "scanner": "offline"},
        ),
    }


@pytest.mark.parametrize(
    "type_name", ["sale_batch", "ack", "master_snapshot", "master_delta", "heartbeat"]
)
def test_every_message_type_round_trips(make_sale: MakeSale, type_name: str) -> None:
    message = _messages(make_sale)[type_name]
    data = encode(message, sender="store-367", sent_at=T)
    envelope = decode(data, expect=type(message))
    assert envelope == Envelope(
        v=PROTOCOL_VERSION, type=type_name, sender="store-367", sent_at=T, message=message
    )
    assert type_name == type(message).TYPE


def test_envelope_on_the_wire_has_the_documented_keys(make_sale: MakeSale) -> None:
    raw = msgpack.unpackb(encode(Ack(), sender="c", sent_at=T), timestamp=3)
    assert raw == {
        "v": 1,
        "type": "ack",
        "sender": "c",
        "sent_at": T,
        "body": {"accepted": [], "duplicates": [], "rejected": []},
    }
    assert CONTENT_TYPE == "application/x-msgpack"


def test_sent_at_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    envelope = decode(encode(Ack(), sender="c"))
    assert before <= envelope.sent_at <= datetime.now(UTC)
    assert envelope.sent_at.utcoffset() == timedelta(0)


def test_aware_non_utc_times_arrive_as_the_same_instant_in_utc(make_sale: MakeSale) -> None:
    moscow = timezone(timedelta(hours=3))
    sale = make_sale(opened_at=datetime(2024, 5, 17, 12, 0, tzinfo=moscow))
    got = decode(encode(SaleBatch((sale,)), sender="s", sent_at=T)).message
    assert isinstance(got, SaleBatch)
    assert got.sales[0].opened_at == datetime(2024, 5, 17, 9, 0, tzinfo=UTC)
    assert got.sales[0].opened_at.tzinfo == UTC


def test_lists_are_accepted_for_tuples_and_come_back_as_tuples(make_sale: MakeSale) -> None:
    sale = make_sale()
    batch = SaleBatch([sale])  # type: ignore[arg-type]
    got = decode(encode(batch, sender="s", sent_at=T)).message
    assert got == SaleBatch((sale,))


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_decode_accepts_bytes_like(wrap: type) -> None:
    data = encode(Ack(accepted=("x",)), sender="s", sent_at=T)
    assert decode(wrap(data)).message == Ack(accepted=("x",))


def test_expect_accepts_a_tuple_of_types() -> None:
    data = encode(Ack(), sender="s", sent_at=T)
    assert decode(data, expect=(SaleBatch, Ack)).type == "ack"


def test_empty_sale_batch_and_zero_sale_round_trip(make_sale: MakeSale) -> None:
    free = make_sale(lines=(SaleLine(1, "gift", 1000, 0, 0),), payments=(), loyalty=())
    for message in (SaleBatch(()), SaleBatch((free,))):
        assert decode(encode(message, sender="s", sent_at=T)).message == message


def test_unknown_keys_are_ignored_at_every_level(make_sale: MakeSale) -> None:
    raw = msgpack.unpackb(encode(SaleBatch((make_sale(),)), sender="s", sent_at=T), timestamp=3)
    raw["trace_id"] = "abc"
    raw["body"]["compressed"] = False
    raw["body"]["sales"][0]["fiscal"] = {"fn": "9999", "deep": [[1, 2], {"x": None}]}
    raw["body"]["sales"][0]["lines"][0]["vat_rate"] = 2000
    raw["body"]["sales"][0]["lines"][0]["discounts"][0]["label"] = "10%"
    raw["body"]["sales"][0]["payments"][1]["rrn"] = "123"
    raw["body"]["sales"][0]["loyalty"][0]["balance_after"] = 1
    data = msgpack.packb(raw, datetime=True)
    assert decode(data).message == SaleBatch((make_sale(),))


def test_missing_defaulted_fields_take_their_defaults(make_sale: MakeSale) -> None:
    sale = make_sale(prev_hash="", messages=())
    raw = msgpack.unpackb(encode_sale(sale), timestamp=3)
    body = {"sales": [raw]}
    del body["sales"][0]["card_no"]  # `str | None` without a default: missing means None
    line = body["sales"][0]["lines"][2]
    assert line.pop("known_product") is False
    envelope = {"v": 1, "type": "sale_batch", "sender": "s", "sent_at": T, "body": body}
    got = decode(msgpack.packb(envelope, datetime=True)).message
    assert isinstance(got, SaleBatch)
    assert got.sales[0].card_no is None
    assert got.sales[0].prev_hash == ""
    assert got.sales[0].messages == ()
    assert got.sales[0].lines[0].weighed is False
    assert got.sales[0].lines[2].known_product is True
    minimal = {"node_id": "n", "role": "store", "store_id": "1", "sent_at": T}
    beat = decode(
        msgpack.packb({**envelope, "type": "heartbeat", "body": minimal}, datetime=True)
    ).message
    assert beat == Heartbeat("n", "store", "1", T)
    assert beat.devices == {}


def test_encode_sale_round_trips_and_is_canonical(make_sale: MakeSale) -> None:
    sale = make_sale(
        coupons_redeemed=("NEXT5-1",),
        coupons_issued=("NEXT5-2", "NEXT5-3"),
        return_of="6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e",
        segments=("gold",),
        personal_offers=(SaleOffer("po-1", ("4600001",), "12.5"),),
        promotions=(SalePromotion("welcome", 0), SalePromotion("milk-2for1", 2000)),
        state_seen=(SeenSeq("reg-1", 4), SeenSeq("reg-9", 17)),
        passes=(
            SalePass("compl", "milk", T, T + timedelta(days=7), 10, 2, opened=True),
            SalePass("compl", "whisky", T - timedelta(days=1), T + timedelta(days=6), 1, 1, 0),
        ),
        shown_messages=("m-1",),
    )
    data = encode_sale(sale)
    assert decode_sale(data) == sale
    assert encode_sale(decode_sale(data)) == data
    raw = msgpack.unpackb(data, timestamp=3)
    # Stable key order: the dataclass field order.
    assert list(raw) == [f.name for f in dataclasses.fields(Sale)]
    assert list(raw["lines"][0]) == [
        "line_no",
        "product_id",
        "qty_milli",
        "unit_price_minor",
        "amount_minor",
        "discounts",
    ]
    # Fields equal to their defaults are left out.
    assert "discounts" not in raw["lines"][1]
    assert raw["lines"][1]["weighed"] is True
    assert raw["lines"][2]["known_product"] is False
    assert "rule_id" not in raw["loyalty"][0]
    assert raw["coupons_issued"] == ["NEXT5-2", "NEXT5-3"]
    assert raw["personal_offers"] == [
        {"offer_id": "po-1", "product_ids": ["4600001"], "percent": "12.5"}
    ]
    assert "coupons_redeemed" not in msgpack.unpackb(encode_sale(make_sale()), timestamp=3)


CONTEXT = {
    "segments": ("gold", "students"),
    "personal_offers": (
        SaleOffer("po-1", ("4600001",), "12.5"),
        SaleOffer("po-2", ("2000123", "4600003"), "100"),
        SaleOffer("po-3", (), "0"),
    ),
}


def test_pricing_context_round_trips_in_sales_and_batches(make_sale: MakeSale) -> None:
    sale = make_sale(**CONTEXT)
    assert decode_sale(encode_sale(sale)) == sale
    envelope = decode(encode(SaleBatch((sale, make_sale())), sender="367-1", sent_at=T))
    assert isinstance(envelope.message, SaleBatch)
    assert envelope.message.sales[0].segments == ("gold", "students")
    assert envelope.message.sales[0].personal_offers == CONTEXT["personal_offers"]
    assert envelope.message.sales[1].personal_offers == ()
    # Lists are accepted for tuples and come back as tuples.
    listed = make_sale(segments=["gold"], personal_offers=[SaleOffer("po-1", ["4600001"], "12.5")])
    assert decode_sale(encode_sale(listed)) == make_sale(
        segments=("gold",), personal_offers=(SaleOffer("po-1", ("4600001",), "12.5"),)
    )


def test_empty_pricing_context_is_left_out_of_envelopes_too(make_sale: MakeSale) -> None:
    # Envelopes send every other field with its default; these two are left out when empty,
    # so a sale without context has the bytes it had before they existed.
    raw = msgpack.unpackb(encode(SaleBatch((make_sale(),)), sender="s", sent_at=T), timestamp=3)
    wire = raw["body"]["sales"][0]
    assert "coupons_issued" in wire
    assert "segments" not in wire
    assert "personal_offers" not in wire
    with_context = make_sale(**CONTEXT)
    raw = msgpack.unpackb(encode(SaleBatch((with_context,)), sender="s", sent_at=T), timestamp=3)
    assert raw["body"]["sales"][0]["segments"] == ["gold", "students"]
    assert len(raw["body"]["sales"][0]["personal_offers"]) == 3


def test_pricing_context_is_covered_by_fingerprint_and_chain_hash(make_sale: MakeSale) -> None:
    sale = make_sale(**CONTEXT)
    variants = [
        make_sale(),
        dataclasses.replace(sale, segments=("gold",)),
        dataclasses.replace(sale, personal_offers=CONTEXT["personal_offers"][:1]),
        dataclasses.replace(
            sale,
            personal_offers=(SaleOffer("po-1", ("4600001",), "12.50"), *sale.personal_offers[1:]),
        ),
    ]
    assert len({sale_fingerprint(s) for s in (sale, *variants)}) == 1 + len(variants)
    assert len({chain_hash(s) for s in (sale, *variants)}) == 1 + len(variants)


def test_fingerprint_is_stable_and_sensitive(make_sale: MakeSale) -> None:
    sale = make_sale()
    fingerprint = sale_fingerprint(sale)
    assert len(fingerprint) == 64
    assert int(fingerprint, 16) >= 0
    assert sale_fingerprint(make_sale()) == fingerprint
    assert sale_fingerprint(decode_sale(encode_sale(sale))) == fingerprint
    # Same instant in another zone: same fact, same fingerprint.
    moscow = sale.opened_at.astimezone(timezone(timedelta(hours=3)))
    assert sale_fingerprint(dataclasses.replace(sale, opened_at=moscow)) == fingerprint
    changed = [
        dataclasses.replace(sale, seq=43),
        dataclasses.replace(sale, card_no=None),
        dataclasses.replace(sale, prev_hash=""),
        dataclasses.replace(sale, closed_at=sale.closed_at + timedelta(microseconds=1)),
        dataclasses.replace(
            sale,
            payments=(Payment("card", sale.payments[1].amount_minor), sale.payments[0]),
        ),
        dataclasses.replace(
            sale,
            lines=(
                dataclasses.replace(sale.lines[0], discounts=(LineDiscount("other", 1798),)),
                *sale.lines[1:],
            ),
        ),
    ]
    prints = {sale_fingerprint(s) for s in changed}
    assert fingerprint not in prints
    assert len(prints) == len(changed)
