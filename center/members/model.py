"""Pure rules of the member API: addresses, one-time codes, signed tokens, rate limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from center.communications.rules import normal_email, normal_phone
from center.errors import MalformedRequest, Unauthorized

__all__ = [
    "ACCESS_PREFIX",
    "DEFAULT_POLICY",
    "Address",
    "MemberPolicy",
    "TokenClaims",
    "code_hash",
    "new_code",
    "parse_address",
    "read_access_token",
    "sign_access_token",
    "token_digest",
]

ACCESS_PREFIX = "mbr1"
"""Every member access token starts with it (a staff token never does)."""


@dataclass(frozen=True, slots=True)
class MemberPolicy:
    """How long codes and tokens live and how often they may be tried."""

    code_ttl: timedelta = timedelta(minutes=5)
    code_attempts: int = 5
    """Wrong answers one code takes before it is spent."""
    resend_after: timedelta = timedelta(seconds=30)
    """Least time between two codes to one address."""
    window: timedelta = timedelta(hours=1)
    codes_per_address: int = 5
    codes_per_ip: int = 30
    failures_per_address: int = 10
    failures_per_ip: int = 50
    """Wrong codes, wrong or expired tokens counted per caller address in `window`."""
    access_ttl: timedelta = timedelta(minutes=15)
    refresh_ttl: timedelta = timedelta(days=30)
    favourites_changes: int = 3
    favourites_period: timedelta = timedelta(days=30)
    """A chain setting's default: favourite categories change at most this often."""


DEFAULT_POLICY = MemberPolicy()


@dataclass(frozen=True, slots=True)
class Address:
    """A sign-in address: channel ("sms" or "email") and its normal form."""

    channel: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.value}"


def parse_address(body: Mapping[str, Any]) -> Address:
    """The phone or e-mail of a sign-in body (exactly one); 400 naming the field."""
    phone, email = body.get("phone"), body.get("email")
    if (phone is None) == (email is None):
        raise MalformedRequest("body.phone", "give exactly one of phone or email")
    if phone is not None:
        found = normal_phone(phone)
        if found is None:
            raise MalformedRequest("body.phone", "expected a phone number such as +7 999 123-45-67")
        return Address("sms", found)
    found = normal_email(email)
    if found is None:
        raise MalformedRequest("body.email", "expected an e-mail address such as anna@example.org")
    return Address("email", found.casefold())


def new_code() -> str:
    """Six random digits."""
    return f"{secrets.randbelow(1_000_000):06d}"


def code_hash(key: bytes, challenge_id: str, code: str) -> str:
    """What is kept of a code: keyed, so a copy of the table does not give codes away."""
    return hmac.new(key, f"{challenge_id}:{code}".encode(), hashlib.sha256).hexdigest()


def token_digest(token: str) -> str:
    """What is kept of a refresh token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a member access token says: whose, which sign-in (family), issued and expiring."""

    customer_id: str
    family_id: str
    issued_at: datetime
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_access_token(key: bytes, claims: TokenClaims) -> str:
    """`mbr1.<claims>.<HMAC-SHA256>`: checked without the database but for revocation."""
    body = _b64(
        json.dumps(
            {
                "c": claims.customer_id,
                "f": claims.family_id,
                "i": int(claims.issued_at.timestamp() * 1000),
                "e": int(claims.expires_at.timestamp()),
            },
            separators=(",", ":"),
        ).encode()
    )
    mac = hmac.new(key, f"{ACCESS_PREFIX}.{body}".encode(), hashlib.sha256).digest()
    return f"{ACCESS_PREFIX}.{body}.{_b64(mac)}"


def read_access_token(key: bytes, token: str, now: datetime) -> TokenClaims:
    """The claims of a valid, unexpired token; Unauthorized naming what is wrong."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != ACCESS_PREFIX or len(token) > 600:
        raise Unauthorized("authorization", "not a member access token (sign in with a code)")
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        mac = _unb64(parts[2])
        doc = json.loads(_unb64(parts[1]))
        claims = TokenClaims(
            customer_id=str(doc["c"]),
            family_id=str(doc["f"]),
            issued_at=datetime.fromtimestamp(int(doc["i"]) / 1000, now.tzinfo),
            expires_at=datetime.fromtimestamp(int(doc["e"]), now.tzinfo),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise Unauthorized("authorization", "malformed member access token") from exc
    if not hmac.compare_digest(mac, expected):
        raise Unauthorized("authorization", "member access token signature does not match")
    if now >= claims.expires_at:
        raise Unauthorized(
            "authorization", "member access token expired: use the refresh token for a new one"
        )
    return claims
