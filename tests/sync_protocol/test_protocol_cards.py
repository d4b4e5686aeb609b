"""The one card-number rule: normalised the same way, and checked by the chain's format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import (
    DEFAULT_CARD_RULE,
    CardRule,
    InvalidCardNumber,
    check_card_no,
    ean13_check_digit,
    luhn_check_digit,
    normalise_card_no,
    parse_card_rule,
    sale_card_problem,
)

DEMO_CARD = "2900000000018"  # "29" + household 1 padded to 10 digits + EAN-13 digit (dataset)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("2900000000013", "2900000000013"),
        ("2900000000013 ", "2900000000013"),
        ("  2900000000013\t\n", "2900000000013"),
        ("42", "42"),
        ("0001", "0001"),
    ],
)
def test_whitespace_around_is_trimmed(raw: str, normal: str) -> None:
    assert normalise_card_no(raw) == normal
    assert check_card_no(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "abc",
        "-1",
        "+1",
        "１２３",  # full-width digits: refused, never guessed at
        "12 34",
        "1'2",
        'a"b',
        "é",
        "a/b",
        "50%",
        "%20",
        "12\x0034",
        "",
        "   ",
        "1" * 33,
        "C1",
        "٣",  # Arabic-Indic three: str.isdigit() says yes
    ],
)
def test_everything_but_ascii_digits_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidCardNumber) as caught:
        check_card_no(raw, where="body.card_no")
    assert str(caught.value).startswith("body.card_no: expected 1..32 digits 0-9, got ")


def test_a_card_number_must_be_a_string() -> None:
    for value in (None, 123, 1.5, ["1"], {"card": "1"}):
        with pytest.raises(InvalidCardNumber, match=r"^card_no: expected a card number string"):
            check_card_no(value)


def test_the_demo_cards_have_an_ean13_check_digit() -> None:
    rule = parse_card_rule("13-13:ean13")
    assert rule == CardRule(13, 13, "ean13")
    assert check_card_no(DEMO_CARD, rule) == DEMO_CARD
    assert ean13_check_digit("290000000001") == 8
    with pytest.raises(InvalidCardNumber, match="check digit wrong for 13 digits with an ean13"):
        check_card_no("2900000000013", rule)
    with pytest.raises(InvalidCardNumber, match="expected a card number of 13 digits"):
        check_card_no("42", rule)


def test_luhn_and_length_ranges() -> None:
    rule = parse_card_rule("8-19:luhn")
    assert check_card_no("79927398713", rule) == "79927398713"  # the textbook Luhn number
    assert luhn_check_digit("7992739871") == 3
    with pytest.raises(InvalidCardNumber, match="check digit wrong"):
        check_card_no("79927398710", rule)
    assert parse_card_rule("") is DEFAULT_CARD_RULE
    assert parse_card_rule(None) is DEFAULT_CARD_RULE
    assert parse_card_rule("16") == CardRule(16, 16, "none")
    for bad in ("x", "5-3", "0-4", "8-40", "13:mod97"):
        with pytest.raises(ValueError, match="card"):
            parse_card_rule(bad)


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_generated_ean13_numbers_always_pass(body: int) -> None:
    text = f"{body:012d}"
    card = text + str(ean13_check_digit(text))
    assert check_card_no(card, CardRule(13, 13, "ean13")) == card


def test_a_sale_names_its_card_as_normalised_or_is_refused() -> None:
    assert sale_card_problem(None) is None
    assert sale_card_problem(DEMO_CARD) is None
    assert sale_card_problem(DEMO_CARD + " ") == (
        "card_no: not normalised (surrounding whitespace), got '2900000000018 '"
    )
    assert (sale_card_problem("abc") or "").startswith("card_no: expected 1..32 digits")
