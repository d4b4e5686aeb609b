"""Customer segments: static lists, dynamic rules, scheduled recalculation."""

from __future__ import annotations

from typing import Protocol

from center.storage.hooks import Migration, SqlHooks

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "SegmentOps", "SegmentStore"]

SQLITE_MIGRATION: Migration = ()
POSTGRES_MIGRATION: Migration = ()


class SegmentOps(Protocol):
    """The part of the Storage interface this module implements."""


class SegmentStore(SqlHooks):
    """Mixin of SqlStorage."""
