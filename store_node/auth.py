"""Register enrolment (one-time, expiring tokens) and request-signature checks at the store node.

The same scheme as the store node -> Center hop (docs/API.md): a register redeems a token for
a node id and secret, then signs every request with HMAC-SHA256 (sync_protocol.signing).
A verified request's nonce is checked in memory, then claimed in auth.db (`StoredNonces`), so
that a replay is refused after a restart of the store node too.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from store_node.errors import EnrolmentRefused, Forbidden, StorageError, Unauthorized
from store_node.migrations import Migrations
from sync_protocol import (
    NONCE_HEADER,
    SIGNATURE_WINDOW_S,
    NonceCache,
    ReplayedNonce,
    SignatureError,
    new_secret,
    signature_headers,
    verify_request,
)

__all__ = [
    "MAX_TTL_H",
    "Forbidden",
    "NonceCache",
    "RegisterAuth",
    "RegisterEnrolment",
    "RegisterIdentity",
    "StoredNonces",
    "Unauthorized",
    "record_nonce",
    "signature_headers",
    "verify_signature",
]

MAX_TTL_H = 24 * 30
AUTH_DB = "auth.db"
NONCE_HORIZON = timedelta(seconds=2 * SIGNATURE_WINDOW_S)
"""How long a nonce is held: a timestamp may be a window ahead, so its request stays
acceptable for up to twice the window after it arrives."""
NONCE_PURGE_EVERY = timedelta(minutes=1)
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
CREATE TABLE IF NOT EXISTS request_nonces (
    node_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (node_id, nonce)
);
CREATE INDEX IF NOT EXISTS request_nonces_seen ON request_nonces (seen_at);
"""

MIGRATIONS = Migrations("auth", error=StorageError)


@MIGRATIONS
def m001_baseline(conn: sqlite3.Connection) -> None:
    """The tables of the release before migrations; an auth.db it wrote is adopted as is."""
    MIGRATIONS.create_or_adopt(conn, _SCHEMA)


def _migrate(conn: sqlite3.Connection) -> sqlite3.Connection:
    try:
        MIGRATIONS.apply(conn)
    except BaseException:
        conn.close()
        raise
    return conn


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
        return _migrate(conn)

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

    def register_ids(self) -> list[str]:
        """Every register enrolled at this node (none before auth.db exists)."""
        if not self.path.exists():
            return []
        conn = self._connect()
        try:
            rows = conn.execute("SELECT DISTINCT register_id FROM registers ORDER BY 1").fetchall()
        finally:
            conn.close()
        return [str(row[0]) for row in rows]

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


class StoredNonces:
    """Nonces of verified register requests in data_dir/auth.db, held for NONCE_HORIZON.

    One connection, opened on first use and shared by the threads that call `claim` (under a
    lock); rows past the horizon are deleted at most once a minute.
    """

    def __init__(self, data_dir: Path, horizon: timedelta = NONCE_HORIZON) -> None:
        self.path = data_dir / AUTH_DB
        self.horizon = horizon
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._purge_due: datetime | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=10, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode = WAL")
            # Survives the process (kill -9), which is what a replay after a restart needs;
            # an fsync per request would cost more than the request itself.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = _migrate(conn)
        return self._conn

    def claim(self, node_id: str, nonce: str, now: datetime) -> bool:
        """Record a request's nonce; False when it is already held (a replay)."""
        oldest = _ts(now - self.horizon)
        with self._lock:
            conn = self._connection()
            # Atomic: of two requests with one nonce, exactly one inserts (or renews a row
            # past the horizon, which the purge has not reached yet).
            claimed = (
                conn.execute(
                    "INSERT INTO request_nonces (node_id, nonce, seen_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (node_id, nonce) DO UPDATE SET seen_at = excluded.seen_at "
                    "WHERE request_nonces.seen_at < ?",
                    (node_id, nonce, _ts(now), oldest),
                ).rowcount
                == 1
            )
            if self._purge_due is None or now >= self._purge_due:
                self._purge_due = now + NONCE_PURGE_EVERY
                conn.execute("DELETE FROM request_nonces WHERE seen_at < ?", (oldest,))
        return claimed

    def count(self) -> int:
        """How many nonces are held (purged ones are gone)."""
        with self._lock:
            row = self._connection().execute("SELECT COUNT(*) FROM request_nonces").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def record_nonce(nonces: StoredNonces, node_id: str, nonce: str, now: datetime) -> None:
    """Claim a verified request's nonce in auth.db; Unauthorized if it was already used."""
    if not nonces.claim(node_id, nonce, now):
        raise Unauthorized(f"header {NONCE_HEADER}: {ReplayedNonce.default_problem}")


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
    try:
        signed = verify_request(
            found,
            None if credential is None else credential[1],
            method=method,
            path=path,
            query=query,
            body=body,
            now_s=now_s,
            nonces=nonces,
            receiver="store node",
            sender="register",
        )
    except SignatureError as exc:
        raise Unauthorized(str(exc)) from exc
    assert credential is not None  # verify_request refuses an unknown node
    return RegisterIdentity(node_id=signed.node_id, register_id=credential[0])
