"""The hash chain of a register's journal: chain_hash and the prev_hash field's form."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import pytest

from sync_protocol import MalformedMessage, Sale, chain_hash, decode_sale, encode_sale

MakeSale = Callable[..., Sale]


def test_chain_hash_is_sha256_of_prev_hash_then_canonical_bytes(make_sale: MakeSale) -> None:
    sale = make_sale(prev_hash="9f" * 32)
    expected = hashlib.sha256(("9f" * 32).encode("ascii") + encode_sale(sale)).hexdigest()
    assert chain_hash(sale) == expected
    first = make_sale(prev_hash="")
    assert chain_hash(first) == hashlib.sha256(encode_sale(first)).hexdigest()


def test_any_change_to_a_linked_sale_changes_its_link(make_sale: MakeSale) -> None:
    sale = make_sale(prev_hash="")
    assert chain_hash(dataclasses.replace(sale, seq=sale.seq + 1)) != chain_hash(sale)
    assert chain_hash(dataclasses.replace(sale, prev_hash="ab" * 32)) != chain_hash(sale)


@pytest.mark.parametrize("bad", ["xyz", "AB" * 32, "ab" * 31, "ab" * 33])
def test_prev_hash_must_be_empty_or_a_sha256_hex_digest(make_sale: MakeSale, bad: str) -> None:
    with pytest.raises(MalformedMessage, match="prev_hash"):
        encode_sale(make_sale(prev_hash=bad))


def test_a_linked_sale_round_trips(make_sale: MakeSale) -> None:
    sale = make_sale(prev_hash=chain_hash(make_sale(prev_hash="")))
    assert decode_sale(encode_sale(sale)) == sale
