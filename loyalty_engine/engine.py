"""``calculate``: price a receipt with a promotion set (pure, deterministic)."""

from __future__ import annotations

from datetime import UTC, datetime

from .errors import BonusSpendError, InvalidReceipt
from .kinds import Context, Outcome
from .model import Accrual, Calculation, Discount, LineResult, Messages, Receipt
from .money import format_minor, share_of
from .rules import Promotion, PromotionSet

__all__ = ["calculate"]


def _n(amount: int) -> str:
    return f"{amount:,}".replace(",", " ")


def _check_int(field: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidReceipt(f"{field}: expected an integer, got {value!r}")
    if value < minimum:
        raise InvalidReceipt(f"{field}: expected an integer >= {minimum}, got {value!r}")
    return value


def _check_receipt(receipt: Receipt) -> None:
    if not isinstance(receipt, Receipt):
        raise InvalidReceipt(f"receipt: expected a Receipt, got {type(receipt).__name__}")
    if not isinstance(receipt.now, datetime) or receipt.now.utcoffset() is None:
        raise InvalidReceipt(f"now: expected an aware datetime, got {receipt.now!r}")
    _check_int("bonus_balance", receipt.bonus_balance, 0)
    seen: set[int] = set()
    for i, line in enumerate(receipt.lines):
        where = f"lines[{i}]"
        line_no = _check_int(f"{where}.line_no", line.line_no, 0)
        if line_no in seen:
            raise InvalidReceipt(f"{where}.line_no: duplicate line number {line_no}")
        seen.add(line_no)
        if not isinstance(line.product_id, str):
            raise InvalidReceipt(f"{where}.product_id: expected a string, got {line.product_id!r}")
        _check_int(f"{where}.qty_milli", line.qty_milli, 1)
        _check_int(f"{where}.unit_price_minor", line.unit_price_minor, 0)
        _check_int(f"{where}.amount_minor", line.amount_minor, 0)


def _excluded_because(promotion: Promotion, receipt: Receipt, local_now: datetime) -> str | None:
    if promotion.status != "active":
        return f"status {promotion.status}"
    return (
        promotion.schedule.excluded_because(local_now)
        or promotion.place.excluded_because(receipt.store_id, receipt.store_format)
        or promotion.audience.excluded_because(receipt)
    )


def _render(
    promotion: Promotion, outcome: Outcome, total_minor: int, exponent: int
) -> dict[str, str]:
    values = {
        "amount": format_minor(outcome.amount, exponent),
        "amount_minor": str(outcome.amount),
        "points": str(outcome.amount),
        "percent": "",
        "promotion_id": promotion.promotion_id,
        "total": format_minor(total_minor, exponent),
        "wallet": "",
    }
    values.update(outcome.values)
    templates = promotion.messages
    return {
        channel: text.format_map(values)
        for channel, text in (
            ("slip", templates.slip),
            ("cashier", templates.cashier),
            ("display", templates.display),
        )
        if text
    }


def calculate(
    receipt: Receipt, promotions: PromotionSet, *, bonus_to_spend: int = 0
) -> Calculation:
    """Price ``receipt``: discounts (by priority), bonus payment limit, accruals, messages.

    Raises ``InvalidReceipt`` for impossible input and ``BonusSpendError`` when
    ``bonus_to_spend`` is negative or above ``bonus_payable_max``.
    """
    _check_receipt(receipt)
    if isinstance(bonus_to_spend, bool) or not isinstance(bonus_to_spend, int):
        raise BonusSpendError(f"bonus_to_spend: expected an integer, got {bonus_to_spend!r}")
    if bonus_to_spend < 0:
        raise BonusSpendError(f"bonus_to_spend: expected an integer >= 0, got {bonus_to_spend}")
    settings = promotions.settings
    now_utc = receipt.now.astimezone(UTC)
    local_now = receipt.now.astimezone(settings.tz)
    lines = receipt.lines
    subtotal = sum(line.amount_minor for line in lines)
    remaining = [line.amount_minor for line in lines]
    line_discounts: list[list[Discount]] = [[] for _ in lines]
    # One line per promotion, listed in the set's (priority) order whatever the stage.
    explanation: dict[str, str] = {}
    rendered: list[dict[str, str]] = []
    eligible: list[Promotion] = []
    for promotion in promotions.promotions:
        reason = _excluded_because(promotion, receipt, local_now)
        if reason is None:
            eligible.append(promotion)
        else:
            explanation[promotion.promotion_id] = f"{promotion.promotion_id}: skipped: {reason}"

    def run(promotion: Promotion, ctx: Context) -> Outcome:
        outcome = promotion.terms.apply(promotion.promotion_id, ctx)
        verdict = "applied" if outcome.applied else "skipped"
        explanation[promotion.promotion_id] = (
            f"{promotion.promotion_id}: {verdict}: {outcome.detail}"
        )
        return outcome

    for promotion in (p for p in eligible if p.stage == "discount"):
        ctx = Context(receipt, now_utc, local_now, subtotal, tuple(remaining), sum(remaining))
        outcome = run(promotion, ctx)
        if not outcome.applied:
            continue
        given = 0
        for i, share in enumerate(outcome.line_discounts):
            # A line is never discounted below zero, whatever a rule kind computes.
            share = max(0, min(share, remaining[i]))
            if share:
                remaining[i] -= share
                given += share
                line_discounts[i].append(Discount(promotion.promotion_id, share))
        applied = Outcome(True, outcome.detail, given, outcome.line_discounts, None, outcome.values)
        rendered.append(_render(promotion, applied, sum(remaining), settings.currency_exponent))

    total = sum(remaining)
    discount = subtotal - total
    payable_max = 0
    if receipt.card_no:
        payable_max = min(receipt.bonus_balance, share_of(total, settings.bonus_max_share))
    if bonus_to_spend > payable_max:
        if not receipt.card_no:
            why = "no card presented"
        elif payable_max == receipt.bonus_balance:
            why = f"bonus balance is {_n(receipt.bonus_balance)}"
        else:
            why = f"at most {settings.bonus_max_share} of total {_n(total)} may be paid with bonus"
        raise BonusSpendError(
            f"bonus_to_spend: {_n(bonus_to_spend)} above bonus_payable_max "
            f"{_n(payable_max)} ({why})"
        )

    accruals: list[Accrual] = []
    for promotion in (p for p in eligible if p.stage == "accrual"):
        ctx = Context(
            receipt, now_utc, local_now, subtotal, tuple(remaining), total, bonus_to_spend
        )
        outcome = run(promotion, ctx)
        if outcome.applied and outcome.accrual is not None:
            accruals.append(outcome.accrual)
            rendered.append(_render(promotion, outcome, total, settings.currency_exponent))

    messages = Messages(
        slip=tuple(r["slip"] for r in rendered if "slip" in r),
        cashier=tuple(r["cashier"] for r in rendered if "cashier" in r),
        display=tuple(r["display"] for r in rendered if "display" in r),
    )
    return Calculation(
        lines=tuple(
            LineResult(line.line_no, line.product_id, line.amount_minor, tuple(line_discounts[i]))
            for i, line in enumerate(lines)
        ),
        subtotal_minor=subtotal,
        discount_minor=discount,
        total_minor=total,
        accruals=tuple(accruals),
        bonus_payable_max=payable_max,
        bonus_to_spend=bonus_to_spend,
        to_pay_minor=total - bonus_to_spend,
        messages=messages,
        promo_version=promotions.version,
        explanation=tuple(explanation[p.promotion_id] for p in promotions.promotions),
    )
