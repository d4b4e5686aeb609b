"""The sign-in state of people (center/access/people.py): password hashes, TOTP secrets, failed
attempts and lockouts on the users' rows, and the open console sessions.

Every change writes its audit row (kind "user", actor "<person> via <page>") in its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from center.access.audit import AuditLog
from center.errors import InvalidRequest, UnknownObject
from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = [
    "POSTGRES_HARDENING_MIGRATION",
    "POSTGRES_MIGRATION",
    "SQLITE_HARDENING_MIGRATION",
    "SQLITE_MIGRATION",
    "Credentials",
    "PeopleRepository",
    "PersonRow",
    "SessionRecord",
]


def _steps(ts: str) -> tuple[str, ...]:
    return (
        "ALTER TABLE users ADD COLUMN password_hash TEXT",
        "ALTER TABLE users ADD COLUMN totp_secret TEXT",
        "ALTER TABLE users ADD COLUMN failed_attempts INTEGER NOT NULL DEFAULT 0",
        f"ALTER TABLE users ADD COLUMN locked_until {ts}",
        "ALTER TABLE users ADD COLUMN language TEXT NOT NULL DEFAULT ''",
        f"""CREATE TABLE people_sessions (
        session_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        csrf_token TEXT NOT NULL,
        created_at {ts} NOT NULL,
        expires_at {ts} NOT NULL
    )""",
        "CREATE INDEX people_sessions_user ON people_sessions (username)",
    )


SQLITE_MIGRATION = Migration("m022_people_sign_in", _steps("TEXT"))
"""Passwords, TOTP secrets, failed attempts and sessions of people, on SQLite."""
POSTGRES_MIGRATION = Migration("m022_people_sign_in", _steps("TIMESTAMPTZ"))
"""The same on PostgreSQL."""

_HARDENING = ("ALTER TABLE users ADD COLUMN totp_last_step BIGINT",)
SQLITE_HARDENING_MIGRATION = Migration("m026_people_sign_in_hardening", _HARDENING)
"""The last accepted TOTP time step of each person (a code is good once), on SQLite."""
POSTGRES_HARDENING_MIGRATION = Migration("m026_people_sign_in_hardening", _HARDENING)
"""The same on PostgreSQL."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a sign-in checks of one user."""

    username: str
    role: str
    password_hash: str | None
    totp_secret: str | None
    failed_attempts: int
    locked_until: datetime | None
    revoked_at: datetime | None
    language: str
    totp_last_step: int | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """An open session: whose, its CSRF token, the person's role and language."""

    username: str
    role: str
    language: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PersonRow:
    """A user as the administrator's page lists it (no hash, no secret)."""

    username: str
    role: str
    has_password: bool
    totp: bool
    failed_attempts: int
    locked_until: datetime | None
    revoked_at: datetime | None
    language: str


