"""Launching the "bonuses burning" chain over the repository: plan, assign, enqueue, fall back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from center.communications.chains import BurningCampaign, Candidate, plan_burning, plan_fallback
from center.communications.store import CommunicationsRepository

__all__ = ["launch_burning", "run_fallback"]


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
