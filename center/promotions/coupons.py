"""Coupon codes of the Center's batches: random, unguessable, with a check character.

A code is ``PREFIX-BBBBBBBBBBC``: a prefix of 1..8 letters or digits naming the campaign, ten
random characters of an alphabet without look-alikes (no 0/O, 1/I) drawn with `secrets` (50
bits: guessing one of a million issued codes takes about a billion tries) and a Luhn mod 32
check character over those ten, which catches every single typo and most swaps offline.

A ``signed`` batch uses the registers' own format instead (loyalty_engine.coupons:
``PREFIX-SSSSSSSSSSC-TTTTTTTT[-YYYYMMDD]``, a random serial, its Luhn digit and an HMAC under
the chain's ``coupon_key``): a register accepts it offline through a ``coupon`` promotion whose
``signed_prefix`` is the batch prefix, with the last valid day signed into the code.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from center.errors import InvalidRequest, MalformedRequest
from loyalty_engine.coupons import (
    BATCH_ALPHABET,
    BATCH_BODY_LEN,
    batch_check_char,
    luhn_digit,
    make_code,
)

__all__ = [
    "ALPHABET",
    "BODY_LEN",
    "MAX_BATCH",
    "BatchRequest",
    "IssueRequest",
    "check_char",
    "check_code",
    "code_checks",
    "generate_codes",
    "generate_signed_codes",
    "normalise_code",
    "parse_batch",
    "parse_issue",
]

ALPHABET = BATCH_ALPHABET
"""32 characters, none of which reads like another (no 0, 1, I, O)."""
BODY_LEN = BATCH_BODY_LEN
MAX_BATCH = 1_000_000
MAX_ISSUE = 1_000_000
_PREFIX = re.compile(r"^[A-Z0-9]{1,8}$")
_SIGNED = re.compile(r"^([A-Z0-9]{1,8})-([0-9]{11})-[0-9A-F]{8}(?:-[0-9]{8})?$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_VALUE = frozenset(ALPHABET)
# Standard base32 output mapped onto our alphabet, so bulk encoding stays in C.
_FROM_B32 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET)

check_char = batch_check_char
"""The Luhn mod 32 check character of a ten-character body: the engine's, so registers accept
the codes offline through a ``coupon`` rule with ``batch_prefix``."""


def normalise_code(code: str) -> str:
    """Upper case, surrounding spaces dropped (how registers and customers type it)."""
    return code.strip().upper()


def check_code(code: str, *, field: str = "code") -> tuple[str, str]:
    """(prefix, body) of a well-formed code; InvalidRequest naming what is wrong otherwise."""
    normal = normalise_code(code)
    shown = normal[:40]
    signed = _SIGNED.match(normal)
    if signed is not None:
        # The signature needs the chain key; the Luhn digit catches typos without it.
        prefix, serial = signed.group(1), signed.group(2)
        if luhn_digit(serial[:10]) != serial[10]:
            raise InvalidRequest(
                field, f"code {shown!r}: check digit {serial[10]!r} is wrong (mistyped code?)"
            )
        return prefix, serial
    prefix, dash, rest = normal.partition("-")
    if not dash or not _PREFIX.match(prefix) or len(rest) != BODY_LEN + 1:
        raise InvalidRequest(
            field,
            f"expected PREFIX-{'X' * BODY_LEN}C (prefix of 1..8 letters or digits, "
            f"{BODY_LEN} code characters and a check character), got {shown!r}",
        )
    for char in rest:
        if char not in _VALUE:
            hint = " (codes never contain 0, 1, I or O)" if char in "01IO" else ""
            raise InvalidRequest(field, f"code {shown!r}: character {char!r} is not valid{hint}")
    body, given = rest[:BODY_LEN], rest[BODY_LEN]
    if check_char(body) != given:
        raise InvalidRequest(
            field, f"code {shown!r}: check character {given!r} is wrong (mistyped code?)"
        )
    return prefix, body


def code_checks(code: str) -> bool:
    """Whether a code's shape and check character are right (the export's ``check`` column)."""
    try:
        check_code(code)
    except InvalidRequest:
        return False
    return True


def generate_codes(prefix: str, count: int) -> list[str]:
    """``count`` distinct random codes under ``prefix`` (the caller checks them against the
    database: a clash there is possible, if never seen, at 50 bits)."""
    codes: set[str] = set()
    while len(codes) < count:
        need = count - len(codes)
        # 25 random bytes are 40 base32 characters: four bodies.
        blocks = -(-need // 4)
        text = base64.b32encode(secrets.token_bytes(25 * blocks)).decode().translate(_FROM_B32)
        lead = prefix + "-"
        for i in range(0, min(len(text), need * BODY_LEN), BODY_LEN):
            body = text[i : i + BODY_LEN]
            codes.add(lead + body + check_char(body))
    return list(codes)


def generate_signed_codes(
    key: str, prefix: str, count: int, expires_on: date | None = None
) -> list[str]:
    """``count`` distinct codes in the registers' signed format, random serials from
    `secrets` (the caller checks them against the database)."""
    codes: set[str] = set()
    while len(codes) < count:
        serial = f"{secrets.randbelow(10**10):010d}"
        codes.add(make_code(key, prefix, serial, expires_on))
    return list(codes)


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """What POST /v1/coupon-batches asks for."""

    promotion_id: str
    name: str
    prefix: str
    count: int
    single_use: bool
    valid_from: date | None
    valid_to: date | None
    signed: bool = False
    """Codes in the registers' signed format (needs the chain's coupon_key)."""
    offline: str | None = None
    """Where a store may accept a code while the Center is unreachable: "never" or
    "any_store"; None: the default (signed: any_store, else never)."""


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """Who gets codes of a batch: customers, cards (their customers) or a segment's members."""

    customer_ids: tuple[str, ...] = ()
    card_nos: tuple[str, ...] = ()
    segment_id: str | None = None


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    return body


