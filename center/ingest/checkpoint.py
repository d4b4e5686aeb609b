"""Verification checkpoints (pure): a card's sales folded once, so a batch folds only the rest.

A checkpoint covers, for each (register, store) of the card, every sale the Center holds (out
of quarantine) up to a seq: their fold (sync_protocol's ``fold_sales``, ``seen`` left empty)
and each day's spend (what the tier window sums). It may stand in for those sales only for a
sale whose basis (``state_seen``) names every one of them: then each is in the entitled set,
none is "missed", and the entitled state is the checkpoint plus the entitled sales it does not
cover. Otherwise the sale is verified from the card's whole history, as without a checkpoint.
A checkpoint only advances to what the newest sale of a batch named (what the card's next
sales are most likely to name too); `folded` counts its sales, so a store can check that no
sale arrived late under it (or left quarantine) since it was written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, tzinfo
from typing import Any

from sync_protocol import CardState, DayCounts, Sale, fold_sales, read_state, state_row

__all__ = ["EMPTY", "Checkpoint", "advance", "load_doc", "plus", "usable"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The fold of a card's sales up to ``covers``, and how many they are."""

    state: CardState = field(default_factory=CardState)
    """fold_sales of the covered sales from the empty state (``seen`` empty)."""
    tier_days: Mapping[date, int] = field(default_factory=dict)
    """Day (chain time zone) -> total_minor of the covered sales that are not returns."""
    covers: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(register_id, store_id) -> the highest seq covered (every held sale up to it is)."""
    folded: int = 0
    """How many sales the fold counts."""

    def covered(self, sale: Sale) -> bool:
        """Whether ``sale`` is at or under what the checkpoint covers."""
        return sale.seq <= self.covers.get((sale.register_id, sale.store_id), 0)

    def doc(self) -> str:
        """The stored form (JSON); ``covers`` is stored apart, as rows."""
        row = state_row(self.state)
        return json.dumps(
            {
                "state": row,
                # state_row leaves out empty day buckets (the pruning horizon reads their dates)
                # and zero sums (a week's accrual of 0 is still a counter the engine is given).
                "days": sorted(self.state.days),
                "zero_accrued": {
                    day: sorted(w for w, n in counts.accrued.items() if not n)
                    for day, counts in sorted(self.state.days.items())
                    if not all(counts.accrued.values())
                },
                "tier_days": {d.isoformat(): n for d, n in sorted(self.tier_days.items())},
            },
            separators=(",", ":"),
        )


EMPTY = Checkpoint()
"""No sale folded: verifying from it is verifying from the card's whole history."""


def load_doc(doc: str, covers: Mapping[tuple[str, str], int], folded: int) -> Checkpoint:
    """The checkpoint of a stored doc (ValueError or ProtocolError if it cannot be read)."""
    raw: Any = json.loads(doc)
    state = read_state(raw.get("state"))
    days = dict(state.days)
    for day in raw.get("days", ()):
        days.setdefault(str(day), DayCounts())
    for day, wallets in raw.get("zero_accrued", {}).items():
        bucket = days.get(str(day), DayCounts())
        zeros = {str(w): 0 for w in wallets}
        days[str(day)] = replace(bucket, accrued={**zeros, **bucket.accrued})
    return Checkpoint(
        state=replace(state, days=days),
        tier_days={date.fromisoformat(k): int(v) for k, v in raw.get("tier_days", {}).items()},
        covers=dict(covers),
        folded=folded,
    )


def usable(checkpoint: Checkpoint, sale: Sale) -> bool:
    """Whether ``sale``'s basis names every sale ``checkpoint`` covers (none of them being the
    sale's register's own later or equal seqs)."""
    if not checkpoint.covers:
        return True
    basis = {s.register_id: s.seq for s in sale.state_seen}
    for (register_id, _), seq in checkpoint.covers.items():
        if seq > basis.get(register_id, 0):
            return False
        if register_id == sale.register_id and seq >= sale.seq:
            return False
    return True


def plus(
    checkpoint: Checkpoint, sales: Iterable[Sale], tz: tzinfo
) -> tuple[CardState, dict[date, int]]:
    """The fold and the tier days of the checkpoint's sales and ``sales`` (none covered)."""
    listed = list(sales)
    state = fold_sales(checkpoint.state, listed, tz) if listed else checkpoint.state
    days = dict(checkpoint.tier_days)
    for sale in listed:
        if sale.return_of is None:
            day = sale.closed_at.astimezone(tz).date()
            days[day] = days.get(day, 0) + sale.total_minor
    return replace(state, seen={}), days


def advance(checkpoint: Checkpoint, rest: Sequence[Sale], latest: Sale, tz: tzinfo) -> Checkpoint:
    """``checkpoint`` with the sales of ``rest`` (the held sales it does not cover, all of them)
    that ``latest``'s basis names folded in; unchanged when it names none.

    ``checkpoint`` must be usable for ``latest`` (or EMPTY, ``rest`` then the whole history), so
    that every held sale up to the new ``covers`` is folded."""
    basis = {s.register_id: s.seq for s in latest.state_seen}
    # A basis naming the register's own later seqs names nothing of them.
    own = basis.get(latest.register_id, 0)
    basis[latest.register_id] = min(own, latest.seq - 1)
    named = [s for s in rest if s.seq <= basis.get(s.register_id, 0) and not checkpoint.covered(s)]
    if not named:
        return checkpoint
    covers = dict(checkpoint.covers)
    for s in named:
        key = (s.register_id, s.store_id)
        covers[key] = max(covers.get(key, 0), s.seq)
    state, days = plus(checkpoint, named, tz)
    return Checkpoint(state, days, covers, checkpoint.folded + len(named))
