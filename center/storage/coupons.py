"""Coupon batches, issue, export and chain-wide single-use redemption."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from center.storage.hooks import Migration, SqlHooks
from sync_protocol import Sale

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "CouponOps", "CouponStore"]

SQLITE_MIGRATION: Migration = ()
POSTGRES_MIGRATION: Migration = ()


class CouponOps(Protocol):
    """The part of the Storage interface this module implements."""


class CouponStore(SqlHooks):
    """Mixin of SqlStorage."""

    def _record_coupon_redemptions(self, sales: Sequence[Sale]) -> None:
        """Called by ingest inside its transaction with the sales it newly stored."""
