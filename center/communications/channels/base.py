"""The one interface every channel adapter follows."""

from __future__ import annotations

from typing import Protocol

from center.communications.model import OutMessage, Receipt, SendOutcome

__all__ = ["Channel"]


class Channel(Protocol):
    """A way to reach a customer; opened once, then used for many messages."""

    name: str
    rate_per_s: float
    """At most this many messages per second leave through this channel."""

    async def open(self) -> None:
        """Connect (and log in); safe to call when already open."""
        ...

    async def send(self, message: OutMessage) -> SendOutcome:
        """Hand one message to the server; never raises for a refused message."""
        ...

    async def receipts(self) -> list[Receipt]:
        """Delivery reports that arrived since the last call (empty when the protocol has none)."""
        ...

    async def close(self) -> None:
        """Disconnect; safe to call twice."""
        ...
