"""Tier levels (statuses) and the pure rule that moves a customer between them.

A programme is defined at the Center and travels down the master feed as the chain setting
``tiers.programme`` (JSON, ``programme_text``). Each level has a code (usable as a rule's
``tiers`` condition), titles, a rank and thresholds on spend (minor units) and/or visits (days
with a purchase) over a rolling qualification period: ``period_days`` (the day and the N-1 days
before it) or ``period_months`` (the current calendar month and the N-1 before it).

- **Upgrade at once**: on any day whose window qualifies for a higher rank (the register and the
  Center both apply it: ``upgraded_tier``).
- **Downgrade at the period's end, after a grace period** (the Center only: ``advance_tier``):
  a level reached on day S is reviewed on ``R`` = S + one period; the decision falls on
  ``R + grace_days`` (the level is kept through the day before, ``kept_until``): if the window
  ending the day before still qualifies for the level, it is renewed for one more period from
  R; otherwise the customer moves to the highest level that window qualifies for (or none).
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

__all__ = [
    "TIERS_SETTING",
    "TierChange",
    "TierLevel",
    "TierProgramme",
    "TierStatus",
    "advance_tier",
    "check_programme",
    "kept_until",
    "programme_doc",
    "programme_text",
    "read_programme",
    "tier_progress",
    "upgraded_tier",
    "window_totals",
]

TIERS_SETTING = "tiers.programme"
"""The chain setting that carries the programme down the master feed (JSON text)."""
_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_MAX_LEVELS = 20
_MAX_DAYS = 3660
_MAX_MONTHS = 120


@dataclass(frozen=True, slots=True)
class TierLevel:
    """One level: reached when the window's spend and/or visits meet its thresholds."""

    code: str
    rank: int
    title_ru: str = ""
    title_en: str = ""
    spend_minor: int = 0
    """Spend in the window needed (0: no spend threshold)."""
    visits: int = 0
    """Days with a purchase in the window needed (0: no visits threshold)."""
    require: str = "all"
    """"all": every threshold given must be met; "any": one of them is enough."""

    def qualifies(self, spend_minor: int, visits: int) -> bool:
        """Whether a window with this spend and these visits reaches the level."""
        checks = []
        if self.spend_minor:
            checks.append(spend_minor >= self.spend_minor)
        if self.visits:
            checks.append(visits >= self.visits)
        if not checks:
            return True
        return all(checks) if self.require == "all" else any(checks)


@dataclass(frozen=True, slots=True)
class TierProgramme:
    """The chain's levels (by rank, lowest first) and their qualification period."""

    levels: tuple[TierLevel, ...] = ()
    period_days: int = 0
    period_months: int = 0
    grace_days: int = 0

    def level(self, code: str) -> TierLevel | None:
        """The level of that code (None: no such level)."""
        return next((lv for lv in self.levels if lv.code == code), None)

    def rank(self, code: str) -> int:
        """The rank of a level code; -1 for none or a code the programme does not define."""
        found = self.level(code)
        return found.rank if found is not None else -1

    def window_start(self, day: date) -> date:
        """The first day of the qualification window that ends on ``day``."""
        if self.period_months:
            return _add_months(day.replace(day=1), 1 - self.period_months)
        return day - timedelta(days=self.period_days - 1)

    def next_review(self, start: date) -> date:
        """The first day after the qualification period that begins on ``start``."""
        if self.period_months:
            return _add_months(start.replace(day=1), self.period_months)
        return start + timedelta(days=self.period_days)

    def qualifying(self, spend_minor: int, visits: int) -> TierLevel | None:
        """The highest level a window with this spend and these visits reaches."""
        best = None
        for level in self.levels:
            if level.qualifies(spend_minor, visits):
                best = level
        return best


