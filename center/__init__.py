"""The loyalty Center: master data, idempotent sale ingest, the ledger and reconciliation."""

from center.config import Config, load_config
from center.errors import CenterError, ConfigError, StorageError
from center.storage import Storage, open_storage
from center.web.app import create_app

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
