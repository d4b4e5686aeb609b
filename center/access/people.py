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
    "require_totp",
    "reset_password",
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
# A code is good once: someone who watched it typed cannot sign in with it in its 30 s window.
# Only shown after the right password, so it tells nothing a guesser lacks.
_REPLAYED_TEXT = "this code was already used: wait for the next code"


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


def _code_step(secret: str, code: str, now: datetime) -> int | None:
    """The TOTP time step `code` belongs to, or None when it is not a current code."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    # One step either side: a phone's clock may be up to 30 s off.
    for candidate in (step - 1, step, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


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


def reset_password(
    storage: Storage, username: str, password: str, actor: str, now: datetime
) -> None:
    """Give a person a new password (checked as at creation); the lockout ends."""
    check_username(username)
    check_password_text(password)
    storage.people.reset_password(username, hash_password(password), actor, now)


def require_totp(
    storage: Storage, username: str, required: bool, actor: str, now: datetime
) -> str | None:
    """Ask (or stop asking) a person for a one-time code; the new secret, shown once, or None."""
    check_username(username)
    secret = new_totp_secret() if required else None
    storage.people.set_totp(username, secret, actor, now)
    return secret


def _replayed() -> Unauthorized:
    return Unauthorized("code", _REPLAYED_TEXT)


def sign_in(
    storage: Storage, username: str, password: str, code: str, now: datetime, *, page: str
) -> SignIn:
    """Check a name, password and (when the person has one) TOTP code; open a session.

    Unauthorized, naming no detail that would tell a guesser which part was wrong or that the
    account exists or is locked (field "code" only for a right password with an already used
    code); a locked account is refused until its lockout ends, and each failure counts.
    """
    held = storage.people.credentials(username[:64])
    refused = Unauthorized("password", "wrong user name, password or code")
    # An unknown name, a locked account and a wrong password get the same answer after the
    # same one argon2 verification, so the answer tells a guesser nothing about the account.
    good = verify_password(None if held is None else held.password_hash, password)
    if held is None:
        raise refused
    if held.locked_until is not None and held.locked_until > now:
        raise refused
    good = good and held.revoked_at is None
    step: int | None = None
    if good and held.totp_secret:
        step = _code_step(held.totp_secret, code, now)
        good = step is not None
    if not good:
        storage.people.record_failure(username, MAX_FAILURES, now + LOCKOUT, now, page=page)
        raise refused
    session = new_session_secret()
    csrf = new_session_secret()
    opened = storage.people.open_session(
        session_hash(session), username, csrf, now, now + SESSION_TTL, page=page, totp_step=step
    )
    if not opened:  # the code's step is not newer than the last accepted one: a replay
        storage.people.record_failure(username, MAX_FAILURES, now + LOCKOUT, now, page=page)
        raise _replayed()
    return SignIn(session, Person(username, held.role, held.language, csrf))
