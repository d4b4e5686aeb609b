"""Loyalty rewards: points per amount spent (bonuses, chips, stickers), favourite categories,
counter rewards (N-th purchase, welcome reward) and the compliment scheme's weekly accrual."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from decimal import Decimal

from ..fields import FieldReader
from ..goods import ALL_GOODS, GoodsSelector, parse_goods
from ..model import Accrual
from ..money import percent_of, round_half_even
from .base import Context, Kind, Outcome
from .common import n, pct

__all__ = [
    "ACCRUAL_PER_AMOUNT",
    "COMPLIMENT_ACCRUAL",
    "COUNTER_REWARD",
    "FAVOURITE_CATEGORIES",
    "AccrualPerAmount",
    "ComplimentAccrual",
    "CounterReward",
    "FavouriteCategories",
    "accrual_base",
    "timing",
]


def accrual_base(ctx: Context, goods: GoodsSelector, accrue_on_bonus_paid: bool) -> int:
    """Amount left on the matching lines, less their share of the bonus paid unless configured."""
    if goods.is_all and not goods.exclude_products and goods == ALL_GOODS:
        matched = ctx.total_minor
    else:
        matched = sum(ctx.remaining[i] for i in ctx.lines_of(goods))
    if accrue_on_bonus_paid or not ctx.bonus_to_spend or ctx.total_minor <= 0:
        return matched
    return matched - round_half_even(ctx.bonus_to_spend * matched, ctx.total_minor)


def timing(
    ctx: Context, delay_days: int, lifetime_days: int | None
) -> tuple[datetime | None, datetime | None]:
    """(active_from, expires_at) for a delay and a lifetime in days."""
    active_from = ctx.now_utc + timedelta(days=delay_days) if delay_days else None
    expires_at = None
    if lifetime_days is not None:
        expires_at = (active_from or ctx.now_utc) + timedelta(days=lifetime_days)
    return active_from, expires_at


def _credit(
    promotion_id: str,
    ctx: Context,
    wallet: str,
    amount: int,
    detail: str,
    delay_days: int,
    lifetime_days: int | None,
    values: dict[str, str] | None = None,
) -> Outcome:
    active_from, expires_at = timing(ctx, delay_days, lifetime_days)
    accrual = Accrual(wallet, amount, promotion_id, active_from, expires_at)
    if active_from is not None:
        detail += f", active from {active_from.date().isoformat()}"
    return Outcome(
        applied=True,
        detail=detail,
        amount=amount,
        accrual=accrual,
        values={"wallet": wallet, **(values or {})},
    )


def _common(reader: FieldReader) -> tuple[str, int, int | None]:
    wallet = reader.str_("wallet", "bonus")
    delay_days = reader.int_("delay_days", 0, min_value=0, max_value=3660) or 0
    lifetime_days = reader.int_("lifetime_days", None, min_value=1, max_value=36600)
    return wallet, delay_days, lifetime_days


@dataclass(frozen=True, slots=True)
class AccrualPerAmount:
    """``points`` to ``wallet`` for every full ``per_amount_minor`` spent on the goods."""

    per_amount_minor: int
    points: int
    goods: GoodsSelector = ALL_GOODS
    wallet: str = "bonus"
    delay_days: int = 0
    lifetime_days: int | None = None
    accrue_on_bonus_paid: bool = False

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods."""
        return self.goods.index_keys()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Credit whole steps of spend."""
        if not ctx.receipt.card_no:
            return Outcome.skip("no card presented to credit")
        base = accrual_base(ctx, self.goods, self.accrue_on_bonus_paid)
        amount = base // self.per_amount_minor * self.points
        if amount <= 0:
            return Outcome.skip(f"base {n(base)} below {n(self.per_amount_minor)}")
        detail = (
            f"{self.points} per {n(self.per_amount_minor)} of base {n(base)} = {n(amount)} "
            f"to {self.wallet}"
        )
        return _credit(
            promotion_id, ctx, self.wallet, amount, detail, self.delay_days, self.lifetime_days
        )


def _parse_per_amount(reader: FieldReader) -> AccrualPerAmount:
    per = reader.int_("per_amount_minor", min_value=1) or 1
    points = reader.int_("points", 1, min_value=1) or 1
    goods = parse_goods(reader)
    wallet, delay, lifetime = _common(reader)
    return AccrualPerAmount(
        per, points, goods, wallet, delay, lifetime, reader.bool_("accrue_on_bonus_paid", False)
    )


@dataclass(frozen=True, slots=True)
class FavouriteCategories:
    """Extra ``percent`` on the categories the customer chose from the list of their segment."""

    percent: Decimal
    choices: tuple[tuple[str, tuple[str, ...]], ...]
    max_categories: int = 3
    wallet: str = "bonus"
    delay_days: int = 0
    lifetime_days: int | None = None

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Accrue on lines of the customer's favourite categories allowed for their segment."""
        customer = ctx.receipt.customer
        if not ctx.receipt.card_no or customer is None or not customer.favourite_categories:
            return Outcome.skip("no favourite categories chosen")
        lists = dict(self.choices)
        allowed = lists.get(ctx.receipt.segment, lists.get("*", ()))
        chosen = [c for c in customer.favourite_categories if c in allowed][: self.max_categories]
        if not chosen:
            return Outcome.skip(
                f"none of the chosen categories is offered to segment {ctx.receipt.segment!r}"
            )
        goods = GoodsSelector(categories=frozenset(chosen))
        # The index found this rule for the receipt, not for these categories: scan all lines.
        base = accrual_base(replace(ctx, hint=None), goods, False)
        amount = percent_of(base, self.percent)
        if amount <= 0:
            return Outcome.skip(
                f"{pct(self.percent)} % of favourite-category base {n(base)} rounds to 0"
            )
        detail = (
            f"{pct(self.percent)} % of favourite categories {', '.join(chosen)} "
            f"base {n(base)} = {n(amount)}"
        )
        return _credit(
            promotion_id,
            ctx,
            self.wallet,
            amount,
            detail,
            self.delay_days,
            self.lifetime_days,
            {"percent": pct(self.percent)},
        )


