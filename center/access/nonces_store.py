"""Nonces of signed requests, kept in the database: a replay is refused after a restart too,
and by every Center worker sharing one PostgreSQL.

One row per (node_id, nonce), claimed with one atomic `INSERT ... ON CONFLICT`: of two
workers receiving the same request, exactly one inserts the row. Rows older than the
horizon (twice the signature window) are purged in one statement at most once a minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = ["POSTGRES_MIGRATION", "PURGE_EVERY", "SQLITE_MIGRATION", "NonceRepository"]

SQLITE_MIGRATION = Migration(
    "m015_request_nonces",
    (
        """CREATE TABLE request_nonces (
        node_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        PRIMARY KEY (node_id, nonce)
    )""",
        "CREATE INDEX request_nonces_seen ON request_nonces (seen_at)",
    ),
)
"""Request nonces, on SQLite."""

POSTGRES_MIGRATION = Migration(
    "m015_request_nonces",
    (
        """CREATE TABLE request_nonces (
        node_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        seen_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (node_id, nonce)
    )""",
        "CREATE INDEX request_nonces_seen ON request_nonces (seen_at)",
    ),
)
"""Request nonces, on PostgreSQL."""

_UPSERT = (
    " ON CONFLICT (node_id, nonce) DO UPDATE SET seen_at = excluded.seen_at"
    " WHERE request_nonces.seen_at < ?"
)
# A nonce must survive the Center process (kill -9), not necessarily a crash of the database
# server: its commit skips the flush to disk (Dialect.relaxed_commit, nonce_claim_prefix), and
# the request's own ingest, committed next, flushes it anyway. One round trip and no fsync:
# about 40 us instead of 240 us per request (docs/PROTOCOL.md).

PURGE_EVERY = timedelta(minutes=1)
"""How often (by the `now` the callers pass) a storage deletes nonces past the horizon."""


class NonceRepository:
    """The request nonces of every node over the shared Database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._purge_due: datetime | None = None

    def claim_nonce(self, node_id: str, nonce: str, now: datetime, horizon: timedelta) -> bool:
        """Record a request's nonce; False when it is already held (a replay).

        A row older than `horizon` counts as free (it would have been purged).
        """
        db = self.db
        oldest = db.ts(now - horizon)
        with db.guard("record request nonce"):
            with db.dialect.relaxed_commit(db.execute):
                cursor = db.execute(
                    db.dialect.nonce_claim_prefix + _UPSERT,
                    (node_id, nonce, db.ts(now), oldest),
                )
            claimed = int(cursor.rowcount) == 1
            if self._purge_due is None or now >= self._purge_due:
                self._purge_due = now + PURGE_EVERY
                db.execute("DELETE FROM request_nonces WHERE seen_at < ?", (oldest,))
        return claimed

    def purge_nonces(self, before: datetime) -> int:
        """Delete the nonces seen before `before`; how many were deleted."""
        with self.db.guard("purge request nonces"):
            cursor = self.db.execute(
                "DELETE FROM request_nonces WHERE seen_at < ?", (self.db.ts(before),)
            )
            return int(cursor.rowcount)
