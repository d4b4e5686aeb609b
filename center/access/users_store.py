"""Center users, their roles and bearer tokens (only the tokens' SHA-256 is kept).

Every change (create, revoke, role) writes its `audit` row (kind "user") in the same
transaction; the audit rows never hold the token or its hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from center.access.audit import AuditLog
from center.errors import Conflict, UnknownObject
from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "UserRecord", "UserRepository"]

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


_COLUMNS = "username, role, created_at, created_by, expires_at, revoked_at"


class UserRepository:
    """The Center's users over the shared Database; every change also writes its audit row."""

    def __init__(self, db: Database, *, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def _user_row(self, row: Any) -> UserRecord:
        return UserRecord(
            username=row[0],
            role=row[1],
            created_at=self.db.dt(row[2]),
            created_by=row[3],
            expires_at=None if row[4] is None else self.db.dt(row[4]),
            revoked_at=None if row[5] is None else self.db.dt(row[5]),
        )

    def _user(self, username: str, *, lock: bool = False) -> UserRecord | None:
        suffix = self.db.dialect.for_update if lock else ""
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM users WHERE username = ?{suffix}", (username,)
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
        """Add a user with the SHA-256 of its token; Conflict if the name is taken."""
        at = self.db.ts(now)
        with self.db.guard("create user"), self.db.transaction():
            if self._user(username) is not None:
                raise Conflict("username", f"user {username!r} already exists")
            self.db.execute(
                "INSERT INTO users (username, role, token_hash, created_at, expires_at, "
                "revoked_at, created_by) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (username, role, token_hash, at, self.db.ts(expires_at), actor),
            )
            user = self._user(username)
            assert user is not None
            self.audit.record("user", username, "create", None, user.to_json(), actor, at)
        return user

    def user_by_token_hash(self, token_hash: str) -> UserRecord | None:
        """The user holding this token hash (revoked and expired ones too), or None."""
        with self.db.guard("read user"):
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM users WHERE token_hash = ?", (token_hash,)
            ).fetchone()
            return None if row is None else self._user_row(row)

    def list_users(self) -> list[UserRecord]:
        """Every user, by username."""
        with self.db.guard("list users"):
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM users ORDER BY username").fetchall()
            return [self._user_row(r) for r in rows]

    def revoke_user(self, username: str, actor: str, now: datetime) -> UserRecord:
        """Revoke a user's token (idempotent); UnknownObject if there is no such user."""
        at = self.db.ts(now)
        with self.db.guard("revoke user"), self.db.transaction():
            user = self._existing_user(username)
            if user.revoked_at is not None:
                return user
            self.db.execute("UPDATE users SET revoked_at = ? WHERE username = ?", (at, username))
            after = self._user(username)
            assert after is not None
            self.audit.record(
                "user", username, "revoke", user.to_json(), after.to_json(), actor, at
            )
        return after

    def set_role(self, username: str, role: str, actor: str, now: datetime) -> UserRecord:
        """Change a user's role (no-op when unchanged); UnknownObject if there is none."""
        at = self.db.ts(now)
        with self.db.guard("set user role"), self.db.transaction():
            user = self._existing_user(username)
            if user.role == role:
                return user
            self.db.execute("UPDATE users SET role = ? WHERE username = ?", (role, username))
            after = self._user(username)
            assert after is not None
            self.audit.record(
                "user", username, "set_role", user.to_json(), after.to_json(), actor, at
            )
        return after
