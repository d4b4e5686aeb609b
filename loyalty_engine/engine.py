"""``calculate``: price a receipt with a promotion set (pure, deterministic)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import BonusSpendError, InvalidReceipt
from .goods import line_keys
from .kinds import Context, Outcome
from .kinds.goods import PriceFloor
from .model import (
    Accrual,
    Calculation,
    Discount,
    IssuedCoupon,
    LineResult,
    Messages,
    Movement,
    Receipt,
)
from .money import allocate, amount_for_quantity, format_minor, round_half_even, share_of
from .rules import MessageTemplates, Promotion, PromotionSet

__all__ = ["calculate"]


def _n(amount: int) -> str:
    return f"{amount:,}".replace(",", " ")


def _check_int(field: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidReceipt(f"{field}: expected an integer, got {value!r}")
    if value < minimum:
        raise InvalidReceipt(f"{field}: expected an integer >= {minimum}, got {value!r}")
    return value


@lru_cache(maxsize=256)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidReceipt(f"timezone: expected an IANA time zone name, got {name!r}") from exc


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
        if line.cost_minor is not None:
            _check_int(f"{where}.cost_minor", line.cost_minor, 0)
    for i, code in enumerate(receipt.coupon_codes):
        if not isinstance(code, str):
            raise InvalidReceipt(f"coupon_codes[{i}]: expected a string, got {code!r}")


def _excluded_because(
    promotion: Promotion,
    receipt: Receipt,
    local_now: datetime,
    subtotal: int,
    budgets_left: Mapping[str, int] | None,
) -> str | None:
    if promotion.status != "active":
        return f"status {promotion.status}"
    reason = (
        promotion.schedule.excluded_because(local_now)
        or promotion.place.excluded_because(receipt.store_id, receipt.store_format, receipt.region)
        or promotion.audience.excluded_because(receipt, subtotal)
    )
    if reason is not None:
        return reason
    limits = promotion.limits
    customer = receipt.customer
    pid = promotion.promotion_id
    if customer is not None:
        fired = customer.fired_day.get(pid, 0)
        if limits.max_fires_per_day is not None and fired >= limits.max_fires_per_day:
            return f"fired {fired} time(s) today, limit {limits.max_fires_per_day}"
        fired = customer.fired_month.get(pid, 0)
        if limits.max_fires_per_month is not None and fired >= limits.max_fires_per_month:
            return f"fired {fired} time(s) this month, limit {limits.max_fires_per_month}"
        fired = customer.fired_total.get(pid, 0)
        if limits.max_fires_total is not None and fired >= limits.max_fires_total:
            return f"fired {fired} time(s) for this customer, limit {limits.max_fires_total}"
    budget = promotion.funding.budget_minor
    if budget is not None and budgets_left is not None and budgets_left.get(pid, budget) <= 0:
        return f"budget of {promotion.funding.by} spent"
    return None


def _candidates(receipt: Receipt, promotions: PromotionSet) -> dict[int, list[int] | None]:
    """Promotions that can touch this receipt (index look-ups, no scan), each with the lines
    it was found by (``None``: every line)."""
    if promotions.always is None:
        return dict.fromkeys(range(len(promotions.promotions)))
    index = promotions.index
    found: dict[int, list[int] | None] = dict.fromkeys(promotions.always)
    if index:
        for i, line in enumerate(receipt.lines):
            for key in line_keys(line):
                hit = index.get(key)
                if hit:
                    for position in hit:
                        hint = found.setdefault(position, [])
                        if hint is not None and (not hint or hint[-1] != i):
                            hint.append(i)
        for raw in receipt.coupon_codes:
            code = raw.strip().upper()
            for key in (("code", code), ("coupon_prefix", code.split("-", 1)[0])):
                for position in index.get(key, ()):
                    found[position] = None
    return dict(sorted(found.items()))


_NO_MESSAGES = MessageTemplates()


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
        "code": "",
        "valid_until": "",
        "valid_days": "",
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


def _floors(
    receipt: Receipt,
    promotions: PromotionSet,
    floor_rules: list[Promotion],
    hints: Mapping[str, list[int] | None],
) -> list[int]:
    """Per line, the lowest amount discounts may leave (price floors, and cost if known)."""
    lines = receipt.lines
    floors = [0] * len(lines)
    if promotions.settings.never_below_cost:
        for i, line in enumerate(lines):
            if line.cost_minor is not None:
                floors[i] = min(
                    line.amount_minor, amount_for_quantity(line.qty_milli, line.cost_minor)
                )
    for promotion in floor_rules:
        terms = promotion.terms
        assert isinstance(terms, PriceFloor)
        hint = hints.get(promotion.promotion_id)
        for i in range(len(lines)) if hint is None else hint:
            floors[i] = max(floors[i], terms.floor_for(lines[i]))
    return floors


def _trim(shares: list[int], cap: int) -> list[int]:
    """Scale ``shares`` down to sum to ``cap`` (largest remainder), if they exceed it."""
    if sum(shares) <= cap:
        return shares
    return allocate(max(cap, 0), shares)


def _limit_quantity(receipt: Receipt, promotion: Promotion, shares: list[int]) -> list[int]:
    """Keep the discount on the first units still allowed today / this month for this customer."""
    limits, customer = promotion.limits, receipt.customer
    allowed: int | None = None
    pid = promotion.promotion_id
    for limit, used in (
        (limits.max_qty_per_day_milli, customer.qty_day_milli if customer else {}),
        (limits.max_qty_per_month_milli, customer.qty_month_milli if customer else {}),
    ):
        if limit is not None:
            left = max(0, limit - used.get(pid, 0))
            allowed = left if allowed is None else min(allowed, left)
    if allowed is None:
        return shares
    out = []
    for i, share in enumerate(shares):
        qty = receipt.lines[i].qty_milli
        take = min(qty, allowed) if share else 0
        allowed -= take
        out.append(round_half_even(share * take, qty) if share else 0)
    return out


class _Run:
    """The mutable state of one discount pass."""

    def __init__(self, amounts: list[int]) -> None:
        self.remaining = list(amounts)
        self.discounts: list[list[Discount]] = [[] for _ in amounts]
        self.outcomes: dict[str, Outcome] = {}
        self.order: list[Promotion] = []

    @property
    def given(self) -> int:
        return sum(d.amount_minor for line in self.discounts for d in line)


def calculate(
    receipt: Receipt,
    promotions: PromotionSet,
    *,
    bonus_to_spend: int = 0,
    spend: Mapping[str, int] | None = None,
    budgets_left: Mapping[str, int] | None = None,
) -> Calculation:
    """Price ``receipt``: discounts (stacking policy), bonus payment limit, accruals, messages.

    ``spend`` asks to spend other wallets (e.g. ``{"compliment": 2}``) within the customer's
    ``wallets``; ``budgets_left`` maps supplier-funded promotion ids to the budget left.
    Raises ``InvalidReceipt`` for impossible input and ``BonusSpendError`` when
    ``bonus_to_spend`` is negative or above ``bonus_payable_max``.
    """
    _check_receipt(receipt)
    if isinstance(bonus_to_spend, bool) or not isinstance(bonus_to_spend, int):
        raise BonusSpendError(f"bonus_to_spend: expected an integer, got {bonus_to_spend!r}")
    if bonus_to_spend < 0:
        raise BonusSpendError(f"bonus_to_spend: expected an integer >= 0, got {bonus_to_spend}")
    wallet_spend = dict(spend or {})
    for wallet, units in sorted(wallet_spend.items()):
        have = receipt.customer.wallets.get(wallet, 0) if receipt.customer else 0
        if isinstance(units, bool) or not isinstance(units, int) or not 0 <= units <= have:
            raise BonusSpendError(
                f"spend[{wallet!r}]: expected 0..{have} (wallet balance), got {units!r}"
            )
    settings = promotions.settings
    now_utc = receipt.now.astimezone(UTC)
    local_now = receipt.now.astimezone(_zone(receipt.timezone) if receipt.timezone else settings.tz)
    lines = receipt.lines
    amounts = [line.amount_minor for line in lines]
    subtotal = sum(amounts)
    explanation: dict[str, str] = {}
    eligible: list[Promotion] = []
    all_promotions = promotions.promotions
    candidates = _candidates(receipt, promotions)
    considered = [all_promotions[i] for i in candidates]
    hints = {all_promotions[i].promotion_id: hint for i, hint in candidates.items()}
    for promotion in considered:
        reason = _excluded_because(promotion, receipt, local_now, subtotal, budgets_left)
        if reason is None:
            eligible.append(promotion)
        else:
            explanation[promotion.promotion_id] = f"{promotion.promotion_id}: skipped: {reason}"
    floors = _floors(receipt, promotions, [p for p in eligible if p.stage == "floor"], hints)
    for promotion in eligible:
        if promotion.stage == "floor":
            explanation[promotion.promotion_id] = f"{promotion.promotion_id}: applied: price floor"

    raw_amounts: dict[str, int] = {}

    def ctx_for(
        base: list[int], total: int, spent_bonus: int = 0, hint: list[int] | None = None
    ) -> Context:
        return Context(
            receipt,
            now_utc,
            local_now,
            subtotal,
            tuple(base),
            total,
            spent_bonus,
            wallet_spend,
            settings.coupon_key,
            None if hint is None else tuple(hint),
        )

    def give(run: _Run, promotion: Promotion, outcome: Outcome, shares: list[int]) -> None:
        raw_amounts[promotion.promotion_id] = sum(shares)
        shares = [
            max(0, min(share, run.remaining[i] - floors[i])) if share else 0
            for i, share in enumerate(shares)
        ]
        limits = promotion.limits
        if limits.max_qty_per_day_milli is not None or limits.max_qty_per_month_milli is not None:
            shares = _limit_quantity(receipt, promotion, shares)
        cap = limits.max_discount_minor
        if promotion.funding.budget_minor is not None:
            left = promotion.funding.budget_minor
            if budgets_left is not None:
                left = budgets_left.get(promotion.promotion_id, left)
            cap = left if cap is None else min(cap, left)
        if cap is not None:
            shares = _trim(shares, cap)
        given = 0
        for i, share in enumerate(shares):
            if share:
                run.remaining[i] -= share
                given += share
                run.discounts[i].append(Discount(promotion.promotion_id, share))
        run.outcomes[promotion.promotion_id] = Outcome(
            given > 0 or not outcome.line_discounts,
            outcome.detail,
            given,
            tuple(shares) if outcome.line_discounts else (),
            outcome.accrual,
            outcome.values,
            outcome.consumed,
            outcome.issued,
            outcome.spent,
        )
        run.order.append(promotion)

    def evaluate(promotion: Promotion, base: list[int]) -> Outcome:
        hint = hints.get(promotion.promotion_id)
        return promotion.terms.apply(promotion.promotion_id, ctx_for(base, sum(base), 0, hint))

    chain = settings.stacking
    discounting = [p for p in eligible if p.stage == "discount"]
    modes = {
        p.promotion_id: ("exclusive" if chain == "exclusive" else p.stacking or chain)
        for p in discounting
    }
    main = _Run(amounts)
    skipped: dict[str, str] = {}
    best_done = False
    for promotion in discounting:
        mode = modes[promotion.promotion_id]
        if mode == "exclusive":
            continue
        if mode == "best":
            if best_done:
                continue
            best_done = True
            group = [p for p in discounting if modes[p.promotion_id] == "best"]
            outcomes = [(p, evaluate(p, main.remaining)) for p in group]
            winners: dict[str, list[int]] = {p.promotion_id: [0] * len(lines) for p in group}
            for i in range(len(lines)):
                top, who = 0, None
                for p, outcome in outcomes:
                    if (
                        outcome.applied
                        and outcome.line_discounts
                        and outcome.line_discounts[i] > top
                    ):
                        top, who = outcome.line_discounts[i], p.promotion_id
                if who is not None:
                    winners[who][i] = top
            for p, outcome in outcomes:
                if not outcome.applied:
                    skipped[p.promotion_id] = outcome.detail
                elif any(winners[p.promotion_id]) or not outcome.line_discounts:
                    give(main, p, outcome, winners[p.promotion_id])
                else:
                    skipped[p.promotion_id] = (
                        f"{outcome.detail}; another offer is better on every line"
                    )
            continue
        base = amounts if mode == "additive" else main.remaining
        outcome = evaluate(promotion, list(base))
        if not outcome.applied:
            skipped[promotion.promotion_id] = outcome.detail
            continue
        give(main, promotion, outcome, list(outcome.line_discounts) or [0] * len(lines))
    chosen = main
    for promotion in (p for p in discounting if modes[p.promotion_id] == "exclusive"):
        alone = _Run(amounts)
        outcome = evaluate(promotion, amounts)
        if not outcome.applied:
            skipped[promotion.promotion_id] = outcome.detail
            continue
        give(alone, promotion, outcome, list(outcome.line_discounts) or [0] * len(lines))
        # Exclusive promotions replace everything else only when better for the customer.
        if alone.given > chosen.given:
            chosen = alone
        else:
            skipped[promotion.promotion_id] = (
                f"{outcome.detail}; exclusive, but the other discounts give more"
            )
    for promotion in discounting:
        pid = promotion.promotion_id
        mode = modes[pid]
        note = "" if mode == "compound" else f" [{mode}]"
        if pid in chosen.outcomes:
            given = chosen.outcomes[pid]
            if not given.applied:
                explanation[pid] = (
                    f"{pid}: skipped: {given.detail}; nothing left above floors and limits{note}"
                )
                continue
            if given.line_discounts and raw_amounts.get(pid, given.amount) != given.amount:
                note = f", given {_n(given.amount)} within floors and limits{note}"
            explanation[pid] = f"{pid}: applied: {given.detail}{note}"
        elif pid in skipped:
            explanation[pid] = f"{pid}: skipped: {skipped[pid]}{note}"
        else:
            detail = (main if chosen is not main else None) and main.outcomes.get(pid)
            why = (
                f"{detail.detail}; replaced by an exclusive promotion"
                if detail
                else "replaced by an exclusive promotion"
            )
            explanation[pid] = f"{pid}: skipped: {why}{note}"

    # The receipt-wide cap scales every discount down together (largest remainder).
    cap = None
    if settings.max_discount_share is not None:
        cap = share_of(subtotal, settings.max_discount_share)
    if settings.max_discount_minor is not None:
        cap = settings.max_discount_minor if cap is None else min(cap, settings.max_discount_minor)
    line_discounts = chosen.discounts
    if cap is not None and chosen.given > cap:
        flat = [d.amount_minor for line in line_discounts for d in line]
        scaled = iter(allocate(cap, flat))
        line_discounts = [
            [Discount(d.rule_id, a) for d in line if (a := next(scaled))] for line in line_discounts
        ]
    remaining = [
        amounts[i] - sum(d.amount_minor for d in line_discounts[i]) for i in range(len(lines))
    ]

    rendered: list[dict[str, str]] = []
    accruals: list[Accrual] = []
    consumed: list[str] = []
    issued: list[IssuedCoupon] = []
    movements: list[Movement] = []
    fired: list[str] = []
    promo_qty: list[tuple[str, int]] = []
    given_by: dict[str, int] = {}
    qty_by: dict[str, int] = {}
    for i, line_list in enumerate(line_discounts):
        for d in line_list:
            given_by[d.rule_id] = given_by.get(d.rule_id, 0) + d.amount_minor
            qty_by[d.rule_id] = qty_by.get(d.rule_id, 0) + lines[i].qty_milli
    for promotion in chosen.order:
        outcome = chosen.outcomes[promotion.promotion_id]
        amount = given_by.get(promotion.promotion_id, 0)
        if amount == 0 and outcome.line_discounts:
            continue
        fired.append(promotion.promotion_id)
        if outcome.line_discounts:
            promo_qty.append((promotion.promotion_id, qty_by.get(promotion.promotion_id, 0)))
        consumed.extend(outcome.consumed)
        if outcome.accrual is not None:
            accruals.append(outcome.accrual)
        for wallet, units in outcome.spent:
            movements.append(Movement(wallet, "spent", units, promotion.promotion_id))
        shown = Outcome(True, outcome.detail, amount or outcome.amount, (), None, outcome.values)
        if promotion.messages != _NO_MESSAGES:
            rendered.append(_render(promotion, shown, sum(remaining), settings.currency_exponent))

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

    accrued_total = 0
    for promotion in (p for p in eligible if p.stage == "accrual"):
        pid = promotion.promotion_id
        outcome = promotion.terms.apply(
            pid, ctx_for(remaining, total, bonus_to_spend, hints.get(pid))
        )
        explanation[pid] = f"{pid}: {'applied' if outcome.applied else 'skipped'}: {outcome.detail}"
        if not outcome.applied:
            continue
        accrual = outcome.accrual
        if accrual is not None:
            limit = promotion.limits.max_accrual_minor
            if accrual.wallet == "bonus" and settings.max_accrual_minor is not None:
                room = max(0, settings.max_accrual_minor - accrued_total)
                limit = room if limit is None else min(limit, room)
            if limit is not None and accrual.amount > limit:
                accrual = Accrual(
                    accrual.wallet, limit, pid, accrual.active_from, accrual.expires_at
                )
                explanation[pid] += f", capped at {_n(limit)}"
            if accrual.amount <= 0:
                continue
            if accrual.wallet == "bonus":
                accrued_total += accrual.amount
            accruals.append(accrual)
            outcome = Outcome(True, outcome.detail, accrual.amount, (), accrual, outcome.values)
        fired.append(pid)
        issued.extend(outcome.issued)
        if promotion.messages != _NO_MESSAGES:
            rendered.append(_render(promotion, outcome, total, settings.currency_exponent))

    fired_set = set(fired)
    if bonus_to_spend:
        movements.insert(0, Movement("bonus", "spent", bonus_to_spend, ""))
    for accrual in accruals:
        kind = "pending" if accrual.active_from is not None else "accrued"
        movements.append(
            Movement(
                accrual.wallet,
                kind,
                accrual.amount,
                accrual.rule_id,
                accrual.active_from,
                accrual.expires_at,
            )
        )
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
        explanation=tuple(
            explanation[p.promotion_id] for p in considered if p.promotion_id in explanation
        ),
        movements=tuple(movements),
        coupons_consumed=tuple(consumed),
        coupons_issued=tuple(issued),
        fired=tuple(p.promotion_id for p in considered if p.promotion_id in fired_set),
        promo_qty_milli=tuple(promo_qty),
    )
