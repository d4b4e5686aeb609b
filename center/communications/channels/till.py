"""The till channel: a message for the customer's next purchase, shown by whichever register
identifies one of the customer's cards first (cashier, customer display, slip), online or not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from center.communications.model import OutMessage, Receipt, SendOutcome
from center.communications.till_store import TillMessages

__all__ = ["TillChannel"]


class TillChannel:
    """Publishes into the card rows every store receives; delivered when a sale showed it."""

    name = "till"
    rate_per_s = 0.0  # no server to spare: as fast as the database takes them

    def __init__(
        self, book: TillMessages, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.book = book
        self.clock = clock

    async def open(self) -> None:
        """Nothing to connect to."""

    async def send(self, message: OutMessage) -> SendOutcome:
        """Publish the message to the customer's cards (refused, for good, without a card)."""
        published = await asyncio.to_thread(self.book.publish, message, self.clock())
        if not published:
            return SendOutcome(False, permanent=True, reason="the customer has no active card")
        return SendOutcome(True, provider_refs=(message.message_id,))

    async def receipts(self) -> list[Receipt]:
        """The messages a sale has shown since the last call."""
        return await asyncio.to_thread(self.book.receipts)

    async def close(self) -> None:
        """Nothing to close."""
