"""The discount stage of ``calculate``: floors, stacking policy, per-promotion and chain caps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from .kinds import Context, Outcome
from .kinds.goods import PriceFloor
from .model import Discount, Receipt
from .money import allocate, amount_for_quantity, format_minor, round_half_even, share_of
from .rules import EngineSettings, Promotion

__all__ = [
    "Basis",
    "Discounted",
    "Hints",
    "Run",
    "Stacking",
    "apply_discounts",
    "cap_discounts",
    "explain_discounts",
    "floors",
]

# Per promotion id, the receipt lines the index found it by (``None``: every line).
Hints = Mapping[str, Sequence[int] | None]


# The per-receipt state below is NamedTuple, not a frozen dataclass: just as immutable and
# slot-less, without the object.__setattr__ per field a frozen dataclass's __init__ pays on
# every receipt. Basis lives here, not in engine.py, because this stage needs it too.


class Basis(NamedTuple):
    """The checked request every stage prices against: receipt, clocks, settings, amounts."""

    receipt: Receipt
    settings: EngineSettings
    now_utc: datetime
    local_now: datetime
    # Per line (receipt order), the amount before any discount.
    amounts: tuple[int, ...]
    subtotal: int
    # Wallet units the customer asked to spend (checked against the customer's wallets).
    spend: Mapping[str, int]
    budgets_left: Mapping[str, int] | None
    # Products chosen for compliment passes (``calculate(..., pass_products=...)``).
    pass_products: tuple[str, ...] = ()

    def context(
        self,
        remaining: Sequence[int],
        total: int,
        hint: Sequence[int] | None,
        bonus_to_spend: int = 0,
    ) -> Context:
        """The receipt as a rule sees it, with ``remaining`` left per line and ``total`` in all."""
        return Context(
            receipt=self.receipt,
            now_utc=self.now_utc,
            local_now=self.local_now,
            subtotal_minor=self.subtotal,
            # Not copied: a rule only reads it, within its own apply().
            remaining=remaining,
            total_minor=total,
            bonus_to_spend=bonus_to_spend,
            spend=self.spend,
            coupon_key=self.settings.coupon_key,
            hint=hint,
            currency=self.settings.currency,
            exponent=self.settings.currency_exponent,
            pass_products=self.pass_products,
        )


class Stacking(NamedTuple):
    """What the discount stage applies promotions with: floors, index hints, stacking modes."""

    basis: Basis
    # Per line, the lowest amount discounts may leave.
    floors: Sequence[int]
    hints: Hints
    # Per discount promotion id: compound, additive, best or exclusive.
    modes: Mapping[str, str]


class Run:
    """One discount pass being built: the amount left per line and what each promotion gave."""

    __slots__ = ("discounts", "order", "outcomes", "qty", "raw", "remaining", "total")

    def __init__(self, amounts: Sequence[int]) -> None:
        self.remaining = list(amounts)
        # sum(remaining), kept up to date by record().
        self.total = sum(amounts)
        self.discounts: list[list[Discount]] = [[] for _ in amounts]
        self.outcomes: dict[str, Outcome] = {}
        # Per promotion id, what its terms asked for before floors and limits trimmed it.
        self.raw: dict[str, int] = {}
        # Per promotion id, by line index, the milli-units its discount was given on.
        self.qty: dict[str, Mapping[int, int]] = {}
        self.order: list[Promotion] = []

    @property
    def given(self) -> int:
        """The discount this pass gives in all."""
        return sum(d.amount_minor for line in self.discounts for d in line)

    def record(
        self,
        promotion: Promotion,
        outcome: Outcome,
        raw: int,
        shares: Mapping[int, int],
        qty: Mapping[int, int],
    ) -> None:
        """Take the (already clamped) ``shares`` (by line index) off the lines and keep what
        the promotion gave (``qty``: by line, the milli-units the discount is on)."""
        pid = promotion.promotion_id
        self.raw[pid] = raw
        self.qty[pid] = qty
        remaining, discounts = self.remaining, self.discounts
        given = 0
        for i, share in shares.items():
            remaining[i] -= share
            given += share
            discounts[i].append(Discount(pid, share))
        self.total -= given
        # The outcome is this promotion's alone (built by its apply()): it now says what was
        # given after floors and limits.
        outcome.applied = given > 0 or not outcome.line_discounts
        outcome.amount = given
        self.outcomes[pid] = outcome
        self.order.append(promotion)


class Discounted(NamedTuple):
    """The discount stage's result: the winning pass, the shared pass, and skip reasons."""

    chosen: Run
    # The compound / additive / best pass; ``chosen`` unless an exclusive promotion beat it.
    main: Run
    skipped: Mapping[str, str]


