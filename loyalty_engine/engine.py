"""``calculate``: price a receipt with a promotion set (pure, deterministic).

The stages, each a function over explicit immutable state: check the request, choose the
applicable promotions, apply the discounts under the stacking policy (``stacking.py``) and the
chain-wide cap, gather what the discounts fired, bound the bonus payment, accrue, then build
movements and messages into the ``Calculation``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import BonusSpendError, InvalidReceipt
from .goods import CERTIFICATE_TYPE
from .kinds import Outcome
from .model import (
    Accrual,
    Calculation,
    ComplimentPass,
    Discount,
    IssuedCoupon,
    LineResult,
    Messages,
    Movement,
    Receipt,
)
from .money import format_minor, share_of
from .restrict import restrict_discounts
from .rules import GOODS_FIELDS, EngineSettings, Lookup, Promotion, PromotionSet, prepare
from .stacking import (
    Basis,
    Discounted,
    Hints,
    Run,
    Stacking,
    apply_discounts,
    cap_discounts,
    explain_discounts,
    floors,
)

__all__ = ["calculate"]

_NO_EXPLANATION: Mapping[str, str] = MappingProxyType({})


# -- check the request ------------------------------------------------------------------------


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
    # A plain int in range passes inline; anything else goes to _check_int, which accepts int
    # subclasses and words the error. Checking every field with a call (and its name built
    # before the call) was a tenth of a small receipt's pricing.
    for i, line in enumerate(receipt.lines):
        line_no = line.line_no
        if type(line_no) is not int or line_no < 0:
            line_no = _check_int(f"lines[{i}].line_no", line_no, 0)
        if line_no in seen:
            raise InvalidReceipt(f"lines[{i}].line_no: duplicate line number {line_no}")
        seen.add(line_no)
        if not isinstance(line.product_id, str):
            raise InvalidReceipt(
                f"lines[{i}].product_id: expected a string, got {line.product_id!r}"
            )
        qty, price, amount, cost = (
            line.qty_milli,
            line.unit_price_minor,
            line.amount_minor,
            line.cost_minor,
        )
        if type(qty) is not int or qty < 1:
            _check_int(f"lines[{i}].qty_milli", qty, 1)
        if type(price) is not int or price < 0:
            _check_int(f"lines[{i}].unit_price_minor", price, 0)
        if type(amount) is not int or amount < 0:
            _check_int(f"lines[{i}].amount_minor", amount, 0)
        if cost is not None and (type(cost) is not int or cost < 0):
            _check_int(f"lines[{i}].cost_minor", cost, 0)
    for i, code in enumerate(receipt.coupon_codes):
        if not isinstance(code, str):
            raise InvalidReceipt(f"coupon_codes[{i}]: expected a string, got {code!r}")


def _check_request(
    receipt: Receipt, bonus_to_spend: int, spend: Mapping[str, int] | None
) -> dict[str, int]:
    """Refuse an impossible receipt, bonus amount or wallet spend; the wallet spend to use."""
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
    return wallet_spend


def _basis(
    receipt: Receipt,
    settings: EngineSettings,
    spend: Mapping[str, int],
    budgets_left: Mapping[str, int] | None,
    pass_products: tuple[str, ...] = (),
) -> Basis:
    """Fix the clocks (UTC and store time) and the line amounts every stage prices from."""
    now_utc = receipt.now.astimezone(UTC)
    local_now = receipt.now.astimezone(_zone(receipt.timezone) if receipt.timezone else settings.tz)
    amounts = tuple([line.amount_minor for line in receipt.lines])
    return Basis(
        receipt=receipt,
        settings=settings,
        now_utc=now_utc,
        local_now=local_now,
        amounts=amounts,
        subtotal=sum(amounts),
        spend=spend,
        budgets_left=budgets_left,
        pass_products=pass_products,
    )


# -- choose the applicable promotions ---------------------------------------------------------


class _Choice(NamedTuple):
    """The promotions the index found for the receipt, and which of them may apply, by stage."""

    considered: tuple[Promotion, ...]
    hints: Hints
    floors: tuple[Promotion, ...]
    discounting: tuple[Promotion, ...]
    accruing: tuple[Promotion, ...]
    restricting: tuple[Promotion, ...]
    # Per excluded promotion id, its explanation line.
    excluded: Mapping[str, str]


def _money(settings: EngineSettings, amount: int) -> str:
    """An amount for people: major units and the currency (``638.99 RUB``)."""
    return f"{format_minor(amount, settings.currency_exponent)} {settings.currency}"


_PASSES = ""


def _excluded_because(
    promotion: Promotion,
    basis: Basis,
    checked: dict[int, str] | None = None,
) -> str | None:
    """Why ``promotion`` cannot apply to the receipt, or ``None``; ``checked`` keeps, per
    condition object (by id), what it said for this receipt (the loader shares equal ones)."""
    if promotion.status != "active":
        return f"status {promotion.status}"
    if checked is None:
        checked = {}
    receipt = basis.receipt
    # Only the checks the loader could not rule out (Promotion.timed, placed, ...).
    if promotion.timed:
        schedule = promotion.schedule
        said = checked.get(id(schedule))
        if said is None:
            said = checked[id(schedule)] = schedule.excluded_because(basis.local_now) or _PASSES
        if said:
            return said
    if promotion.placed:
        place = promotion.place
        said = checked.get(id(place))
        if said is None:
            said = checked[id(place)] = (
                place.excluded_because(receipt.store_id, receipt.store_format, receipt.region)
                or _PASSES
            )
        if said:
            return said
    if promotion.targeted:
        audience = promotion.audience
        said = checked.get(id(audience))
        if said is None:
            settings = basis.settings
            said = checked[id(audience)] = (
                audience.excluded_because(
                    receipt, basis.subtotal, lambda amount: _money(settings, amount)
                )
                or _PASSES
            )
        if said:
            return said
    customer = receipt.customer
    pid = promotion.promotion_id
    if customer is not None and promotion.fire_limited:
        limits = promotion.limits
        fired = customer.fired_day.get(pid, 0)
        if limits.max_fires_per_day is not None and fired >= limits.max_fires_per_day:
            return f"fired {fired} time(s) today, limit {limits.max_fires_per_day}"
        fired = customer.fired_month.get(pid, 0)
        if limits.max_fires_per_month is not None and fired >= limits.max_fires_per_month:
            return f"fired {fired} time(s) this month, limit {limits.max_fires_per_month}"
        fired = customer.fired_total.get(pid, 0)
        if limits.max_fires_total is not None and fired >= limits.max_fires_total:
            return f"fired {fired} time(s) for this customer, limit {limits.max_fires_total}"
    if promotion.funding.budget_minor is not None:
        # A funded campaign is capped by what is left of its budget across every receipt and
        # store: without that state it cannot know, so it does not fire at all.
        budgets_left = basis.budgets_left
        left = budgets_left.get(pid) if budgets_left is not None else None
        if left is None:
            return f"no budget state given for the budget of {promotion.funding.by}"
        if left <= 0:
            return f"budget of {promotion.funding.by} spent"
    return None


def _candidates(
    receipt: Receipt, promotions: PromotionSet, lookup: Lookup
) -> dict[int, Sequence[int] | None]:
    """Promotions that can touch this receipt (index look-ups, no scan), each with the lines
    it was found by (``None``: every line)."""
    if promotions.always is None:
        return dict.fromkeys(range(len(promotions.promotions)))
    index = promotions.index
    found: dict[int, Sequence[int] | None] = dict.fromkeys(promotions.always)
    if index:
        lines = receipt.lines
        single, multi = lookup.single, lookup.multi
        # Per key group found, the line groups it was found by.
        parts: dict[int, list[list[int]]] = {}
        for name, attribute in GOODS_FIELDS:
            singles = single.get(name)
            multis = multi.get(name)
            if singles is None and multis is None:
                continue
            # The lines sharing a value are looked up once (a dense receipt has ten lines of a
            # category that fifty promotions name); the group is every such promotion's hint,
            # read-only.
            by_value: dict[str, list[int]] = {}
            for i, line in enumerate(lines):
                value = getattr(line, attribute)
                group = by_value.get(value)
                if group is None:
                    by_value[value] = [i]
                else:
                    group.append(i)
            for value, group in by_value.items():
                if singles is not None:
                    hit = singles.get(value)
                    if hit:
                        found.update(dict.fromkeys(hit, group))
                if multis is not None:
                    for key_group in multis.get(value, ()):
                        merging = parts.get(key_group)
                        if merging is None:
                            parts[key_group] = [group]
                        else:
                            merging.append(group)
        groups = lookup.groups
        for key_group, found_by in parts.items():
            hint = found_by[0] if len(found_by) == 1 else sorted(set().union(*found_by))
            found.update(dict.fromkeys(groups[key_group], hint))
        for raw in receipt.coupon_codes:
            code = raw.strip().upper()
            for key in (("code", code), ("coupon_prefix", code.split("-", 1)[0])):
                for position in index.get(key, ()):
                    found[position] = None
    return dict(sorted(found.items()))


def _choose_promotions(basis: Basis, promotions: PromotionSet, lookup: Lookup) -> _Choice:
    """Look the candidates up and keep those whose status, conditions, limits and budget allow."""
    all_promotions = promotions.promotions
    candidates = _candidates(basis.receipt, promotions, lookup)
    considered = []
    hints: dict[str, Sequence[int] | None] = {}
    excluded: dict[str, str] = {}
    by_stage: dict[str, list[Promotion]] = {
        "floor": [],
        "discount": [],
        "accrual": [],
        "restriction": [],
    }
    checked: dict[int, str] = {}
    for position, hint in candidates.items():
        promotion = all_promotions[position]
        considered.append(promotion)
        hints[promotion.promotion_id] = hint
        reason = None if promotion.unconditional else _excluded_because(promotion, basis, checked)
        if reason is None:
            by_stage[promotion.stage].append(promotion)
        else:
            excluded[promotion.promotion_id] = f"{promotion.promotion_id}: skipped: {reason}"
    return _Choice(
        considered=tuple(considered),
        hints=hints,
        floors=tuple(by_stage["floor"]),
        discounting=tuple(by_stage["discount"]),
        accruing=tuple(by_stage["accrual"]),
        restricting=tuple(by_stage["restriction"]),
        excluded=excluded,
    )


# -- what the fired promotions add ------------------------------------------------------------


class _Fired(NamedTuple):
    """What one stage's fired promotions add to the calculation, in the order they fired."""

    fired: tuple[str, ...] = ()
    accruals: tuple[Accrual, ...] = ()
    # Wallet units the discounts spent (e.g. compliments), as movements.
    spent: tuple[Movement, ...] = ()
    consumed: tuple[str, ...] = ()
    issued: tuple[IssuedCoupon, ...] = ()
    promo_qty: tuple[tuple[str, int], ...] = ()
    passes: tuple[ComplimentPass, ...] = ()
    rendered: tuple[dict[str, str], ...] = ()
    # Per promotion id, its explanation line (the accrual stage's; the discounts explain apart).
    explanation: Mapping[str, str] = _NO_EXPLANATION


