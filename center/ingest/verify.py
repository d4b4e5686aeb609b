"""Verify a sale before its loyalty counts (pure): re-price it, book the Center's own result.

The Center prices each new sale again with the engine, the promotion set of the version the
sale names (which the Center must have published), and the customer state the register was
entitled to: the card's sales its basis (``Sale.state_seen``) names, plus every sale the
register must have known whatever its basis says (its own earlier sales of the card, and the
card's sales the Center held ``feed_lag`` before closed_at). The movements the Center books are
the verified ones; any difference from the claimed ones, and any other reason to doubt the
sale, makes a review case. A sale dated before its register could sell, or in the future, is
quarantined: stored and counted, never booked nor folded into the state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from center.crm.state import crm_part
from center.ingest.checkpoint import EMPTY, Checkpoint, plus
from center.ingest.sales import Movement, ledger_movements
from center.promotions.recompute import (
    ProductInfo,
    engine_passes,
    reprice_sale,
    sale_differences,
)
from loyalty_engine import CustomerState, EngineError, PersonalOffer, PromotionSet
from sync_protocol import (
    Sale,
    TierProgramme,
    promotion_amounts,
    state_view,
    upgraded_tier,
    window_totals,
)

__all__ = [
    "HeldSale",
    "Verification",
    "VerifyContext",
    "VerifyPolicy",
    "entitled_state",
    "movement_doc",
    "quarantine_reason",
    "verify_sale",
    "wallet_deltas",
]


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """The tolerances of verification ([verify] in center.toml)."""

    feed_lag: timedelta = timedelta(minutes=10)
    future_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=400)


@dataclass(frozen=True, slots=True)
class HeldSale:
    """A sale of the card the Center holds, and when it received it."""

    sale: Sale
    received_at: datetime


@dataclass(frozen=True, slots=True)
class VerifyContext:
    """What the Center knows when it verifies a batch (loaded by verify_store.py)."""

    now: datetime
    published_version: int
    promotions: Mapping[int, PromotionSet | str]
    """promo_version -> its promotion set, or why it cannot be built."""
    products: Mapping[str, ProductInfo]
    store_formats: Mapping[str, str]
    store_zones: Mapping[str, str]
    enrolled_at: Mapping[str, datetime]
    """store_id -> when its first store node enrolled (a register sells only after that)."""
    tz: tzinfo
    history: Mapping[str, Sequence[HeldSale]] = field(default_factory=dict)
    """card_no -> every sale of the card the Center holds (the batch's included), quarantined
    ones left out; with a checkpoint, only those it does not cover."""
    checkpoints: Mapping[str, Checkpoint] = field(default_factory=dict)
    """card_no -> the checkpoint standing in for the sales ``history`` leaves out (usable for
    every sale of the card in the batch: center/ingest/checkpoint.py)."""
    wallets: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """card_no -> spendable units per wallet at the Center before the batch."""
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """card_no -> the CRM attributes of its customer."""
    tiers: TierProgramme | None = None
    """The tier programme in force (None: the CRM attribute `tier` rules, as at the register)."""
    levels: Mapping[str, str] = field(default_factory=dict)
    """card_no -> the level the Center keeps for its customer."""
    funded: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    """promo_version -> the ids of its promotions with a supplier budget."""


@dataclass(frozen=True, slots=True)
class Verification:
    """What the Center books for a sale and, when it doubts the claim, why."""

    sale_id: str
    claimed: tuple[Movement, ...]
    verified: tuple[Movement, ...]
    reasons: tuple[str, ...] = ()
    quarantined: bool = False

    @property
    def clean(self) -> bool:
        """Nothing to review."""
        return not self.reasons


def quarantine_reason(sale: Sale, ctx: VerifyContext, policy: VerifyPolicy) -> str | None:
    """Why ``sale`` is dated where no register could have sold it, or None."""
    closed = sale.closed_at
    if closed > ctx.now + policy.future_skew:
        return (
            f"closed_at: {closed.isoformat()} is later than the Center's now "
            f"{ctx.now.isoformat()} plus the allowed skew of {policy.future_skew}"
        )
    enrolled = ctx.enrolled_at.get(sale.store_id)
    if enrolled is not None and closed < enrolled - policy.future_skew:
        return (
            f"closed_at: {closed.isoformat()} is before store {sale.store_id}'s enrolment at "
            f"{enrolled.isoformat()}"
        )
    if enrolled is None and closed < ctx.now - policy.max_age:
        return (
            f"closed_at: {closed.isoformat()} is more than {policy.max_age.days} days before "
            f"the Center received it ({ctx.now.isoformat()})"
        )
    return None


def _merge(moves: Sequence[Movement]) -> tuple[Movement, ...]:
    merged: dict[tuple[str, str, str], Movement] = {}
    for m in moves:
        key = (m.wallet, m.kind, m.rule_id)
        held = merged.get(key)
        merged[key] = (
            m
            if held is None
            else Movement(
                m.wallet,
                m.kind,
                m.rule_id,
                held.amount + m.amount,
                held.active_from,
                held.expires_at,
            )
        )
    return tuple(merged.values())


def _key(moves: Sequence[Movement]) -> list[tuple[str, str, str, int]]:
    return sorted((m.wallet, m.kind, m.rule_id, m.amount) for m in moves if m.amount)


def movement_doc(moves: Sequence[Movement]) -> list[dict[str, Any]]:
    """The JSON form of movements (a case keeps the claimed and the verified ones)."""
    return [
        {
            "wallet": m.wallet,
            "kind": m.kind,
            "rule_id": m.rule_id,
            "amount": m.amount,
            "active_from": None if m.active_from is None else m.active_from.isoformat(),
            "expires_at": None if m.expires_at is None else m.expires_at.isoformat(),
        }
        for m in moves
    ]


def wallet_deltas(
    claimed: Sequence[Mapping[str, Any]], verified: Sequence[Mapping[str, Any]]
) -> dict[str, int]:
    """wallet -> claimed minus verified units (what approving a case books), nonzero only."""
    out: dict[str, int] = {}
    for sign, moves in ((1, claimed), (-1, verified)):
        for m in moves:
            out[str(m["wallet"])] = out.get(str(m["wallet"]), 0) + sign * int(m["amount"])
    return {w: n for w, n in sorted(out.items()) if n}


def _entitled(
    sale: Sale, held: Sequence[HeldSale], policy: VerifyPolicy
) -> tuple[list[Sale], list[str]]:
    """The card's sales the register was entitled to count, and the ones its basis left out
    although it must have known them."""
    basis = {s.register_id: s.seq for s in sale.state_seen}
    known_before = sale.closed_at - policy.feed_lag
    out: list[Sale] = []
    missed: list[str] = []
    for h in held:
        other = h.sale
        if other.sale_id == sale.sale_id:
            continue
        if other.register_id == sale.register_id and other.seq >= sale.seq:
            continue  # the register's later sales: not yet made when it priced this one
        named = other.seq <= basis.get(other.register_id, 0)
        required = (
            other.register_id == sale.register_id and other.store_id == sale.store_id
        ) or h.received_at <= known_before
        if named or required:
            out.append(other)
        if required and not named:
            missed.append(f"{other.register_id}#{other.seq}")
    return out, missed


def entitled_state(
    sale: Sale, ctx: VerifyContext, policy: VerifyPolicy
) -> tuple[CustomerState, list[str]]:
    """The customer state the register was entitled to price ``sale`` (which has a card) with,
    and the card's sales (``register#seq``) its basis left out although it must have known them:
    from the card's checkpoint and history in ``ctx``."""
    card_no = sale.card_no or ""
    entitled, missed = _entitled(sale, ctx.history.get(card_no, ()), policy)
    return _customer_state(sale, ctx, entitled, ctx.checkpoints.get(card_no, EMPTY)), missed


def _customer_state(
    sale: Sale, ctx: VerifyContext, entitled: Sequence[Sale], checkpoint: Checkpoint = EMPTY
) -> CustomerState:
    """The state the register was entitled to: the checkpoint's sales plus ``entitled``."""
    card_no = sale.card_no or ""
    crm = crm_part(ctx.attributes.get(card_no, {}))
    state, days = plus(checkpoint, entitled, ctx.tz)
    counts = state_view(state, sale.closed_at.astimezone(ctx.tz).date())
    spend: dict[str, int] = {}
    for m in sale.loyalty:
        if m.kind == "spend" and m.rule_id:
            spend[m.wallet] = spend.get(m.wallet, 0) + m.amount
    return CustomerState(
        tier=_tier(sale, ctx, days) if ctx.tiers is not None else crm.tier,
        attributes=dict(crm.attributes),
        favourite_categories=crm.favourite_categories,
        personal_offers=tuple(
            PersonalOffer(o.offer_id, tuple(o.product_ids), Decimal(o.percent))
            for o in sale.personal_offers
        ),
        # What the sale's rules spent must have been there; the balance check is separate.
        wallets=spend,
        counters=dict(counts.counters),
        fired_day=dict(counts.fired_day),
        fired_month=dict(counts.fired_month),
        fired_total=dict(counts.fired_total),
        qty_day_milli=dict(counts.qty_day_milli),
        qty_month_milli=dict(counts.qty_month_milli),
        referrer=crm.referrer,
        compliment_passes=engine_passes(state.passes),
    )


def _budgets_left(
    sale: Sale, funded: Sequence[str], entitled: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """promotion_id -> (what the sale gave by it, what its store's lease still held), for
    every budgeted promotion of the sale's set."""
    if not funded:
        return {}
    gave = promotion_amounts(sale)
    return {pid: (gave.get(pid, 0), max(0, entitled.get(pid, 0))) for pid in funded}


def _tier(sale: Sale, ctx: VerifyContext, days: Mapping[date, int]) -> str:
    """The level the register was entitled to price with: the Center's kept level, upgraded at
    once when the entitled sales (``days``: their spend per day, returns left out, as the
    Center counts) in the window ending on the sale's day reach a higher one (as the register
    does from its card row)."""
    programme = ctx.tiers
    assert programme is not None
    today = sale.closed_at.astimezone(ctx.tz).date()
    kept = ctx.levels.get(sale.card_no or "", "")
    base = kept if programme.level(kept) is not None else ""
    spend, visits = window_totals(programme, days, today)
    return upgraded_tier(programme, base, spend, visits)


def verify_sale(
    sale: Sale,
    ctx: VerifyContext,
    policy: VerifyPolicy,
    *,
    booked_before: Mapping[str, int] | None = None,
    leased: Mapping[str, int] | None = None,
) -> Verification:
    """The Center's verdict on one new sale: the movements to book and the reasons to doubt.

    ``booked_before``: wallet -> units the batch's earlier sales of the card book (a spend may
    use what an earlier sale of the same batch accrued). ``leased``: promotion_id -> what
    the sale's store still held of each supplier budget (its budget lease at the Center, less
    the batch's earlier sales of the store)."""
    claimed = tuple(ledger_movements(sale))
    quarantine = quarantine_reason(sale, ctx, policy)
    if quarantine is not None:
        return Verification(sale.sale_id, claimed, (), (quarantine,), quarantined=True)
    if sale.return_of is not None:
        # A return is not priced by the engine: the Center reverses its original in proportion
        # (center/ledger/returns_store.py), whatever the register claims.
        return Verification(sale.sale_id, claimed, claimed)
    reasons: list[str] = []
    promotions = ctx.promotions.get(sale.promo_version)
    if sale.promo_version > ctx.published_version:
        reasons.append(
            f"promo_version: {sale.promo_version} was never published (the Center is at "
            f"{ctx.published_version})"
        )
    spends = tuple(m for m in claimed if m.kind == "spend")
    if promotions is None or isinstance(promotions, str) or reasons:
        reasons.append(promotions if isinstance(promotions, str) else "promotions: no set to price")
        # Nothing to price with: no accrual is granted; what was spent stays spent.
        return Verification(sale.sale_id, claimed, spends, tuple(dict.fromkeys(reasons)))
    customer = None
    if sale.card_no:
        customer, missed = entitled_state(sale, ctx, policy)
        if missed:
            reasons.append(
                "state_seen: leaves out sales of the card the register must have known: "
                + ", ".join(missed[:10])
                + (f" and {len(missed) - 10} more" if len(missed) > 10 else "")
            )
    budgets_left = _budgets_left(sale, ctx.funded.get(sale.promo_version, ()), leased or {})
    for pid, (gave, lease_left) in sorted(budgets_left.items()):
        if gave > lease_left:
            reasons.append(
                f"budget: promotion {pid} gave {gave}, more than the {lease_left} left of "
                f"store {sale.store_id}'s budget lease"
            )
    try:
        calc = reprice_sale(
            sale,
            promotions,
            products=ctx.products,
            store_format=ctx.store_formats.get(sale.store_id, ""),
            store_timezone=ctx.store_zones.get(sale.store_id, ""),
            customer=customer,
            # The register priced with no more than its store's lease let it give: re-priced
            # with what the sale gave (when the lease covered it), an honest sale comes out
            # the same; one claiming beyond the lease is priced with the lease and differs.
            budgets_left={pid: min(gave, left) for pid, (gave, left) in budgets_left.items()},
        )
    except EngineError as exc:
        reasons.append(f"engine: {exc}")
        return Verification(sale.sale_id, claimed, spends, tuple(reasons))
    accruals = (
        tuple(
            Movement(a.wallet, "accrue", a.rule_id, a.amount, a.active_from, a.expires_at)
            for a in calc.accruals
            if a.amount > 0
        )
        if sale.card_no
        else ()
    )
    verified = _merge((*accruals, *spends))
    if _key(verified) == _key(claimed):
        verified = claimed  # the register's own dates (priced a moment before closing)
    else:
        reasons.append(f"loyalty: claimed {_key(claimed)}, verified {_key(verified)}")
    reasons.extend(d for d in sale_differences(sale, calc) if not d.startswith("loyalty.accrue"))
    if sale.card_no:
        held = ctx.wallets.get(sale.card_no, {})
        before = booked_before or {}
        spent: dict[str, int] = {}
        for m in spends:
            spent[m.wallet] = spent.get(m.wallet, 0) - m.amount
        for wallet, units in sorted(spent.items()):
            have = held.get(wallet, 0) + before.get(wallet, 0)
            if units > have:
                reasons.append(
                    f"spend: {units} {wallet} exceeds the {have} the card held at the Center"
                )
    return Verification(sale.sale_id, claimed, verified, tuple(dict.fromkeys(reasons)))
