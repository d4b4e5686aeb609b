"""Coupon codes a register makes offline and anyone holding the chain key can verify.

A code is ``PREFIX-SSSSSSSSSSC-TTTTTTTT``: ten serial digits, a Luhn check digit (catches
typing errors without the key) and eight hex digits of HMAC-SHA256(chain key, prefix + serial)
(catches forgeries). The serial is derived from the receipt and rule, so the same sale always
issues the same code (the Center recomputes it).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["luhn_digit", "make_code", "serial_for", "verify_code"]


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


def _tag(key: str, prefix: str, serial: str) -> str:
    mac = hmac.new(key.encode(), f"{prefix}|{serial}".encode(), hashlib.sha256)
    return mac.hexdigest()[:8].upper()


def serial_for(*parts: str) -> str:
    """A deterministic ten-digit serial from the receipt's identity."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**10:010d}"


def make_code(key: str, prefix: str, serial: str) -> str:
    """The coupon code for ``serial`` (ten digits) under ``prefix``, signed with ``key``."""
    return f"{prefix}-{serial}{luhn_digit(serial)}-{_tag(key, prefix, serial)}"


def verify_code(key: str, code: str) -> str | None:
    """The prefix of a valid code, or ``None`` (bad shape, check digit or signature)."""
    parts = code.strip().upper().split("-")
    if len(parts) != 3:
        return None
    prefix, body, tag = parts
    if len(body) != 11 or not body.isdigit() or not prefix:
        return None
    serial = body[:10]
    if luhn_digit(serial) != body[10]:
        return None
    if not key or not hmac.compare_digest(_tag(key, prefix, serial), tag):
        return None
    return prefix