def _has_messages(promotion: Promotion) -> bool:
    if not promotion.may_message:
        return False
    templates = promotion.messages
    return bool(templates.slip or templates.cashier or templates.display)


def _render(
    promotion: Promotion, outcome: Outcome, total_minor: int, exponent: int
) -> dict[str, str]:
    """The promotion's message templates filled with its outcome, per channel."""
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


def _collect_discounts(
    basis: Basis, chosen: Run, line_discounts: Sequence[Sequence[Discount]], total: int
) -> _Fired:
    """What the discounts left after the cap fired: counters, coupons, wallet spends, messages."""
    exponent = basis.settings.currency_exponent
    units_by = chosen.qty
    # Unless a restriction or the chain cap changed the pass's discounts, each promotion gave
    # what the pass recorded (its outcome's amount, on the units in ``chosen.qty``).
    unchanged = line_discounts is chosen.discounts
    given_by: dict[str, int] = {}
    qty_by: dict[str, int] = {}
    if not unchanged:
        for i, line_list in enumerate(line_discounts):
            for d in line_list:
                given_by[d.rule_id] = given_by.get(d.rule_id, 0) + d.amount_minor
                # The units the discount was given on, not the whole line (a ladder's first
                # unit, a buy-get's paid units do not use up the customer's promo quantity).
                qty_by[d.rule_id] = qty_by.get(d.rule_id, 0) + units_by[d.rule_id].get(i, 0)
    fired: list[str] = []
    promo_qty: list[tuple[str, int]] = []
    consumed: list[str] = []
    accruals: list[Accrual] = []
    spent: list[Movement] = []
    passes: list[ComplimentPass] = []
    rendered: list[dict[str, str]] = []
    for promotion in chosen.order:
        pid = promotion.promotion_id
        outcome = chosen.outcomes[pid]
        amount = outcome.amount if unchanged else given_by.get(pid, 0)
        if amount == 0 and outcome.line_discounts and not outcome.spent:
            continue
        fired.append(pid)
        if outcome.passes:
            passes.extend(outcome.passes)
        if outcome.line_discounts:
            units = sum(units_by[pid].values()) if unchanged else qty_by.get(pid, 0)
            promo_qty.append((pid, units))
        if outcome.consumed:
            consumed.extend(outcome.consumed)
        if outcome.accrual is not None:
            accruals.append(outcome.accrual)
        for wallet, units in outcome.spent:
            spent.append(Movement(wallet, "spent", units, pid))
        if promotion.may_message and _has_messages(promotion):
            shown = Outcome(
                applied=True,
                detail=outcome.detail,
                amount=amount or outcome.amount,
                values=outcome.values,
            )
            rendered.append(_render(promotion, shown, total, exponent))
    return _Fired(
        fired=tuple(fired),
        accruals=tuple(accruals),
        spent=tuple(spent),
        consumed=tuple(consumed),
        promo_qty=tuple(promo_qty),
        passes=tuple(passes),
        rendered=tuple(rendered),
    )


