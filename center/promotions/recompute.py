"""Recompute an ingested sale with the register's engine and report every difference.

Pure: the caller hands the stored sale, the promotion set of the version the sale names, and
what the register knew of its products, store and card. Fraud and configuration drift both
show up as differences (a discount the rules do not give, an accrual that is too large...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from loyalty_engine import (
    CERTIFICATE_TYPE,
    Calculation,
    ComplimentPass,
    CustomerState,
    EngineError,
    PersonalOffer,
    PromotionSet,
    Receipt,
    ReceiptLine,
    calculate,
    load_promotion_set,
)
from sync_protocol import Sale, SalePass

__all__ = [
    "OFFER_LAG_TOLERANCE",
    "ProductInfo",
    "Recomputation",
    "engine_passes",
    "promotion_set_at",
    "recompute_sale",
    "reprice_sale",
    "sale_differences",
]

# The register prices a moment before it closes the sale; dates derived from "now" (activation,
# expiry) may differ from ones derived from closed_at by that much.
TIME_TOLERANCE = timedelta(seconds=5)
OFFER_LAG_TOLERANCE = timedelta(hours=1)
"""How long before closed_at an offer the customer no longer holds still counts: the register's
replica learns of a removal only after its store node's next master poll, and a store cut off
from the Center for longer prices with offers it should not have. An offer set after closed_at
never counts: no replica could have known it."""


@dataclass(frozen=True, slots=True)
class ProductInfo:
    """The product attributes promotions select on."""

    department: str = ""
    category: str = ""
    brand: str = ""
    type: str = ""


_NO_INFO = ProductInfo()


@dataclass(frozen=True, slots=True)
class Recomputation:
    """The outcome for one sale: ``differences`` is empty when the register was right."""

    sale_id: str
    promo_version: int
    differences: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether the stored sale equals the recomputation."""
        return not self.differences


def promotion_set_at(
    rows: Iterable[Mapping[str, Any]],
    settings: Mapping[str, str],
    version: int,
    history: Mapping[int, Sequence[tuple[str, Mapping[str, Any]]]] | None = None,
) -> PromotionSet:
    """The promotion set as of master ``version``.

    ``history`` (the constructor's revisions: version -> (promotion_id, doc) live then, from
    ``Storage.promotion_sets_between``) gives the exact set when it holds the version. Otherwise
    the current ``promotions`` rows (``doc``, ``version``) changed after ``version`` are left
    out: their earlier content is unknown, so a sale priced with them is reported, not silently
    misjudged.
    """
    if history is not None and version in history:
        docs = [doc for _, doc in history[version]]
    else:
        docs = [row["doc"] for row in rows if int(row["version"]) <= version]
    return load_promotion_set(docs, version=version, settings=settings, strict=False)


def _spent(sale: Sale) -> int:
    return sum(m.amount for m in sale.loyalty if m.kind == "spend" and m.wallet == "bonus")


def _wallet_spend(sale: Sale) -> dict[str, int]:
    """The wallet units the sale's rules spent (stickers exchanged...), by wallet."""
    out: dict[str, int] = {}
    for m in sale.loyalty:
        if m.kind == "spend" and m.rule_id:
            out[m.wallet] = out.get(m.wallet, 0) + m.amount
    return out


def engine_passes(
    passes: Iterable[SalePass], *, before: bool = False
) -> tuple[ComplimentPass, ...]:
    """The engine's compliment passes of a customer state's ``passes``; ``before``: of a sale's,
    as they stood before it (those it opened left out, ``used`` what the register saw)."""
    return tuple(
        ComplimentPass(
            p.promotion_id,
            p.product_id,
            p.valid_from,
            p.valid_until,
            p.units,
            p.used_before if before else p.used,
        )
        for p in passes
        if not (before and p.opened)
    )


def _customer(sale: Sale) -> CustomerState | None:
    """The customer state the register priced with, as far as the sale records it: its
    personal offers, in its wallets what the sale spent (it must have been there), and the
    compliment passes it used as they stood before it."""
    spend = _wallet_spend(sale)
    if not sale.personal_offers and not spend and not sale.card_no:
        return None
    return CustomerState(
        personal_offers=tuple(
            PersonalOffer(o.offer_id, tuple(o.product_ids), Decimal(o.percent))
            for o in sale.personal_offers
        ),
        wallets=spend,
        compliment_passes=engine_passes(sale.passes, before=True),
    )


