"""``accrual_percent``: credit a percentage of the receipt total to a wallet."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from types import MappingProxyType

from ..fields import FieldReader
from ..goods import ALL_GOODS, GoodsSelector, parse_goods
from ..model import Accrual
from ..money import percent_of, round_half_even
from .base import Context, Kind, Outcome
from .common import expiry, parse_lifetime
from .common import pct as percent_text
from .loyalty import accrual_base

__all__ = ["KIND", "AccrualPercent", "parse"]


@dataclass(frozen=True, slots=True)
class AccrualPercent:
    """``percent`` % of the accrual base, for receipt totals in [min_total, max_total)."""

    percent: Decimal
    wallet: str = "bonus"
    min_total_minor: int | None = None
    max_total_minor: int | None = None
    delay_days: int = 0
    lifetime_days: int | None = None
    accrue_on_bonus_paid: bool = False
    goods: GoodsSelector = ALL_GOODS
    lifetime_months: int | None = None

    # Computed once (``__post_init__``): the rate's exact ratio, its text and the message
    # values, asked for by every card holder's receipt.
    rate: tuple[int, int] | None = field(init=False, repr=False, compare=False, default=None)
    text: str = field(init=False, repr=False, compare=False, default="")
    values: Mapping[str, str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        rate = None
        if type(self.percent) is Decimal and self.percent.is_finite():
            numerator, denominator = self.percent.as_integer_ratio()
            rate = (numerator, denominator * 100)
            text = percent_text(self.percent)
            object.__setattr__(self, "text", text)
            object.__setattr__(
                self, "values", MappingProxyType({"percent": text, "wallet": self.wallet})
            )
        object.__setattr__(self, "rate", rate)

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Index keys of the goods (``None``: the whole receipt)."""
        return self.goods.index_keys()

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Accrue on the total after discounts, less the bonus-paid part unless configured."""
        total = ctx.total_minor
        if not ctx.receipt.card_no:
            return Outcome.skip("no card presented to credit")
        if self.min_total_minor is not None and total < self.min_total_minor:
            return Outcome.skip(f"total {ctx.money(total)} below {ctx.money(self.min_total_minor)}")
        if self.max_total_minor is not None and total >= self.max_total_minor:
            return Outcome.skip(
                f"total {ctx.money(total)} not below {ctx.money(self.max_total_minor)}"
            )
        goods = self.goods
        if goods.is_all and not goods.has_exclusions:
            base = total if self.accrue_on_bonus_paid else total - ctx.bonus_to_spend
        elif ctx.hint is not None and not goods.is_all and not goods.has_exclusions:
            # The lines the index found (accrual_base's sum, without the copy of the hint).
            remaining = ctx.remaining
            base = 0
            for i in ctx.hint:
                base += remaining[i]
            if not self.accrue_on_bonus_paid and ctx.bonus_to_spend and total > 0:
                base -= round_half_even(ctx.bonus_to_spend * base, total)
        else:
            base = accrual_base(ctx, goods, self.accrue_on_bonus_paid)
        rate = self.rate
        if rate is not None and type(base) is int:
            # percent_of, inline.
            numerator, denominator = rate
            amount, remainder = divmod(base * numerator, denominator)
            twice = 2 * remainder
            if twice > denominator or (twice == denominator and amount % 2 == 1):
                amount += 1
            pct = self.text
        else:
            amount = percent_of(base, self.percent)
            pct = percent_text(self.percent)
        if amount <= 0:
            return Outcome.skip(f"{pct} % of base {ctx.money(base)} rounds to 0")
        active_from = ctx.now_utc + timedelta(days=self.delay_days) if self.delay_days else None
        expires_at = None
        if self.lifetime_days is not None or self.lifetime_months is not None:
            expires_at = expiry(
                active_from or ctx.now_utc, ctx.local_now, self.lifetime_days, self.lifetime_months
            )
        accrual = Accrual(self.wallet, amount, promotion_id, active_from, expires_at)
        detail = f"{pct} % of base {ctx.money(base)} = {ctx.points(self.wallet, amount)}"
        if active_from is not None:
            detail += f", active from {active_from.date().isoformat()}"
        return Outcome(
            applied=True,
            detail=detail,
            amount=amount,
            accrual=accrual,
            values=self.values or {"percent": pct, "wallet": self.wallet},
        )


def parse(reader: FieldReader) -> AccrualPercent:
    """Read the kind-specific fields of an ``accrual_percent`` document."""
    percent = reader.decimal("percent", low=Decimal(0), high=Decimal(100))
    wallet = reader.str_("wallet", "bonus")
    min_total = reader.int_("min_total_minor", None, min_value=0)
    max_total = reader.int_("max_total_minor", None, min_value=1)
    if min_total is not None and max_total is not None and max_total <= min_total:
        reader.problem(
            "max_total_minor",
            f"expected an integer above min_total_minor {min_total}, got {max_total!r}",
        )
    delay_days = reader.int_("delay_days", 0, min_value=0, max_value=3660) or 0
    lifetime_days, lifetime_months = parse_lifetime(reader)
    return AccrualPercent(
        percent=percent,
        wallet=wallet,
        min_total_minor=min_total,
        max_total_minor=max_total,
        delay_days=delay_days,
        lifetime_days=lifetime_days,
        accrue_on_bonus_paid=reader.bool_("accrue_on_bonus_paid", False),
        goods=parse_goods(reader),
        lifetime_months=lifetime_months,
    )


KIND = Kind(name="accrual_percent", stage="accrual", parse=parse)