def floors(
    receipt: Receipt,
    settings: EngineSettings,
    floor_rules: Sequence[Promotion],
    hints: Hints,
) -> list[int]:
    """Per line, the lowest amount discounts may leave (price floors, and cost if known)."""
    lines = receipt.lines
    out = [0] * len(lines)
    if settings.never_below_cost:
        for i, line in enumerate(lines):
            if line.cost_minor is not None:
                out[i] = min(
                    line.amount_minor, amount_for_quantity(line.qty_milli, line.cost_minor)
                )
    for promotion in floor_rules:
        terms = promotion.terms
        assert isinstance(terms, PriceFloor)
        hint = hints.get(promotion.promotion_id)
        goods = terms.goods
        if hint is None or goods.is_all:
            found = goods.matching(lines)
        elif goods.has_exclusions:
            found = goods.not_excluded(lines, hint)
        else:
            found = list(hint)
        rate = terms.rate
        if rate is not None and not terms.min_unit_price_minor:
            # floor_of, inline: the most a line may lose is its rate of the line amount.
            numerator, denominator = rate
            for i in found:
                amount = lines[i].amount_minor
                most, remainder = divmod(amount * numerator, denominator)
                twice = 2 * remainder
                if twice > denominator or (twice == denominator and most % 2 == 1):
                    most += 1
                floor = amount - most
                if floor > out[i]:
                    out[i] = floor
            continue
        for i in found:
            floor = terms.floor_of(lines[i])
            if floor > out[i]:
                out[i] = floor
    return out


def _trim(shares: list[int], cap: int) -> list[int]:
    """Scale ``shares`` down to sum to ``cap`` (largest remainder), if they exceed it."""
    if sum(shares) <= cap:
        return shares
    return allocate(max(cap, 0), shares)


def _limit_quantity(
    receipt: Receipt, promotion: Promotion, shares: list[int], qty: list[int]
) -> tuple[list[int], list[int]]:
    """Keep the discount on the first discounted units still allowed today / this month for this
    customer (a line's share in proportion to its units kept)."""
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
        return shares, qty
    out, kept = [], []
    for share, units in zip(shares, qty, strict=True):
        take = min(units, allowed) if share and units else 0
        allowed -= take
        out.append(round_half_even(share * take, units) if take else 0)
        kept.append(take)
    return out, kept


