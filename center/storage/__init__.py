"""Durable state of the Center: SQLite by default, PostgreSQL when a DSN is configured."""

from __future__ import annotations

from center.config import StorageSettings
from center.storage.base import (
    BURNING_WITHIN,
    MASTER_TABLES,
    Balance,
    Burning,
    Counts,
    LedgerEntry,
    MasterChange,
    Pending,
    Progress,
    RegisterSummary,
    Storage,
)

__all__ = [
    "BURNING_WITHIN",
    "MASTER_TABLES",
    "Balance",
    "Burning",
    "Counts",
    "LedgerEntry",
    "MasterChange",
    "Pending",
    "Progress",
    "RegisterSummary",
    "Storage",
    "open_storage",
]


def _postgres(settings: StorageSettings) -> Storage:
    from center.storage.postgres import PostgresStorage  # psycopg only when configured

    return PostgresStorage(settings.dsn)


def _sqlite(settings: StorageSettings) -> Storage:
    from center.storage.sqlite import SqliteStorage

    return SqliteStorage(settings.sqlite_path)


_OPENERS = {"postgresql": _postgres, "sqlite": _sqlite}
"""storage.backend -> how to open it (config.BACKENDS names the same keys)."""


def open_storage(settings: StorageSettings, *, migrate: bool = True) -> Storage:
    """Open the configured backend (and bring its schema up to date)."""
    storage = _OPENERS[settings.backend](settings)
    if migrate:
        try:
            storage.migrate()
        except BaseException:
            storage.close()
            raise
    return storage