# -- pay with bonuses -------------------------------------------------------------------------


def _bonus_payable_max(basis: Basis, total: int, bonus_to_spend: int) -> int:
    """The most bonus the receipt may be paid with; ``bonus_to_spend`` above it is refused."""
    receipt, settings = basis.receipt, basis.settings
    payable_max = 0
    if receipt.card_no:
        payable_max = min(receipt.bonus_balance, share_of(total, settings.bonus_max_share))
    if bonus_to_spend > payable_max:
        if not receipt.card_no:
            why = "no card presented"
        elif payable_max == receipt.bonus_balance:
            why = f"bonus balance is {_money(settings, receipt.bonus_balance)}"
        else:
            why = (
                f"at most {settings.bonus_max_share} of total {_money(settings, total)} "
                "may be paid with bonus"
            )
        raise BonusSpendError(
            f"bonus_to_spend: {_money(settings, bonus_to_spend)} above bonus_payable_max "
            f"{_money(settings, payable_max)} ({why})"
        )
    return payable_max


# -- accrue -----------------------------------------------------------------------------------


def _accrue(
    basis: Basis,
    accruing: Sequence[Promotion],
    hints: Hints,
    remaining: Sequence[int],
    bonus_to_spend: int,
) -> _Fired:
    """Run the accrual promotions on what is left to pay, within the per-rule and chain caps."""
    settings = basis.settings
    total = sum(remaining)
    explanation: dict[str, str] = {}
    fired: list[str] = []
    accruals: list[Accrual] = []
    issued: list[IssuedCoupon] = []
    rendered: list[dict[str, str]] = []
    accrued_total = 0
    # One context for the stage: the amounts are the same for every accrual rule.
    ctx = basis.context(remaining, total, None, bonus_to_spend)
    for promotion in accruing:
        pid = promotion.promotion_id
        if bonus_to_spend and not promotion.accrue_after_bonus_payment:
            explanation[pid] = (
                f"{pid}: skipped: receipt paid with {_money(settings, bonus_to_spend)} of bonus "
                "(this rule does not accrue after a bonus payment)"
            )
            continue
        ctx.hint = hints.get(pid)
        outcome = promotion.terms.apply(pid, ctx)
        explanation[pid] = f"{pid}: {'applied' if outcome.applied else 'skipped'}: {outcome.detail}"
        if not outcome.applied:
            continue
        accrual = outcome.accrual
        if accrual is not None:
            limit = promotion.limits.max_accrual_minor
            if promotion.funding.budget_minor is not None and basis.budgets_left is not None:
                left = max(0, basis.budgets_left.get(pid, 0))
                limit = left if limit is None else min(limit, left)
            if accrual.wallet == "bonus" and settings.max_accrual_minor is not None:
                room = max(0, settings.max_accrual_minor - accrued_total)
                limit = room if limit is None else min(limit, room)
            if limit is not None and accrual.amount > limit:
                accrual = Accrual(
                    accrual.wallet, limit, pid, accrual.active_from, accrual.expires_at
                )
                explanation[pid] += f", capped at {ctx.points(accrual.wallet, limit)}"
            if accrual.amount <= 0:
                continue
            if accrual.wallet == "bonus":
                accrued_total += accrual.amount
            accruals.append(accrual)
            outcome.amount, outcome.accrual = accrual.amount, accrual
        fired.append(pid)
        issued.extend(outcome.issued)
        if promotion.may_message and _has_messages(promotion):
            rendered.append(_render(promotion, outcome, total, settings.currency_exponent))
    return _Fired(
        fired=tuple(fired),
        accruals=tuple(accruals),
        issued=tuple(issued),
        rendered=tuple(rendered),
        explanation=explanation,
    )


