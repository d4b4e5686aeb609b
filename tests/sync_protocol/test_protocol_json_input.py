"""The checked JSON reader every tier parses request bodies with."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import (
    INT64_MAX,
    INT64_MIN,
    MAX_JSON_DEPTH,
    MalformedMessage,
    PayloadTooLarge,
    check_json_value,
    load_json,
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 2000 + "]" * 2000, "body" + "[0]" * MAX_JSON_DEPTH + ": nesting deeper than 32"),
        ('{"a":' * 2000 + "1" + "}" * 2000, "body" + ".a" * 32 + ": nesting deeper than 32"),
        ('{"l": [1, ' + "[" * 40 + "]" * 40 + "]}", "body.l[1]" + "[0]" * 30 + ": nesting"),
        ('{"name": "x\\ud800"}', "body.name: contains a lone surrogate"),
        ('{"lines": [{"id": "\\udfff"}]}', "body.lines[0].id: contains a lone surrogate"),
        ('{"\\ud800": 1}', "body: a key contains a lone surrogate"),
        ('{"name": "a\\u0000b"}', "body.name: contains a NUL character"),
        ('{"amount": 9223372036854775808}', "body.amount: integer out of the signed 64-bit"),
        ('{"amount": -9223372036854775809}', "body.amount: integer out of the signed 64-bit"),
        ('{"seq": 1' + "0" * 5000 + "}", "body: not valid JSON"),
        ('{"amount": NaN}', "body: NaN is not a number JSON allows"),
        ('{"amount": -Infinity}', "body: -Infinity is not a number JSON allows"),
        ('{"amount": 1e999}', "body: number 1e999 is out of range"),
        ("{", "body: not valid JSON (Expecting property name"),
    ],
)
def test_hostile_json_is_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        load_json(text.encode())
    assert str(caught.value).startswith(message), str(caught.value)


def test_bytes_must_be_utf8_and_size_is_bounded() -> None:
    with pytest.raises(MalformedMessage, match=r"^body: not UTF-8 at byte 0"):
        load_json(b"\xff\xfe{}")  # json.loads alone would read this as UTF-16
    with pytest.raises(MalformedMessage, match=r"^body: not UTF-8"):
        load_json(b'"\xed\xa0\x80"')  # a surrogate encoded as UTF-8
    with pytest.raises(PayloadTooLarge):
        load_json(b"[" + b"1," * 100 + b"1]", max_bytes=100)


def test_the_limits_themselves_are_accepted() -> None:
    deepest = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert load_json(deepest) is not None
    assert load_json(f'{{"a": {INT64_MAX}, "b": {INT64_MIN}, "c": 1.5}}') == {
        "a": INT64_MAX,
        "b": INT64_MIN,
        "c": 1.5,
    }
    assert load_json('{"name": "Ёлка 🎄 full-width １２"}')["name"] == "Ёлка 🎄 full-width １２"
    with pytest.raises(MalformedMessage, match="nesting"):
        load_json("[" + deepest + "]")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_every_storable_value_round_trips(value: object) -> None:
    assert load_json(json.dumps(value).encode()) == value
    assert check_json_value(value) is value


@given(st.text(min_size=1))
def test_any_string_is_either_kept_or_refused_with_its_path(text: str) -> None:
    body = json.dumps({"x": [text]})
    try:
        assert load_json(body) == {"x": [text]}
    except MalformedMessage as exc:
        assert exc.path == "body.x[0]"
        assert "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)
