"""The customer state the Center derives for a card (pure): CRM fields, wallets, folded sales.

The shape and the folding rule are sync_protocol's (``CardState``, ``fold_sales``): the store
node and the register fold their own sales into the same row the same way. Here only what the
Center alone knows is added: the customer's tier, attributes, favourite categories and referrer
(from the CRM's attributes) and the balance of every wallet (from the ledger's lots).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Any

from center.crm.model import PROFILE_FIELDS
from sync_protocol import CardState, Sale, TillMessage, fold_sales

__all__ = [
    "CRM_KEYS",
    "CardTier",
    "checkpoint_part",
    "crm_part",
    "derive_state",
]

CRM_KEYS = ("tier", "favourite_categories", "referrer")
"""Attributes with a meaning of their own in the state; every other attribute (but the personal
data of PROFILE_FIELDS, which never leaves the Center) goes to ``attributes`` as text."""


@dataclass(frozen=True, slots=True)
class CardTier:
    """What a card row's state carries of its customer's level (center/crm/tiers_store.py)."""

    tier: str
    spend_minor: int
    visits: int
    until: str


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return None


def crm_part(attributes: Mapping[str, Any]) -> CardState:
    """The state's CRM fields from a customer's attributes (tier, favourites, referrer...)."""
    favourites = attributes.get("favourite_categories") or ()
    if isinstance(favourites, str):
        favourites = [part.strip() for part in favourites.split(",")]
    kept: dict[str, str] = {}
    for name, value in attributes.items():
        text = _text(value)
        if name in PROFILE_FIELDS or name in CRM_KEYS or text is None:
            continue
        kept[str(name)] = text
    return CardState(
        tier=_text(attributes.get("tier")) or "",
        attributes=kept,
        favourite_categories=tuple(
            str(c) for c in favourites if isinstance(c, str | int) and str(c)
        ),
        referrer=_text(attributes.get("referrer")) or "",
    )


def checkpoint_part(state: CardState) -> CardState:
    """Only what is folded from sales (the checkpoint kept in ``customer_states``)."""
    return replace(
        state,
        tier="",
        attributes={},
        favourite_categories=(),
        referrer="",
        wallets={},
        tier_spend_minor=0,
        tier_visits=0,
        tier_until="",
        messages=(),
    )


def derive_state(
    checkpoint: CardState,
    sales: Iterable[Sale],
    *,
    attributes: Mapping[str, Any],
    wallets: Mapping[str, int],
    tz: tzinfo,
    tier: CardTier | None = None,
    messages: tuple[TillMessage, ...] = (),
) -> CardState:
    """The card's state: the checkpoint with the sales it does not cover folded in, the CRM's
    fields and the ledger's wallets (sales never move wallets here: the ledger already has).
    ``tier``: the customer's level and window counters when a tier programme is defined (the
    CRM attribute ``tier`` is used only without one)."""
    folded = fold_sales(checkpoint_part(checkpoint), sales, tz)
    crm = crm_part(attributes)
    state = replace(
        folded,
        tier=crm.tier,
        attributes=crm.attributes,
        favourite_categories=crm.favourite_categories,
        referrer=crm.referrer,
        wallets={k: v for k, v in sorted(wallets.items()) if v},
        messages=messages,
    )
    if tier is None:  # no tier programme: the fold's window counters mean nothing here
        return replace(state, tier_spend_minor=0, tier_visits=0, tier_until="")
    return replace(
        state,
        tier=tier.tier,
        tier_spend_minor=tier.spend_minor,
        tier_visits=tier.visits,
        tier_until=tier.until,
    )
