"""Identifiers: one definition of a store, register, node or row id for every tier."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import (
    ID_PATTERN,
    MAX_ID_LEN,
    NODE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidIdentifier,
    MalformedMessage,
    MalformedSignatureHeader,
    check_identifier,
    parse_signature_headers,
)

GOOD = ["367", "367-1", "store-367", "a", "node:367.1_b", "A" * MAX_ID_LEN, "0-" + "x" * 62]
BAD: list[Any] = [
    "",
    "-367",
    ".hidden",
    "_x",
    ":x",
    "bad id",
    "367\n",  # `$` in the old copies let a trailing newline through
    "\n367",
    "A" * (MAX_ID_LEN + 1),
    "касса-1",
    "367/1",
    "a@b",
    None,
    367,
    b"367",
]


@pytest.mark.parametrize("value", GOOD)
def test_identifiers_pass_and_come_back_unchanged(value: str) -> None:
    assert check_identifier(value, "store.store_id") == value
    assert ID_PATTERN.match(value)
    assert ID_PATTERN.fullmatch(value)


@pytest.mark.parametrize("value", BAD)
def test_anything_else_is_refused_naming_the_field_and_the_value(value: Any) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        check_identifier(value, "store.node_id")
    message = str(caught.value)
    assert message.startswith("store.node_id: expected an id of 1..64 letters")
    assert repr(value)[:40] in message
    assert caught.value.path == "store.node_id"
    assert caught.value.value == value
    assert isinstance(caught.value, MalformedMessage)  # callers catching ProtocolError see it
    if not isinstance(value, str):
        assert f"a {type(value).__name__}" in message
    else:
        assert not ID_PATTERN.match(value)
        assert not ID_PATTERN.search(value)  # anchored: no partial matches either


def test_a_long_value_is_shown_cut() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        check_identifier("x" * 500, "register_id")
    assert len(str(caught.value)) < 250


@given(st.text(max_size=MAX_ID_LEN + 2))
def test_the_pattern_is_the_rule_it_states(value: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")
    expected = (
        1 <= len(value) <= MAX_ID_LEN
        and all(c in allowed for c in value)
        and value[0].isascii()
        and value[0].isalnum()
    )
    assert (ID_PATTERN.match(value) is not None) == expected


def test_signature_headers_use_the_same_rule_for_node_ids() -> None:
    headers = {TIMESTAMP_HEADER: "1700000000", NONCE_HEADER: "n" * 16, SIGNATURE_HEADER: "ab" * 32}
    good = parse_signature_headers({**headers, NODE_HEADER: "store:367"})
    assert good.node_id == "store:367"
    for bad in ("367\n", "bad id", "x" * (MAX_ID_LEN + 1)):
        with pytest.raises(MalformedSignatureHeader, match="not a node id"):
            parse_signature_headers({**headers, NODE_HEADER: bad})
