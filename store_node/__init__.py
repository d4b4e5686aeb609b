"""Store node: collects the registers' sales, forwards them to the Center, caches master data."""

from store_node.app import create_app
from store_node.config import CenterSettings, Config, StoreSettings, load_config, parse_config
from store_node.discovery import SERVICE_TYPE, Advertiser, service_name
from store_node.errors import (
    CenterUnavailable,
    ConfigError,
    InvalidRequest,
    MalformedRequest,
    NotReady,
    RequestError,
    StorageError,
    StoreNodeError,
    UnsupportedMediaType,
)
from store_node.forwarder import Forwarder
from store_node.recovery import missing_seqs
from store_node.salesbox import BoxWorker, SalesBox, check_sale

__all__ = [
    "SERVICE_TYPE",
    "Advertiser",
    "BoxWorker",
    "CenterSettings",
    "CenterUnavailable",
    "Config",
    "ConfigError",
    "Forwarder",
    "InvalidRequest",
    "MalformedRequest",
    "NotReady",
    "RequestError",
    "SalesBox",
    "StorageError",
    "StoreNodeError",
    "StoreSettings",
    "UnsupportedMediaType",
    "check_sale",
    "create_app",
    "load_config",
    "missing_seqs",
    "parse_config",
    "service_name",
]