def _near(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= TIME_TOLERANCE


def _offer_differences(sale: Sale, held: Sequence[Mapping[str, Any]]) -> list[str]:
    """One difference per offer the sale claims that no offer ``held`` explains."""
    diffs: list[str] = []
    at = sale.closed_at.isoformat()
    for claimed in sale.personal_offers:
        name = f"personal_offers[{claimed.offer_id}]"
        same_id = [h for h in held if h.get("offer_id") == claimed.offer_id]
        if not same_id:
            diffs.append(f"{name}: not held by the customer at {at}")
            continue
        try:
            percent = Decimal(claimed.percent)
        except ArithmeticError:
            diffs.append(f"{name}: percent {claimed.percent!r} is not a number")
            continue
        terms = [
            h
            for h in same_id
            if (str(h.get("product_id")),) == tuple(claimed.product_ids)
            and Decimal(str(h.get("percent"))) == percent
        ]
        if not terms:
            shown = sorted({f"{h.get('percent')}% on {h.get('product_id')}" for h in same_id})
            diffs.append(
                f"{name}: sale {claimed.percent}% on {', '.join(claimed.product_ids)}, "
                f"held {'; '.join(shown)} at {at}"
            )
            continue
        if not any(_valid_at(h, sale.closed_at) for h in terms):
            diffs.append(f"{name}: held but not valid at {at}")
    return diffs


def _valid_at(offer: Mapping[str, Any], at: datetime) -> bool:
    """Within the offer's [valid_from, valid_to), give or take TIME_TOLERANCE."""
    start, end = offer.get("valid_from"), offer.get("valid_to")
    return (start is None or datetime.fromisoformat(start) <= at + TIME_TOLERANCE) and (
        end is None or at - TIME_TOLERANCE < datetime.fromisoformat(end)
    )


def reprice_sale(
    sale: Sale,
    promotions: PromotionSet,
    *,
    products: Mapping[str, ProductInfo],
    store_format: str = "",
    store_timezone: str = "",
    segment: str = "",
    customer: CustomerState | None = None,
    budgets_left: Mapping[str, int] | None = None,
) -> Calculation:
    """The engine's calculation of ``sale`` at its ``closed_at`` (EngineError if it refuses).

    ``customer`` is the state to price with; None: what the sale itself records (its personal
    offers, and the wallet units it spent). ``budgets_left``: supplier budgets the sale could
    use (None: budgeted promotions do not fire)."""
    spent = _spent(sale)
    none = _NO_INFO
    lines = []
    for line in sale.lines:
        info = products.get(line.product_id, none)
        lines.append(
            ReceiptLine(
                line_no=line.line_no,
                product_id=line.product_id,
                qty_milli=line.qty_milli,
                unit_price_minor=line.unit_price_minor,
                amount_minor=line.amount_minor,
                department=info.department,
                category=info.category,
                brand=info.brand,
                # As the register marks it: a sold certificate is money, not goods.
                type=CERTIFICATE_TYPE if line.certificate_code else "",
            )
        )
    receipt = Receipt(
        lines=tuple(lines),
        now=sale.closed_at,
        store_id=sale.store_id,
        store_format=store_format,
        timezone=store_timezone,
        # The register hands the engine its tenders' methods (the bonus one included).
        payment_types=tuple(dict.fromkeys(p.method for p in sale.payments)),
        card_no=sale.card_no,
        segment=segment,
        segments=sale.segments,
        customer=_customer(sale) if customer is None else customer,
        # The balance at sale time is not stored; what was spent must have been there.
        bonus_balance=spent,
        # The register seeds issued codes with the sale id and prices at closed_at, so the
        # same inputs make the same codes; only the codes it redeemed are presented again.
        receipt_id=sale.sale_id,
        coupon_codes=sale.coupons_redeemed,
    )
    return calculate(
        receipt,
        promotions,
        bonus_to_spend=spent,
        spend=_wallet_spend(sale),
        budgets_left=budgets_left,
    )


def recompute_sale(
    sale: Sale,
    promotions: PromotionSet,
    *,
    products: Mapping[str, ProductInfo],
    store_format: str = "",
    store_timezone: str = "",
    segment: str = "",
    held_offers: Sequence[Mapping[str, Any]] | None = None,
) -> Recomputation:
    """Price ``sale`` again at its ``closed_at`` and list every difference, naming the field.

    The customer context comes from the sale (its ``segments`` and ``personal_offers``, what
    the register priced with); ``segment`` is only for sales recorded before it did.
    ``held_offers`` (from ``Storage.personal_offers_at`` over the OFFER_LAG_TOLERANCE before
    closed_at; None: not checked) are the offers the card's customer really had: each offer
    the sale claims must be one of them, with the same product and percent, and valid then.
    """
    diffs: list[str] = []
    if held_offers is not None:
        diffs.extend(_offer_differences(sale, held_offers))
    if promotions.version != sale.promo_version:
        diffs.append(
            f"promo_version: sale used {sale.promo_version}, recomputed with {promotions.version}"
        )
    try:
        calc = reprice_sale(
            sale,
            promotions,
            products=products,
            store_format=store_format,
            store_timezone=store_timezone,
            segment=segment,
        )
    except EngineError as exc:
        return Recomputation(sale.sale_id, sale.promo_version, (*diffs, f"engine: {exc}"))
    diffs.extend(sale_differences(sale, calc))
    return Recomputation(sale.sale_id, sale.promo_version, tuple(diffs))


def sale_differences(sale: Sale, calc: Calculation) -> list[str]:
    """Every difference between the stored ``sale`` and the engine's ``calc``, by field."""
    diffs: list[str] = []
    by_line = {r.line_no: r for r in calc.lines}
    for line in sale.lines:
        want = sorted((d.rule_id, d.amount_minor) for d in by_line[line.line_no].discounts)
        got = sorted((d.rule_id, d.amount_minor) for d in line.discounts)
        if want != got:
            diffs.append(f"lines[{line.line_no}].discounts: sale {got}, recomputed {want}")
    for name in ("subtotal_minor", "discount_minor", "total_minor"):
        if getattr(sale, name) != getattr(calc, name):
            diffs.append(f"{name}: sale {getattr(sale, name)}, recomputed {getattr(calc, name)}")
    stored = sorted(
        (m for m in sale.loyalty if m.kind == "accrue"), key=lambda m: (m.wallet, m.rule_id)
    )
    computed = sorted(
        (a for a in calc.accruals if a.amount > 0), key=lambda a: (a.wallet, a.rule_id)
    )
    if [(m.wallet, m.rule_id, m.amount) for m in stored] != [
        (a.wallet, a.rule_id, a.amount) for a in computed
    ]:
        diffs.append(
            "loyalty.accrue: sale "
            f"{[(m.wallet, m.rule_id, m.amount) for m in stored]}, recomputed "
            f"{[(a.wallet, a.rule_id, a.amount) for a in computed]}"
        )
    else:
        for m, a in zip(stored, computed, strict=True):
            if not (_near(m.active_from, a.active_from) and _near(m.expires_at, a.expires_at)):
                diffs.append(
                    f"loyalty.accrue[{m.rule_id}]: dates {m.active_from}/{m.expires_at}, "
                    f"recomputed {a.active_from}/{a.expires_at}"
                )
    # Single use across registers is not judged here (no redemption history): only that the
    # rules accept each code and that every code presented was consumed.
    redeemed = sorted(sale.coupons_redeemed)
    consumed = sorted(calc.coupons_consumed)
    if redeemed != consumed:
        diffs.append(f"coupons_redeemed: sale {redeemed}, recomputed {consumed}")
    issued = sorted(sale.coupons_issued)
    reissued = sorted(c.code for c in calc.coupons_issued)
    if issued != reissued:
        diffs.append(f"coupons_issued: sale {issued}, recomputed {reissued}")
    diffs.extend(_pass_differences(sale.passes, calc.passes))
    return diffs


def _pass_differences(claimed: Sequence[SalePass], passes: Sequence[ComplimentPass]) -> list[str]:
    """The sale's compliment passes against the engine's (units used after the sale; the
    times within TIME_TOLERANCE: the register priced a moment before closing)."""
    got = sorted((p.promotion_id, p.product_id, p.units, p.used_before + p.used) for p in claimed)
    want = sorted((p.promotion_id, p.product_id, p.units, p.used) for p in passes)
    if got != want:
        return [f"passes: sale {got}, recomputed {want}"]
    by_key = {(p.promotion_id, p.product_id): p for p in passes}
    for p in claimed:
        engine = by_key.get((p.promotion_id, p.product_id))
        if engine is None or not (
            _near(p.valid_from, engine.valid_from) and _near(p.valid_until, engine.valid_until)
        ):
            return [f"passes[{p.product_id}]: dates {p.valid_from}/{p.valid_until} differ"]
    return []
