"""The fraud detectors: pure functions from rows (and `now`) to signals (docs/FRAUD.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from statistics import median

from center.fraud.model import (
    Adjustment,
    CouponUse,
    FraudSettings,
    Grant,
    Money,
    Receipt,
    ReturnEvent,
    Revision,
    ScanInput,
    Signal,
)

__all__ = [
    "accrual_outliers",
    "adjustment_bursts",
    "detect_all",
    "fast_travel",
    "return_bursts",
    "revision_at",
    "revision_jumps",
    "revision_versions",
    "shared_coupons",
]

PLAIN = Money()
"""Amounts shown without a currency (the chain has not set one)."""
_MAD_TO_SIGMA = 1.4826
"""MAD x this estimates the standard deviation of a normal history (a ratio, not money)."""


def _day(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _recent_start(now: datetime, settings: FraudSettings) -> datetime:
    return now - timedelta(hours=settings.recent_hours)


def _capped(ids: Iterable[str], settings: FraudSettings) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))[: settings.max_sale_ids]


# -- accruals far above a subject's own history ----------------------------------------------


def _threshold(history: Sequence[int], settings: FraudSettings) -> tuple[int, int, int]:
    """(median, spread, threshold) in minor units: the spread is the scaled MAD, floored at a
    tenth of the median and at `min_spread_minor` so a regular history does not flag noise."""
    mid = median(history)
    mad = median(abs(a - mid) for a in history)
    spread = max(int(_MAD_TO_SIGMA * mad), int(mid) // 10, settings.min_spread_minor)
    return int(mid), spread, int(mid) + settings.outlier_k * spread


def accrual_outliers(
    receipts: Sequence[Receipt], settings: FraudSettings, now: datetime, money: Money = PLAIN
) -> list[Signal]:
    """Recent receipts whose accrual is far above the card's or the register's own history
    (median + k x MAD over the trailing window, once the subject has `min_history` receipts)."""
    start = _recent_start(now, settings)
    oldest = now - timedelta(days=settings.history_days)
    subjects: dict[str, Callable[[Receipt], str]] = {
        "card": lambda r: r.card_no,
        "register": lambda r: r.register_id,
    }
    signals: list[Signal] = []
    for kind, subject_of in subjects.items():
        history: dict[str, list[int]] = defaultdict(list)
        recent: dict[str, list[Receipt]] = defaultdict(list)
        for r in receipts:
            if r.accrued_minor <= 0 or r.closed_at < oldest or r.closed_at > now:
                continue
            if r.closed_at < start:
                history[subject_of(r)].append(r.accrued_minor)
            else:
                recent[subject_of(r)].append(r)
        for subject, judged in sorted(recent.items()):
            past = history.get(subject, [])
            if len(past) < settings.min_history:
                continue
            mid, spread, limit = _threshold(past, settings)
            by_day: dict[str, list[Receipt]] = defaultdict(list)
            for r in judged:
                if r.accrued_minor > limit:
                    by_day[_day(r.closed_at)].append(r)
            for day, found in sorted(by_day.items()):
                top = max(r.accrued_minor for r in found)
                total = sum(r.accrued_minor for r in found)
                signals.append(
                    Signal(
                        detector="accrual_outlier",
                        subject_kind=kind,
                        subject=subject,
                        window=day,
                        severity="high" if top >= 10 * max(limit, 1) else "medium",
                        reason=(
                            f"{kind} {subject}: {len(found)} receipt(s) on {day} accrued "
                            f"{money.show(total)} (largest {money.show(top)}) against its own "
                            f"median of {money.show(mid)} per receipt over {len(past)} receipts "
                            f"in the previous {settings.history_days} days; above the threshold "
                            f"{money.show(limit)} = median + {settings.outlier_k} x spread "
                            f"{money.show(spread)} (1.4826 x median absolute deviation, at least "
                            f"a tenth of the median and {money.show(settings.min_spread_minor)})"
                        ),
                        sale_ids=_capped((r.sale_id for r in found), settings),
                    )
                )
    return signals


# -- one card in two stores faster than travel allows ------------------------------------------


def fast_travel(
    receipts: Sequence[Receipt], settings: FraudSettings, now: datetime
) -> list[Signal]:
    """A card's consecutive sales at two different stores closer in time than
    `min_minutes_between_stores`, the second one recent."""
    start = _recent_start(now, settings)
    gap_limit = timedelta(minutes=settings.min_minutes_between_stores)
    per_card: dict[str, list[Receipt]] = defaultdict(list)
    for r in receipts:
        if start - gap_limit <= r.closed_at <= now:
            per_card[r.card_no].append(r)
    signals: list[Signal] = []
    for card_no, visits in sorted(per_card.items()):
        visits.sort(key=lambda r: (r.closed_at, r.sale_id))
        by_day: dict[str, list[tuple[Receipt, Receipt]]] = defaultdict(list)
        for before, after in pairwise(visits):
            if after.closed_at < start or before.store_id == after.store_id:
                continue
            if after.closed_at - before.closed_at < gap_limit:
                by_day[_day(after.closed_at)].append((before, after))
        for day, pairs in sorted(by_day.items()):
            quickest = min(after.closed_at - before.closed_at for before, after in pairs)
            hops = "; ".join(
                f"store {b.store_id} at {_time(b.closed_at)} then store {a.store_id} at "
                f"{_time(a.closed_at)} ({(a.closed_at - b.closed_at).total_seconds() / 60:.1f} min)"
                for b, a in pairs[:5]
            )
            signals.append(
                Signal(
                    detector="fast_travel",
                    subject_kind="card",
                    subject=card_no,
                    window=day,
                    severity="high" if quickest < gap_limit / 3 else "medium",
                    reason=(
                        f"card {card_no} used at {len(pairs)} pair(s) of different stores less "
                        f"than {settings.min_minutes_between_stores} minutes apart on {day} "
                        f"(the configured minimum between stores; the master data has no store "
                        f"coordinates): {hops}"
                    ),
                    sale_ids=_capped((s.sale_id for pair in pairs for s in pair), settings),
                )
            )
    return signals


# -- bursts of returns or manual adjustments -------------------------------------------------


def _bursts(
    events: Sequence[tuple[datetime, str]], limit: int, window: timedelta, start: datetime
) -> list[list[tuple[datetime, str]]]:
    """Runs of events where `limit` of them fall within `window`; overlapping runs merged,
    only runs that reach the limit at or after `start`."""
    ordered = sorted(events)
    runs: list[list[tuple[datetime, str]]] = []
    current: list[tuple[datetime, str]] | None = None
    first = 0
    for i, (at, _) in enumerate(ordered):
        while ordered[first][0] < at - window:
            first += 1
        if i - first + 1 >= limit and at >= start:
            members = ordered[first : i + 1]
            if current is not None and members[0] <= current[-1]:
                current.extend(e for e in members if e > current[-1])
            else:
                current = list(members)
                runs.append(current)
    return runs


def _burst_signals(
    detector: str,
    what: str,
    groups: dict[tuple[str, str], list[tuple[datetime, str]]],
    limit: int,
    settings: FraudSettings,
    now: datetime,
    *,
    evidence_is_sale: bool,
    amounts: dict[str, int],
    money: Money,
) -> list[Signal]:
    window = timedelta(minutes=settings.burst_window_minutes)
    start = _recent_start(now, settings)
    signals: list[Signal] = []
    for (kind, subject), events in sorted(groups.items()):
        for run in _bursts(events, limit, window, start):
            # The day the run reached the limit names the case: stable across re-scans.
            day = _day(run[limit - 1][0])
            ids = [ref for _, ref in run]
            total = sum(amounts.get(ref, 0) for ref in ids)
            signals.append(
                Signal(
                    detector=detector,
                    subject_kind=kind,
                    subject=subject,
                    window=day,
                    severity="high" if len(run) >= 2 * limit else "medium",
                    reason=(
                        f"{kind} {subject}: {len(run)} {what} between {_time(run[0][0])} and "
                        f"{_time(run[-1][0])} ({money.show(total)} in total); {limit} within "
                        f"{settings.burst_window_minutes} minutes make a burst"
                    ),
                    sale_ids=_capped(ids, settings) if evidence_is_sale else (),
                    refs=() if evidence_is_sale else _capped(ids, settings),
                )
            )
    return signals


def return_bursts(
    returns: Sequence[ReturnEvent], settings: FraudSettings, now: datetime, money: Money = PLAIN
) -> list[Signal]:
    """`burst_returns` returns or more by one register or one card within the burst window."""
    groups: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    for r in returns:
        if r.at > now:
            continue
        groups[("register", r.register_id)].append((r.at, r.sale_id))
        if r.card_no:
            groups[("card", r.card_no)].append((r.at, r.sale_id))
    return _burst_signals(
        "return_burst",
        "returns",
        groups,
        settings.burst_returns,
        settings,
        now,
        evidence_is_sale=True,
        amounts={r.sale_id: r.refund_minor for r in returns},
        money=money,
    )


def adjustment_bursts(
    adjustments: Sequence[Adjustment],
    settings: FraudSettings,
    now: datetime,
    money: Money = PLAIN,
) -> list[Signal]:
    """`burst_adjustments` manual adjustments or more by one person or to one card within the
    burst window."""
    groups: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    for a in adjustments:
        if a.at > now:
            continue
        groups[("person", a.actor)].append((a.at, a.key))
        groups[("card", a.card_no)].append((a.at, a.key))
    return _burst_signals(
        "adjustment_burst",
        "manual adjustments",
        groups,
        settings.burst_adjustments,
        settings,
        now,
        evidence_is_sale=False,
        amounts={a.key: a.amount_minor for a in adjustments},
        money=money,
    )


# -- coupon codes shared across many cards -------------------------------------------------


def shared_coupons(
    uses: Sequence[CouponUse], settings: FraudSettings, now: datetime
) -> list[Signal]:
    """Codes redeemed by more than `coupon_max_cards` distinct cards within the coupon window."""
    oldest = now - timedelta(days=settings.coupon_window_days)
    per_code: dict[str, list[CouponUse]] = defaultdict(list)
    for use in uses:
        if oldest <= use.at <= now:
            per_code[use.code].append(use)
    signals: list[Signal] = []
    for code, found in sorted(per_code.items()):
        found.sort(key=lambda u: (u.at, u.sale_id))
        cards: dict[str, None] = {}
        crossed: CouponUse | None = None
        for use in found:
            cards.setdefault(use.card_no)
            if crossed is None and len(cards) > settings.coupon_max_cards:
                crossed = use
        if crossed is None:
            continue
        signals.append(
            Signal(
                detector="shared_coupon",
                subject_kind="code",
                subject=code,
                window=_day(crossed.at),
                severity="high" if len(cards) > 2 * settings.coupon_max_cards else "medium",
                reason=(
                    f"code {code} redeemed on {len(found)} sales by {len(cards)} different cards "
                    f"between {_time(found[0].at)} and {_time(found[-1].at)}; more than "
                    f"{settings.coupon_max_cards} cards within {settings.coupon_window_days} "
                    f"days is a shared code"
                ),
                sale_ids=_capped((u.sale_id for u in found), settings),
            )
        )
    return signals


# -- rules whose grants jump after a revision -------------------------------------------------


def revision_at(revisions: Sequence[Revision], promo_version: int) -> Revision | None:
    """The revision of one promotion live at a master version: the last one published at or
    before it (None before the first)."""
    live: Revision | None = None
    for r in revisions:
        if r.published_version <= promo_version and (
            live is None or r.published_version > live.published_version
        ):
            live = r
    return live


def revision_versions(
    revisions: Sequence[Revision], promotion_id: str, revision: int
) -> tuple[int, int | None]:
    """The master versions [low, high) at which a revision was the live one (high None: still
    live)."""
    ordered = sorted(
        (r for r in revisions if r.promotion_id == promotion_id), key=lambda r: r.published_version
    )
    for this, following in zip(ordered, [*ordered[1:], None], strict=True):
        if this.revision == revision:
            return (
                this.published_version,
                None if following is None else following.published_version,
            )
    raise ValueError(f"promotion {promotion_id!r} has no published revision {revision}")


def revision_jumps(
    grants: Sequence[Grant],
    revisions: Sequence[Revision],
    settings: FraudSettings,
    money: Money = PLAIN,
) -> list[Signal]:
    """A promotion revision whose grants per receipt are `revision_jump_ratio` times those of
    the revision live before it (and `revision_min_increase_minor` more), both with enough
    receipts; the grants are those of the history window. The sales behind a signal are the
    revision's receipts (`revision_versions`), which the caller looks up."""
    per_promotion: dict[str, list[Revision]] = defaultdict(list)
    for r in revisions:
        per_promotion[r.promotion_id].append(r)
    # (promotion, revision) -> [receipts, granted]
    granted: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for g in grants:
        if g.promotion_id not in per_promotion:
            continue
        live = revision_at(per_promotion[g.promotion_id], g.promo_version)
        if live is not None:
            totals = granted[(g.promotion_id, live.revision)]
            totals[0] += g.receipts
            totals[1] += g.amount_minor
    signals: list[Signal] = []
    for promotion_id, known in sorted(per_promotion.items()):
        ordered = sorted(known, key=lambda r: r.published_version)
        for before, after in pairwise(ordered):
            old_n, old_total = granted.get((promotion_id, before.revision), [0, 0])
            new_n, new_total = granted.get((promotion_id, after.revision), [0, 0])
            if min(old_n, new_n) < settings.revision_min_receipts:
                continue
            # Compare per-receipt means without division: new/new_n vs old/old_n.
            if new_total * old_n < settings.revision_jump_ratio * old_total * new_n:
                continue
            old_each, new_each = old_total // old_n, new_total // new_n
            if new_each - old_each < settings.revision_min_increase_minor:
                continue
            times = "many" if old_each <= 0 else f"{new_each / old_each:.0f}"
            signals.append(
                Signal(
                    detector="revision_jump",
                    subject_kind="promotion",
                    subject=promotion_id,
                    window=f"revision {after.revision}",
                    severity="high" if new_each >= 10 * max(old_each, 1) else "medium",
                    reason=(
                        f"promotion {promotion_id} revision {after.revision} (published at "
                        f"master version {after.published_version} by {after.author}) granted "
                        f"{money.show(new_total)} over {new_n} receipts, "
                        f"{money.show(new_each)} per receipt, against {money.show(old_each)} "
                        f"per receipt over {old_n} receipts under revision {before.revision} "
                        f"(the last {settings.history_days} days): {times} times as much; "
                        f"{settings.revision_jump_ratio} times and "
                        f"{money.show(settings.revision_min_increase_minor)} more per receipt "
                        f"is a jump"
                    ),
                )
            )
    return signals


def detect_all(rows: ScanInput, settings: FraudSettings, now: datetime) -> list[Signal]:
    """Every detector over one scan's rows."""
    money = rows.money
    return [
        *accrual_outliers(rows.receipts, settings, now, money),
        *fast_travel(rows.receipts, settings, now),
        *return_bursts(rows.returns, settings, now, money),
        *adjustment_bursts(rows.adjustments, settings, now, money),
        *shared_coupons(rows.coupon_uses, settings, now),
        *revision_jumps(rows.grants, rows.revisions, settings, money),
    ]
