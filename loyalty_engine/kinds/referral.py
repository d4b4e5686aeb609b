"""Referral rewards (a new customer's first purchase) and prize draws (entries per amount)."""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import FieldReader
from ..goods import ALL_GOODS, GoodsSelector, parse_goods
from .base import Context, Kind, Outcome
from .loyalty import BONUS, Credit, accrual_base, parse_credit, parse_points

__all__ = ["PRIZE_DRAW", "REFERRAL_REWARD", "PrizeDraw", "ReferralReward"]


_DRAW = Credit("draw_entries")


@dataclass(frozen=True, slots=True)
class ReferralReward:
    """``points`` to a referred customer's first purchase (``counters[counter]`` still 0).

    The referrer's own reward is the caller's: ``Calculation.fired`` names this rule and
    ``CustomerState.referrer`` the card to credit.
    """

    points: int
    counter: str = "purchases"
    min_total_minor: int = 0
    credit: Credit = BONUS

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Credit once, on the first purchase of a customer who came with a referrer."""
        customer = ctx.receipt.customer
        if not ctx.receipt.card_no or customer is None:
            return Outcome.skip("no card presented")
        if not customer.referrer:
            return Outcome.skip("customer has no referrer")
        done = customer.counters.get(self.counter, 0)
        if done:
            return Outcome.skip(f"{self.counter} is {done}: not the first purchase")
        if ctx.total_minor < self.min_total_minor:
            return Outcome.skip(
                f"total {ctx.money(ctx.total_minor)} below {ctx.money(self.min_total_minor)}"
            )
        detail = (
            f"first purchase referred by {customer.referrer}: "
            f"{ctx.points(self.credit.wallet, self.points)}"
        )
        return self.credit.outcome(promotion_id, ctx, self.points, detail)


def _parse_referral(reader: FieldReader) -> ReferralReward:
    credit = parse_credit(reader)
    points = parse_points(reader, credit.wallet)
    counter = reader.str_("counter", "purchases")
    min_total = reader.int_("min_total_minor", 0, min_value=0) or 0
    return ReferralReward(points, counter, min_total, credit)


@dataclass(frozen=True, slots=True)
class PrizeDraw:
    """``entries`` draw entries per full ``per_amount_minor`` spent, to ``wallet``.

    The draw period is the promotion's ``schedule`` (``from`` / ``to``); ``max_entries`` caps
    one receipt's entries.
    """

    draw_id: str
    per_amount_minor: int
    entries: int = 1
    max_entries: int | None = None
    goods: GoodsSelector = ALL_GOODS
    credit: Credit = _DRAW
    accrue_on_bonus_paid: bool = False

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods."""
        return self.goods.index_keys()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Credit whole steps of spend as entries, within the per-receipt cap."""
        if not ctx.receipt.card_no:
            return Outcome.skip("no card presented to credit draw entries")
        base = accrual_base(ctx, self.goods, self.accrue_on_bonus_paid)
        amount = base // self.per_amount_minor * self.entries
        detail = (
            f"draw {self.draw_id}: {self.entries} per {ctx.money(self.per_amount_minor)} "
            f"of {ctx.money(base)}"
        )
        if self.max_entries is not None and amount > self.max_entries:
            amount = self.max_entries
            detail += f", at most {self.max_entries}"
        if amount <= 0:
            return Outcome.skip(
                f"draw {self.draw_id}: base {ctx.money(base)} "
                f"below {ctx.money(self.per_amount_minor)}"
            )
        return self.credit.outcome(
            promotion_id, ctx, amount, f"{detail} = {amount} to {self.credit.wallet}"
        )


def _parse_draw(reader: FieldReader) -> PrizeDraw:
    draw_id = reader.str_("draw_id")
    per = reader.int_("per_amount_minor", min_value=1) or 1
    entries = reader.int_("entries", 1, min_value=1) or 1
    cap = reader.int_("max_entries", None, min_value=1)
    goods = parse_goods(reader)
    return PrizeDraw(
        draw_id,
        per,
        entries,
        cap,
        goods,
        parse_credit(reader, "draw_entries"),
        reader.bool_("accrue_on_bonus_paid", False),
    )


REFERRAL_REWARD = Kind("referral_reward", "accrual", _parse_referral)
PRIZE_DRAW = Kind("prize_draw", "accrual", _parse_draw)
