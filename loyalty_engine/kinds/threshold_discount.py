"""``threshold_discount``: a percentage off the receipt once its subtotal reaches a step."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..fields import FieldReader
from ..money import allocate, percent_of
from .base import Context, Kind, Outcome
from .common import n

__all__ = ["KIND", "Step", "ThresholdDiscount", "parse"]


@dataclass(frozen=True, slots=True)
class Step:
    """From ``min_total_minor`` of subtotal on, ``percent`` % off."""

    min_total_minor: int
    percent: Decimal


@dataclass(frozen=True, slots=True)
class ThresholdDiscount:
    """The highest step reached by the subtotal applies, spread over lines by amount."""

    steps: tuple[Step, ...]

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Discount the amount left after earlier discounts (cascade), by the reached step."""
        reached = [s for s in self.steps if ctx.subtotal_minor >= s.min_total_minor]
        if not reached:
            return Outcome.skip(
                f"subtotal {n(ctx.subtotal_minor)} below {n(self.steps[0].min_total_minor)}"
            )
        step = reached[-1]
        base = sum(ctx.remaining)
        amount = percent_of(base, step.percent)
        pct = format(step.percent.normalize(), "f")
        if amount <= 0:
            return Outcome.skip(f"{pct} % of {n(base)} rounds to 0")
        shares = allocate(amount, ctx.remaining)
        return Outcome(
            applied=True,
            detail=(
                f"subtotal {n(ctx.subtotal_minor)} reached {n(step.min_total_minor)}: "
                f"{pct} % of {n(base)} = {n(amount)}"
            ),
            amount=amount,
            line_discounts=tuple(shares),
            values={"percent": pct},
        )


def parse(reader: FieldReader) -> ThresholdDiscount:
    """Read ``steps``: a non-empty list, strictly increasing ``min_total_minor``."""
    raw_steps = reader.list_("steps")
    if reader.has("steps") and not raw_steps:
        reader.problem("steps", "expected at least one step, got []")
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps):
        sub = reader.child(f"steps[{i}]", raw)
        if sub is None:
            continue
        step = Step(
            min_total_minor=sub.int_("min_total_minor", min_value=0) or 0,
            percent=sub.decimal("percent", low=Decimal(0), high=Decimal(100)),
        )
        if steps and step.min_total_minor <= steps[-1].min_total_minor:
            sub.problem(
                "min_total_minor",
                f"expected steps in increasing order, above {steps[-1].min_total_minor}, "
                f"got {step.min_total_minor!r}",
            )
        steps.append(step)
    return ThresholdDiscount(tuple(steps) or (Step(0, Decimal(0)),))


KIND = Kind(name="threshold_discount", stage="discount", parse=parse)
