"""Register enrolment (one-time, expiring tokens) and request-signature checks at the store node.

The same scheme as the store node -> Center hop (docs/API.md): a register redeems a token for
a node id and secret, then signs every request with HMAC-SHA256 (sync_protocol.signing).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from store_node.errors import RequestError
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
    "Forbidden",
    "NonceCache",
    "RegisterAuth",
    "RegisterEnrolment",
    "RegisterIdentity",
    "Unauthorized",
    "signature_headers",
    "verify_signature",
]

MAX_TTL_H = 24 * 30
AUTH_DB = "auth.db"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS enrolment_tokens (
    token_hash TEXT PRIMARY KEY,
    register_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    node_id TEXT
);
CREATE TABLE IF NOT EXISTS registers (
    node_id TEXT PRIMARY KEY,
    register_id TEXT NOT NULL,
    secret TEXT NOT NULL,
    enrolled_at TEXT NOT NULL
);
"""


class Unauthorized(RequestError):
    """No valid credentials: missing, unknown, badly signed, stale or replayed (HTTP 401)."""

    kind = "unauthorized"
    status = 401


class Forbidden(RequestError):
    """Valid credentials that do not allow this request (HTTP 403)."""

    kind = "forbidden"
    status = 403


class EnrolmentRefused(RequestError):
    """An enrolment token that is unknown (401), already used or expired (403)."""

    def __init__(self, kind: str, status: int, message: str) -> None:
        self.kind = kind
        self.status = status
        super().__init__(f"token: {message}")


@dataclass(frozen=True, slots=True)
class RegisterIdentity:
    """Who signed a request: the enrolled node and the one register it may act for."""

    node_id: str
    register_id: str


@dataclass(frozen=True, slots=True)
class RegisterEnrolment:
    """What a register receives once, in exchange for its token."""

    node_id: str
    register_id: str
    secret: str


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def token_hash(token: str) -> str:
    """The SHA-256 hex kept instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


class RegisterAuth:
    """Tokens and register credentials in data_dir/auth.db (one short connection per call)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / AUTH_DB

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(_SCHEMA)
        return conn

    def issue_token(self, register_id: str, now: datetime, ttl_h: float) -> str:
        """Create a one-time enrolment token for `register_id`, valid for `ttl_h` hours."""
        if not 0 < ttl_h <= MAX_TTL_H:
            raise ValueError(f"ttl_h: must be > 0 and at most {MAX_TTL_H} hours, got {ttl_h}")
        token = "lr1_" + secrets.token_urlsafe(32)
        conn = self._connect()
        try:
            conn.execute(
                "INSERT INTO enrolment_tokens (token_hash, register_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (token_hash(token), register_id, _ts(now), _ts(now + timedelta(hours=ttl_h))),
            )
        finally:
            conn.close()
        return token

    def enrol(self, token: str, now: datetime) -> RegisterEnrolment:
        """Redeem a token once; raise EnrolmentRefused for an unknown, used or expired one."""
        node_id = f"reg-{secrets.token_hex(8)}"
        secret = new_secret()
        at = _ts(now)
        digest = token_hash(token)
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "UPDATE enrolment_tokens SET used_at = ?, node_id = ? WHERE token_hash = ? "
                "AND used_at IS NULL AND expires_at > ? RETURNING register_id",
                (at, node_id, digest, at),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "INSERT INTO registers (node_id, register_id, secret, enrolled_at) "
                    "VALUES (?, ?, ?, ?)",
                    (node_id, row[0], secret, at),
                )
                conn.execute("COMMIT")
                return RegisterEnrolment(node_id=node_id, register_id=str(row[0]), secret=secret)
            held = conn.execute(
                "SELECT used_at FROM enrolment_tokens WHERE token_hash = ?", (digest,)
            ).fetchone()
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        if held is None:
            raise EnrolmentRefused("invalid_token", 401, "unknown enrolment token")
        if held[0] is not None:
            raise EnrolmentRefused(
                "token_used", 403, "this enrolment token was already used; issue a new one"
            )
        raise EnrolmentRefused(
            "token_expired", 403, "this enrolment token has expired; issue a new one"
        )

    def credential(self, node_id: str) -> tuple[str, str] | None:
        """(register_id, secret) of an enrolled register, or None."""
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT register_id, secret FROM registers WHERE node_id = ?", (node_id,)
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else (str(row[0]), str(row[1]))


class NonceCache:
    """Nonces seen within twice the signature window; a second use of one is a replay."""

    def __init__(self, window_s: int = SIGNATURE_WINDOW_S, max_entries: int = 200_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def add(self, node_id: str, nonce: str, now_s: float) -> bool:
        """Remember a nonce; False when it was already seen (a replay)."""
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
) -> RegisterIdentity:
    """Check one request's signature headers; raise Unauthorized naming what is wrong."""
    for name in (NODE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER):
        if not found.get(name):
            raise Unauthorized(f"header {name}: missing; signed requests carry all four")
    node_id = found[NODE_HEADER]
    timestamp = found[TIMESTAMP_HEADER]
    nonce = found[NONCE_HEADER]
    signature = found[SIGNATURE_HEADER].lower()
    if not _NODE_ID.match(node_id):
        raise Unauthorized(f"header {NODE_HEADER}: not a node id: {node_id[:80]!r}")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthorized(f"header {TIMESTAMP_HEADER}: expected Unix seconds: {timestamp!r}")
    if not _NONCE.match(nonce):
        raise Unauthorized(f"header {NONCE_HEADER}: expected 16..64 letters, digits, - or _")
    if not _SIGNATURE.match(signature):
        raise Unauthorized(f"header {SIGNATURE_HEADER}: expected 64 hex digits")
    if credential is None:
        raise Unauthorized(f"header {NODE_HEADER}: unknown node {node_id!r}; enrol it first")
    skew = now_s - int(timestamp)
    if abs(skew) > nonces.window_s:
        raise Unauthorized(
            f"header {TIMESTAMP_HEADER}: {timestamp} is {skew:+.0f} s from the store node's "
            f"clock (allowed ±{nonces.window_s} s); check the register's clock"
        )
    register_id, secret = credential
    expected = request_signature(
        secret, method=method, path=path, query=query, timestamp=timestamp, nonce=nonce, body=body
    )
    if not signature_matches(expected, signature):
        raise Unauthorized(f"header {SIGNATURE_HEADER}: does not match the request")
    if not nonces.add(node_id, nonce, now_s):
        raise Unauthorized(f"header {NONCE_HEADER}: already used: the request is a replay")
    return RegisterIdentity(node_id=node_id, register_id=register_id)