def _clamp(
    stacking: Stacking,
    promotion: Promotion,
    remaining: Sequence[int],
    outcome: Outcome,
    given: Sequence[int],
) -> tuple[dict[int, int], dict[int, int]]:
    """``given`` shares within what is left above the floors, the quantity limits and the
    cap/budget, by line index, and the milli-units the discount stays on."""
    floor = stacking.floors
    lines = stacking.basis.receipt.lines
    units = outcome.qty_milli
    # Most rules touch a few lines of the receipt: work on those only.
    touched = outcome.touched
    if touched is None or given is not outcome.line_discounts:
        touched = [i for i, share in enumerate(given) if share]
    shares: dict[int, int] = {}
    qty: dict[int, int] = {}
    for i in touched:
        share = given[i]
        room = remaining[i] - floor[i]
        if share > room:
            share = room
        if share > 0:
            shares[i] = share
            qty[i] = units[i] if units else lines[i].qty_milli
    limits = promotion.limits
    cap = limits.max_discount_minor
    budget = promotion.funding.budget_minor
    if budget is not None:
        budgets_left = stacking.basis.budgets_left
        # Chosen only with budget state (engine._excluded_because); what is left caps it.
        left = 0 if budgets_left is None else budgets_left.get(promotion.promotion_id, 0)
        cap = left if cap is None else min(cap, left)
    if (
        cap is None
        and limits.max_qty_per_day_milli is None
        and limits.max_qty_per_month_milli is None
    ):
        return shares, qty
    count = len(given)
    full = [shares.get(i, 0) for i in range(count)]
    full_qty = [qty.get(i, 0) for i in range(count)]
    if limits.max_qty_per_day_milli is not None or limits.max_qty_per_month_milli is not None:
        full, full_qty = _limit_quantity(stacking.basis.receipt, promotion, full, full_qty)
    if cap is not None:
        full = _trim(full, cap)
    return (
        {i: share for i, share in enumerate(full) if share},
        {i: full_qty[i] for i, share in enumerate(full) if share},
    )


def _give(
    stacking: Stacking, run: Run, promotion: Promotion, outcome: Outcome, shares: Sequence[int]
) -> None:
    """Clamp the promotion's ``shares`` to what ``run`` still allows and record them there."""
    remaining = run.remaining
    if promotion.bounded or outcome.touched is None or shares is not outcome.line_discounts:
        kept, qty = _clamp(stacking, promotion, remaining, outcome, shares)
        run.record(promotion, outcome, sum(shares), kept, qty)
        return
    # The common case inline: no limits, the rule said which lines it discounted.
    floor, units = stacking.floors, outcome.qty_milli
    lines = stacking.basis.receipt.lines
    kept = {}
    qty = {}
    raw = 0
    for i in outcome.touched:
        share = shares[i]
        raw += share
        room = remaining[i] - floor[i]
        if share > room:
            share = room
        if share > 0:
            kept[i] = share
            qty[i] = units[i] if units else lines[i].qty_milli
    run.record(promotion, outcome, raw, kept, qty)


def _evaluate(
    stacking: Stacking,
    promotion: Promotion,
    base: Sequence[int],
    total: int | None = None,
    ctx: Context | None = None,
) -> Outcome:
    """The promotion's terms applied to ``base``, the amounts it discounts from (``total``:
    their sum when known); ``ctx``, when given, is reused for it."""
    pid = promotion.promotion_id
    hint = stacking.hints.get(pid)
    if total is None:
        total = sum(base)
    if ctx is None:
        ctx = stacking.basis.context(base, total, hint)
    else:
        ctx.remaining, ctx.total_minor, ctx.hint = base, total, hint
    return promotion.terms.apply(pid, ctx)


