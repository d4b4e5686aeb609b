"""The customer state the Center derives for a card (pure): CRM fields, wallets, folded sales.

The shape and the folding rule are sync_protocol's (``CardState``, ``fold_sales``): the store
node and the register fold their own sales into the same row the same way. Here only what the
Center alone knows is added: the customer's tier, attributes, favourite categories and referrer
(from the CRM's attributes) and the balance of every wallet (from the ledger's lots).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import tzinfo
from typing import Any

from center.crm.model import PROFILE_FIELDS
from sync_protocol import CardState, Sale, fold_sales

__all__ = [
    "CRM_KEYS",
    "checkpoint_part",
    "crm_part",
    "derive_state",
]

CRM_KEYS = ("tier", "favourite_categories", "referrer")
"""Attributes with a meaning of their own in the state; every other attribute (but the personal
data of PROFILE_FIELDS, which never leaves the Center) goes to ``attributes`` as text."""


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
    return replace(state, tier="", attributes={}, favourite_categories=(), referrer="", wallets={})


def derive_state(
    checkpoint: CardState,
    sales: Iterable[Sale],
    *,
    attributes: Mapping[str, Any],
    wallets: Mapping[str, int],
    tz: tzinfo,
) -> CardState:
    """The card's state: the checkpoint with the sales it does not cover folded in, the CRM's
    fields and the ledger's wallets (sales never move wallets here: the ledger already has)."""
    folded = fold_sales(checkpoint_part(checkpoint), sales, tz)
    crm = crm_part(attributes)
    return replace(
        folded,
        tier=crm.tier,
        attributes=crm.attributes,
        favourite_categories=crm.favourite_categories,
        referrer=crm.referrer,
        wallets={k: v for k, v in sorted(wallets.items()) if v},
    )
