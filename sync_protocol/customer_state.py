"""The card holder's state, kept alike at every tier: what the Center derived plus unseen sales.

A card row of the master feed carries ``state`` (``state_row``): the counters, per-promotion
fire counts and promo quantities the Center folded from the card's sales, the wallets its
ledger holds, the CRM's tier and attributes, and ``seen`` (register -> highest seq folded).
A store node folds its registers' sales that ``seen`` does not cover; a register folds its own.
Folding is a sum, so the order of sales does not matter and a sale already covered by ``seen``
is never counted twice. Day buckets (``days``) are dates in the chain's time zone, kept for
``DAYS_KEPT`` days after the newest one: rolling periods and "today / this month" are read from
them at pricing time (``view``), so the row itself never depends on the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from .errors import MalformedMessage
from .messages import Sale, SalePass, SalePromotion

__all__ = [
    "DAYS_KEPT",
    "STATE_VERSION",
    "CardState",
    "DayCounts",
    "StateView",
    "TillMessage",
    "fold_sale",
    "fold_sales",
    "read_state",
    "sale_promotions",
    "state_row",
    "state_view",
]

STATE_VERSION = 1
DAYS_KEPT = 35
"""Day buckets kept after the newest: a calendar month and a week always fit."""
_WINDOWS = (("7d", 7), ("30d", 30))


@dataclass(frozen=True, slots=True)
class DayCounts:
    """What one card did on one day (chain time zone)."""

    purchases: int = 0
    spend_minor: int = 0
    fired: Mapping[str, int] = field(default_factory=dict)
    qty_milli: Mapping[str, int] = field(default_factory=dict)
    accrued: Mapping[str, int] = field(default_factory=dict)
    """Units accrued to each wallet that day (weekly caps such as compliments read these)."""


@dataclass(frozen=True, slots=True)
class TillMessage:
    """A personal message for the customer's next purchase: to the cashier, on the customer
    display and on the slip (any may be empty)."""

    message_id: str
    slip: str = ""
    display: str = ""
    cashier: str = ""


@dataclass(frozen=True, slots=True)
class CardState:
    """The customer state of one card as a tier holds it (see the module docstring)."""

    tier: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    favourite_categories: tuple[str, ...] = ()
    referrer: str = ""
    wallets: Mapping[str, int] = field(default_factory=dict)
    purchases: int = 0
    visits: int = 0
    spend_minor: int = 0
    fired_total: Mapping[str, int] = field(default_factory=dict)
    days: Mapping[str, DayCounts] = field(default_factory=dict)
    seen: Mapping[str, int] = field(default_factory=dict)
    """register_id -> the highest seq of that register's sales of this card already counted."""
    tier_spend_minor: int = 0
    """The customer's spend in the tier qualification window (the Center's, plus sales folded
    since): a register upgrades the tier at once when it reaches a higher level."""
    tier_visits: int = 0
    """Days with a purchase in the tier qualification window, counted the same way."""
    tier_until: str = ""
    """The last day the Center keeps ``tier`` unless renewed (YYYY-MM-DD; empty: no level)."""
    passes: tuple[SalePass, ...] = ()
    """Compliment passes by (promotion, product, valid_from), ``used`` summed over the sales
    that used them; kept while they run and ``DAYS_KEPT`` days after."""
    messages: tuple[TillMessage, ...] = ()
    """Personal messages for the next purchase (the Center's), less those a sale folded here
    already showed."""

    @property
    def folded(self) -> int:
        """How far ``seen`` reaches (the sum of its seqs): of two states of one card, the one
        that folded more sales has the larger number."""
        return sum(self.seen.values())


@dataclass(frozen=True, slots=True)
class StateView:
    """The state as the engine reads it on one day: counters and per-promotion counts."""

    counters: Mapping[str, int]
    fired_day: Mapping[str, int]
    fired_month: Mapping[str, int]
    fired_total: Mapping[str, int]
    qty_day_milli: Mapping[str, int]
    qty_month_milli: Mapping[str, int]


def sale_promotions(sale: Sale) -> tuple[SalePromotion, ...]:
    """What the sale fired: its ``promotions``, or for a sale recorded before them the rules
    named by its discounts and movements (discounted units then count the whole line)."""
    if sale.promotions:
        return sale.promotions
    qty: dict[str, int] = {}
    for line in sale.lines:
        for rule_id in dict.fromkeys(d.rule_id for d in line.discounts if d.rule_id):
            qty[rule_id] = qty.get(rule_id, 0) + max(0, line.qty_milli)
    for move in sale.loyalty:
        if move.rule_id:
            qty.setdefault(move.rule_id, 0)
    return tuple(SalePromotion(pid, units) for pid, units in qty.items())