def _apply_best(stacking: Stacking, run: Run, group: Sequence[Promotion]) -> dict[str, str]:
    """Per line, only the biggest of the "best" group's discounts; the losers' skip reasons."""
    skipped: dict[str, str] = {}
    count = len(run.remaining)
    hint_of = stacking.hints.get
    # Every member is evaluated on the same amounts (nothing is given before all are): one
    # context for the group.
    ctx = stacking.basis.context(run.remaining, run.total, None)
    outcomes = []
    for p in group:
        ctx.hint = hint_of(p.promotion_id)
        outcomes.append((p, p.terms.apply(p.promotion_id, ctx)))
    # Per promotion id, by line, the discount it keeps (its share where it is the biggest).
    won: dict[str, dict[int, int]] = {p.promotion_id: {} for p in group}
    # Per line, the biggest discount and whose (the first in priority order on a tie); only
    # the lines each promotion discounts are visited.
    best: dict[int, tuple[int, str]] = {}
    for p, outcome in outcomes:
        if not (outcome.applied and outcome.line_discounts):
            continue
        shares = outcome.line_discounts
        touched = outcome.touched
        if touched is None:
            touched = [i for i, share in enumerate(shares) if share]
        for i in touched:
            held = best.get(i)
            if held is None or shares[i] > held[0]:
                best[i] = (shares[i], p.promotion_id)
    for i, (top, who) in best.items():
        won[who][i] = top
    floor = stacking.floors
    lines = stacking.basis.receipt.lines
    remaining, discounts = run.remaining, run.discounts
    for p, outcome in outcomes:
        pid = p.promotion_id
        kept_shares = won[pid]
        if not outcome.applied:
            skipped[pid] = outcome.detail
        elif kept_shares and not p.bounded:
            # _give's unbounded path over the lines it won, and Run.record, inline.
            units = outcome.qty_milli
            kept = 0
            qty: dict[int, int] = {}
            for i in sorted(kept_shares):
                share = kept_shares[i]
                room = remaining[i] - floor[i]
                if share > room:
                    share = room
                if share > 0:
                    remaining[i] -= share
                    kept += share
                    discounts[i].append(Discount(pid, share))
                    qty[i] = units[i] if units else lines[i].qty_milli
            run.total -= kept
            run.raw[pid] = sum(kept_shares.values())
            run.qty[pid] = qty
            outcome.applied = kept > 0
            outcome.amount = kept
            run.outcomes[pid] = outcome
            run.order.append(p)
        elif kept_shares or not outcome.line_discounts:
            winners = [0] * count
            for i, share in kept_shares.items():
                winners[i] = share
            _give(stacking, run, p, outcome, winners)
        else:
            skipped[pid] = f"{outcome.detail}; another offer is better on every line"
    return skipped


def _apply_shared(
    stacking: Stacking, discounting: Sequence[Promotion]
) -> tuple[Run, dict[str, str]]:
    """The compound, additive and best promotions in priority order, in one pass; skip reasons."""
    modes = stacking.modes
    amounts = stacking.basis.amounts
    subtotal = stacking.basis.subtotal
    hint_of = stacking.hints.get
    floor = stacking.floors
    lines = stacking.basis.receipt.lines
    run = Run(amounts)
    remaining, discounts = run.remaining, run.discounts
    skipped: dict[str, str] = {}
    best_done = False
    # One context for the pass, pointed at each promotion's lines and base in turn.
    ctx = stacking.basis.context(remaining, run.total, None)
    for promotion in discounting:
        pid = promotion.promotion_id
        mode = modes[pid]
        if mode == "compound":
            ctx.remaining, ctx.total_minor = remaining, run.total
        elif mode == "additive":
            ctx.remaining, ctx.total_minor = amounts, subtotal
        elif mode == "best":
            # The whole "best" group competes at the turn of its first member.
            if not best_done:
                best_done = True
                group = [p for p in discounting if modes[p.promotion_id] == "best"]
                skipped.update(_apply_best(stacking, run, group))
            continue
        else:
            continue
        ctx.hint = hint_of(pid)
        outcome = promotion.terms.apply(pid, ctx)
        if not outcome.applied:
            skipped[pid] = outcome.detail
            continue
        shares = outcome.line_discounts
        touched = outcome.touched
        if promotion.bounded or touched is None or not shares:
            _give(stacking, run, promotion, outcome, shares or (0,) * len(amounts))
            continue
        # The common case inline (_give and Run.record): no limits, the rule said which
        # lines it discounted; a dense receipt has a few hundred of these.
        units = outcome.qty_milli
        kept = 0
        raw = 0
        qty: dict[int, int] = {}
        for i in touched:
            share = shares[i]
            raw += share
            room = remaining[i] - floor[i]
            if share > room:
                share = room
            if share > 0:
                remaining[i] -= share
                kept += share
                discounts[i].append(Discount(pid, share))
                qty[i] = units[i] if units else lines[i].qty_milli
        run.total -= kept
        run.raw[pid] = raw
        run.qty[pid] = qty
        outcome.applied = kept > 0
        outcome.amount = kept
        run.outcomes[pid] = outcome
        run.order.append(promotion)
    return run, skipped


