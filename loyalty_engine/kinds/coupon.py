"""Coupons: codes presented at the register (promo codes, paper or electronic, register-issued)
giving a discount or extra bonuses, and rules issuing signed coupons for a later visit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from ..coupons import batch_code_prefix, code_expiry, make_code, serial_for, verify_code
from ..fields import FieldReader
from ..goods import ALL_GOODS, GoodsSelector, parse_goods
from ..model import Accrual, IssuedCoupon
from ..money import allocate, percent_of
from .base import Context, Kind, Outcome
from .common import pct

__all__ = ["COUPON", "ISSUE_COUPON", "Coupon", "IssueCoupon"]


@dataclass(frozen=True, slots=True)
class Coupon:
    """A coupon accepted by listed ``codes``, by a valid signature under ``signed_prefix``, or
    by a head-office batch code under ``batch_prefix`` with a right check character.

    Reward: ``percent`` off the goods, ``amount_minor`` off the goods, or ``bonus_points``.
    Single-use codes (``multi_use`` false) already in the customer's ``used_coupons`` are refused.
    """

    codes: frozenset[str] = frozenset()
    signed_prefix: str = ""
    batch_prefix: str = ""
    multi_use: bool = False
    goods: GoodsSelector = ALL_GOODS
    percent: Decimal | None = None
    amount_minor: int | None = None
    bonus_points: int | None = None
    wallet: str = "bonus"

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Found by the codes presented, never by the goods."""
        keys = [("code", code) for code in sorted(self.codes)]
        if self.signed_prefix:
            keys.append(("coupon_prefix", self.signed_prefix))
        if self.batch_prefix and self.batch_prefix != self.signed_prefix:
            keys.append(("coupon_prefix", self.batch_prefix))
        return tuple(keys)

    def accepts(self, code: str, key: str) -> bool:
        """Whether normalised ``code`` is this rule's: listed, or signed under its prefix."""
        if code in self.codes:
            return True
        if self.batch_prefix and batch_code_prefix(code) == self.batch_prefix:
            return True
        return bool(self.signed_prefix) and verify_code(key, code) == self.signed_prefix

    def _accepted(self, ctx: Context) -> tuple[str | None, str]:
        used = (
            ctx.receipt.customer.used_coupons if ctx.receipt.customer is not None else frozenset()
        )
        why = "no coupon for this rule presented"
        for raw in sorted(ctx.receipt.coupon_codes):
            code = raw.strip().upper()
            if code in self.codes:
                pass
            elif self.batch_prefix and batch_code_prefix(code) == self.batch_prefix:
                pass  # single use across the chain is the store node's and the Center's check
            elif self.signed_prefix and code.startswith(self.signed_prefix + "-"):
                if verify_code(ctx.coupon_key, code) != self.signed_prefix:
                    why = f"coupon {code} fails its check digit or signature"
                    continue
                expires_on = code_expiry(code)
                if expires_on is not None and ctx.local_now.date() > expires_on:
                    why = f"coupon {code} expired on {expires_on.isoformat()}"
                    continue
            else:
                continue
            if not self.multi_use and code in used:
                why = f"single-use coupon {code} already used"
                continue
            return code, ""
        return None, why

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Give the coupon's reward and consume the code."""
        code, why = self._accepted(ctx)
        if code is None:
            return Outcome.skip(why)
        if self.bonus_points is not None:
            if not ctx.receipt.card_no:
                return Outcome.skip("no card presented to credit the coupon's bonus")
            accrual = Accrual(self.wallet, self.bonus_points, promotion_id)
            detail = f"coupon {code}: {ctx.points(self.wallet, self.bonus_points)}"
            return Outcome(
                applied=True,
                detail=detail,
                amount=self.bonus_points,
                accrual=accrual,
                values={"wallet": self.wallet},
                consumed=(code,),
            )
        lines = ctx.receipt.lines
        weights = [
            ctx.remaining[i] if self.goods.matches(line) else 0 for i, line in enumerate(lines)
        ]
        base = sum(weights)
        if base <= 0:
            return Outcome.skip(f"coupon {code}: no goods it applies to")
        if self.percent is not None:
            amount = percent_of(base, self.percent)
            what = f"{pct(self.percent)} % of {ctx.money(base)}"
        else:
            amount = min(base, self.amount_minor or 0)
            what = f"{ctx.money(self.amount_minor or 0)} off {ctx.money(base)}"
        if amount <= 0:
            return Outcome.skip(f"coupon {code}: {what} rounds to 0")
        shares = allocate(amount, weights)
        values = {"percent": pct(self.percent)} if self.percent is not None else {}
        return Outcome(
            applied=True,
            detail=f"coupon {code}: {what} = {ctx.money(amount)}",
            amount=amount,
            line_discounts=tuple(shares),
            values=values,
            consumed=(code,),
        )