# -- movements and messages -------------------------------------------------------------------


def _movements(
    bonus_to_spend: int, spent: Sequence[Movement], accruals: Sequence[Accrual]
) -> tuple[Movement, ...]:
    """The wallet movements: the bonus paid, wallets the discounts spent, then every accrual."""
    movements: list[Movement] = []
    if bonus_to_spend:
        movements.append(Movement("bonus", "spent", bonus_to_spend, ""))
    movements.extend(spent)
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
    return tuple(movements)


def _messages(rendered: Sequence[dict[str, str]]) -> Messages:
    """Every rendered text by channel, in the order the promotions fired."""
    return Messages(
        slip=tuple(r["slip"] for r in rendered if "slip" in r),
        cashier=tuple(r["cashier"] for r in rendered if "cashier" in r),
        display=tuple(r["display"] for r in rendered if "display" in r),
    )


def _explanation(
    choice: _Choice,
    stacking: Stacking,
    discounted: Discounted,
    accrued: _Fired,
    restricted: Mapping[str, str],
) -> tuple[str, ...]:
    """One line per considered promotion, in priority order: applied and how, or why not."""
    lines = dict(choice.excluded)
    lines.update(restricted)
    for p in choice.floors:
        lines[p.promotion_id] = f"{p.promotion_id}: applied: price floor"
    lines.update(explain_discounts(stacking, choice.discounting, discounted))
    lines.update(accrued.explanation)
    return tuple([lines[p.promotion_id] for p in choice.considered if p.promotion_id in lines])