@dataclass(frozen=True, slots=True)
class TierStatus:
    """A customer's level as the Center keeps it."""

    tier: str = ""
    since: date | None = None
    review_on: date | None = None
    """The first day after the current qualification period (None: no level)."""
    as_of: date | None = None
    """The last day ``advance_tier`` evaluated."""


@dataclass(frozen=True, slots=True)
class TierChange:
    """One move between levels: on which day, from, to, and why ("upgrade" or "downgrade")."""

    on: date
    from_tier: str
    to_tier: str
    reason: str


def _add_months(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def kept_until(programme: TierProgramme, status: TierStatus) -> date | None:
    """The last day the current level is kept unless it is renewed (None: no level)."""
    if not status.tier or status.review_on is None:
        return None
    return status.review_on + timedelta(days=programme.grace_days - 1)


def window_totals(programme: TierProgramme, days: Mapping[date, int], day: date) -> tuple[int, int]:
    """(spend, visits) of the window ending on ``day``; ``days`` maps each day with a purchase
    to that day's spend."""
    start = programme.window_start(day)
    spend = visits = 0
    for on, amount in days.items():
        if start <= on <= day:
            spend += amount
            visits += 1
    return spend, visits


class _Windows:
    """``window_totals`` over one customer's purchase days in O(log n) per window: the days
    sorted once with running sums (a review replays a whole history, window after window)."""

    def __init__(self, programme: TierProgramme, days: Mapping[date, int]) -> None:
        self.programme = programme
        self.ordered = sorted(days)
        self.sums = [0]
        for on in self.ordered:
            self.sums.append(self.sums[-1] + days[on])

    def totals(self, day: date) -> tuple[int, int]:
        lo = bisect_left(self.ordered, self.programme.window_start(day))
        hi = bisect_right(self.ordered, day)
        return (self.sums[hi] - self.sums[lo], hi - lo) if hi > lo else (0, 0)


def advance_tier(
    programme: TierProgramme, status: TierStatus, days: Mapping[date, int], today: date
) -> tuple[TierStatus, list[TierChange]]:
    """The status on ``today`` and the changes on the way, from ``status`` (evaluated through
    its ``as_of``, which is evaluated again: more sales of that day may have arrived) and the
    customer's purchase days. Upgrades fall on purchase days (and on ``today``, for sales that
    arrived late); downgrades on decision days (review + grace)."""
    changes: list[TierChange] = []
    tier, since, review = status.tier, status.since, status.review_on
    if programme.level(tier) is None and tier:
        # A level the programme no longer defines: from nothing, as a new customer.
        changes.append(TierChange(status.as_of or today, tier, "", "downgrade"))
        tier, since, review = "", None, None
    begin = status.as_of or min(days, default=today)
    purchases = sorted({d for d in days if begin <= d <= today} | {today})
    grace = timedelta(days=programme.grace_days)
    windows = _Windows(programme, days)
    for day in purchases:
        # Decisions due up to this day come first (a decision on day G reads the window
        # ending the day before, so this day's purchases count for the next one).
        while tier and review is not None and review + grace <= day:
            decided = review + grace
            spend, visits = windows.totals(decided - timedelta(days=1))
            reached = programme.qualifying(spend, visits)
            if reached is not None and reached.rank >= programme.rank(tier):
                if reached.code != tier:
                    changes.append(TierChange(decided, tier, reached.code, "upgrade"))
                    tier, since, review = reached.code, decided, programme.next_review(decided)
                else:
                    review = programme.next_review(review)
                continue
            to = reached.code if reached is not None else ""
            changes.append(TierChange(decided, tier, to, "downgrade"))
            tier, since = to, decided
            review = programme.next_review(decided) if to else None
        if day not in days and not windows.totals(day)[1]:
            continue  # no purchase: nothing to upgrade on (so the review's cadence never matters)
        spend, visits = windows.totals(day)
        reached = programme.qualifying(spend, visits)
        if reached is not None and reached.rank > programme.rank(tier):
            changes.append(TierChange(day, tier, reached.code, "upgrade"))
            tier, since, review = reached.code, day, programme.next_review(day)
    return TierStatus(tier, since, review, today), changes


def upgraded_tier(programme: TierProgramme, tier: str, spend_minor: int, visits: int) -> str:
    """The level after an upgrade at once: ``tier``, or a higher one the window reaches."""
    reached = programme.qualifying(spend_minor, visits)
    if reached is not None and reached.rank > programme.rank(tier):
        return reached.code
    return tier


def tier_progress(
    programme: TierProgramme,
    tier: str,
    spend_minor: int,
    visits: int,
    today: date,
    *,
    since: date | None = None,
    until: date | None = None,
) -> dict[str, Any]:
    """What a customer (or a cashier) is shown: the level, since and until when it is kept
    (``kept_until``), the window's spend and visits, and what is still needed for the next
    level and to keep this one."""
    level = programme.level(tier)
    out: dict[str, Any] = {
        "tier": tier,
        "title": {"ru": level.title_ru, "en": level.title_en} if level else None,
        "since": since.isoformat() if since else None,
        "kept_until": until.isoformat() if until else None,
        "window_from": programme.window_start(today).isoformat(),
        "spend_minor": spend_minor,
        "visits": visits,
        "next": None,
        "keep": None,
    }
    rank = programme.rank(tier)
    above = [lv for lv in programme.levels if lv.rank > rank]
    if above:
        nxt = above[0]
        out["next"] = {
            "tier": nxt.code,
            "title": {"ru": nxt.title_ru, "en": nxt.title_en},
            "require": nxt.require,
            "spend_minor_needed": max(0, nxt.spend_minor - spend_minor),
            "visits_needed": max(0, nxt.visits - visits),
        }
    if level is not None:
        out["keep"] = {
            "require": level.require,
            "spend_minor_needed": max(0, level.spend_minor - spend_minor),
            "visits_needed": max(0, level.visits - visits),
        }
    return out


# -- the document form ---------------------------------------------------------------------


def programme_doc(programme: TierProgramme) -> dict[str, Any]:
    """The JSON form of a programme (the API's and the setting's)."""
    doc: dict[str, Any] = {"grace_days": programme.grace_days}
    if programme.period_months:
        doc["period_months"] = programme.period_months
    else:
        doc["period_days"] = programme.period_days
    doc["levels"] = [
        {
            "code": lv.code,
            "title": {"ru": lv.title_ru, "en": lv.title_en},
            "rank": lv.rank,
            "spend_minor": lv.spend_minor,
            "visits": lv.visits,
            "require": lv.require,
        }
        for lv in programme.levels
    ]
    return doc


def programme_text(programme: TierProgramme) -> str:
    """The setting's text: compact JSON with sorted keys."""
    return json.dumps(programme_doc(programme), sort_keys=True, separators=(",", ":"))


def _int(
    doc: Mapping[str, Any], name: str, at: str, problems: list[tuple[str, str]], high: int
) -> int:
    value = doc.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        problems.append((f"{at}{name}", f"expected an integer 0..{high}, got {value!r}"))
        return 0
    return value


def _unknown(
    doc: Mapping[str, Any], known: Iterable[str], at: str, problems: list[tuple[str, str]]
) -> None:
    names = tuple(known)
    for name in sorted(set(doc) - set(names), key=str):
        problems.append((f"{at}{name}", f"unknown field (known: {', '.join(names)})"))


def _level(doc: Any, at: str, problems: list[tuple[str, str]]) -> TierLevel | None:
    if not isinstance(doc, Mapping):
        problems.append((at.rstrip("."), "expected an object"))
        return None
    count = len(problems)
    _unknown(doc, ("code", "title", "rank", "spend_minor", "visits", "require"), at, problems)
    code = doc.get("code")
    if not isinstance(code, str) or not _CODE.match(code):
        problems.append((f"{at}code", f"expected 1..32 of a-z 0-9 _ - , got {code!r}"))
    title = doc.get("title")
    titles = {"ru": "", "en": ""}
    if not isinstance(title, Mapping):
        problems.append((f"{at}title", f"expected {{'ru': ..., 'en': ...}}, got {title!r}"))
    else:
        _unknown(title, ("ru", "en"), f"{at}title.", problems)
        for lang in titles:
            text = title.get(lang)
            if not isinstance(text, str) or not text.strip() or len(text) > 64:
                problems.append((f"{at}title.{lang}", f"expected 1..64 characters, got {text!r}"))
            else:
                titles[lang] = text.strip()
    rank = doc.get("rank")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= 1000:
        problems.append((f"{at}rank", f"expected an integer 0..1000, got {rank!r}"))
    spend = _int(doc, "spend_minor", at, problems, 10**15)
    visits = _int(doc, "visits", at, problems, 100_000)
    require = doc.get("require", "all")
    if require not in ("all", "any"):
        problems.append((f"{at}require", f"expected 'all' or 'any', got {require!r}"))
    if len(problems) > count:
        return None
    assert isinstance(code, str) and isinstance(rank, int)
    return TierLevel(code, rank, titles["ru"], titles["en"], spend, visits, str(require))


def check_programme(doc: Any) -> tuple[TierProgramme | None, list[tuple[str, str]]]:
    """A programme document -> (the programme, or None, and every problem as (field, message)).
    Strict: unknown fields, duplicate codes or ranks, a missing or double period are problems."""
    problems: list[tuple[str, str]] = []
    if not isinstance(doc, Mapping):
        return None, [("body", "expected a JSON object")]
    _unknown(doc, ("period_days", "period_months", "grace_days", "levels"), "", problems)
    days = _int(doc, "period_days", "", problems, _MAX_DAYS)
    months = _int(doc, "period_months", "", problems, _MAX_MONTHS)
    if ("period_days" in doc) == ("period_months" in doc):
        problems.append(("period_days", "give exactly one of period_days or period_months"))
    elif not (days or months) and not any(f.startswith("period_") for f, _ in problems):
        field = "period_days" if "period_days" in doc else "period_months"
        problems.append((field, "expected a period of at least 1"))
    grace = _int(doc, "grace_days", "", problems, _MAX_DAYS)
    raw = doc.get("levels")
    where: dict[str, int] = {}
    levels: list[TierLevel] = []
    if not isinstance(raw, list) or len(raw) > _MAX_LEVELS:
        problems.append(("levels", f"expected a list of at most {_MAX_LEVELS} levels"))
        raw = []
    for i, item in enumerate(raw):
        level = _level(item, f"levels[{i}].", problems)
        if level is None:
            continue
        if level.code in where:
            problems.append((f"levels[{i}].code", f"code {level.code!r} given twice"))
        elif any(lv.rank == level.rank for lv in levels):
            problems.append((f"levels[{i}].rank", f"rank {level.rank} given twice"))
        else:
            where[level.code] = i
            levels.append(level)
    levels.sort(key=lambda lv: lv.rank)
    for level in levels[1:]:
        if not (level.spend_minor or level.visits):
            problems.append(
                (
                    f"levels[{where[level.code]}].spend_minor",
                    "only the lowest rank may have no threshold (spend_minor or visits)",
                )
            )
    if problems:
        return None, problems
    return TierProgramme(tuple(levels), days, months, grace), []


def read_programme(settings: Mapping[str, Any]) -> TierProgramme | None:
    """The programme of a tier's chain settings (None: none defined, or unreadable: the tier
    then stays what the Center sent)."""
    text = settings.get(TIERS_SETTING)
    if not text:
        return None
    try:
        doc = json.loads(str(text))
    except ValueError:
        return None
    programme, problems = check_programme(doc)
    if problems or programme is None or not programme.levels:
        return None
    return programme
