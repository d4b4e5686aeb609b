"""Recovering sales a store node acknowledged and then lost with its database: the pure rules.

Which acknowledged seqs of a register are missing (neither held by the node nor at the Center),
and the state of a recovery as /health, the logs and the Center's node health show it. The SQL
lives with the sales box (salesbox.py); ARCHITECTURE.md "A lost store database" is the protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "MAX_RESEND_RANGES",
    "RECOVERY_WAIT",
    "JournalAnswer",
    "Ranges",
    "Recovery",
    "describe_ranges",
    "missing_seqs",
    "present_ranges",
]

Ranges = tuple[tuple[int, int], ...]
"""Inclusive (first, last) seq ranges, ascending and disjoint."""

MAX_RESEND_RANGES = 200
RECOVERY_WAIT = timedelta(hours=24)
"""How long a recovery waits for a register that does not report (switched off, retired, an
older release); if it comes back later, its report finds what is missing and starts another."""


def _holes(low: int, high: int, points: Iterable[int]) -> list[tuple[int, int]]:
    """Ranges of (low, high] not in `points` (ascending, distinct)."""
    out: list[tuple[int, int]] = []
    nxt = low + 1
    for point in points:
        if point > high:
            break
        if point < nxt:
            continue
        if point > nxt:
            out.append((nxt, point - 1))
        nxt = point + 1
    if nxt <= high:
        out.append((nxt, high))
    return out


def present_ranges(max_seq: int, gaps: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The Center's seqs of one register as ranges: 1..max_seq without its gaps."""
    out: list[tuple[int, int]] = []
    cur = 1
    for first, last in sorted(gaps):
        if first > cur:
            out.append((cur, min(first - 1, max_seq)))
        cur = max(cur, last + 1)
    if cur <= max_seq:
        out.append((cur, max_seq))
    return out


def missing_seqs(
    low: int, high: int, held: Iterable[int], present: Sequence[tuple[int, int]]
) -> Ranges:
    """Seqs in (low, high] neither in `held` (ascending) nor inside a `present` range."""
    out: list[tuple[int, int]] = []
    for first, last in _holes(low, high, held):
        cur = first
        for p_first, p_last in present:
            if p_last < cur:
                continue
            if p_first > last:
                break
            if p_first > cur:
                out.append((cur, p_first - 1))
            cur = max(cur, p_last + 1)
            if cur > last:
                break
        if cur <= last:
            out.append((cur, last))
    return tuple(out)


def describe_ranges(ranges: Ranges) -> str:
    """The first few ranges as '4-5, 9' (for messages)."""
    shown = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:5]]
    return ", ".join(shown) + (", ..." if len(ranges) > 5 else "")


@dataclass(frozen=True, slots=True)
class JournalAnswer:
    """What a register is told after reporting its journal: re-send these seqs (if any)."""

    db_id: str
    recovering: bool
    resend: Ranges
    started: str | None = None
    """The reason, when this report started the recovery."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """A lost or older store.db being refilled from the registers' journals."""

    since: datetime
    reason: str
    center_checked: bool
    waiting_for: tuple[str, ...]
    """Registers that have not reported their journal since the recovery began."""
    missing: dict[str, Ranges]
    """Acknowledged seqs neither this node nor the Center holds, per register."""
    unreported: tuple[str, ...] = ()
    """Registers no longer waited for (RECOVERY_WAIT passed) that never reported."""

    def alert(self) -> str:
        """The /health alert line (also sent to the Center in the heartbeat)."""
        parts = [f"store_db_recovery: {self.reason}"]
        if not self.center_checked:
            parts.append("asking the Center what it holds")
        if self.missing:
            lost = sum(
                last - first + 1 for ranges in self.missing.values() for first, last in ranges
            )
            parts.append(f"{lost} acknowledged sales to re-send from {', '.join(self.missing)}")
        if self.waiting_for:
            parts.append(f"waiting for {', '.join(self.waiting_for)} to report its journal")
        return "; ".join(parts)
