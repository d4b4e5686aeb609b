"""Customer merge, deactivation and questionnaires."""

from __future__ import annotations

from typing import Protocol

from center.storage.hooks import Migration, SqlHooks

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "CustomerOps", "CustomerStore"]

SQLITE_MIGRATION: Migration = ()
POSTGRES_MIGRATION: Migration = ()


class CustomerOps(Protocol):
    """The part of the Storage interface this module implements."""


class CustomerStore(SqlHooks):
    """Mixin of SqlStorage."""