def calculate(
    receipt: Receipt,
    promotions: PromotionSet,
    *,
    bonus_to_spend: int = 0,
    spend: Mapping[str, int] | None = None,
    budgets_left: Mapping[str, int] | None = None,
    pass_products: Sequence[str] = (),
) -> Calculation:
    """Price ``receipt``: discounts (stacking policy), bonus payment limit, accruals, messages.

    ``spend`` asks to spend other wallets (e.g. ``{"compliment": 2}``) within the customer's
    ``wallets``; ``budgets_left`` maps supplier-funded promotion ids to the budget left (a
    funded promotion without it does not fire); ``pass_products`` names the products the
    customer spends compliments on (passes), in order.
    Raises ``InvalidReceipt`` for impossible input and ``BonusSpendError`` when
    ``bonus_to_spend`` is negative or above ``bonus_payable_max``.
    """
    wallet_spend = _check_request(receipt, bonus_to_spend, spend)
    for line in receipt.lines:
        if line.type == CERTIFICATE_TYPE:
            return _with_certificates(
                receipt, promotions, bonus_to_spend, wallet_spend, budgets_left, pass_products
            )
    return _calculate(
        receipt, promotions, bonus_to_spend, wallet_spend, budgets_left, pass_products
    )


def _with_certificates(
    receipt: Receipt,
    promotions: PromotionSet,
    bonus_to_spend: int,
    wallet_spend: Mapping[str, int],
    budgets_left: Mapping[str, int] | None,
    pass_products: Sequence[str],
) -> Calculation:
    """Price the goods alone, then add the certificate lines at their full amount (money sold:
    no rule sees them, so no discount, accrual, total condition or bonus payment share)."""
    goods = tuple([line for line in receipt.lines if line.type != CERTIFICATE_TYPE])
    calc = _calculate(
        replace(receipt, lines=goods),
        promotions,
        bonus_to_spend,
        wallet_spend,
        budgets_left,
        pass_products,
    )
    priced = {result.line_no: result for result in calc.lines}
    lines = tuple(
        [
            priced.get(line.line_no) or LineResult(line.line_no, line.product_id, line.amount_minor)
            for line in receipt.lines
        ]
    )
    money = sum([line.amount_minor for line in receipt.lines if line.type == CERTIFICATE_TYPE])
    return replace(
        calc,
        lines=lines,
        subtotal_minor=calc.subtotal_minor + money,
        total_minor=calc.total_minor + money,
        to_pay_minor=calc.to_pay_minor + money,
    )


