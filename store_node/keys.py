"""Typed state of the store node's aiohttp app, read by its route modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from store_node.auth import NonceCache, RegisterAuth, RegisterIdentity, StoredNonces
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
    "KNOWN_KEY",
    "MAX_BODY_KEY",
    "NONCES_KEY",
    "RUN_JOBS_KEY",
    "STORED_NONCES_KEY",
    "WORKER_KEY",
]

CONFIG_KEY = web.AppKey("config", Config)
WORKER_KEY = web.AppKey("worker", BoxWorker)
FORWARDER_KEY = web.AppKey("forwarder", Forwarder)
ADVERTISER_KEY: web.AppKey[Advertiser | None] = web.AppKey("advertiser")
CLOCK_KEY: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
AUTH_KEY = web.AppKey("register_auth", RegisterAuth)
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
RUN_JOBS_KEY = web.AppKey("run_jobs", bool)
NONCES_KEY = web.AppKey("nonces", NonceCache)
STORED_NONCES_KEY = web.AppKey("stored_nonces", StoredNonces)
KNOWN_KEY: web.AppKey[dict[str, tuple[str, str]]] = web.AppKey("register_credentials")
"""Credentials of registers seen since the start (node_id -> (store_id, secret))."""
IDENTITY_KEY: web.RequestKey[RegisterIdentity | None] = web.RequestKey("identity")
"""The enrolled register that signed the request; None for an unsigned one (when allowed)."""
