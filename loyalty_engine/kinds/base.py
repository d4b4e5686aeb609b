"""The interface every rule kind implements, and what the engine hands it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from ..fields import FieldReader
from ..goods import GoodsSelector
from ..model import Accrual, ComplimentPass, IssuedCoupon, Receipt
from ..money import CENTS, format_minor

__all__ = ["Context", "Kind", "Outcome", "Stage", "Terms"]

Stage = Literal["discount", "accrual", "floor", "restriction"]


# Not frozen: one is built per rule per receipt, and a frozen dataclass pays an
# object.__setattr__ per field in __init__ (a tenth of a dense receipt). Rules never assign.
@dataclass(slots=True, kw_only=True)
class Context:
    """The receipt as a rule sees it at its turn in the calculation (read-only by contract)."""

    receipt: Receipt
    now_utc: datetime
    local_now: datetime
    subtotal_minor: int
    # Per line (receipt order), the amount left after the discounts applied so far.
    remaining: Sequence[int]
    # Receipt total after the discounts applied so far (after all of them in the accrual stage).
    total_minor: int
    bonus_to_spend: int = 0
    # Wallet units the customer asked to spend on this receipt (e.g. {"compliment": 2}).
    spend: Mapping[str, int] = field(default_factory=dict)
    coupon_key: str = ""
    # Lines the promotion index found this rule by (``None``: any line may match); a goods
    # rule only needs to look at these.
    hint: Sequence[int] | None = None
    # The chain's currency (``currency`` setting) and its minor-unit exponent, for messages.
    currency: str = "RUB"
    exponent: int = 2
    # Products the customer chose to spend compliments on, in order (``calculate``'s).
    pass_products: tuple[str, ...] = ()

    def money(self, amount_minor: int) -> str:
        """An amount for people: major units and the currency, e.g. ``638.99 RUB``."""
        if self.exponent == 2 and type(amount_minor) is int and amount_minor >= 0:
            return f"{amount_minor // 100}.{CENTS[amount_minor % 100]} {self.currency}"
        return f"{format_minor(amount_minor, self.exponent)} {self.currency}"

    def points(self, wallet: str, amount: int) -> str:
        """Wallet units for people: the bonus wallet in major units, other wallets counted."""
        if wallet == "bonus":
            if self.exponent == 2 and type(amount) is int and amount >= 0:
                return f"{amount // 100}.{CENTS[amount % 100]} bonus"
            return f"{format_minor(amount, self.exponent)} {wallet}"
        return f"{amount} {wallet}"

    def lines_of(self, goods: GoodsSelector) -> list[int]:
        """Indexes of the receipt lines ``goods`` matches."""
        lines = self.receipt.lines
        hint = self.hint
        if hint is None or goods.is_all:
            return goods.matching(lines)
        # The index found these lines by one of the selector's include keys: only the
        # exclusions are left to check (most selectors have none).
        if not goods.has_exclusions:
            return list(hint)
        return goods.not_excluded(lines, hint)


# Not frozen, like Context: one or two per rule per receipt; nothing assigns after building.
@dataclass(slots=True, kw_only=True)
class Outcome:
    """What one rule did: applied (with amounts) or skipped, and why, for the explanation."""

    applied: bool
    detail: str
    amount: int = 0
    # Per line (receipt order), the discount asked for; empty for a rule giving no discount.
    line_discounts: Sequence[int] = ()
    accrual: Accrual | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    consumed: tuple[str, ...] = ()
    issued: tuple[IssuedCoupon, ...] = ()
    # (wallet, units) the rule spent from the customer's wallets, e.g. compliments.
    spent: tuple[tuple[str, int], ...] = ()
    # Per line, the milli-units the discount was given on (empty: the whole of every line
    # with a share); what the per-customer promo quantity counters count.
    qty_milli: tuple[int, ...] = ()
    # Compliment passes opened or used by this rule, as they stand after this receipt.
    passes: tuple[ComplimentPass, ...] = ()
    # The line indexes with a share in ``line_discounts``, when the rule knows them (saves the
    # engine a pass over every line of the receipt per rule).
    touched: Sequence[int] | None = None

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
