"""Center users: creation with a bearer token shown once, and token authentication."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from center.access.nodes import token_hash
from center.access.permissions import ROLE_PERMISSIONS, ROLES
from center.access.users_store import UserRecord
from center.errors import InvalidRequest, Unauthorized
from center.storage import Storage

__all__ = [
    "MAX_TTL_DAYS",
    "TOKEN_PREFIX",
    "authenticate",
    "check_role",
    "check_ttl_days",
    "check_username",
    "create_user",
    "permissions_of",
]

TOKEN_PREFIX = "lu1_"
MAX_TTL_DAYS = 3650
MAX_TOKEN_LEN = 256
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def check_username(username: object, *, field: str = "username") -> str:
    """`username` if it is 1..64 letters, digits, '.', '_', '@' or '-'; InvalidRequest otherwise."""
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise InvalidRequest(
            field,
            "expected 1..64 letters, digits, '.', '_', '@' or '-' starting with a letter or "
            f"digit, got {str(username)[:80]!r}",
        )
    return username


def check_role(role: object, *, field: str = "role") -> str:
    """`role` if it is a known role; InvalidRequest listing the known ones otherwise."""
    if not isinstance(role, str) or role not in ROLE_PERMISSIONS:
        raise InvalidRequest(field, f"unknown role {str(role)[:80]!r} (known: {', '.join(ROLES)})")
    return role


def check_ttl_days(ttl_days: object, *, field: str = "ttl_days") -> int | None:
    """None (never expires) or 1..MAX_TTL_DAYS; InvalidRequest otherwise."""
    if ttl_days is None:
        return None
    if isinstance(ttl_days, bool) or not isinstance(ttl_days, int):
        raise InvalidRequest(field, f"expected an integer number of days, got {ttl_days!r}")
    if not 1 <= ttl_days <= MAX_TTL_DAYS:
        raise InvalidRequest(field, f"expected 1..{MAX_TTL_DAYS} days, got {ttl_days}")
    return ttl_days


def create_user(
    storage: Storage,
    username: str,
    role: str,
    actor: str,
    now: datetime,
    *,
    ttl_days: int | None = None,
) -> str:
    """Create a user and return its bearer token (the only time it exists in clear)."""
    check_username(username)
    check_role(role)
    days = check_ttl_days(ttl_days)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = None if days is None else now + timedelta(days=days)
    storage.users.create_user(username, role, token_hash(token), actor, now, expires_at)
    return token


def permissions_of(role: str) -> frozenset[str]:
    """The permissions of a role (none for a role no longer known)."""
    return ROLE_PERMISSIONS.get(role, frozenset())


def authenticate(storage: Storage, token: str, now: datetime) -> UserRecord:
    """The user holding a bearer token; Unauthorized naming why it is refused."""
    if not token or len(token) > MAX_TOKEN_LEN:
        raise Unauthorized("authorization", "the bearer token is empty or too long")
    user = storage.users.user_by_token_hash(token_hash(token))
    if user is None:
        raise Unauthorized("authorization", "unknown bearer token")
    if user.revoked_at is not None:
        raise Unauthorized(
            "authorization",
            f"the token of user {user.username!r} was revoked at {user.revoked_at.isoformat()}",
        )
    if user.expires_at is not None and user.expires_at <= now:
        raise Unauthorized(
            "authorization",
            f"the token of user {user.username!r} expired at {user.expires_at.isoformat()}; "
            "ask an administrator for a new one",
        )
    return user
