"""Typed state of the store node's aiohttp app, read by its route modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from store_node.auth import RegisterAuth, RegisterIdentity
from store_node.config import Config
from store_node.discovery import Advertiser
from store_node.forwarder import Forwarder
from store_node.salesbox import BoxWorker

__all__ = [
    "ADVERTISER_KEY",
    "AUTH_KEY",
    "CLOCK_KEY",
    "CONFIG_KEY",
    "FORWARDER_KEY",
    "IDENTITY_KEY",
    "WORKER_KEY",
]

CONFIG_KEY = web.AppKey("config", Config)
WORKER_KEY = web.AppKey("worker", BoxWorker)
FORWARDER_KEY = web.AppKey("forwarder", Forwarder)
ADVERTISER_KEY: web.AppKey[Advertiser | None] = web.AppKey("advertiser")
CLOCK_KEY: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
AUTH_KEY = web.AppKey("register_auth", RegisterAuth)
IDENTITY_KEY: web.RequestKey[RegisterIdentity | None] = web.RequestKey("identity")
"""The enrolled register that signed the request; None for an unsigned one (when allowed)."""
