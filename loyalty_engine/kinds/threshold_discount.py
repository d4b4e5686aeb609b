"""``threshold_discount``: a percentage or a fixed amount off the receipt once its subtotal
reaches a step (a step from 0: off every receipt, no code needed)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..fields import FieldReader
from ..money import allocate, percent_of
from .base import Context, Kind, Outcome
from .common import pct as percent_text

__all__ = ["KIND", "Step", "ThresholdDiscount", "parse"]


@dataclass(frozen=True, slots=True)
class Step:
    """From ``min_total_minor`` of subtotal on, ``percent`` % off, or ``amount_minor`` off."""

    min_total_minor: int
    percent: Decimal
    amount_minor: int | None = None


@dataclass(frozen=True, slots=True)
class ThresholdDiscount:
    """The highest step reached by the subtotal applies, spread over lines by amount."""

    steps: tuple[Step, ...]

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Discount the amount left after earlier discounts (cascade), by the reached step."""
        reached = [s for s in self.steps if ctx.subtotal_minor >= s.min_total_minor]
        if not reached:
            return Outcome.skip(
                f"subtotal {ctx.money(ctx.subtotal_minor)} "
                f"below {ctx.money(self.steps[0].min_total_minor)}"
            )
        step = reached[-1]
        base = sum(ctx.remaining)
        values: dict[str, str] = {}
        if step.amount_minor is not None:
            amount = min(base, step.amount_minor)
            what = f"{ctx.money(step.amount_minor)} off {ctx.money(base)}"
        else:
            amount = percent_of(base, step.percent)
            pct = percent_text(step.percent)
            what = f"{pct} % of {ctx.money(base)}"
            values["percent"] = pct
        if amount <= 0:
            return Outcome.skip(f"{what} rounds to 0")
        shares = allocate(amount, ctx.remaining)
        reached_text = (
            f"subtotal {ctx.money(ctx.subtotal_minor)} reached {ctx.money(step.min_total_minor)}: "
            if step.min_total_minor
            else ""
        )
        return Outcome(
            applied=True,
            detail=f"{reached_text}{what} = {ctx.money(amount)}",
            amount=amount,
            line_discounts=tuple(shares),
            values=values,
        )


def parse(reader: FieldReader) -> ThresholdDiscount:
    """Read ``steps``: a non-empty list, strictly increasing ``min_total_minor``, each with
    ``percent`` or ``amount_minor``."""
    raw_steps = reader.list_("steps")
    if reader.has("steps") and not raw_steps:
        reader.problem("steps", "expected at least one step, got []")
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps):
        sub = reader.child(f"steps[{i}]", raw)
        if sub is None:
            continue
        minimum = sub.int_("min_total_minor", min_value=0) or 0
        if sub.has("amount_minor"):
            if sub.has("percent"):
                sub.problem("percent", "expected only one of percent, amount_minor")
            amount = sub.int_("amount_minor", min_value=1) or 1
            step = Step(minimum, Decimal(0), amount)
        else:
            step = Step(minimum, sub.decimal("percent", low=Decimal(0), high=Decimal(100)))
        if steps and step.min_total_minor <= steps[-1].min_total_minor:
            sub.problem(
                "min_total_minor",
                f"expected steps in increasing order, above {steps[-1].min_total_minor}, "
                f"got {step.min_total_minor!r}",
            )
        steps.append(step)
    return ThresholdDiscount(tuple(steps) or (Step(0, Decimal(0)),))


KIND = Kind(name="threshold_discount", stage="discount", parse=parse)