def _parse_coupon(reader: FieldReader) -> Coupon:
    codes = frozenset(code.upper() for code in reader.str_list("codes"))
    prefix = reader.str_("signed_prefix", "").upper() if reader.has("signed_prefix") else ""
    batch = reader.str_("batch_prefix", "").upper() if reader.has("batch_prefix") else ""
    if batch and (not batch.isalnum() or len(batch) > 8):
        reader.problem("batch_prefix", f"expected 1..8 letters or digits, got {batch!r}")
    if not codes and not prefix and not batch:
        reader.problem("codes", "expected codes, signed_prefix or batch_prefix, got none")
    # ``bonus`` (major units, "200.00") is what the constructor takes; ``bonus_points`` (minor
    # units) is still read from promotions stored before, so they need no migration. The
    # Center publishes both (older registers read only ``bonus_points``): they must agree.
    given = [k for k in ("percent", "amount_minor", "bonus", "bonus_points") if reader.has(k)]
    if "bonus" in given and "bonus_points" in given:
        given.remove("bonus_points")
    if len(given) != 1:
        reader.problem(
            "percent",
            f"expected exactly one of percent, amount_minor, bonus, bonus_points, got {given}",
        )
    bonus_points = reader.int_("bonus_points", None, min_value=1)
    if "bonus" in given:
        legacy, bonus_points = bonus_points, reader.major("bonus")
        if bonus_points is not None and bonus_points < 1:
            reader.problem("bonus", "expected an amount above 0")
        elif legacy is not None and bonus_points is not None and legacy != bonus_points:
            reader.problem(
                "bonus_points", f"expected {bonus_points} (bonus in minor units), got {legacy}"
            )
    percent = (
        reader.decimal("percent", low=Decimal(0), high=Decimal(100)) if "percent" in given else None
    )
    return Coupon(
        codes=codes,
        signed_prefix=prefix,
        batch_prefix=batch,
        multi_use=reader.bool_("multi_use", False),
        goods=parse_goods(reader),
        percent=percent,
        amount_minor=reader.int_("amount_minor", None, min_value=1),
        bonus_points=bonus_points,
        wallet=reader.str_("wallet", "bonus"),
    )


@dataclass(frozen=True, slots=True)
class IssueCoupon:
    """Issue one signed coupon under ``prefix`` when the total reaches ``min_total_minor``."""

    prefix: str
    min_total_minor: int = 0
    valid_days: int | None = None

    def apply(self, promotion_id: str, ctx: Context) -> Outcome:
        """Make the code from the receipt's identity (the same sale always gets the same code)."""
        if not ctx.coupon_key:
            return Outcome.skip("no coupon_key in the settings to sign coupons with")
        if ctx.total_minor < self.min_total_minor:
            return Outcome.skip(
                f"total {ctx.money(ctx.total_minor)} below {ctx.money(self.min_total_minor)}"
            )
        receipt = ctx.receipt
        serial = serial_for(
            receipt.store_id, receipt.receipt_id, promotion_id, ctx.now_utc.isoformat()
        )
        until = ctx.now_utc + timedelta(days=self.valid_days) if self.valid_days else None
        # The last valid day, in store time, is signed into the code: checked offline.
        last_day = until.astimezone(ctx.local_now.tzinfo).date() if until is not None else None
        code = make_code(ctx.coupon_key, self.prefix, serial, last_day)
        issued = IssuedCoupon(code, promotion_id, until)
        # Slip templates may show the code and validity ({code}, {valid_until}, {valid_days}).
        values = {
            "code": code,
            "valid_until": last_day.isoformat() if last_day is not None else "",
            "valid_days": str(self.valid_days or ""),
        }
        return Outcome(
            applied=True, detail=f"issued coupon {code}", values=values, issued=(issued,)
        )


def _parse_issue(reader: FieldReader) -> IssueCoupon:
    prefix = reader.str_("prefix").upper()
    if "-" in prefix:
        reader.problem("prefix", f"expected no '-', got {prefix!r}")
    return IssueCoupon(
        prefix,
        reader.int_("min_total_minor", 0, min_value=0) or 0,
        reader.int_("valid_days", None, min_value=1, max_value=3660),
    )


COUPON = Kind("coupon", "discount", _parse_coupon)
ISSUE_COUPON = Kind("issue_coupon", "accrual", _parse_issue)
