"""The loyalty Center: master data, idempotent sale ingest, the ledger and reconciliation."""

from center.app import create_app
from center.config import Config, load_config
from center.errors import CenterError, ConfigError, StorageError
from center.storage import Storage, open_storage

__all__ = [
    "CenterError",
    "Config",
    "ConfigError",
    "Storage",
    "StorageError",
    "create_app",
    "load_config",
    "open_storage",
]
