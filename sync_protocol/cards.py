"""The one card-number rule of every tier: how a number typed or scanned is normalised, and the
chain's card format it must then have.

Normalising trims surrounding whitespace (a scanner's trailing space or newline) and nothing
else: a card number is ASCII digits, so full-width digits, letters, signs and inner spaces are
refused, never guessed at. The format is a length range and an optional check digit
(`ean13`, the chain's own cards: "29" + 10 digits + EAN-13 check digit; or `luhn`). The chain
may narrow it with the setting `card_number_rule` ("13-13:ean13"); the default accepts every
number of 1..32 digits, so the cards of an existing chain stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import MalformedMessage

__all__ = [
    "CARD_RULE_SETTING",
    "DEFAULT_CARD_RULE",
    "CardRule",
    "InvalidCardNumber",
    "check_card_no",
    "ean13_check_digit",
    "luhn_check_digit",
    "normalise_card_no",
    "parse_card_rule",
    "sale_card_problem",
]

CARD_RULE_SETTING = "card_number_rule"
"""The name of the chain setting (master table `settings`) that narrows the card format."""
_DIGITS = frozenset("0123456789")
_CHECKS = ("none", "luhn", "ean13")
MAX_CARD_LEN = 32


class InvalidCardNumber(MalformedMessage):
    """A card number that is not digits, or breaks the chain's card format."""

    def __init__(self, where: str, value: Any, problem: str) -> None:
        shown = value if isinstance(value, str) else type(value).__name__
        super().__init__(where, f"{problem}, got {str(shown)[:40]!r}", show_value=False)
        self.value = value


@dataclass(frozen=True, slots=True)
class CardRule:
    """The chain's card format: digits only, `min_len`..`max_len` long, with a check digit."""

    min_len: int = 1
    max_len: int = MAX_CARD_LEN
    check: str = "none"
    """"none", "luhn" or "ean13": how the last digit checks the others."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_len <= self.max_len <= MAX_CARD_LEN:
            raise ValueError(
                f"card rule: expected 1 <= min_len <= max_len <= {MAX_CARD_LEN}, "
                f"got {self.min_len}..{self.max_len}"
            )
        if self.check not in _CHECKS:
            raise ValueError(f"card rule: check must be one of {_CHECKS}, got {self.check!r}")

    def describe(self) -> str:
        length = (
            f"{self.min_len}" if self.min_len == self.max_len else f"{self.min_len}..{self.max_len}"
        )
        check = "" if self.check == "none" else f" with an {self.check} check digit"
        return f"{length} digits{check}"


DEFAULT_CARD_RULE = CardRule()


def parse_card_rule(text: str | None) -> CardRule:
    """The rule a `card_number_rule` setting states ("8-19", "13-13:ean13", "16:luhn");
    DEFAULT_CARD_RULE for None or ""; ValueError naming what is wrong."""
    if not text or not text.strip():
        return DEFAULT_CARD_RULE
    lengths, _, check = text.strip().partition(":")
    low, _, high = lengths.partition("-")
    try:
        min_len = int(low)
        max_len = int(high) if high else min_len
    except ValueError:
        raise ValueError(
            f"card_number_rule: expected 'MIN-MAX[:none|luhn|ean13]', got {text!r}"
        ) from None
    return CardRule(min_len, max_len, check or "none")


def luhn_check_digit(body: str) -> int:
    """The Luhn digit that completes `body` (digits)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def ean13_check_digit(body: str) -> int:
    """The EAN/GTIN digit that completes `body` (digits): weights 3, 1, ... from the right."""
    total = sum((ord(ch) - 48) * (3 if i % 2 == 0 else 1) for i, ch in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def normalise_card_no(value: Any, where: str = "card_no") -> str:
    """The card number with surrounding whitespace trimmed; InvalidCardNumber naming `where`
    unless what is left is 1..32 ASCII digits."""
    if type(value) is not str:
        raise InvalidCardNumber(where, value, "expected a card number string")
    text = value.strip()
    if not text or len(text) > MAX_CARD_LEN or not _DIGITS.issuperset(text):
        raise InvalidCardNumber(where, value, f"expected 1..{MAX_CARD_LEN} digits 0-9")
    return text


def check_card_no(value: Any, rule: CardRule = DEFAULT_CARD_RULE, where: str = "card_no") -> str:
    """normalise_card_no, then the chain's format: the card number, or InvalidCardNumber."""
    text = normalise_card_no(value, where)
    if not rule.min_len <= len(text) <= rule.max_len:
        raise InvalidCardNumber(where, value, f"expected a card number of {rule.describe()}")
    if rule.check != "none":
        digit = (luhn_check_digit if rule.check == "luhn" else ean13_check_digit)(text[:-1])
        if len(text) < 2 or int(text[-1]) != digit:
            raise InvalidCardNumber(where, value, f"check digit wrong for {rule.describe()}")
    return text


def sale_card_problem(card_no: str | None) -> str | None:
    """Why a sale's card number cannot be booked as sent (naming card_no), or None.

    A sale is stored and hashed as the register wrote it, so a receiver refuses a number that
    is not already normal ("123 ") rather than booking it to a card that does not exist.
    """
    if card_no is None:
        return None
    try:
        normal = normalise_card_no(card_no)
    except InvalidCardNumber as exc:
        return str(exc)
    if normal != card_no:
        return f"card_no: not normalised (surrounding whitespace), got {card_no[:40]!r}"
    return None