def _unknown_keys(body: Mapping[str, Any], known: Iterable[str]) -> None:
    extra = sorted(set(body) - set(known))
    if extra:
        raise InvalidRequest(f"body.{extra[0]}", f"unknown field; expected {sorted(known)}")


def _date(body: Mapping[str, Any], name: str) -> date | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"body.{name}", f"expected YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"body.{name}", f"expected YYYY-MM-DD, got {value[:40]!r}") from None


def parse_batch(body: Any) -> BatchRequest:
    """Validate a batch request; InvalidRequest naming the field."""
    doc = _object(body)
    _unknown_keys(
        doc,
        (
            "promotion_id",
            "name",
            "prefix",
            "count",
            "single_use",
            "valid_from",
            "valid_to",
            "signed",
            "offline",
        ),
    )
    promotion_id = doc.get("promotion_id")
    if not isinstance(promotion_id, str) or not _ID.match(promotion_id):
        raise InvalidRequest(
            "body.promotion_id", f"expected 1..64 letters, digits or ._:-, got {promotion_id!r}"
        )
    name = doc.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise InvalidRequest("body.name", f"expected text of at most 200 characters, got {name!r}")
    prefix = doc.get("prefix")
    if not isinstance(prefix, str) or not _PREFIX.match(prefix.upper()):
        raise InvalidRequest("body.prefix", f"expected 1..8 letters or digits, got {prefix!r}")
    count = doc.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_BATCH:
        raise InvalidRequest("body.count", f"expected an integer 1..{MAX_BATCH}, got {count!r}")
    single_use = doc.get("single_use", True)
    if not isinstance(single_use, bool):
        raise InvalidRequest("body.single_use", f"expected true or false, got {single_use!r}")
    signed = doc.get("signed", False)
    if not isinstance(signed, bool):
        raise InvalidRequest("body.signed", f"expected true or false, got {signed!r}")
    valid_from = _date(doc, "valid_from")
    valid_to = _date(doc, "valid_to")
    if valid_from is not None and valid_to is not None and valid_to < valid_from:
        raise InvalidRequest(
            "body.valid_to", f"{valid_to.isoformat()} is before valid_from {valid_from.isoformat()}"
        )
    offline = doc.get("offline")
    if offline is not None and offline not in ("never", "any_store"):
        raise InvalidRequest(
            "body.offline", f"expected 'never' or 'any_store', got {str(offline)[:40]!r}"
        )
    return BatchRequest(
        promotion_id, name, prefix.upper(), count, single_use, valid_from, valid_to, signed, offline
    )


def _ids(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = doc.get(name, [])
    if not isinstance(value, list) or len(value) > MAX_ISSUE:
        raise InvalidRequest(f"body.{name}", f"expected a list of at most {MAX_ISSUE} ids")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _ID.match(item):
            raise InvalidRequest(f"body.{name}[{i}]", f"expected an id, got {item!r}")
    return tuple(dict.fromkeys(value))


def parse_issue(body: Any) -> IssueRequest:
    """Validate an issue request: exactly one of customer_ids, card_nos, segment_id."""
    doc = _object(body)
    _unknown_keys(doc, ("customer_ids", "card_nos", "segment_id"))
    given = [k for k in ("customer_ids", "card_nos", "segment_id") if doc.get(k)]
    if len(given) != 1:
        raise InvalidRequest(
            "body", f"expected exactly one of customer_ids, card_nos, segment_id, got {given}"
        )
    segment_id = doc.get("segment_id")
    if segment_id is not None and (not isinstance(segment_id, str) or not _ID.match(segment_id)):
        raise InvalidRequest("body.segment_id", f"expected a segment id, got {segment_id!r}")
    return IssueRequest(_ids(doc, "customer_ids"), _ids(doc, "card_nos"), segment_id)
