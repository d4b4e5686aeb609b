"""People signing in to the console: passwords (argon2), one-time codes (TOTP), lockout, sessions.

The rules live here; `people_store.py` keeps their state. A person is a Center user (one role,
`center/access/permissions.py`) that also has a password; the pages and the JSON API check the
same permissions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from center.access.users import check_role, check_username, create_user
from center.errors import InvalidRequest, Unauthorized
from center.storage import Storage

__all__ = [
    "LANGUAGES",
    "LOCKOUT",
    "MAX_FAILURES",
    "MIN_PASSWORD_LEN",
    "SESSION_TTL",
    "Person",
    "SignIn",
    "add_person",
    "check_password_text",
    "csrf_matches",
    "hash_password",
    "new_session_secret",
    "new_totp_secret",
    "session_hash",
    "sign_in",
    "totp_uri",
    "verify_password",
]

MIN_PASSWORD_LEN = 10
MAX_PASSWORD_LEN = 256
MAX_FAILURES = 5
"""Wrong passwords (or codes) in a row before the account is locked for LOCKOUT."""
LOCKOUT = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=12)
"""A session ends this long after sign-in (a working day), or at sign-out."""
LANGUAGES = ("ru", "en")
"""The console's languages; a person's setting is one of them or empty (the browser's)."""

# argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): a guess costs an attacker
# memory, and a sign-in stays well under a second on a busy two-core Center.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the name is unknown, so that an unknown name costs the same time; made
# on first use (nothing happens at import time).
_DUMMY_HASH: list[str] = []


@dataclass(frozen=True, slots=True)
class Person:
    """A person signed in to the console: who, in which role, in which language."""

    username: str
    role: str
    language: str
    csrf_token: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """A successful sign-in: the session cookie's value (shown only here) and the person."""

    session: str
    person: Person


def check_password_text(password: object, *, field: str = "password") -> str:
    """`password` if it is MIN_PASSWORD_LEN..MAX_PASSWORD_LEN characters; InvalidRequest."""
    if not isinstance(password, str) or not MIN_PASSWORD_LEN <= len(password) <= MAX_PASSWORD_LEN:
        raise InvalidRequest(field, f"expected {MIN_PASSWORD_LEN}..{MAX_PASSWORD_LEN} characters")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash of a password (salted; parameters kept in the hash)."""
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches the hash; always spends one argon2 verification."""
    if not password_hash and not _DUMMY_HASH:
        _DUMMY_HASH.append(_HASHER.hash(secrets.token_urlsafe(16)))
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH[0], password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    """A fresh base32 TOTP secret."""
    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app reads (as a QR code or typed)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Loyalty Center")


def _code_ok(secret: str, code: str, now: datetime) -> bool:
    code = code.strip().replace(" ", "")
    # One step either side: a phone's clock may be up to 30 s off.
    return code.isdigit() and pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1)


def new_session_secret() -> str:
    """A fresh session cookie value or CSRF token."""
    return secrets.token_urlsafe(32)


def session_hash(session: str) -> str:
    """What the database keeps of a session cookie (its SHA-256), never the cookie itself."""
    return hashlib.sha256(session.encode()).hexdigest()


def csrf_matches(expected: str, given: object) -> bool:
    """Constant-time comparison of a form's CSRF token with the session's."""
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(expected, given)


def add_person(
    storage: Storage,
    username: str,
    role: str,
    password: str,
    actor: str,
    now: datetime,
    *,
    totp: bool = False,
) -> str | None:
    """Create a user with a password (and a TOTP secret when asked); the secret, or None."""
    check_username(username)
    check_role(role)
    check_password_text(password)
    create_user(storage, username, role, actor, now)
    secret = new_totp_secret() if totp else None
    storage.people.set_password(username, hash_password(password), secret, actor, now)
    return secret


def sign_in(
    storage: Storage, username: str, password: str, code: str, now: datetime, *, page: str
) -> SignIn:
    """Check a name, password and (when the person has one) TOTP code; open a session.

    Unauthorized, naming no detail that would tell a guesser which part was wrong; a locked
    account is refused until its lockout ends, and each failure counts towards one.
    """
    held = storage.people.credentials(username[:64])
    refused = Unauthorized("password", "wrong user name, password or code")
    if held is None:
        verify_password(None, password)
        raise refused
    if held.locked_until is not None and held.locked_until > now:
        raise Unauthorized(
            "username",
            f"too many failed attempts: locked until {held.locked_until.isoformat()}",
        )
    good = verify_password(held.password_hash, password) and held.revoked_at is None
    if good and held.totp_secret and not _code_ok(held.totp_secret, code, now):
        good = False
    if not good:
        storage.people.record_failure(username, MAX_FAILURES, now + LOCKOUT, now, page=page)
        raise refused
    session = new_session_secret()
    csrf = new_session_secret()
    storage.people.open_session(
        session_hash(session), username, csrf, now, now + SESSION_TTL, page=page
    )
    return SignIn(session, Person(username, held.role, held.language, csrf))