def _add(into: dict[str, int], key: str, amount: int) -> None:
    into[key] = into.get(key, 0) + amount


def _prune(days: dict[str, DayCounts]) -> dict[str, DayCounts]:
    if not days:
        return days
    horizon = (date.fromisoformat(max(days)) - timedelta(days=DAYS_KEPT - 1)).isoformat()
    return {day: counts for day, counts in days.items() if day >= horizon}


def _pass_key(p: SalePass) -> tuple[str, str, datetime]:
    return (p.promotion_id, p.product_id, p.valid_from)


def _fold_passes(held: tuple[SalePass, ...], sale: Sale) -> tuple[SalePass, ...]:
    """``held`` with the sale's pass use added (a pass first seen is taken as the sale has it)."""
    if not sale.passes:
        return held
    by_key = {_pass_key(p): p for p in held}
    for p in sale.passes:
        key = _pass_key(p)
        was = by_key.get(key)
        used = (was.used if was is not None else 0) + p.used
        by_key[key] = SalePass(
            p.promotion_id, p.product_id, p.valid_from, p.valid_until, p.units, used
        )
    return tuple(by_key[k] for k in sorted(by_key))


def _prune_passes(
    passes: tuple[SalePass, ...], days: Mapping[str, DayCounts]
) -> tuple[SalePass, ...]:
    if not passes or not days:
        return passes
    horizon = date.fromisoformat(max(days)) - timedelta(days=DAYS_KEPT - 1)
    return tuple(p for p in passes if p.valid_until.date() >= horizon)


def fold_sale(state: CardState, sale: Sale, tz: tzinfo) -> CardState:
    """``state`` with ``sale`` counted (unchanged when ``seen`` already covers it)."""
    if sale.seq <= state.seen.get(sale.register_id, 0):
        return state
    wallets = dict(state.wallets)
    day = sale.closed_at.astimezone(tz).date().isoformat()
    bucket = state.days.get(day, DayCounts())
    accrued = dict(bucket.accrued)
    for move in sale.loyalty:
        if move.kind == "spend":
            _add(wallets, move.wallet, -move.amount)
        elif move.active_from is None or move.active_from <= sale.closed_at:
            _add(wallets, move.wallet, move.amount)
        if move.kind == "accrue":
            _add(accrued, move.wallet, move.amount)
    seen = {**state.seen, sale.register_id: sale.seq}
    passes = _fold_passes(state.passes, sale)
    if sale.shown_messages and state.messages:
        shown = set(sale.shown_messages)
        state = replace(
            state, messages=tuple(m for m in state.messages if m.message_id not in shown)
        )
    if sale.return_of is not None:
        # A return gives points back or takes them; it is no purchase and fires nothing.
        days = _prune({**state.days, day: replace(bucket, accrued=accrued)})
        passes = _prune_passes(passes, days)
        return replace(state, wallets=wallets, seen=seen, days=days, passes=passes)
    fired_total = dict(state.fired_total)
    fired = dict(bucket.fired)
    qty = dict(bucket.qty_milli)
    for promotion in sale_promotions(sale):
        _add(fired_total, promotion.promotion_id, 1)
        _add(fired, promotion.promotion_id, 1)
        if promotion.qty_milli:
            _add(qty, promotion.promotion_id, promotion.qty_milli)
    new_day = DayCounts(
        purchases=bucket.purchases + 1,
        spend_minor=bucket.spend_minor + sale.total_minor,
        fired=fired,
        qty_milli=qty,
        accrued=accrued,
    )
    days = _prune({**state.days, day: new_day})
    return replace(
        state,
        wallets=wallets,
        purchases=state.purchases + 1,
        visits=state.visits + (0 if bucket.purchases else 1),
        spend_minor=state.spend_minor + sale.total_minor,
        tier_spend_minor=state.tier_spend_minor + sale.total_minor,
        tier_visits=state.tier_visits + (0 if bucket.purchases else 1),
        fired_total=fired_total,
        days=days,
        seen=seen,
        passes=_prune_passes(passes, days),
    )


def fold_sales(state: CardState, sales: Iterable[Sale], tz: tzinfo) -> CardState:
    """``state`` with every sale not yet covered counted, in (register, seq) order."""
    for sale in sorted(sales, key=lambda s: (s.register_id, s.seq)):
        state = fold_sale(state, sale, tz)
    return state


