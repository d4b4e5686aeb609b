"""The master-data version: every master write takes the next one, and the feed serves changes
by it."""

from __future__ import annotations

from center.storage.database import Database

__all__ = ["MasterVersions"]


class MasterVersions:
    """The one `master_version` row, over the shared Database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def current(self) -> int:
        """The current version (0 before any master data)."""
        row = self.db.execute("SELECT version FROM master_version WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def lock(self) -> int:
        """Take the row lock until commit (call first in a master write); the version now."""
        row = self.db.execute(
            f"SELECT version FROM master_version WHERE id = 1{self.db.dialect.for_update}"
        ).fetchone()
        return int(row[0])

    def bump(self) -> int:
        """The next version, inside the caller's transaction."""
        row = self.db.execute(
            "UPDATE master_version SET version = version + 1 WHERE id = 1 RETURNING version"
        ).fetchone()
        return int(row[0])
