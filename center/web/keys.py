"""Typed state of the Center's aiohttp app: what the shell puts in, what route modules read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from aiohttp import web

from center.access.nodes import NodeIdentity, NonceCache
from center.access.permissions import Requirement
from center.analytics.store import LazyAnalytics
from center.config import Config
from center.storage import Storage

__all__ = [
    "ANALYTICS_KEY",
    "CLOCK_KEY",
    "CONFIG_KEY",
    "CREDENTIALS_KEY",
    "EXECUTOR_KEY",
    "IDENTITY_KEY",
    "NONCES_KEY",
    "ROUTE_PERMISSIONS_KEY",
    "STORAGE_KEY",
]

CONFIG_KEY = web.AppKey("center_config", Config)
STORAGE_KEY = web.AppKey("center_storage", Storage)
EXECUTOR_KEY = web.AppKey("center_executor", ThreadPoolExecutor)
"""The one database thread: SQLite and a single psycopg connection are used serially."""
ANALYTICS_KEY = web.AppKey("center_analytics", LazyAnalytics)
"""The analytics store, opened on first use."""
CLOCK_KEY: web.AppKey[Callable[[], datetime]] = web.AppKey("center_clock")
NONCES_KEY = web.AppKey("center_nonces", NonceCache)
CREDENTIALS_KEY: web.AppKey[dict[str, tuple[str, str]]] = web.AppKey("center_credentials")
ROUTE_PERMISSIONS_KEY: web.AppKey[Mapping[tuple[str, str], Requirement]] = web.AppKey(
    "center_route_permissions"
)
IDENTITY_KEY: web.RequestKey[NodeIdentity | None] = web.RequestKey("center_identity")
"""The enrolled node that signed the request; None for an unsigned one (signatures optional)."""