def state_view(state: CardState, today: date) -> StateView:
    """What the engine reads on ``today`` (chain time zone): totals, rolling windows
    (``purchases_7d``, ``visits_30d``, ``spend_30d_minor``...), today's and this month's
    counts, and ``<wallet>_week`` (units accrued since Monday)."""
    counters = {
        "purchases": state.purchases,
        "visits": state.visits,
        "spend_minor": state.spend_minor,
    }
    month = today.isoformat()[:7]
    monday = (today - timedelta(days=today.weekday())).isoformat()
    now = today.isoformat()
    fired_month: dict[str, int] = {}
    qty_month: dict[str, int] = {}
    week: dict[str, int] = {}
    windows = {suffix: (today - timedelta(days=n - 1)).isoformat() for suffix, n in _WINDOWS}
    for suffix, _ in _WINDOWS:
        counters[f"purchases_{suffix}"] = 0
        counters[f"visits_{suffix}"] = 0
        counters[f"spend_{suffix}_minor"] = 0
    for day, counts in state.days.items():
        if day > now:
            continue
        for suffix, start in windows.items():
            if day >= start:
                counters[f"purchases_{suffix}"] += counts.purchases
                counters[f"visits_{suffix}"] += 1 if counts.purchases else 0
                counters[f"spend_{suffix}_minor"] += counts.spend_minor
        if day.startswith(month):
            for pid, n in counts.fired.items():
                _add(fired_month, pid, n)
            for pid, n in counts.qty_milli.items():
                _add(qty_month, pid, n)
        if day >= monday:
            for wallet, n in counts.accrued.items():
                _add(week, f"{wallet}_week", n)
    counters.update(week)
    today_counts = state.days.get(now, DayCounts())
    counters["purchases_today"] = today_counts.purchases
    return StateView(
        counters=counters,
        fired_day=dict(today_counts.fired),
        fired_month=fired_month,
        fired_total=dict(state.fired_total),
        qty_day_milli=dict(today_counts.qty_milli),
        qty_month_milli=qty_month,
    )


# -- the row form ------------------------------------------------------------------------------


def _nonzero(values: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in sorted(values.items()) if v}


def state_row(state: CardState) -> dict[str, Any]:
    """The JSON-ready form carried by card rows (empty parts left out, keys sorted)."""
    row: dict[str, Any] = {"v": STATE_VERSION}
    for name in ("tier", "referrer", "tier_until"):
        if getattr(state, name):
            row[name] = getattr(state, name)
    if state.attributes:
        row["attributes"] = dict(sorted(state.attributes.items()))
    if state.favourite_categories:
        row["favourite_categories"] = list(state.favourite_categories)
    for name in ("purchases", "visits", "spend_minor", "tier_spend_minor", "tier_visits"):
        if getattr(state, name):
            row[name] = getattr(state, name)
    for name in ("wallets", "fired_total", "seen"):
        values = _nonzero(getattr(state, name))
        if values:
            row[name] = values
    days: dict[str, Any] = {}
    for day, counts in sorted(state.days.items()):
        doc: dict[str, Any] = {}
        if counts.purchases:
            doc["purchases"] = counts.purchases
        if counts.spend_minor:
            doc["spend_minor"] = counts.spend_minor
        for name in ("fired", "qty_milli", "accrued"):
            values = _nonzero(getattr(counts, name))
            if values:
                doc[name] = values
        if doc:
            days[day] = doc
    if days:
        row["days"] = days
    if state.messages:
        row["messages"] = [
            {
                k: v
                for k, v in (
                    ("message_id", m.message_id),
                    ("slip", m.slip),
                    ("display", m.display),
                    ("cashier", m.cashier),
                )
                if v
            }
            for m in state.messages
        ]
    if state.passes:
        row["passes"] = [
            {
                "promotion_id": p.promotion_id,
                "product_id": p.product_id,
                "valid_from": p.valid_from.isoformat(),
                "valid_until": p.valid_until.isoformat(),
                "units": p.units,
                "used": p.used,
            }
            for p in state.passes
        ]
    return row


