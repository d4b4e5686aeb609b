"""What the communications domain holds: channels, purposes, message states and records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "CHANNELS",
    "FINAL_STATES",
    "KINDS",
    "PURPOSES",
    "SEND_CHANNELS",
    "STATES",
    "TILL",
    "Consent",
    "OutMessage",
    "Receipt",
    "SendOutcome",
]

CHANNELS = ("email", "sms", "viber", "webpush", "fcm")
"""Channels with an adapter (center/communications/channels/) and consents of their own."""
TILL = "till"
"""A message for the next purchase, shown by the register (center/communications/till_store.py):
addressed to the customer id, under the customer's personal data consent."""
SEND_CHANNELS = (*CHANNELS, TILL)
"""Every channel a campaign may send on."""
PURPOSES = ("advertising", "personal_data")
"""Consent purposes: advertising messages (38-FZ art. 18), personal data processing (152-FZ)."""
KINDS = ("marketing", "transactional")
"""A marketing message needs both consents on its channel; a transactional one needs none."""
STATES = (
    "queued",
    "sending",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "failed",
    "expired",
    "skipped",
)
"""queued -> sending (claimed, durable before the first byte leaves) -> sent (accepted by the
server) -> delivered / opened / clicked; or failed, expired, skipped (never sent: the reason says
why: no consent, invalid address, ...)."""
FINAL_STATES = frozenset({"delivered", "opened", "clicked", "failed", "expired", "skipped"})


@dataclass(frozen=True, slots=True)
class Consent:
    """One grant or withdrawal of consent, with where it came from and its evidence."""

    customer_id: str
    channel: str
    purpose: str
    granted: bool
    source: str
    evidence: str
    at: datetime


@dataclass(frozen=True, slots=True)
class OutMessage:
    """A claimed message as a channel sends it."""

    message_id: str
    idempotency_key: str
    customer_id: str
    channel: str
    kind: str
    address: str
    subject: str
    body: str
    unsubscribe_token: str
    sms_failover: bool = False
    """A Viber message may fall back to SMS: the customer also agreed to SMS (or it is
    transactional)."""


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What a channel made of one message: accepted (with the provider's references), or not."""

    accepted: bool
    provider_refs: tuple[str, ...] = ()
    permanent: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery report for one provider reference: delivered, failed or expired."""

    provider_ref: str
    state: str
    detail: str = ""
