"""split_sale_batch: a sale that does not decode but names its sale_id is set aside, not fatal."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest

from sync_protocol import (
    MalformedMessage,
    Sale,
    SaleBatch,
    decode_sale,
    decode_sale_batch,
    encode,
    encode_sale,
    split_sale_batch,
)

T = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
MakeSale = Callable[..., Sale]


def _three(make_sale: MakeSale) -> tuple[list[Sale], dict[str, Any]]:
    sales = [make_sale(sale_id=str(uuid.uuid4()), seq=seq) for seq in (1, 2, 3)]
    raw = msgpack.unpackb(encode(SaleBatch(tuple(sales)), sender="367-1", sent_at=T), timestamp=3)
    return sales, raw


def test_a_batch_that_decodes_is_what_decode_sale_batch_answers(make_sale: MakeSale) -> None:
    sales, _ = _three(make_sale)
    data = encode(SaleBatch(tuple(sales)), sender="367-1", sent_at=T)
    assert split_sale_batch(data) == (*decode_sale_batch(data), ())


def test_the_bad_sale_is_set_aside_with_its_reason_and_bytes(make_sale: MakeSale) -> None:
    sales, raw = _three(make_sale)
    raw["body"]["sales"][1]["card_no"] = "26\x00"
    data = msgpack.packb(raw, datetime=True)
    with pytest.raises(MalformedMessage):
        decode_sale_batch(data)
    envelope, payloads, refused = split_sale_batch(data)
    assert isinstance(envelope.message, SaleBatch)
    assert envelope.message.sales == (sales[0], sales[2])
    assert [decode_sale(p) for p in payloads] == [sales[0], sales[2]]
    assert payloads[0] == encode_sale(sales[0])
    [bad] = refused
    assert (bad.index, bad.sale_id, bad.store_id, bad.register_id, bad.seq) == (
        1,
        sales[1].sale_id,
        sales[1].store_id,
        sales[1].register_id,
        2,
    )
    assert bad.reason.startswith("body.sales[1].card_no: contains a NUL")
    assert msgpack.unpackb(bad.payload, timestamp=3) == raw["body"]["sales"][1]


def test_unreadable_fields_of_the_bad_sale_are_left_empty(make_sale: MakeSale) -> None:
    _, raw = _three(make_sale)
    raw["body"]["sales"][1].update(seq=-5, register_id=7)
    [bad] = split_sale_batch(msgpack.packb(raw, datetime=True))[2]
    assert (bad.seq, bad.register_id) == (0, "")


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("body.sales[1].seq", lambda raw: raw["body"]["sales"][1].update(sale_id="x", seq="2")),
        ("sender", lambda raw: (raw["body"]["sales"][1].update(seq="2"), raw.update(sender=""))),
        ("type", lambda raw: (raw["body"]["sales"][1].update(seq="2"), raw.update(type="ack"))),
    ],
)
def test_without_a_named_sale_or_a_sound_envelope_the_batch_is_refused(
    make_sale: MakeSale, where: str, change: Callable[[dict[str, Any]], object]
) -> None:
    _, raw = _three(make_sale)
    change(raw)
    data = msgpack.packb(raw, datetime=True)
    with pytest.raises(Exception, match=re.escape(where)) as refused:
        split_sale_batch(data)
    with pytest.raises(type(refused.value)):
        decode_sale_batch(data)
