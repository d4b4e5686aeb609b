"""HTTP routes (docs/API.md)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

__all__ = ["PERMISSIONS", "actor_of", "add_routes"]

PERMISSIONS: Mapping[tuple[str, str], str] = {}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""


def actor_of(request: web.Request) -> str:
    """The authenticated caller's name (username or node id)."""
    return "unknown"
