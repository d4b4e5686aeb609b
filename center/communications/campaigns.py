"""Launching chains over the repository: the "bonuses burning" chain (plan, assign, enqueue, fall
back) and the triggered ones (welcome, inactivity, birthday, purchase, segment)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from center.communications.chains import BurningCampaign, Candidate, plan_burning, plan_fallback
from center.communications.store import CommunicationsRepository
from center.communications.triggers import (
    TriggerCampaign,
    TriggerCandidate,
    is_birthday,
    plan_trigger,
)

__all__ = ["launch_burning", "launch_trigger", "run_fallback"]


def _candidates(
    repo: CommunicationsRepository, campaign: BurningCampaign, now: datetime
) -> list[Candidate]:
    return [Candidate(*row) for row in repo.burning(now, timedelta(days=campaign.within_days))]


def launch_burning(
    repo: CommunicationsRepository, campaign: BurningCampaign, now: datetime
) -> dict[str, Any]:
    """Assign every customer whose bonuses burn within the window and enqueue their e-mails;
    launching the same campaign again adds only customers not yet assigned."""
    candidates = _candidates(repo, campaign, now)
    with repo.db.guard("read contacts"), repo.db.snapshot():
        contacts = repo.contacts([c.customer_id for c in candidates])
    assignments, messages = plan_burning(campaign, candidates, contacts)
    repo.assign(campaign.campaign_id, assignments, now)
    added = repo.enqueue(messages, now)
    groups: dict[str, int] = {}
    for _, group, _ in assignments:
        groups[group] = groups.get(group, 0) + 1
    return {
        "campaign_id": campaign.campaign_id,
        "customers": len(candidates),
        "groups": groups,
        "enqueued": added,
    }


def run_fallback(repo: CommunicationsRepository, campaign: BurningCampaign, now: datetime) -> int:
    """Enqueue the SMS of every e-mail of the campaign that ended undelivered; how many."""
    undelivered = repo.failed_without_fallback(campaign.campaign_id, "email")
    if not undelivered:
        return 0
    candidates = {c.customer_id: c for c in _candidates(repo, campaign, now)}
    with repo.db.guard("read contacts"), repo.db.snapshot():
        contacts = repo.contacts([r["customer_id"] for r in undelivered])
    return repo.enqueue(plan_fallback(campaign, undelivered, candidates, contacts), now)


def launch_trigger(
    repo: CommunicationsRepository, campaign: TriggerCampaign, now: datetime
) -> dict[str, Any]:
    """Find the trigger's customers, assign them and enqueue one message each on their channel;
    launching again (a daily run) adds only occasions not yet told."""
    found = repo.trigger_candidates(
        campaign.trigger, now, days=campaign.days, segment_id=campaign.segment_id
    )
    ids = [customer_id for customer_id, _ in found]
    with repo.db.guard("read contacts"), repo.db.snapshot():
        contacts = repo.contacts(ids)
        balances = repo.balances(ids, now)
    if campaign.trigger == "birthday":
        # Today is the customer's own day: in their zone, not the Center's.
        found = [
            (
                customer_id,
                f"birthday-{now.astimezone(ZoneInfo(contacts[customer_id]['zone'])).year}",
            )
            for customer_id, born in found
            if customer_id in contacts
            and is_birthday(born, now.astimezone(ZoneInfo(contacts[customer_id]["zone"])).date())
        ]
    candidates = [TriggerCandidate(c, occasion, balances.get(c, 0)) for c, occasion in found]
    assignments, messages = plan_trigger(campaign, candidates, contacts)
    repo.assign(campaign.campaign_id, assignments, now)
    added = repo.enqueue(messages, now)
    groups: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    for _, group, _ in assignments:
        groups[group] = groups.get(group, 0) + 1
    for m in messages:
        by_channel[m.channel] = by_channel.get(m.channel, 0) + 1
    return {
        "campaign_id": campaign.campaign_id,
        "trigger": campaign.trigger,
        "customers": len(candidates),
        "groups": groups,
        "channels": by_channel,
        "enqueued": added,
    }