def _calculate(
    receipt: Receipt,
    promotions: PromotionSet,
    bonus_to_spend: int,
    wallet_spend: Mapping[str, int],
    budgets_left: Mapping[str, int] | None,
    pass_products: Sequence[str],
) -> Calculation:
    """``calculate`` of a checked receipt."""
    settings = promotions.settings
    basis = _basis(receipt, settings, wallet_spend, budgets_left, tuple(pass_products))
    lookup = prepare(promotions)
    choice = _choose_promotions(basis, promotions, lookup)
    stacking = Stacking(
        basis=basis,
        floors=floors(receipt, settings, choice.floors, choice.hints),
        hints=choice.hints,
        modes=lookup.modes,
    )
    discounted = apply_discounts(stacking, choice.discounting)
    line_discounts = discounted.chosen.discounts
    restricted = restrict_discounts(
        basis,
        choice.restricting,
        line_discounts,
        lambda amount: _money(settings, amount),
    )
    line_discounts = cap_discounts(settings, basis.subtotal, restricted.discounts)
    if line_discounts is discounted.chosen.discounts:
        # No restriction or cap changed the pass: it kept what is left per line.
        remaining = list(discounted.chosen.remaining)
    else:
        remaining = [
            amount - sum([d.amount_minor for d in line])
            for amount, line in zip(basis.amounts, line_discounts, strict=True)
        ]
    total = sum(remaining)
    by_discounts = _collect_discounts(basis, discounted.chosen, line_discounts, total)
    payable_max = _bonus_payable_max(basis, total, bonus_to_spend)
    by_accruals = _accrue(basis, choice.accruing, choice.hints, remaining, bonus_to_spend)

    fired = set(by_discounts.fired).union(by_accruals.fired, restricted.granted)
    accruals = by_discounts.accruals + by_accruals.accruals
    considered = choice.considered
    return Calculation(
        lines=tuple(
            [
                LineResult(line.line_no, line.product_id, line.amount_minor, tuple(discounts))
                for line, discounts in zip(receipt.lines, line_discounts, strict=True)
            ]
        ),
        subtotal_minor=basis.subtotal,
        discount_minor=basis.subtotal - total,
        total_minor=total,
        accruals=accruals,
        bonus_payable_max=payable_max,
        bonus_to_spend=bonus_to_spend,
        to_pay_minor=total - bonus_to_spend,
        messages=_messages(by_discounts.rendered + by_accruals.rendered),
        promo_version=promotions.version,
        explanation=_explanation(choice, stacking, discounted, by_accruals, restricted.explanation),
        movements=_movements(bonus_to_spend, by_discounts.spent, accruals),
        coupons_consumed=by_discounts.consumed,
        coupons_issued=by_accruals.issued,
        fired=tuple([p.promotion_id for p in considered if p.promotion_id in fired]),
        promo_qty_milli=by_discounts.promo_qty,
        passes=by_discounts.passes,
    )
