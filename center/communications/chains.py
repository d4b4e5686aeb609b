"""The "bonuses burning" chain, as pure planning: who is told what, on which channel, in which
ABX group; an e-mail that ends undelivered falls back to an SMS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from center.communications.rules import abx_group, normal_email, normal_phone
from center.communications.store import NewMessage
from center.communications.templates import Template, format_date, format_money
from center.errors import InvalidRequest

__all__ = ["BurningCampaign", "Candidate", "plan_burning", "plan_fallback", "stratum_of"]

_GREETING = {"ru": "покупатель", "en": "customer"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A customer whose bonuses burn soon: amount (minor units), first expiry, balance."""

    customer_id: str
    burning_minor: int
    expires_at: datetime
    balance_minor: int


@dataclass(frozen=True, slots=True)
class BurningCampaign:
    """A launch of the chain: its id, the variant template of each sending group, the split
    (per 10 000) over groups; a group without a template is a control group (X)."""

    campaign_id: str
    templates: Mapping[str, Template]
    split: tuple[tuple[str, int], ...] = (("A", 9000), ("X", 1000))
    within_days: int = 7
    currency: str = "RUB"

    def __post_init__(self) -> None:
        if sum(share for _, share in self.split) != 10_000:
            raise InvalidRequest("body.split", f"shares must sum to 10000, got {self.split!r}")
        if not 1 <= self.within_days <= 365:
            raise InvalidRequest("body.within_days", f"expected 1..365, got {self.within_days}")


def stratum_of(burning_minor: int) -> str:
    """The stratum a customer is assigned in: the size of what burns (small, medium, large)."""
    if burning_minor < 50_000:
        return "small"
    return "medium" if burning_minor < 500_000 else "large"


def _values(
    candidate: Candidate, contact: Mapping[str, Any], lang: str, currency: str
) -> dict[str, str]:
    zone = ZoneInfo(str(contact.get("zone", "Europe/Moscow")))
    return {
        "name": str(contact.get("first_name") or _GREETING[lang]),
        "balance": format_money(candidate.balance_minor, currency, lang),
        "burning_amount": format_money(candidate.burning_minor, currency, lang),
        "burning_date": format_date(candidate.expires_at.astimezone(zone).date(), lang),
        "store": str(contact.get("store_name") or ""),
    }


def _lang(contact: Mapping[str, Any]) -> str:
    return "en" if contact.get("lang") == "en" else "ru"


def plan_burning(
    campaign: BurningCampaign,
    candidates: Sequence[Candidate],
    contacts: Mapping[str, Mapping[str, Any]],
) -> tuple[list[tuple[str, str, str]], list[NewMessage]]:
    """(assignments (customer, group, stratum), e-mails to enqueue) of one launch. A customer
    with no valid e-mail gets one anyway: it is skipped with its reason, then falls back."""
    assignments: list[tuple[str, str, str]] = []
    messages: list[NewMessage] = []
    for c in candidates:
        stratum = stratum_of(c.burning_minor)
        group = abx_group(c.customer_id, campaign.campaign_id, stratum, campaign.split)
        assignments.append((c.customer_id, group, stratum))
        template = campaign.templates.get(group)
        contact = contacts.get(c.customer_id, {})
        if template is None:
            continue  # the control group hears nothing
        lang = _lang(contact)
        subject, body = template.render(lang, _values(c, contact, lang, campaign.currency))
        email = normal_email(contact.get("email")) or str(contact.get("email") or "")
        messages.append(
            NewMessage(
                idempotency_key=f"{campaign.campaign_id}:{c.customer_id}:email",
                customer_id=c.customer_id,
                channel="email",
                kind="marketing",
                address=email,
                subject=subject,
                body=body,
                zone=str(contact.get("zone", "Europe/Moscow")),
                campaign_id=campaign.campaign_id,
                group=group,
                expires_at=c.expires_at,
            )
        )
    return assignments, messages


def plan_fallback(
    campaign: BurningCampaign,
    undelivered: Sequence[Mapping[str, Any]],
    candidates: Mapping[str, Candidate],
    contacts: Mapping[str, Mapping[str, Any]],
) -> list[NewMessage]:
    """The SMS of each e-mail that ended failed, expired or skipped (one per customer)."""
    messages: list[NewMessage] = []
    for row in undelivered:
        customer_id = row["customer_id"]
        template = campaign.templates.get(row["group"])
        candidate = candidates.get(customer_id)
        if template is None or candidate is None:
            continue  # no longer burning: nothing to say
        contact = contacts.get(customer_id, {})
        lang = _lang(contact)
        _, body = template.render(lang, _values(candidate, contact, lang, campaign.currency))
        phone = normal_phone(contact.get("phone")) or str(contact.get("phone") or "")
        messages.append(
            NewMessage(
                idempotency_key=f"{campaign.campaign_id}:{customer_id}:sms",
                customer_id=customer_id,
                channel="sms",
                kind="marketing",
                address=phone,
                subject="",
                body=body,
                zone=str(contact.get("zone", "Europe/Moscow")),
                campaign_id=campaign.campaign_id,
                group=row["group"],
                expires_at=candidate.expires_at,
                fallback_of=row["message_id"],
            )
        )
    return messages
