"""POS agent: prices receipts offline against a local replica and queues every sale durably."""

from pos_agent.app import create_app
from pos_agent.config import Config, OfflineConfig, RegisterConfig, StoreNodeConfig, load_config
from pos_agent.errors import ConfigError, PosError
from pos_agent.uploader import Uploader, UploaderStatus, Uploads

__all__ = [
    "Config",
    "ConfigError",
    "OfflineConfig",
    "PosError",
    "RegisterConfig",
    "StoreNodeConfig",
    "Uploader",
    "UploaderStatus",
    "Uploads",
    "create_app",
    "load_config",
]
