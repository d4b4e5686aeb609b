"""The outbox sender: claim a due message, send it on its channel, record the answer; apply
delivery receipts; keep each channel under its rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from center.communications.channels.base import Channel
from center.communications.model import OutMessage, SendOutcome
from center.communications.store import CommunicationsRepository

__all__ = ["DEFAULT_DAILY_CAP", "DEFAULT_LEASE", "SendReport", "collect_receipts", "send_due"]

DEFAULT_LEASE = timedelta(minutes=5)
"""A message claimed longer ago than this, still `sending`, lost its sender (it is re-sent)."""
DEFAULT_DAILY_CAP = 2
"""Marketing messages per customer per channel per local day."""


@dataclass(slots=True)
class SendReport:
    """What one pass of the sender did, by outcome."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    not_sent: int = 0
    receipts: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


class _Pace:
    """At most `rate` per second, on the monotonic clock."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        if self.next_at > now:
            await asyncio.sleep(self.next_at - now)
        self.next_at = max(self.next_at, now) + self.gap


async def send_due(
    repo: CommunicationsRepository,
    channels: Mapping[str, Channel],
    *,
    clock: Callable[[], datetime],
    batch: int = 200,
    daily_cap: int = DEFAULT_DAILY_CAP,
    lease: timedelta = DEFAULT_LEASE,
) -> SendReport:
    """Send every message due now on the given channels, then collect their receipts. A
    channel with `concurrency` above 1 (EmailChannel(connections=N)) is sent to in batches."""
    report = SendReport()
    paces = {name: _Pace(channel.rate_per_s) for name, channel in channels.items()}
    widest = max((int(getattr(c, "concurrency", 1)) for c in channels.values()), default=1)
    seen: set[str] = set()
    while True:
        due = [
            m
            for m in repo.due(clock(), limit=batch, lease=lease, channels=tuple(channels))
            if m not in seen
        ]
        if not due:
            break
        seen.update(due)
        if widest == 1:
            # One message claimed, sent and recorded at a time: at most one in flight.
            for message_id in due:
                claimed = repo.claim(message_id, clock(), daily_cap=daily_cap, lease=lease)
                if claimed is None:
                    report.not_sent += 1
                    continue
                await paces[claimed.channel].wait()
                outcome = await channels[claimed.channel].send(claimed)
                _count(report, claimed.channel, repo.record_outcome(message_id, outcome, clock()))
            continue
        # Batches: claimed in one transaction (all `sending` before the first leaves), sent
        # over the channels' connections at once, recorded in one transaction.
        step = widest * 4
        for start in range(0, len(due), step):
            chunk = due[start : start + step]
            found = repo.claim_many(chunk, clock(), daily_cap=daily_cap, lease=lease)
            claimed_all = [c for c in found if c is not None]
            report.not_sent += len(found) - len(claimed_all)

            async def one(message: OutMessage) -> SendOutcome:
                await paces[message.channel].wait()
                return await channels[message.channel].send(message)

            outcomes = await asyncio.gather(*(one(c) for c in claimed_all))
            states = repo.record_outcomes(
                [(c.message_id, o) for c, o in zip(claimed_all, outcomes, strict=True)], clock()
            )
            for c, state in zip(claimed_all, states, strict=True):
                _count(report, c.channel, state)
    report.receipts += await collect_receipts(repo, channels, clock=clock)
    return report


def _count(report: SendReport, channel: str, state: str) -> None:
    if state == "sent":
        report.sent += 1
        report.by_channel[channel] = report.by_channel.get(channel, 0) + 1
    elif state == "queued":
        report.retried += 1
    else:
        report.failed += 1


async def collect_receipts(
    repo: CommunicationsRepository,
    channels: Mapping[str, Channel],
    *,
    clock: Callable[[], datetime],
) -> int:
    """Apply the delivery receipts every channel holds; how many messages changed state."""
    changed = 0
    for channel in channels.values():
        found = await channel.receipts()
        if found:
            changed += repo.apply_receipts(found, clock())
    return changed
