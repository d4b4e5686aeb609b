"""Promotions constructor: drafts, versions, history, publishing."""

from __future__ import annotations

from typing import Protocol

from center.storage.hooks import Migration, SqlHooks

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "PromotionOps", "PromotionStore"]

SQLITE_MIGRATION: Migration = ()
POSTGRES_MIGRATION: Migration = ()


class PromotionOps(Protocol):
    """The part of the Storage interface this module implements."""


class PromotionStore(SqlHooks):
    """Mixin of SqlStorage."""
