"""Loyalty rewards: points per amount spent (bonuses, chips, stickers), points per unit of given
goods (stickers), favourite categories, counter rewards (N-th purchase, welcome reward) and the
compliment scheme's weekly accrual."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from ..fields import FieldReader
from ..goods import ALL_GOODS, GoodsSelector, parse_goods
from ..model import Accrual
from ..money import percent_of, round_half_even
from .base import Context, Kind, Outcome
from .common import expiry, parse_lifetime, pct

__all__ = [
    "ACCRUAL_PER_AMOUNT",
    "ACCRUAL_PER_UNIT",
    "BONUS",
    "COMPLIMENT_ACCRUAL",
    "COUNTER_REWARD",
    "FAVOURITE_CATEGORIES",
    "AccrualPerAmount",
    "AccrualPerUnit",
    "ComplimentAccrual",
    "CounterReward",
    "Credit",
    "FavouriteCategories",
    "accrual_base",
    "parse_credit",
    "parse_points",
    "timing",
]


def accrual_base(ctx: Context, goods: GoodsSelector, accrue_on_bonus_paid: bool) -> int:
    """Amount left on the matching lines, less their share of the bonus paid unless configured."""
    if goods.is_all and not goods.has_exclusions:
        matched = ctx.total_minor
    else:
        remaining = ctx.remaining
        matched = sum([remaining[i] for i in ctx.lines_of(goods)])
    if accrue_on_bonus_paid or not ctx.bonus_to_spend or ctx.total_minor <= 0:
        return matched
    return matched - round_half_even(ctx.bonus_to_spend * matched, ctx.total_minor)


def timing(
    ctx: Context, delay_days: int, lifetime_days: int | None, lifetime_months: int | None = None
) -> tuple[datetime | None, datetime | None]:
    """(active_from, expires_at) for a delay and a lifetime in days or calendar months."""
    active_from = ctx.now_utc + timedelta(days=delay_days) if delay_days else None
    expires_at = expiry(active_from or ctx.now_utc, ctx.local_now, lifetime_days, lifetime_months)
    return active_from, expires_at


@dataclass(frozen=True, slots=True)
class Credit:
    """Where and when a reward is credited: wallet, delay, lifetime (days or months)."""

    wallet: str = "bonus"
    delay_days: int = 0
    lifetime_days: int | None = None
    lifetime_months: int | None = None

    def outcome(
        self,
        promotion_id: str,
        ctx: Context,
        amount: int,
        detail: str,
        values: dict[str, str] | None = None,
    ) -> Outcome:
        """The applied outcome crediting ``amount`` to the wallet."""
        active_from, expires_at = timing(
            ctx, self.delay_days, self.lifetime_days, self.lifetime_months
        )
        accrual = Accrual(self.wallet, amount, promotion_id, active_from, expires_at)
        if active_from is not None:
            detail += f", active from {active_from.date().isoformat()}"
        return Outcome(
            applied=True,
            detail=detail,
            amount=amount,
            accrual=accrual,
            values={"wallet": self.wallet, **(values or {})},
        )


BONUS = Credit()
"""Credited to the bonus wallet at once, never burning."""


def parse_credit(reader: FieldReader, wallet: str = "bonus") -> Credit:
    """``wallet``, ``delay_days`` and ``lifetime_days`` or ``lifetime_months``."""
    name = reader.str_("wallet", wallet)
    delay_days = reader.int_("delay_days", 0, min_value=0, max_value=3660) or 0
    days, months = parse_lifetime(reader)
    return Credit(name, delay_days, days, months)


def parse_points(reader: FieldReader, wallet: str, *, default: int | None = None) -> int:
    """``points`` (wallet units; bonus points are minor units, as stored before), or for the
    bonus wallet ``bonus`` in major units (``"200.00"``, what the constructor takes); both when
    they agree (the Center publishes both: older registers read only ``points``)."""
    if reader.has("bonus"):
        if wallet != "bonus":
            reader.problem("bonus", f"only for the bonus wallet, this rule credits {wallet!r}")
        legacy = reader.int_("points", min_value=1) if reader.has("points") else None
        amount = reader.major("bonus")
        if amount is not None and amount < 1:
            reader.problem("bonus", "expected an amount above 0")
        elif amount is not None and legacy is not None and legacy != amount:
            reader.problem("points", f"expected {amount} (bonus in minor units), got {legacy}")
        return amount or 1
    if default is None:
        return reader.int_("points", min_value=1) or 1
    return reader.int_("points", default, min_value=1) or 1


@dataclass(frozen=True, slots=True)
class AccrualPerAmount:
    """``points`` to ``wallet`` for every full ``per_amount_minor`` spent on the goods."""

    per_amount_minor: int
    points: int
    goods: GoodsSelector = ALL_GOODS
    credit: Credit = Credit()
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
            return Outcome.skip(f"base {ctx.money(base)} below {ctx.money(self.per_amount_minor)}")
        wallet = self.credit.wallet
        detail = (
            f"{ctx.points(wallet, self.points)} per {ctx.money(self.per_amount_minor)} "
            f"of base {ctx.money(base)} = {ctx.points(wallet, amount)}"
        )
        return self.credit.outcome(promotion_id, ctx, amount, detail)


def _parse_per_amount(reader: FieldReader) -> AccrualPerAmount:
    per = reader.int_("per_amount_minor", min_value=1) or 1
    credit = parse_credit(reader)
    points = parse_points(reader, credit.wallet, default=1)
    goods = parse_goods(reader)
    return AccrualPerAmount(per, points, goods, credit, reader.bool_("accrue_on_bonus_paid", False))


@dataclass(frozen=True, slots=True)
class AccrualPerUnit:
    """``points`` to ``wallet`` (e.g. stickers) for every whole unit of the goods bought."""

    goods: GoodsSelector
    points: int = 1
    credit: Credit = Credit("stickers")
    max_points: int | None = None

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods."""
        return self.goods.index_keys()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Count whole units of the matching lines (a weighed line counts its whole units)."""
        if not ctx.receipt.card_no:
            return Outcome.skip("no card presented to credit")
        lines = ctx.receipt.lines
        units = sum(lines[i].qty_milli // 1000 for i in ctx.lines_of(self.goods))
        amount = units * self.points
        wallet = self.credit.wallet
        detail = f"{ctx.points(wallet, self.points)} per unit x {units} unit(s)"
        if self.max_points is not None and amount > self.max_points:
            amount = self.max_points
            detail += f", at most {ctx.points(wallet, self.max_points)}"
        if amount <= 0:
            return Outcome.skip("no whole unit of the goods bought")
        return self.credit.outcome(
            promotion_id, ctx, amount, f"{detail} = {ctx.points(wallet, amount)}"
        )


def _parse_per_unit(reader: FieldReader) -> AccrualPerUnit:
    goods = parse_goods(reader)
    if goods.is_all:
        reader.problem("goods", "expected a selector naming the goods, got none")
    credit = parse_credit(reader, "stickers")
    return AccrualPerUnit(
        goods,
        parse_points(reader, credit.wallet, default=1),
        credit,
        reader.int_("max_points", None, min_value=1),
    )


@dataclass(frozen=True, slots=True)
class FavouriteCategories:
    """Extra ``percent`` on the categories the customer chose from the list of their segment."""

    percent: Decimal
    choices: tuple[tuple[str, tuple[str, ...]], ...]
    max_categories: int = 3
    credit: Credit = Credit()

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
                f"{pct(self.percent)} % of favourite-category base {ctx.money(base)} rounds to 0"
            )
        detail = (
            f"{pct(self.percent)} % of favourite categories {', '.join(chosen)} "
            f"base {ctx.money(base)} = {ctx.points(self.credit.wallet, amount)}"
        )
        return self.credit.outcome(
            promotion_id, ctx, amount, detail, {"percent": pct(self.percent)}
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
    return FavouriteCategories(percent, tuple(choices), max_categories, parse_credit(reader))


@dataclass(frozen=True, slots=True)
class CounterReward:
    """``points`` when this purchase brings ``counter`` to ``at`` or a multiple of ``every``."""

    counter: str
    points: int
    at: int | None = None
    every: int | None = None
    credit: Credit = Credit()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """This receipt counts as one more; reward on the configured value."""
        if not ctx.receipt.card_no or ctx.receipt.customer is None:
            return Outcome.skip("no card presented to count")
        value = ctx.receipt.customer.counters.get(self.counter, 0) + 1
        if self.at is not None and value != self.at:
            return Outcome.skip(f"{self.counter} becomes {value}, reward at {self.at}")
        if self.every is not None and value % self.every:
            return Outcome.skip(f"{self.counter} becomes {value}, reward every {self.every}")
        detail = f"{self.counter} reaches {value}: {ctx.points(self.credit.wallet, self.points)}"
        return self.credit.outcome(promotion_id, ctx, self.points, detail)


def _parse_counter(reader: FieldReader) -> CounterReward:
    counter = reader.str_("counter", "purchases")
    credit = parse_credit(reader)
    points = parse_points(reader, credit.wallet)
    at = reader.int_("at", None, min_value=1)
    every = reader.int_("every", None, min_value=1)
    if (at is None) == (every is None):
        reader.problem("at", "expected exactly one of at, every")
    return CounterReward(counter, points, at, every, credit)


@dataclass(frozen=True, slots=True)
class ComplimentAccrual:
    """One compliment per ``per_amount_minor`` spent, ``weekly_cap`` a week, credited weekly.

    The compliments earned are pending until the next ``credit_weekday`` (ISO, 1 = Monday)
    00:00 store time; the customer's ``counters[week_counter]`` says how many were already
    earned this week (the caller adds this receipt's to it).
    """

    per_amount_minor: int = 100_000
    weekly_cap: int = 3
    wallet: str = "compliment"
    week_counter: str = "compliment_week"
    lifetime_days: int | None = None
    credit_weekday: int = 1
    lifetime_months: int | None = None

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Earn within the weekly cap; activate on the next crediting day."""
        if not ctx.receipt.card_no:
            return Outcome.skip("no card presented to credit")
        customer = ctx.receipt.customer
        earned = customer.counters.get(self.week_counter, 0) if customer is not None else 0
        room = max(0, self.weekly_cap - earned)
        amount = min(room, ctx.total_minor // self.per_amount_minor)
        if amount <= 0:
            why = (
                f"weekly cap {self.weekly_cap} reached ({earned} earned this week)"
                if not room
                else f"total {ctx.money(ctx.total_minor)} below {ctx.money(self.per_amount_minor)}"
            )
            return Outcome.skip(why)
        local = ctx.local_now
        ahead = (self.credit_weekday - local.isoweekday()) % 7 or 7
        day = local.date() + timedelta(days=ahead)
        active_utc = datetime.combine(day, time(0), tzinfo=local.tzinfo).astimezone(UTC)
        expires = expiry(active_utc, local, self.lifetime_days, self.lifetime_months)
        accrual = Accrual(self.wallet, amount, promotion_id, active_utc, expires)
        detail = (
            f"{amount} {self.wallet}(s) for total {ctx.money(ctx.total_minor)} "
            f"({earned} of {self.weekly_cap} this week), credited {day.isoformat()}"
        )
        return Outcome(
            applied=True,
            detail=detail,
            amount=amount,
            accrual=accrual,
            values={"wallet": self.wallet},
        )


def _parse_compliment(reader: FieldReader) -> ComplimentAccrual:
    days, months = parse_lifetime(reader)
    return ComplimentAccrual(
        per_amount_minor=reader.int_("per_amount_minor", 100_000, min_value=1) or 1,
        weekly_cap=reader.int_("weekly_cap", 3, min_value=0, max_value=1000) or 0,
        wallet=reader.str_("wallet", "compliment"),
        week_counter=reader.str_("week_counter", "compliment_week"),
        lifetime_days=days,
        credit_weekday=reader.int_("credit_weekday", 1, min_value=1, max_value=7) or 1,
        lifetime_months=months,
    )


ACCRUAL_PER_AMOUNT = Kind("accrual_per_amount", "accrual", _parse_per_amount)
ACCRUAL_PER_UNIT = Kind("accrual_per_unit", "accrual", _parse_per_unit)
FAVOURITE_CATEGORIES = Kind("favourite_categories", "accrual", _parse_favourites)
COUNTER_REWARD = Kind("counter_reward", "accrual", _parse_counter)
COMPLIMENT_ACCRUAL = Kind("compliment_accrual", "accrual", _parse_compliment)