def _map(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedMessage(path, "expected a map", value=value)
    return value


def _ints(value: Any, path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, number in _map(value, path).items():
        if not isinstance(key, str) or isinstance(number, bool) or not isinstance(number, int):
            raise MalformedMessage(f"{path}.{key}", "expected an integer", value=number)
        out[key] = number
    return out


def _str(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedMessage(path, "expected a string", value=value)
    return value


def _time(value: Any, path: str) -> datetime:
    try:
        at = datetime.fromisoformat(_str(value, path))
    except ValueError as exc:
        raise MalformedMessage(path, "expected an ISO 8601 time", value=value) from exc
    if at.tzinfo is None:
        raise MalformedMessage(path, "expected a time with its UTC offset", value=value)
    return at


def _read_passes(value: Any, path: str) -> tuple[SalePass, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise MalformedMessage(path, "expected a list", value=value)
    out = []
    for i, item in enumerate(value):
        at = f"{path}[{i}]"
        doc = _map(item, at)
        numbers = _ints({k: doc.get(k, 0) for k in ("units", "used")}, at)
        out.append(
            SalePass(
                promotion_id=_str(doc.get("promotion_id"), f"{at}.promotion_id"),
                product_id=_str(doc.get("product_id"), f"{at}.product_id"),
                valid_from=_time(doc.get("valid_from"), f"{at}.valid_from"),
                valid_until=_time(doc.get("valid_until"), f"{at}.valid_until"),
                units=numbers["units"],
                used=numbers["used"],
            )
        )
    return tuple(sorted(out, key=_pass_key))


def _read_messages(value: Any, path: str) -> tuple[TillMessage, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise MalformedMessage(path, "expected a list", value=value)
    out = []
    for i, item in enumerate(value):
        at = f"{path}[{i}]"
        doc = _map(item, at)
        message_id = _str(doc.get("message_id"), f"{at}.message_id")
        if not message_id:
            raise MalformedMessage(f"{at}.message_id", "expected a non-empty string", value=None)
        out.append(
            TillMessage(
                message_id,
                *(_str(doc.get(k), f"{at}.{k}") for k in ("slip", "display", "cashier")),
            )
        )
    return tuple(out)


def read_state(row: Any, path: str = "state") -> CardState:
    """The state of a card row's ``state`` (None or absent: the empty state); unknown keys are
    ignored (a newer Center may add some), wrong types raise MalformedMessage naming the path."""
    doc = _map(row, path)
    attributes = {
        str(k): _str(v, f"{path}.attributes.{k}")
        for k, v in _map(doc.get("attributes"), f"{path}.attributes").items()
    }
    favourites = doc.get("favourite_categories") or []
    if not isinstance(favourites, list | tuple):
        raise MalformedMessage(f"{path}.favourite_categories", "expected a list", value=favourites)
    days: dict[str, DayCounts] = {}
    for day, counts in _map(doc.get("days"), f"{path}.days").items():
        at = f"{path}.days.{day}"
        try:
            date.fromisoformat(str(day))
        except ValueError as exc:
            raise MalformedMessage(at, "expected a YYYY-MM-DD key", value=day) from exc
        counted = _map(counts, at)
        numbers = _ints({k: counted[k] for k in ("purchases", "spend_minor") if k in counted}, at)
        days[str(day)] = DayCounts(
            purchases=numbers.get("purchases", 0),
            spend_minor=numbers.get("spend_minor", 0),
            fired=_ints(counted.get("fired"), f"{at}.fired"),
            qty_milli=_ints(counted.get("qty_milli"), f"{at}.qty_milli"),
            accrued=_ints(counted.get("accrued"), f"{at}.accrued"),
        )
    names = ("purchases", "visits", "spend_minor", "tier_spend_minor", "tier_visits")
    totals = _ints({k: doc[k] for k in names if k in doc}, path)
    return CardState(
        tier=_str(doc.get("tier"), f"{path}.tier"),
        attributes=attributes,
        favourite_categories=tuple(
            _str(c, f"{path}.favourite_categories[{i}]") for i, c in enumerate(favourites)
        ),
        referrer=_str(doc.get("referrer"), f"{path}.referrer"),
        wallets=_ints(doc.get("wallets"), f"{path}.wallets"),
        purchases=totals.get("purchases", 0),
        visits=totals.get("visits", 0),
        spend_minor=totals.get("spend_minor", 0),
        fired_total=_ints(doc.get("fired_total"), f"{path}.fired_total"),
        days=days,
        seen=_ints(doc.get("seen"), f"{path}.seen"),
        tier_spend_minor=totals.get("tier_spend_minor", 0),
        tier_visits=totals.get("tier_visits", 0),
        tier_until=_str(doc.get("tier_until"), f"{path}.tier_until"),
        passes=_read_passes(doc.get("passes"), f"{path}.passes"),
        messages=_read_messages(doc.get("messages"), f"{path}.messages"),
    )
