"""What-if: price stored sales with a draft promotion set and report cost and reach per promotion.

Pure over its inputs (sales, the draft set, product and store attributes); the CLI reads them
from storage. The baseline is what the registers actually gave (the stored sales), so the
report answers "what would this set have cost on those receipts".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from center.promotions.recompute import ProductInfo
from loyalty_engine import (
    CERTIFICATE_TYPE,
    EngineError,
    PromotionSet,
    Receipt,
    ReceiptLine,
    calculate,
)
from sync_protocol import Sale

__all__ = ["PromotionImpact", "SimulationReport", "simulate"]


@dataclass(slots=True)
class PromotionImpact:
    """One draft promotion's effect over the simulated sales."""

    promotion_id: str
    discount_minor: int = 0
    accrued: dict[str, int] = field(default_factory=dict)
    receipts: int = 0
    customers: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "promotion_id": self.promotion_id,
            "cost_minor": self.discount_minor,
            "accrued": dict(sorted(self.accrued.items())),
            "receipts": self.receipts,
            "customers": len(self.customers),
        }


@dataclass(slots=True)
class SimulationReport:
    """Totals of the draft against what the sales actually gave, and per-promotion impact."""

    promo_version: int
    sales: int = 0
    errors: int = 0
    receipts_changed: int = 0
    customers_changed: set[str] = field(default_factory=set)
    discount_before_minor: int = 0
    discount_after_minor: int = 0
    bonus_before: int = 0
    bonus_after: int = 0
    per_promotion: dict[str, PromotionImpact] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "promo_version": self.promo_version,
            "sales": self.sales,
            "errors": self.errors,
            "receipts_changed": self.receipts_changed,
            "customers_changed": len(self.customers_changed),
            "discount_before_minor": self.discount_before_minor,
            "discount_after_minor": self.discount_after_minor,
            "discount_change_minor": self.discount_after_minor - self.discount_before_minor,
            "bonus_before": self.bonus_before,
            "bonus_after": self.bonus_after,
            "bonus_change": self.bonus_after - self.bonus_before,
            "per_promotion": [impact.to_dict() for _, impact in sorted(self.per_promotion.items())],
        }


def _receipt(
    sale: Sale, products: Mapping[str, ProductInfo], store_formats: Mapping[str, str]
) -> Receipt:
    none = ProductInfo()
    lines = tuple(
        ReceiptLine(
            line.line_no,
            line.product_id,
            line.qty_milli,
            line.unit_price_minor,
            line.amount_minor,
            department=products.get(line.product_id, none).department,
            category=products.get(line.product_id, none).category,
            brand=products.get(line.product_id, none).brand,
            type=CERTIFICATE_TYPE
            if line.certificate_code
            else products.get(line.product_id, none).type,
        )
        for line in sale.lines
    )
    return Receipt(
        lines, sale.closed_at, sale.store_id, store_formats.get(sale.store_id, ""), sale.card_no
    )


def simulate(
    sales: Iterable[Sale],
    draft: PromotionSet,
    *,
    products: Mapping[str, ProductInfo],
    store_formats: Mapping[str, str],
    progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """Price every sale with ``draft`` (no bonus spent) and sum the differences."""
    report = SimulationReport(draft.version)
    for sale in sales:
        report.sales += 1
        if progress is not None:
            progress(report.sales)
        before_discount = sale.discount_minor
        before_bonus = sum(
            m.amount for m in sale.loyalty if m.kind == "accrue" and m.wallet == "bonus"
        )
        try:
            calc = calculate(_receipt(sale, products, store_formats), draft)
        except EngineError:
            report.errors += 1
            continue
        after_bonus = sum(a.amount for a in calc.accruals if a.wallet == "bonus")
        report.discount_before_minor += before_discount
        report.discount_after_minor += calc.discount_minor
        report.bonus_before += before_bonus
        report.bonus_after += after_bonus
        if (before_discount, before_bonus) != (calc.discount_minor, after_bonus):
            report.receipts_changed += 1
            if sale.card_no:
                report.customers_changed.add(sale.card_no)
        given: dict[str, int] = {}
        for line in calc.lines:
            for d in line.discounts:
                given[d.rule_id] = given.get(d.rule_id, 0) + d.amount_minor
        for promotion_id in calc.fired:
            impact = report.per_promotion.setdefault(promotion_id, PromotionImpact(promotion_id))
            impact.discount_minor += given.get(promotion_id, 0)
            impact.receipts += 1
            if sale.card_no:
                impact.customers.add(sale.card_no)
        for accrual in calc.accruals:
            impact = report.per_promotion.setdefault(
                accrual.rule_id, PromotionImpact(accrual.rule_id)
            )
            impact.accrued[accrual.wallet] = impact.accrued.get(accrual.wallet, 0) + accrual.amount
    return report
