"""Center users, their roles and bearer tokens (only the tokens' SHA-256 is kept).

Every change (create, revoke, role) writes its `audit` row (kind "user") in the same
transaction; the audit rows never hold the token or its hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from center.errors import Conflict, UnknownObject
from center.storage.hooks import Migration, SqlHooks

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "UserOps", "UserRecord", "UserStore"]

SQLITE_MIGRATION = Migration(
    "m006_users",
    (
        """CREATE TABLE users (
        username TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        revoked_at TEXT,
        created_by TEXT NOT NULL
    )""",
    ),
)
"""Users and their tokens, on SQLite."""

POSTGRES_MIGRATION = Migration(
    "m006_users",
    (
        """CREATE TABLE users (
        username TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ,
        revoked_at TIMESTAMPTZ,
        created_by TEXT NOT NULL
    )""",
    ),
)
"""Users and their tokens, on PostgreSQL."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One Center user as stored (without the token hash)."""

    username: str
    role: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The user as the API shows it (and as its audit rows record it)."""
        return {
            "username": self.username,
            "role": self.role,
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
        }


class UserOps(Protocol):
    """The part of the Storage interface this module implements."""

    def create_user(
        self,
        username: str,
        role: str,
        token_hash: str,
        actor: str,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> UserRecord:
        """Add a user with the SHA-256 of its token; Conflict if the name is taken."""
        ...

    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        """The user holding this token hash (revoked and expired ones too), or None."""
        ...

    def list_users(self) -> list[UserRecord]:
        """Every user, by username."""
        ...

    def revoke_user(self, username: str, actor: str, now: datetime) -> UserRecord:
        """Revoke a user's token (idempotent); UnknownObject if there is no such user."""
        ...

    def set_role(self, username: str, role: str, actor: str, now: datetime) -> UserRecord:
        """Change a user's role (no-op when unchanged); UnknownObject if there is none."""
        ...


_COLUMNS = "username, role, created_at, created_by, expires_at, revoked_at"


class UserStore(SqlHooks):
    """Mixin of SqlStorage."""

    def _user_row(self, row: Any) -> UserRecord:
        return UserRecord(
            username=row[0],
            role=row[1],
            created_at=self._dt(row[2]),
            created_by=row[3],
            expires_at=None if row[4] is None else self._dt(row[4]),
            revoked_at=None if row[5] is None else self._dt(row[5]),
        )

    def _user(self, username: str, *, lock: bool = False) -> UserRecord | None:
        row = self._execute(
            f"SELECT {_COLUMNS} FROM users WHERE username = ?{self._FOR_UPDATE if lock else ''}",
            (username,),
        ).fetchone()
        return None if row is None else self._user_row(row)

    def _existing_user(self, username: str) -> UserRecord:
        user = self._user(username, lock=True)
        if user is None:
            raise UnknownObject("username", f"unknown user {username[:80]!r}")
        return user

    def create_user(
        self,
        username: str,
        role: str,
        token_hash: str,
        actor: str,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> UserRecord:
        at = self._ts(now)
        with self._guard("create user"), self._transaction():
            if self._user(username) is not None:
                raise Conflict("username", f"user {username!r} already exists")
            self._execute(
                "INSERT INTO users (username, role, token_hash, created_at, expires_at, "
                "revoked_at, created_by) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (username, role, token_hash, at, self._ts(expires_at), actor),
            )
            user = self._user(username)
            assert user is not None
            self._audit("user", username, "create", None, user.to_json(), actor, at)
        return user

    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        with self._guard("read user"):
            row = self._execute(
                f"SELECT {_COLUMNS} FROM users WHERE token_hash = ?", (token_hash,)
            ).fetchone()
            return None if row is None else self._user_row(row)

    def list_users(self) -> list[UserRecord]:
        with self._guard("list users"):
            rows = self._execute(f"SELECT {_COLUMNS} FROM users ORDER BY username").fetchall()
            return [self._user_row(r) for r in rows]

    def revoke_user(self, username: str, actor: str, now: datetime) -> UserRecord:
        at = self._ts(now)
        with self._guard("revoke user"), self._transaction():
            user = self._existing_user(username)
            if user.revoked_at is not None:
                return user
            self._execute("UPDATE users SET revoked_at = ? WHERE username = ?", (at, username))
            after = self._user(username)
            assert after is not None
            self._audit("user", username, "revoke", user.to_json(), after.to_json(), actor, at)
        return after

    def set_role(self, username: str, role: str, actor: str, now: datetime) -> UserRecord:
        at = self._ts(now)
        with self._guard("set user role"), self._transaction():
            user = self._existing_user(username)
            if user.role == role:
                return user
            self._execute("UPDATE users SET role = ? WHERE username = ?", (role, username))
            after = self._user(username)
            assert after is not None
            self._audit("user", username, "set_role", user.to_json(), after.to_json(), actor, at)
        return after
