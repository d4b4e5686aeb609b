"""Store-node enrolment (one-time, expiring tokens) and request-signature verification."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from center.errors import EnrolmentRefused, Unauthorized
from center.storage import Storage
from sync_protocol import (
    NODE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNATURE_WINDOW_S,
    TIMESTAMP_HEADER,
    new_secret,
    request_signature,
    signature_matches,
)

__all__ = [
    "MAX_TTL_H",
    "Enrolment",
    "NodeIdentity",
    "NonceCache",
    "enrol_node",
    "issue_token",
    "signature_headers",
    "token_hash",
    "verify_signature",
]

MAX_TTL_H = 24 * 30
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who signed a request: the enrolled node and the one store it may act for."""

    node_id: str
    store_id: str


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What a store node receives once, in exchange for its token."""

    node_id: str
    store_id: str
    secret: str


def token_hash(token: str) -> str:
    """The SHA-256 hex kept instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(storage: Storage, store_id: str, now: datetime, ttl_h: float) -> str:
    """Create a one-time enrolment token for `store_id`, valid for `ttl_h` hours."""
    if not 0 < ttl_h <= MAX_TTL_H:
        raise ValueError(f"ttl_h: must be > 0 and at most {MAX_TTL_H} hours, got {ttl_h}")
    token = "lt1_" + secrets.token_urlsafe(32)
    storage.add_enrolment_token(token_hash(token), store_id, now, now + timedelta(hours=ttl_h))
    return token


def enrol_node(storage: Storage, token: str, now: datetime) -> Enrolment:
    """Redeem a token; raise EnrolmentRefused for an unknown, used or expired one."""
    node_id = f"node-{secrets.token_hex(8)}"
    secret = new_secret()
    status, store_id = storage.redeem_enrolment_token(token_hash(token), node_id, secret, now)
    if status == "used":
        raise EnrolmentRefused(
            "token_used", 403, "this enrolment token was already used; issue a new one"
        )
    if status == "expired":
        raise EnrolmentRefused(
            "token_expired", 403, "this enrolment token has expired; issue a new one"
        )
    if status != "enrolled" or store_id is None:
        raise EnrolmentRefused("invalid_token", 401, "unknown enrolment token")
    return Enrolment(node_id=node_id, store_id=store_id, secret=secret)


class NonceCache:
    """Nonces seen within the signature window; a second use of one is a replay."""

    def __init__(self, window_s: int = SIGNATURE_WINDOW_S, max_entries: int = 1_000_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def add(self, node_id: str, nonce: str, now_s: float) -> bool:
        """Remember a nonce; False when it was already seen (a replay)."""
        # Entries are kept for twice the window: a timestamp may be up to window_s in the
        # future, so its request stays acceptable until 2 * window_s after arrival.
        horizon = now_s - 2 * self.window_s
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest >= horizon and len(self._seen) < self.max_entries:
                break
            self._seen.popitem(last=False)
        key = (node_id, nonce)
        if key in self._seen:
            return False
        self._seen[key] = now_s
        return True


def signature_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The signature headers present, or None when the request carries none of them."""
    names = (NODE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
    found = {name: headers[name] for name in names if name in headers}
    return found or None


def verify_signature(
    found: Mapping[str, str],
    *,
    credential: tuple[str, str] | None,
    method: str,
    path: str,
    query: str,
    body: bytes,
    now_s: float,
    nonces: NonceCache,
) -> NodeIdentity:
    """Check one request's signature headers; raise Unauthorized naming what is wrong."""
    for name in (NODE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER):
        if not found.get(name):
            raise Unauthorized(f"header {name}", "missing; signed requests carry all four")
    node_id = found[NODE_HEADER]
    timestamp = found[TIMESTAMP_HEADER]
    nonce = found[NONCE_HEADER]
    signature = found[SIGNATURE_HEADER].lower()
    if not _NODE_ID.match(node_id):
        raise Unauthorized(f"header {NODE_HEADER}", f"not a node id: {node_id[:80]!r}")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthorized(f"header {TIMESTAMP_HEADER}", f"expected Unix seconds: {timestamp!r}")
    if not _NONCE.match(nonce):
        raise Unauthorized(f"header {NONCE_HEADER}", "expected 16..64 letters, digits, - or _")
    if not _SIGNATURE.match(signature):
        raise Unauthorized(f"header {SIGNATURE_HEADER}", "expected 64 hex digits")
    if credential is None:
        raise Unauthorized(f"header {NODE_HEADER}", f"unknown node {node_id!r}; enrol it first")
    skew = now_s - int(timestamp)
    if abs(skew) > nonces.window_s:
        raise Unauthorized(
            f"header {TIMESTAMP_HEADER}",
            f"{timestamp} is {skew:+.0f} s from the Center's clock "
            f"(allowed ±{nonces.window_s} s); check the node's clock",
        )
    store_id, secret = credential
    expected = request_signature(
        secret, method=method, path=path, query=query, timestamp=timestamp, nonce=nonce, body=body
    )
    if not signature_matches(expected, signature):
        raise Unauthorized(f"header {SIGNATURE_HEADER}", "does not match the request")
    if not nonces.add(node_id, nonce, now_s):
        raise Unauthorized(f"header {NONCE_HEADER}", "already used: the request is a replay")
    return NodeIdentity(node_id=node_id, store_id=store_id)
