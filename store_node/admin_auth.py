"""The store admin's sign-in at the store node: the credentials set at the store's enrolment
(an argon2id hash in store.db), lockout after repeated failures, sessions and their CSRF tokens.

Everything is local to the store node, so the page signs in while the Center is away.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from store_node.errors import StorageError
from store_node.migrations import Migrations

__all__ = [
    "LOCKOUT",
    "MAX_FAILURES",
    "MIN_PASSWORD_LEN",
    "SESSION_TTL",
    "AdminAuth",
    "AdminSession",
    "SignInRefused",
    "check_admin_name",
    "check_admin_password",
    "csrf_matches",
    "new_secret",
]

MIN_PASSWORD_LEN = 10
MAX_PASSWORD_LEN = 256
MAX_FAILURES = 5
"""Wrong passwords in a row before the account is locked for LOCKOUT."""
LOCKOUT = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=12)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# The Center's parameters (center/access/people.py): OWASP's minimum for argon2id.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY: list[str] = []

MIGRATIONS = Migrations("store_admin", error=StorageError)


@MIGRATIONS
def m006_store_admin(conn: sqlite3.Connection) -> None:
    """The store admin's credentials and sessions."""
    conn.execute(
        "CREATE TABLE store_admins (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,"
        " failed_attempts INTEGER NOT NULL DEFAULT 0, locked_until TEXT, set_at TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE store_admin_sessions (session_hash TEXT PRIMARY KEY,"
        " username TEXT NOT NULL, csrf_token TEXT NOT NULL, expires_at TEXT NOT NULL)"
    )


class SignInRefused(Exception):
    """A wrong name, password, or a locked account: one answer for all three."""


@dataclass(frozen=True, slots=True)
class AdminSession:
    """A signed-in store admin."""

    username: str
    csrf_token: str


def check_admin_name(name: object) -> str:
    """`name` if it is 1..64 letters, digits, '.', '_', '@' or '-'; ValueError otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"admin user name: expected 1..64 letters, digits, '.', '_', '@' or '-', "
            f"got {str(name)[:80]!r}"
        )
    return name


def check_admin_password(password: object) -> str:
    """`password` if it is MIN_PASSWORD_LEN..MAX_PASSWORD_LEN characters; ValueError otherwise."""
    if not isinstance(password, str) or not MIN_PASSWORD_LEN <= len(password) <= MAX_PASSWORD_LEN:
        raise ValueError(
            f"admin password: expected {MIN_PASSWORD_LEN}..{MAX_PASSWORD_LEN} characters"
        )
    return password


def new_secret() -> str:
    """A fresh session cookie value or CSRF token."""
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str, given: object) -> bool:
    """Constant-time comparison of a form's CSRF token with the expected one."""
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(expected, given)


def _hash(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _verify(password_hash: str | None, password: str) -> bool:
    # An unknown name costs the same one verification as a known one.
    if not password_hash and not _DUMMY:
        _DUMMY.append(_HASHER.hash(secrets.token_urlsafe(16)))
    try:
        return _HASHER.verify(password_hash or _DUMMY[0], password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class AdminAuth:
    """The store admin's credentials and sessions in store.db (one short connection per call,
    called from a thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            MIGRATIONS.apply(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def set_admin(self, username: str, password: str, now: datetime) -> None:
        """Set (or replace) the store admin's name and password; other admins' sessions end."""
        check_admin_name(username)
        digest = _HASHER.hash(check_admin_password(password))
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM store_admin_sessions")
            conn.execute("DELETE FROM store_admins")
            conn.execute(
                "INSERT INTO store_admins (username, password_hash, set_at) VALUES (?, ?, ?)",
                (username, digest, _ts(now)),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()

    def has_admin(self) -> bool:
        """True once a store admin's credentials were set."""
        conn = self._connect()
        try:
            return conn.execute("SELECT 1 FROM store_admins").fetchone() is not None
        finally:
            conn.close()

    def sign_in(self, username: str, password: str, now: datetime) -> tuple[str, AdminSession]:
        """Check the name and password; the new session's cookie value and the session.

        SignInRefused for a wrong name or password and for a locked account alike; each
        failure counts, MAX_FAILURES in a row lock the account for LOCKOUT.
        """
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT password_hash, locked_until FROM store_admins WHERE username = ?",
                (username[:64],),
            ).fetchone()
            good = _verify(None if row is None else str(row[0]), password[:MAX_PASSWORD_LEN])
            if row is None:
                raise SignInRefused("wrong user name or password")
            locked = row[1] is not None and datetime.fromisoformat(str(row[1])) > now
            if locked or not good:
                conn.execute("BEGIN IMMEDIATE")
                failures = conn.execute(
                    "UPDATE store_admins SET failed_attempts = failed_attempts + 1 "
                    "WHERE username = ? RETURNING failed_attempts",
                    (username,),
                ).fetchone()[0]
                if failures >= MAX_FAILURES:
                    conn.execute(
                        "UPDATE store_admins SET failed_attempts = 0, locked_until = ? "
                        "WHERE username = ?",
                        (_ts(now + LOCKOUT), username),
                    )
                conn.execute("COMMIT")
                raise SignInRefused("wrong user name or password")
            session, csrf = new_secret(), new_secret()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM store_admin_sessions WHERE expires_at <= ?", (_ts(now),))
            conn.execute(
                "UPDATE store_admins SET failed_attempts = 0, locked_until = NULL "
                "WHERE username = ?",
                (username,),
            )
            conn.execute(
                "INSERT INTO store_admin_sessions (session_hash, username, csrf_token, "
                "expires_at) VALUES (?, ?, ?, ?)",
                (_hash(session), username, csrf, _ts(now + SESSION_TTL)),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return session, AdminSession(username, csrf)

    def session(self, cookie: str, now: datetime) -> AdminSession | None:
        """The open session of this cookie, of a store admin still set; None otherwise."""
        if not cookie or len(cookie) > 128:
            return None
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT s.username, s.csrf_token FROM store_admin_sessions s "
                "JOIN store_admins a ON a.username = s.username "
                "WHERE s.session_hash = ? AND s.expires_at > ?",
                (_hash(cookie), _ts(now)),
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else AdminSession(str(row[0]), str(row[1]))

    def sign_out(self, cookie: str) -> None:
        """End the session of this cookie (if any)."""
        conn = self._connect()
        try:
            conn.execute(
                "DELETE FROM store_admin_sessions WHERE session_hash = ?", (_hash(cookie),)
            )
        finally:
            conn.close()
