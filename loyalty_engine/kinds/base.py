"""The interface every rule kind implements, and what the engine hands it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from ..fields import FieldReader
from ..model import Accrual, Receipt

__all__ = ["Context", "Kind", "Outcome", "Stage", "Terms"]

Stage = Literal["discount", "accrual"]


@dataclass(frozen=True, slots=True)
class Context:
    """The receipt as a rule sees it at its turn in the calculation."""

    receipt: Receipt
    now_utc: datetime
    local_now: datetime
    subtotal_minor: int
    # Per line (receipt order), the amount left after the discounts applied so far.
    remaining: tuple[int, ...]
    # Receipt total after the discounts applied so far (after all of them in the accrual stage).
    total_minor: int
    bonus_to_spend: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one rule did: applied (with amounts) or skipped, and why, for the explanation."""

    applied: bool
    detail: str
    amount: int = 0
    line_discounts: tuple[int, ...] = ()
    accrual: Accrual | None = None
    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def skip(cls, reason: str) -> Outcome:
        """A rule that did not apply, with the reason."""
        return cls(applied=False, detail=reason)


class Terms(Protocol):
    """The kind-specific part of a promotion (frozen dataclass)."""

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Compute this rule's effect on the receipt in ``ctx``."""
        ...


@dataclass(frozen=True, slots=True)
class Kind:
    """A registered rule kind: its name, calculation stage and document parser."""

    name: str
    stage: Stage
    parse: Callable[[FieldReader], Terms]
