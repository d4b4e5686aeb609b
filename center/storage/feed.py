"""The master-data change feed: deltas, tombstones, checksums, card scope."""

from __future__ import annotations

from typing import Protocol

from center.storage.hooks import Migration, SqlHooks

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "MasterFeedOps", "MasterFeedStore"]

SQLITE_MIGRATION: Migration = ()
POSTGRES_MIGRATION: Migration = ()


class MasterFeedOps(Protocol):
    """The part of the Storage interface this module implements."""


class MasterFeedStore(SqlHooks):
    """Mixin of SqlStorage."""
