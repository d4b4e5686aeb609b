"""What the Center knows beyond one rule document, and the checks that need it: managed lists
of store formats and regions (errors), and rules that can never fire (warnings)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loyalty_engine import Promotion, RuleError, load_promotion_set

__all__ = ["Known", "accrued_wallets", "check_known"]

# Wallets a customer fills without any rule: bonus points come from purchases and refunds too.
_NATIVE_WALLETS = frozenset({"bonus"})


@dataclass(frozen=True, slots=True)
class Known:
    """The chain's state a rule is checked against; ``None`` where nothing is managed yet."""

    # Managed lists (casefolded): a format or region outside them is an error.
    formats: frozenset[str] | None = None
    regions: frozenset[str] | None = None
    # What the stores actually have (casefolded): a rule limited to others never fires.
    store_formats: frozenset[str] = frozenset()
    store_regions: frozenset[str] | None = None
    # Level codes of the tier programme (none defined: a tier condition never matches).
    tiers: frozenset[str] = frozenset()
    # Wallets some live rule accrues.
    accrued_wallets: frozenset[str] = frozenset()
    # Promotion ids whose supplier budget the Center tracks (``None``: no budget state at all).
    budgets: frozenset[str] | None = None


def accrued_wallets(docs: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The wallets the given (live) rule documents credit."""
    try:
        found = load_promotion_set(list(docs), version=0, strict=False)
    except RuleError:
        return frozenset()
    wallets: set[str] = set()
    for promotion in found.promotions:
        wallet = _credited_wallet(promotion)
        if wallet:
            wallets.add(wallet)
    return frozenset(wallets)


def _credited_wallet(promotion: Promotion) -> str:
    terms = promotion.terms
    credit = getattr(terms, "credit", None)
    if credit is not None:
        return str(credit.wallet)
    if promotion.stage == "accrual" or getattr(terms, "bonus_points", None) is not None:
        return str(getattr(terms, "wallet", ""))
    return ""


def _spent_wallet(promotion: Promotion) -> str:
    if promotion.kind in ("wallet_exchange", "compliment_redeem"):
        return str(getattr(promotion.terms, "wallet", ""))
    return ""


def check_known(
    promotion: Promotion, doc: Mapping[str, Any], known: Known
) -> tuple[list[tuple[str, str]], list[str]]:
    """(field, problem) pairs against the managed lists, and warnings for a rule that can
    never fire (or that uses an amount field in minor units)."""
    problems: list[tuple[str, str]] = []
    warnings: list[str] = []
    place = promotion.place
    for name, values, managed, present, what in (
        ("formats", place.formats, known.formats, known.store_formats, "store format"),
        ("exclude_formats", place.exclude_formats, known.formats, None, "store format"),
        ("regions", place.regions, known.regions, known.store_regions, "region"),
        ("exclude_regions", place.exclude_regions, known.regions, None, "region"),
    ):
        for value in values:
            if managed is not None and value not in managed:
                problems.append(
                    (
                        f"place.{name}",
                        f"unknown {what} {value!r} (managed list: {', '.join(sorted(managed))})",
                    )
                )
            elif present is not None and value not in present:
                warnings.append(
                    f"place.{name}: no store has {what} {value!r}: "
                    "the rule can never fire in such a store"
                )
    if promotion.audience.tiers and not known.tiers:
        warnings.append("tiers: no tiers are defined: this rule can never fire")
    elif promotion.audience.tiers:
        for tier in promotion.audience.tiers:
            if tier not in known.tiers:
                warnings.append(f"tiers: tier {tier!r} is not defined")
    wallet = _spent_wallet(promotion)
    own = _credited_wallet(promotion)
    if wallet and wallet not in _NATIVE_WALLETS and wallet not in known.accrued_wallets | {own}:
        warnings.append(
            f"wallet: no live rule accrues {wallet!r}: nobody can have any to spend, "
            "the rule can never fire"
        )
    funding = promotion.funding
    if funding.budget_minor is not None and (
        known.budgets is None or promotion.promotion_id not in known.budgets
    ):
        warnings.append(
            "funding.budget_minor: no budget state is kept for this campaign: a budget-funded "
            "rule does not fire without it"
        )
    elif funding.by != "chain" and funding.budget_minor is None:
        warnings.append(
            f"funding: funded by {funding.by} without budget_minor: nothing caps the campaign"
        )
    if "bonus_points" in doc:
        warnings.append(
            "bonus_points: minor units (20000 = 200.00); the constructor takes bonus: '200.00'"
        )
    if "points" in doc and own == "bonus":
        warnings.append(
            "points: bonus points are minor units (10000 = 100.00); prefer bonus: '100.00'"
        )
    return problems, warnings