def _apply_exclusive(
    stacking: Stacking, main: Run, discounting: Sequence[Promotion]
) -> tuple[Run, dict[str, str]]:
    """Each exclusive promotion alone; the pass giving the most wins (``main`` on a tie)."""
    amounts = stacking.basis.amounts
    chosen = main
    skipped: dict[str, str] = {}
    for promotion in discounting:
        if stacking.modes[promotion.promotion_id] != "exclusive":
            continue
        alone = Run(amounts)
        outcome = _evaluate(stacking, promotion, amounts)
        if not outcome.applied:
            skipped[promotion.promotion_id] = outcome.detail
            continue
        _give(stacking, alone, promotion, outcome, outcome.line_discounts or (0,) * len(amounts))
        # Exclusive promotions replace everything else only when better for the customer.
        if alone.given > chosen.given:
            chosen = alone
        else:
            skipped[promotion.promotion_id] = (
                f"{outcome.detail}; exclusive, but the other discounts give more"
            )
    return chosen, skipped


def apply_discounts(stacking: Stacking, discounting: Sequence[Promotion]) -> Discounted:
    """Apply the discount promotions under the stacking policy, within floors and limits."""
    main, skipped = _apply_shared(stacking, discounting)
    chosen, skipped_exclusive = _apply_exclusive(stacking, main, discounting)
    skipped.update(skipped_exclusive)
    return Discounted(chosen=chosen, main=main, skipped=skipped)


def explain_discounts(
    stacking: Stacking, discounting: Sequence[Promotion], discounted: Discounted
) -> dict[str, str]:
    """Per discount promotion, its explanation line: applied (and how much) or why not."""
    chosen, main, skipped = discounted.chosen, discounted.main, discounted.skipped
    modes, outcomes, raw = stacking.modes, chosen.outcomes, chosen.raw
    out: dict[str, str] = {}
    for promotion in discounting:
        pid = promotion.promotion_id
        mode = modes[pid]
        note = "" if mode == "compound" else f" [{mode}]"
        given = outcomes.get(pid)
        if given is not None:
            if not given.applied:
                out[pid] = (
                    f"{pid}: skipped: {given.detail}; nothing left above floors and limits{note}"
                )
                continue
            if given.line_discounts and raw.get(pid, given.amount) != given.amount:
                settings = stacking.basis.settings
                shown = format_minor(given.amount, settings.currency_exponent)
                note = f", given {shown} {settings.currency} within floors and limits{note}"
            out[pid] = f"{pid}: applied: {given.detail}{note}"
        elif pid in skipped:
            out[pid] = f"{pid}: skipped: {skipped[pid]}{note}"
        else:
            # Only an exclusive pass can have replaced it: it gave in ``main``, or it was an
            # exclusive promotion a later one beat.
            detail = main.outcomes.get(pid)
            why = (
                f"{detail.detail}; replaced by an exclusive promotion"
                if detail
                else "replaced by an exclusive promotion"
            )
            out[pid] = f"{pid}: skipped: {why}{note}"
    return out


def cap_discounts(
    settings: EngineSettings, subtotal: int, line_discounts: list[list[Discount]]
) -> list[list[Discount]]:
    """Per line, the discounts scaled down together to the chain-wide cap (largest remainder)."""
    cap = None
    if settings.max_discount_share is not None:
        cap = share_of(subtotal, settings.max_discount_share)
    if settings.max_discount_minor is not None:
        cap = settings.max_discount_minor if cap is None else min(cap, settings.max_discount_minor)
    if cap is None or sum(d.amount_minor for line in line_discounts for d in line) <= cap:
        return line_discounts
    flat = [d.amount_minor for line in line_discounts for d in line]
    scaled = iter(allocate(cap, flat))
    return [
        [Discount(d.rule_id, a) for d in line if (a := next(scaled))] for line in line_discounts
    ]
