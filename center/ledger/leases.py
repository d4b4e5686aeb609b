"""Offline spending leases: the rules (pure) by which the Center carves a card's balance into
allowances that store nodes may spend without asking it.

The invariant, kept by every function here: for each (card, wallet), the sum of the leases that
count (`counts`) is at most the card's balance plus the chain's overdraft ceiling. A store node
spends only within its lease (online it asks for the lease to be raised first), so whatever the
stores do while the Center is away, together they spend at most balance + ceiling.
ARCHITECTURE.md "Offline spending leases" has the protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from center.errors import MalformedRequest

__all__ = [
    "LEASE_SETTINGS",
    "Lease",
    "LeaseRequest",
    "LeaseReturn",
    "LeaseSettings",
    "counts",
    "outstanding",
    "parse_lease_request",
    "parse_lease_returns",
    "read_settings",
    "returned",
    "room",
    "settle",
    "size_grant",
]

_MAX_MINOR = 2**53
_MAX_ID = 128
MAX_RETURNS = 500


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """The chain settings of leases (`offline_lease_*`, `offline_overdraft_ceiling_minor`)."""

    ttl_s: int = 86_400
    """How long a grant lasts; a store cut off longer spends nothing more of the card."""
    per_store_minor: int = 50_000
    """What one store is granted beyond what it needs now (its own unsent spends and holds)."""
    ceiling_minor: int = 0
    """How far below zero all stores together may take a card (the overdraft ceiling)."""
    grace_s: int = 7 * 86_400
    """How long an expired lease that its store never returned still counts: its store may
    have spent it offline before it expired and not yet sent the sales."""


LEASE_SETTINGS: Mapping[str, str] = {
    "offline_lease_ttl_s": "ttl_s",
    "offline_lease_per_store_minor": "per_store_minor",
    "offline_overdraft_ceiling_minor": "ceiling_minor",
    "offline_lease_grace_s": "grace_s",
}
"""Chain setting name -> LeaseSettings field."""


def read_settings(values: Mapping[str, str]) -> LeaseSettings:
    """LeaseSettings from the chain settings' text values (absent or unreadable: the default)."""
    given: dict[str, int] = {}
    for name, field in LEASE_SETTINGS.items():
        text = values.get(name, "")
        if text.isascii() and text.isdigit() and len(text) <= 15:
            given[field] = int(text)
    return LeaseSettings(**given)


@dataclass(frozen=True, slots=True)
class Lease:
    """One store's allowance on one card's wallet, as the Center holds it.

    `amount` is what the store may still spend (or has spent in sales the Center has not
    booked yet): settling a booked spend takes it off."""

    store_id: str
    amount: int
    expires_at: datetime
    lease_id: str = ""


def counts(lease: Lease, now: datetime, settings: LeaseSettings) -> bool:
    """Whether the lease still takes its amount out of the card's balance at `now`."""
    return lease.amount > 0 and now < lease.expires_at + timedelta(seconds=settings.grace_s)


def outstanding(
    leases: Iterable[Lease], now: datetime, settings: LeaseSettings, *, besides: str | None = None
) -> int:
    """The sum of the leases that count, leaving out store `besides`'s."""
    return sum(
        lease.amount
        for lease in leases
        if lease.store_id != besides and counts(lease, now, settings)
    )


def room(
    balance: int, leases: Iterable[Lease], store_id: str, now: datetime, settings: LeaseSettings
) -> int:
    """What store `store_id` may hold of a card whose balance is `balance` (never negative)."""
    others = outstanding(leases, now, settings, besides=store_id)
    return max(0, balance + settings.ceiling_minor - others)


def size_grant(
    balance: int,
    leases: Iterable[Lease],
    store_id: str,
    now: datetime,
    settings: LeaseSettings,
    *,
    unsent: int,
    need: int,
) -> int:
    """The lease a store gets now: what it needs (its unsent spends, holds and the spend it
    asks for) or its unsent spends plus the per-store share, whichever is more, within room."""
    want = max(need, unsent + settings.per_store_minor)
    return min(room(balance, leases, store_id, now, settings), want)


def settle(amount: int, spent: int) -> int:
    """A lease after a sale of its store spending `spent` was booked (the spend is now in the
    balance, so it leaves the lease)."""
    return max(0, amount - spent)


def returned(amount: int, unsent: int) -> int:
    """A lease its store gave back, still spent by `unsent` in sales not yet at the Center."""
    return max(0, min(amount, unsent))


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """A store node asks for (or to raise) its lease on a card's wallet."""

    store_id: str
    card_no: str
    wallet: str
    unsent_minor: int
    need_minor: int


@dataclass(frozen=True, slots=True)
class LeaseReturn:
    """A store node gives a lease back; `unsent_minor` of it is spent in sales on their way."""

    lease_id: str
    card_no: str
    wallet: str
    unsent_minor: int


def _text(body: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID or not value.isprintable():
        raise MalformedRequest(f"{where}.{key}", f"expected 1..{_MAX_ID} printable characters")
    return value


def _minor(body: Mapping[str, Any], key: str, where: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_MINOR:
        raise MalformedRequest(f"{where}.{key}", f"expected an integer 0..2^53, got {value!r}")
    return value


def _object(body: Any, where: str, known: set[str]) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise MalformedRequest(where, "expected a JSON object")
    for key in sorted(set(body) - known):
        raise MalformedRequest(
            f"{where}.{key}", f"unknown field (known: {', '.join(sorted(known))})"
        )
    return body


def parse_lease_request(body: Any) -> LeaseRequest:
    """Check a POST /v1/leases body; MalformedRequest names the field."""
    known = {"store_id", "card_no", "wallet", "unsent_minor", "need_minor"}
    fields = _object(body, "body", known)
    return LeaseRequest(
        store_id=_text(fields, "store_id", "body"),
        card_no=_text(fields, "card_no", "body"),
        wallet=_text(fields, "wallet", "body", "bonus"),
        unsent_minor=_minor(fields, "unsent_minor", "body"),
        need_minor=_minor(fields, "need_minor", "body"),
    )


def parse_lease_returns(body: Any) -> tuple[str, tuple[LeaseReturn, ...]]:
    """(store_id, returns) of a POST /v1/leases/return body; MalformedRequest names the field."""
    fields = _object(body, "body", {"store_id", "leases"})
    store_id = _text(fields, "store_id", "body")
    items = fields.get("leases")
    if not isinstance(items, list) or len(items) > MAX_RETURNS:
        raise MalformedRequest("body.leases", f"expected a list of at most {MAX_RETURNS} leases")
    out = []
    for index, item in enumerate(items):
        where = f"body.leases[{index}]"
        one = _object(item, where, {"lease_id", "card_no", "wallet", "unsent_minor"})
        out.append(
            LeaseReturn(
                lease_id=_text(one, "lease_id", where),
                card_no=_text(one, "card_no", where),
                wallet=_text(one, "wallet", where, "bonus"),
                unsent_minor=_minor(one, "unsent_minor", where),
            )
        )
    return store_id, tuple(out)