class PeopleRepository:
    """Sign-in state of people over the shared Database."""

    def __init__(self, db: Database, *, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def credentials(self, username: str) -> Credentials | None:
        """The sign-in state of a user, or None for an unknown name."""
        with self.db.guard("read credentials"):
            row = self.db.execute(
                "SELECT username, role, password_hash, totp_secret, failed_attempts, "
                "locked_until, revoked_at, language, totp_last_step FROM users WHERE username = ?",
                (username,),
            ).fetchone()
        if row is None:
            return None
        return Credentials(
            username=row[0],
            role=row[1],
            password_hash=row[2],
            totp_secret=row[3],
            failed_attempts=int(row[4]),
            locked_until=None if row[5] is None else self.db.dt(row[5]),
            revoked_at=None if row[6] is None else self.db.dt(row[6]),
            language=row[7],
            totp_last_step=None if row[8] is None else int(row[8]),
        )

    def set_password(
        self, username: str, password_hash: str, totp_secret: str | None, actor: str, now: datetime
    ) -> None:
        """Set a user's password hash and TOTP secret (None: none), clearing any lockout."""
        at = self.db.ts(now)
        with self.db.guard("set password"), self.db.transaction():
            done = self.db.execute(
                "UPDATE users SET password_hash = ?, totp_secret = ?, failed_attempts = 0, "
                "locked_until = NULL WHERE username = ? RETURNING username",
                (password_hash, totp_secret, username),
            ).fetchone()
            if done is None:
                raise UnknownObject("username", f"unknown user {username[:80]!r}")
            self.audit.record(
                "user", username, "set_password", None, {"totp": totp_secret is not None}, actor, at
            )

    def record_failure(
        self, username: str, limit: int, lock_until: datetime, now: datetime, *, page: str
    ) -> bool:
        """Count a failed sign-in; at `limit` in a row lock the account. True when it locked."""
        at = self.db.ts(now)
        with self.db.guard("record failed sign-in"), self.db.transaction():
            row = self.db.execute(
                "UPDATE users SET failed_attempts = failed_attempts + 1 WHERE username = ? "
                "RETURNING failed_attempts",
                (username,),
            ).fetchone()
            if row is None:
                return False
            failures = int(row[0])
            locked = failures >= limit
            if locked:
                self.db.execute(
                    "UPDATE users SET locked_until = ?, failed_attempts = 0 WHERE username = ?",
                    (self.db.ts(lock_until), username),
                )
            self.audit.record(
                "user",
                username,
                "lock" if locked else "sign_in_failed",
                None,
                {"failures": failures, "locked_until": lock_until.isoformat() if locked else None},
                f"{username} via {page}",
                at,
            )
        return locked

    def open_session(
        self,
        session_hash: str,
        username: str,
        csrf_token: str,
        now: datetime,
        expires_at: datetime,
        *,
        page: str,
        totp_step: int | None = None,
    ) -> bool:
        """Keep a new session (its hash) and reset the user's failure count; audited.

        With `totp_step`, only when it is newer than the person's last accepted step (which it
        becomes); False, and nothing written, when the code's step was already used.
        """
        at = self.db.ts(now)
        with self.db.guard("open session"), self.db.transaction():
            if totp_step is not None:
                # Checked again in the same statement that records it: two sign-ins racing
                # with one code (several Center workers) cannot both win.
                fresh = self.db.execute(
                    "UPDATE users SET totp_last_step = ? WHERE username = ? "
                    "AND (totp_last_step IS NULL OR totp_last_step < ?) RETURNING username",
                    (totp_step, username, totp_step),
                ).fetchone()
                if fresh is None:
                    return False
            self.db.execute(
                "UPDATE users SET failed_attempts = 0, locked_until = NULL WHERE username = ?",
                (username,),
            )
            # Every session that ended is dropped at any sign-in (and by the Center's periodic
            # job), so the table keeps only live sessions.
            self._purge(at)
            self.db.execute(
                "INSERT INTO people_sessions (session_hash, username, csrf_token, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?)",
                (session_hash, username, csrf_token, at, self.db.ts(expires_at)),
            )
            self.audit.record(
                "user",
                username,
                "sign_in",
                None,
                {"expires_at": expires_at.isoformat()},
                f"{username} via {page}",
                at,
            )
        return True

    def purge_sessions(self, now: datetime) -> int:
        """Delete every session that ended by `now`; how many."""
        with self.db.guard("purge sessions"), self.db.transaction():
            return self._purge(self.db.ts(now))

    def _purge(self, at: object) -> int:
        gone = self.db.execute(
            "DELETE FROM people_sessions WHERE expires_at <= ? RETURNING session_hash", (at,)
        ).fetchall()
        return len(gone)

    def session(self, session_hash: str, now: datetime) -> SessionRecord | None:
        """The open session with this hash, of a user not revoked; None otherwise."""
        with self.db.guard("read session"):
            row = self.db.execute(
                "SELECT s.username, u.role, u.language, s.csrf_token, s.expires_at "
                "FROM people_sessions s JOIN users u ON u.username = s.username "
                "WHERE s.session_hash = ? AND s.expires_at > ? AND u.revoked_at IS NULL",
                (session_hash, self.db.ts(now)),
            ).fetchone()
        if row is None:
            return None
        return SessionRecord(row[0], row[1], row[2], row[3], self.db.dt(row[4]))

    def close_session(self, session_hash: str, now: datetime, *, page: str) -> None:
        """End a session (sign-out); audited when there was one."""
        at = self.db.ts(now)
        with self.db.guard("close session"), self.db.transaction():
            row = self.db.execute(
                "DELETE FROM people_sessions WHERE session_hash = ? RETURNING username",
                (session_hash,),
            ).fetchone()
            if row is not None:
                self.audit.record(
                    "user", row[0], "sign_out", None, None, f"{row[0]} via {page}", at
                )

    def set_language(self, username: str, language: str, now: datetime, *, page: str) -> None:
        """A person's console language ('' = the browser's); audited."""
        at = self.db.ts(now)
        with self.db.guard("set language"), self.db.transaction():
            row = self.db.execute(
                "SELECT language FROM users WHERE username = ?", (username,)
            ).fetchone()
            if row is None:
                raise UnknownObject("username", f"unknown user {username[:80]!r}")
            if len(language) > 8:
                raise InvalidRequest("language", f"unknown language {language[:20]!r}")
            if row[0] == language:
                return
            self.db.execute(
                "UPDATE users SET language = ? WHERE username = ?", (language, username)
            )
            self.audit.record(
                "user",
                username,
                "set_language",
                {"language": row[0]},
                {"language": language},
                f"{username} via {page}",
                at,
            )

    def people(self) -> list[PersonRow]:
        """Every user with their sign-in state, by username."""
        with self.db.guard("list people"):
            rows = self.db.execute(
                "SELECT username, role, password_hash IS NOT NULL, totp_secret IS NOT NULL, "
                "failed_attempts, locked_until, revoked_at, language FROM users ORDER BY username"
            ).fetchall()
        return [
            PersonRow(
                username=r[0],
                role=r[1],
                has_password=bool(r[2]),
                totp=bool(r[3]),
                failed_attempts=int(r[4]),
                locked_until=None if r[5] is None else self.db.dt(r[5]),
                revoked_at=None if r[6] is None else self.db.dt(r[6]),
                language=r[7],
            )
            for r in rows
        ]

    def _change(
        self,
        username: str,
        action: str,
        sql: str,
        params: tuple[object, ...],
        after: object,
        actor: str,
        now: datetime,
    ) -> None:
        at = self.db.ts(now)
        with self.db.guard(action.replace("_", " ")), self.db.transaction():
            done = self.db.execute(
                f"UPDATE users SET {sql} WHERE username = ? RETURNING username",
                (*params, username),
            ).fetchone()
            if done is None:
                raise UnknownObject("username", f"unknown user {username[:80]!r}")
            self.audit.record("user", username, action, None, after, actor, at)

    def reset_password(self, username: str, password_hash: str, actor: str, now: datetime) -> None:
        """A new password hash (the TOTP secret kept), clearing any lockout; audited."""
        self._change(
            username,
            "reset_password",
            "password_hash = ?, failed_attempts = 0, locked_until = NULL",
            (password_hash,),
            None,
            actor,
            now,
        )

    def unlock(self, username: str, actor: str, now: datetime) -> None:
        """End a lockout and forget the failures counted; audited."""
        self._change(
            username,
            "unlock",
            "failed_attempts = 0, locked_until = NULL",
            (),
            None,
            actor,
            now,
        )

    def set_totp(self, username: str, secret: str | None, actor: str, now: datetime) -> None:
        """Require a one-time code at sign-in with this secret (None: no more); audited."""
        self._change(
            username,
            "set_totp",
            "totp_secret = ?, totp_last_step = NULL",
            (secret,),
            {"totp": secret is not None},
            actor,
            now,
        )
