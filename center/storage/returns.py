"""Returns, manual adjustments and overdraft reports on the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from center.storage.hooks import Migration, SqlHooks
from sync_protocol import Sale

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "ReturnsOps", "ReturnsStore"]

SQLITE_MIGRATION: Migration = ()
POSTGRES_MIGRATION: Migration = ()


class ReturnsOps(Protocol):
    """The part of the Storage interface this module implements."""


class ReturnsStore(SqlHooks):
    """Mixin of SqlStorage."""

    def _apply_returns(self, sales: Sequence[Sale]) -> None:
        """Called by ingest inside its transaction with the sales it newly stored."""
