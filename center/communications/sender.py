"""The outbox sender: claim a due message, send it on its channel, record the answer; apply
delivery receipts; keep each channel under its rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from center.communications.channels.base import Channel
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
    """Send every message due now on the given channels, then collect their receipts."""
    report = SendReport()
    paces = {name: _Pace(channel.rate_per_s) for name, channel in channels.items()}
    seen: set[str] = set()
    while True:
        due = [
            m
            for m in repo.due(clock(), limit=batch, lease=lease, channels=tuple(channels))
            if m not in seen
        ]
        if not due:
            break
        for message_id in due:
            seen.add(message_id)
            claimed = repo.claim(message_id, clock(), daily_cap=daily_cap, lease=lease)
            if claimed is None:
                report.not_sent += 1
                continue
            await paces[claimed.channel].wait()
            outcome = await channels[claimed.channel].send(claimed)
            state = repo.record_outcome(message_id, outcome, clock())
            if state == "sent":
                report.sent += 1
                report.by_channel[claimed.channel] = report.by_channel.get(claimed.channel, 0) + 1
            elif state == "queued":
                report.retried += 1
            else:
                report.failed += 1
    report.receipts += await collect_receipts(repo, channels, clock=clock)
    return report


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
