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


def open_storage(settings: StorageSettings, *, migrate: bool = True) -> Storage:
    """Open the configured backend (and bring its schema up to date)."""
    storage: Storage
    if settings.backend == "postgresql":
        from center.storage.postgres import PostgresStorage

        storage = PostgresStorage(settings.dsn)
    else:
        from center.storage.sqlite import SqliteStorage

        storage = SqliteStorage(settings.sqlite_path)
    if migrate:
        try:
            storage.migrate()
        except BaseException:
            storage.close()
            raise
    return storage
