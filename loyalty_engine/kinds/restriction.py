"""``restriction``: a rule of its own bounding other rules' discounts ("at most N % of the
receipt or X", "given at most N times a day / month"), with its own schedule, place, segments
and per-customer grant counts."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..fields import FieldReader
from .base import Context, Kind, Outcome

__all__ = ["RESTRICTION", "Restriction"]


@dataclass(frozen=True, slots=True)
class Restriction:
    """Bounds the discounts of ``promotions`` (empty: every discount rule) on one receipt.

    A receipt where the covered discounts survive counts as one grant: the caller bumps the
    restriction's fire counters (``Calculation.fired``), which ``CustomerState.fired_day`` /
    ``fired_month`` bring back as the grants already given.
    """

    promotions: frozenset[str] = frozenset()
    max_discount_percent: Decimal | None = None
    max_discount_minor: int | None = None
    max_grants_per_day: int | None = None
    max_grants_per_month: int | None = None

    def covers(self, rule_id: str) -> bool:
        """Whether this restriction bounds the discounts of ``rule_id``."""
        return not self.promotions or rule_id in self.promotions

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Restrictions act on the other rules' discounts (``engine``), never on their own."""
        return Outcome.skip("restriction (applied to the discounts it covers)")


def _parse(reader: FieldReader) -> Restriction:
    promotions = frozenset(reader.str_list("promotions"))
    max_pct = None
    if reader.has("max_discount_percent"):
        max_pct = reader.decimal("max_discount_percent", low=Decimal(0), high=Decimal(100))
    restriction = Restriction(
        promotions=promotions,
        max_discount_percent=max_pct,
        max_discount_minor=reader.int_("max_discount_minor", None, min_value=0),
        max_grants_per_day=reader.int_("max_grants_per_day", None, min_value=0),
        max_grants_per_month=reader.int_("max_grants_per_month", None, min_value=0),
    )
    if (
        max_pct is None
        and restriction.max_discount_minor is None
        and restriction.max_grants_per_day is None
        and restriction.max_grants_per_month is None
    ):
        reader.problem(
            "max_discount_percent",
            "expected at least one of max_discount_percent, max_discount_minor, "
            "max_grants_per_day, max_grants_per_month",
        )
    return restriction


RESTRICTION = Kind("restriction", "restriction", _parse)
