"""Time partitions of receipts (PostgreSQL) and bulk ingest helpers."""

from __future__ import annotations

from typing import Protocol

from center.storage.hooks import Migration, SqlHooks

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "PartitionOps", "PartitionStore"]

SQLITE_MIGRATION: Migration = ()
POSTGRES_MIGRATION: Migration = ()


class PartitionOps(Protocol):
    """The part of the Storage interface this module implements."""


class PartitionStore(SqlHooks):
    """Mixin of SqlStorage."""
