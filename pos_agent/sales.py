"""The Sale a confirmed receipt becomes: tenders, loyalty movements, lines, totals (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from loyalty_engine import Calculation, ComplimentPass, CustomerState, PersonalOffer, Receipt
from pos_agent.config import RegisterConfig
from pos_agent.errors import InvalidField
from pos_agent.receipts import OpenReceipt, PaymentInput
from sync_protocol import (
    LineDiscount,
    LoyaltyMovement,
    Payment,
    Sale,
    SaleLine,
    SaleOffer,
    SalePass,
    SalePromotion,
    SeenSeq,
)

__all__ = [
    "check_payments",
    "loyalty_movements",
    "numbered",
    "sale_lines",
    "sale_offer",
    "sale_passes",
    "sale_promotions",
    "state_passes",
    "tenders",
    "unnumbered_sale",
]


def sale_offer(offer: PersonalOffer) -> SaleOffer:
    """The offer as the sale records it: the percent as plain decimal text ("12.5")."""
    text = format(offer.percent, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return SaleOffer(offer.offer_id, offer.product_ids, text)


def sale_promotions(calc: Calculation) -> tuple[SalePromotion, ...]:
    """Every promotion that fired, with the units it discounted (the customer's counters)."""
    qty = dict(calc.promo_qty_milli)
    return tuple(SalePromotion(pid, max(0, qty.get(pid, 0))) for pid in calc.fired)


def sale_passes(calc: Calculation, customer: CustomerState | None) -> tuple[SalePass, ...]:
    """The compliment passes the receipt opened or used, each with the units used here (the
    customer states at every tier add these up) and what the state said before."""
    before = {p.key: p for p in customer.compliment_passes} if customer is not None else {}
    out = []
    for p in calc.passes:
        was = before.get(p.key)
        used_before = was.used if was is not None else 0
        out.append(
            SalePass(
                promotion_id=p.promotion_id,
                product_id=p.product_id,
                valid_from=p.valid_from,
                valid_until=p.valid_until,
                units=p.units,
                used=p.used - used_before,
                used_before=used_before,
                opened=was is None,
            )
        )
    return tuple(out)


def state_passes(passes: Sequence[SalePass]) -> tuple[ComplimentPass, ...]:
    """The engine's passes of a customer state's ``passes``."""
    return tuple(
        ComplimentPass(p.promotion_id, p.product_id, p.valid_from, p.valid_until, p.units, p.used)
        for p in passes
    )


def check_payments(payments: Sequence[PaymentInput], bonus_to_spend: int, total_minor: int) -> None:
    """Refuse tenders that, with the bonus spent, do not pay exactly the receipt's total."""
    paid = sum(p.amount_minor for p in payments)
    if paid + bonus_to_spend != total_minor:
        raise InvalidField(
            "payments",
            f"sum of amount_minor ({paid}) + bonus_to_spend ({bonus_to_spend}) = "
            f"{paid + bonus_to_spend} does not equal total_minor ({total_minor})",
        )


def tenders(payments: Sequence[PaymentInput], bonus_to_spend: int) -> tuple[Payment, ...]:
    """The sale's payments: the register software's tenders, then the bonus spent, if any."""
    out = [Payment(method=p.method, amount_minor=p.amount_minor, code=p.code) for p in payments]
    if bonus_to_spend:
        out.append(Payment(method="bonus", amount_minor=bonus_to_spend))
    return tuple(out)


def loyalty_movements(
    card_no: str | None, calc: Calculation, bonus_to_spend: int
) -> tuple[LoyaltyMovement, ...]:
    """The card's accruals and bonus spend; none without a card."""
    if card_no is None:
        return ()
    out = [
        LoyaltyMovement(
            wallet=a.wallet,
            kind="accrue",
            amount=a.amount,
            rule_id=a.rule_id,
            active_from=a.active_from,
            expires_at=a.expires_at,
        )
        for a in calc.accruals
        if a.amount > 0
    ]
    if bonus_to_spend:
        out.append(
            LoyaltyMovement(
                wallet="bonus",
                kind="spend",
                amount=bonus_to_spend,
                rule_id="",
                active_from=None,
                expires_at=None,
            )
        )
    # Wallet units the rules spent (stickers exchanged, compliments redeemed...): the ledger
    # debits them like the bonus.
    out.extend(
        LoyaltyMovement(wallet=m.wallet, kind="spend", amount=m.amount, rule_id=m.rule_id)
        for m in calc.movements
        if m.kind == "spent" and m.rule_id and m.amount > 0
    )
    return tuple(out)


def sale_lines(
    receipt: OpenReceipt, calc: Calculation, known_products: Mapping[int, bool]
) -> tuple[SaleLine, ...]:
    """The receipt's lines with the engine's discounts on each."""
    by_line = {result.line_no: result for result in calc.lines}
    return tuple(
        SaleLine(
            line_no=line.line_no,
            product_id=line.product_id,
            qty_milli=line.qty_milli,
            unit_price_minor=line.unit_price_minor,
            amount_minor=line.amount_minor,
            discounts=tuple(
                LineDiscount(rule_id=d.rule_id, amount_minor=d.amount_minor)
                for d in (by_line[line.line_no].discounts if line.line_no in by_line else ())
            ),
            weighed=line.weighed,
            known_product=known_products[line.line_no],
            certificate_code=line.certificate_code,
        )
        for line in receipt.lines
    )


def _checked_totals(lines: Sequence[SaleLine], calc: Calculation) -> tuple[int, int]:
    """(subtotal, discount) of ``lines``; RuntimeError unless they are the engine's totals."""
    subtotal = sum(line.amount_minor for line in lines)
    discount = sum(d.amount_minor for line in lines for d in line.discounts)
    if (subtotal, discount, subtotal - discount) != (
        calc.subtotal_minor,
        calc.discount_minor,
        calc.total_minor,
    ):
        # The engine and the sale must tell the same story; refuse rather than queue a lie.
        raise RuntimeError(
            f"engine totals {calc.subtotal_minor}/{calc.discount_minor}/{calc.total_minor} "
            f"disagree with its lines {subtotal}/{discount}/{subtotal - discount}"
        )
    return subtotal, discount


def unnumbered_sale(
    receipt: OpenReceipt,
    calc: Calculation,
    known_products: Mapping[int, bool],
    priced_with: Receipt,
    payments: Sequence[PaymentInput],
    bonus_to_spend: int,
    *,
    sale_id: str,
    closed_at: datetime,
    register: RegisterConfig,
    state_seen: tuple[SeenSeq, ...] = (),
) -> Sale:
    """The sale of a priced receipt, seq 0 until the journal numbers it (see ``numbered``).

    ``priced_with`` is what the engine priced: its segments and personal offers go into the
    sale, so the Center recomputes it exactly. Refuses payments that do not add up
    (InvalidField) and lines that disagree with the engine's totals (RuntimeError).
    """
    check_payments(payments, bonus_to_spend, calc.total_minor)
    payments_made = tenders(payments, bonus_to_spend)
    loyalty = loyalty_movements(receipt.card_no, calc, bonus_to_spend)
    lines = sale_lines(receipt, calc, known_products)
    subtotal, discount = _checked_totals(lines, calc)
    customer = priced_with.customer
    return Sale(
        sale_id=sale_id,
        store_id=register.store_id,
        register_id=register.register_id,
        seq=0,
        opened_at=receipt.opened_at,
        closed_at=closed_at,
        card_no=receipt.card_no,
        lines=lines,
        payments=payments_made,
        loyalty=loyalty,
        subtotal_minor=subtotal,
        discount_minor=discount,
        total_minor=subtotal - discount,
        promo_version=calc.promo_version,
        messages=tuple(calc.messages.slip),
        # The Center prices the sale again with these codes, and makes the issued ones again
        # from sale_id and closed_at, to check both.
        coupons_redeemed=tuple(calc.coupons_consumed),
        coupons_issued=tuple(c.code for c in calc.coupons_issued),
        # An empty id matches no rule and would not encode: the sale must still be written.
        segments=tuple(s for s in priced_with.all_segments if s),
        personal_offers=tuple(sale_offer(o) for o in customer.personal_offers) if customer else (),
        promotions=sale_promotions(calc),
        state_seen=state_seen,
        passes=sale_passes(calc, customer),
    )


def numbered(sale: Sale, seq: int) -> Sale:
    """``sale`` with the register sequence number the journal gave it."""
    return replace(sale, seq=seq)
