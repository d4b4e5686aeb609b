"""Triggered chains, as pure planning: who a trigger finds (registration, no purchase for N
days, birthday, a purchase, a manual launch to a segment), on which channel each customer is told
(their preferred one when they can be reached there, else the campaign's order), in which ABX
group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from center.communications.model import SEND_CHANNELS
from center.communications.rules import abx_group, normal_address
from center.communications.store import NewMessage
from center.communications.templates import Template, format_money
from center.errors import InvalidRequest

__all__ = [
    "ADDRESS_FIELDS",
    "TRIGGERS",
    "TriggerCampaign",
    "TriggerCandidate",
    "choose_channel",
    "is_birthday",
    "plan_trigger",
]

TRIGGERS = ("welcome", "inactivity", "birthday", "purchase", "segment")
"""welcome: registered within `days`; inactivity: bought before, nothing for `days`; birthday:
today in the customer's zone; purchase: bought within `days`; segment: a manual launch to the
members of `segment_id`."""
ADDRESS_FIELDS: Mapping[str, str] = {
    "email": "email",
    "sms": "phone",
    "viber": "phone",
    "webpush": "webpush",
    "fcm": "fcm_token",
    "till": "customer_id",
}
"""The customer attribute that holds each channel's address."""
_GREETING = {"ru": "покупатель", "en": "customer"}


@dataclass(frozen=True, slots=True)
class TriggerCandidate:
    """A customer a trigger found; `occasion` makes the message once per occasion (the year
    of a birthday, the sale after which the customer went quiet, ...)."""

    customer_id: str
    occasion: str
    balance_minor: int = 0


@dataclass(frozen=True, slots=True)
class TriggerCampaign:
    """A launch of a triggered chain: its templates per sending group, the split (per 10 000)
    with a control group, the channels in the order to try, the trigger's parameters."""

    campaign_id: str
    trigger: str
    templates: Mapping[str, Template]
    split: tuple[tuple[str, int], ...] = (("A", 9000), ("X", 1000))
    channels: tuple[str, ...] = ("email", "sms")
    days: int = 30
    segment_id: str = ""
    currency: str = "RUB"
    kind: str = "marketing"

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            raise InvalidRequest("body.trigger", f"expected one of {', '.join(TRIGGERS)}")
        if sum(share for _, share in self.split) != 10_000:
            raise InvalidRequest("body.split", f"shares must sum to 10000, got {self.split!r}")
        if not 1 <= self.days <= 3650:
            raise InvalidRequest("body.days", f"expected 1..3650, got {self.days}")
        if not self.channels or any(c not in SEND_CHANNELS for c in self.channels):
            raise InvalidRequest("body.channels", f"expected some of {', '.join(SEND_CHANNELS)}")
        if len(set(self.channels)) != len(self.channels):
            raise InvalidRequest("body.channels", "a channel is named twice")
        if self.trigger == "segment" and not self.segment_id:
            raise InvalidRequest("body.segment_id", "a segment launch names its segment")


def is_birthday(birth_date: Any, today: date) -> bool:
    """Whether `birth_date` (YYYY-MM-DD) falls on `today`; 29 February is kept on 28 February
    in other years."""
    if not isinstance(birth_date, str):
        return False
    try:
        born = date.fromisoformat(birth_date)
    except ValueError:
        return False
    if (born.month, born.day) == (2, 29) and not _leap(today.year):
        return (today.month, today.day) == (2, 28)
    return (born.month, born.day) == (today.month, today.day)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def choose_channel(contact: Mapping[str, Any], order: Sequence[str]) -> tuple[str, str]:
    """(channel, address): the customer's preferred channel if the campaign uses it and the
    customer has an address there; else the first channel of `order` with an address; else the
    first channel, whose message is then skipped with its reason."""
    preferred = contact.get("preferred_channel")
    ordered = [str(preferred), *order] if preferred in order else list(order)
    for channel in ordered:
        raw = contact.get(ADDRESS_FIELDS[channel])
        if normal_address(channel, raw) is not None:
            return channel, str(raw)
    return order[0], str(contact.get(ADDRESS_FIELDS[order[0]]) or "")


def plan_trigger(
    campaign: TriggerCampaign,
    candidates: Sequence[TriggerCandidate],
    contacts: Mapping[str, Mapping[str, Any]],
) -> tuple[list[tuple[str, str, str]], list[NewMessage]]:
    """(assignments (customer, group, stratum), messages to enqueue) of one launch."""
    assignments: list[tuple[str, str, str]] = []
    messages: list[NewMessage] = []
    for c in candidates:
        stratum = campaign.trigger
        group = abx_group(c.customer_id, campaign.campaign_id, stratum, campaign.split)
        assignments.append((c.customer_id, group, stratum))
        template = campaign.templates.get(group)
        if template is None:
            continue  # the control group hears nothing
        contact = {**contacts.get(c.customer_id, {}), "customer_id": c.customer_id}
        lang = "en" if contact.get("lang") == "en" else "ru"
        zone = str(contact.get("zone", "Europe/Moscow"))
        ZoneInfo(zone)
        values = {
            "name": str(contact.get("first_name") or _GREETING[lang]),
            "balance": format_money(c.balance_minor, campaign.currency, lang),
            "burning_amount": "",
            "burning_date": "",
            "store": str(contact.get("store_name") or ""),
        }
        subject, body = template.render(lang, values)
        channel, address = choose_channel(contact, campaign.channels)
        messages.append(
            NewMessage(
                idempotency_key=f"{campaign.campaign_id}:{c.customer_id}:{c.occasion}"[:200],
                customer_id=c.customer_id,
                channel=channel,
                kind=campaign.kind,
                address=address,
                subject=subject,
                body=body,
                zone=zone,
                campaign_id=campaign.campaign_id,
                group=group,
            )
        )
    return assignments, messages
