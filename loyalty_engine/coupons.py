"""Coupon codes a register makes offline and anyone holding the chain key can verify.

A code is ``PREFIX-SSSSSSSSSSC-TTTTTTTT``: ten serial digits, a Luhn check digit (catches
typing errors without the key) and eight hex digits of HMAC-SHA256(chain key, prefix + serial)
(catches forgeries). A coupon with a validity carries its last valid day (store time) as a
fourth, signed group: ``PREFIX-SSSSSSSSSSC-TTTTTTTT-YYYYMMDD``. The serial is derived from the
receipt and rule, so the same sale always issues the same code (the Center recomputes it).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

__all__ = [
    "BATCH_ALPHABET",
    "BATCH_BODY_LEN",
    "batch_check_char",
    "batch_code_prefix",
    "code_expiry",
    "luhn_digit",
    "make_code",
    "serial_for",
    "verify_code",
]

BATCH_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
"""Characters of head-office batch codes: 32, none of which reads like another (no 0, 1, I, O)."""
BATCH_BODY_LEN = 10
_BATCH_VALUE = {c: i for i, c in enumerate(BATCH_ALPHABET)}
_BATCH_N = len(BATCH_ALPHABET)


def _batch_doubled(value: int) -> int:
    twice = value * 2
    return twice // _BATCH_N + twice % _BATCH_N


# Luhn mod 32 over ten characters: positions 1, 3, 5, 7, 9 (0-based) are doubled; a table of
# every pair of characters makes the sum five lookups (the Center generates millions).
_BATCH_PAIRS = {
    a + b: _BATCH_VALUE[a] + _batch_doubled(_BATCH_VALUE[b])
    for a in BATCH_ALPHABET
    for b in BATCH_ALPHABET
}


def batch_check_char(body: str) -> str:
    """The Luhn mod 32 check character of a ten-character body (BATCH_ALPHABET only)."""
    p = _BATCH_PAIRS
    total = p[body[0:2]] + p[body[2:4]] + p[body[4:6]] + p[body[6:8]] + p[body[8:10]]
    return BATCH_ALPHABET[-total % _BATCH_N]


def batch_code_prefix(code: str) -> str | None:
    """The prefix of a well-formed batch code ``PREFIX-BBBBBBBBBBC`` whose check character is
    right, or ``None``. Catches every single-character typo; says nothing of redemption."""
    prefix, dash, rest = code.strip().upper().partition("-")
    if not dash or not prefix or len(rest) != BATCH_BODY_LEN + 1:
        return None
    if any(char not in _BATCH_VALUE for char in rest):
        return None
    if batch_check_char(rest[:BATCH_BODY_LEN]) != rest[BATCH_BODY_LEN]:
        return None
    return prefix


def luhn_digit(digits: str) -> str:
    """The Luhn check digit to append to ``digits``."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def _tag(key: str, prefix: str, serial: str, expiry: str = "") -> str:
    message = f"{prefix}|{serial}|{expiry}" if expiry else f"{prefix}|{serial}"
    mac = hmac.new(key.encode(), message.encode(), hashlib.sha256)
    return mac.hexdigest()[:8].upper()


def serial_for(*parts: str) -> str:
    """A deterministic ten-digit serial from the receipt's identity."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**10:010d}"


def make_code(key: str, prefix: str, serial: str, expires_on: date | None = None) -> str:
    """The coupon code for ``serial`` (ten digits) under ``prefix``, signed with ``key``;
    with ``expires_on`` (the last valid day) that date is part of the code and signature."""
    expiry = "" if expires_on is None else expires_on.strftime("%Y%m%d")
    code = f"{prefix}-{serial}{luhn_digit(serial)}-{_tag(key, prefix, serial, expiry)}"
    return f"{code}-{expiry}" if expiry else code


def _expiry(text: str) -> date | None:
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def code_expiry(code: str) -> date | None:
    """The last valid day a code carries (``None``: no validity, or not a dated code)."""
    parts = code.strip().upper().split("-")
    return _expiry(parts[3]) if len(parts) == 4 else None


def verify_code(key: str, code: str) -> str | None:
    """The prefix of a valid code, or ``None`` (bad shape, check digit or signature)."""
    parts = code.strip().upper().split("-")
    expiry = ""
    if len(parts) == 4:
        expiry = parts.pop()
        if _expiry(expiry) is None:
            return None
    if len(parts) != 3:
        return None
    prefix, body, tag = parts
    if len(body) != 11 or not body.isdigit() or not prefix:
        return None
    serial = body[:10]
    if luhn_digit(serial) != body[10]:
        return None
    if not key or not hmac.compare_digest(_tag(key, prefix, serial, expiry), tag):
        return None
    return prefix
