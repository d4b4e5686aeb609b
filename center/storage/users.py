"""Center users, their roles and bearer tokens (only hashes kept)."""

from __future__ import annotations

from typing import Protocol

from center.storage.hooks import Migration, SqlHooks

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "UserOps", "UserStore"]

SQLITE_MIGRATION: Migration = ()
POSTGRES_MIGRATION: Migration = ()


class UserOps(Protocol):
    """The part of the Storage interface this module implements."""


class UserStore(SqlHooks):
    """Mixin of SqlStorage."""