def _parse_favourites(reader: FieldReader) -> FavouriteCategories:
    percent = reader.decimal("percent", low=Decimal(0), high=Decimal(100))
    choices: list[tuple[str, tuple[str, ...]]] = []
    sub = reader.child("choices")
    if sub is None:
        reader.problem("choices", "required: {segment or '*': [categories]}")
    else:
        for segment in sorted(sub.doc):
            choices.append((segment, sub.str_list(segment)))
    max_categories = reader.int_("max_categories", 3, min_value=1, max_value=100) or 1
    wallet, delay, lifetime = _common(reader)
    return FavouriteCategories(percent, tuple(choices), max_categories, wallet, delay, lifetime)


@dataclass(frozen=True, slots=True)
class CounterReward:
    """``points`` when this purchase brings ``counter`` to ``at`` or a multiple of ``every``."""

    counter: str
    points: int
    at: int | None = None
    every: int | None = None
    wallet: str = "bonus"
    delay_days: int = 0
    lifetime_days: int | None = None

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """This receipt counts as one more; reward on the configured value."""
        if not ctx.receipt.card_no or ctx.receipt.customer is None:
            return Outcome.skip("no card presented to count")
        value = ctx.receipt.customer.counters.get(self.counter, 0) + 1
        if self.at is not None and value != self.at:
            return Outcome.skip(f"{self.counter} becomes {value}, reward at {self.at}")
        if self.every is not None and value % self.every:
            return Outcome.skip(f"{self.counter} becomes {value}, reward every {self.every}")
        detail = f"{self.counter} reaches {value}: {n(self.points)} to {self.wallet}"
        return _credit(
            promotion_id, ctx, self.wallet, self.points, detail, self.delay_days, self.lifetime_days
        )


def _parse_counter(reader: FieldReader) -> CounterReward:
    counter = reader.str_("counter", "purchases")
    points = reader.int_("points", min_value=1) or 1
    at = reader.int_("at", None, min_value=1)
    every = reader.int_("every", None, min_value=1)
    if (at is None) == (every is None):
        reader.problem("at", "expected exactly one of at, every")
    wallet, delay, lifetime = _common(reader)
    return CounterReward(counter, points, at, every, wallet, delay, lifetime)


@dataclass(frozen=True, slots=True)
class ComplimentAccrual:
    """One compliment per ``per_amount_minor`` spent, ``weekly_cap`` a week, credited weekly.

    The compliments earned are pending until next Monday 00:00 store time; the customer's
    ``counters[week_counter]`` says how many were already earned this week.
    """

    per_amount_minor: int = 100_000
    weekly_cap: int = 3
    wallet: str = "compliment"
    week_counter: str = "compliment_week"
    lifetime_days: int | None = None

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Earn within the weekly cap; activate at the start of next week."""
        if not ctx.receipt.card_no:
            return Outcome.skip("no card presented to credit")
        customer = ctx.receipt.customer
        earned = customer.counters.get(self.week_counter, 0) if customer is not None else 0
        room = max(0, self.weekly_cap - earned)
        amount = min(room, ctx.total_minor // self.per_amount_minor)
        if amount <= 0:
            why = (
                f"weekly cap {self.weekly_cap} reached"
                if not room
                else (f"total {n(ctx.total_minor)} below {n(self.per_amount_minor)}")
            )
            return Outcome.skip(why)
        local = ctx.local_now
        monday = local.date() + timedelta(days=7 - local.weekday())
        active_from = datetime.combine(monday, time(0), tzinfo=local.tzinfo)
        from datetime import UTC

        active_utc = active_from.astimezone(UTC)
        expires = active_utc + timedelta(days=self.lifetime_days) if self.lifetime_days else None
        accrual = Accrual(self.wallet, amount, promotion_id, active_utc, expires)
        detail = (
            f"{amount} {self.wallet}(s) for total {n(ctx.total_minor)} "
            f"({earned} of {self.weekly_cap} this week), credited {monday.isoformat()}"
        )
        return Outcome(
            applied=True,
            detail=detail,
            amount=amount,
            accrual=accrual,
            values={"wallet": self.wallet},
        )


def _parse_compliment(reader: FieldReader) -> ComplimentAccrual:
    return ComplimentAccrual(
        per_amount_minor=reader.int_("per_amount_minor", 100_000, min_value=1) or 1,
        weekly_cap=reader.int_("weekly_cap", 3, min_value=0, max_value=1000) or 0,
        wallet=reader.str_("wallet", "compliment"),
        week_counter=reader.str_("week_counter", "compliment_week"),
        lifetime_days=reader.int_("lifetime_days", None, min_value=1, max_value=36600),
    )


ACCRUAL_PER_AMOUNT = Kind("accrual_per_amount", "accrual", _parse_per_amount)
FAVOURITE_CATEGORIES = Kind("favourite_categories", "accrual", _parse_favourites)
COUNTER_REWARD = Kind("counter_reward", "accrual", _parse_counter)
COMPLIMENT_ACCRUAL = Kind("compliment_accrual", "accrual", _parse_compliment)
