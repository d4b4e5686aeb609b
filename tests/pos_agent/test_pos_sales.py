"""The Sale a confirmed receipt becomes, built from the engine's calculation (pure steps)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_engine import (
    Accrual,
    Calculation,
    CustomerState,
    Discount,
    LineResult,
    PersonalOffer,
    Receipt,
)
from pos_agent.config import RegisterConfig
from pos_agent.errors import InvalidField
from pos_agent.receipts import OpenLine, OpenReceipt, PaymentInput
from pos_agent.sales import (
    check_payments,
    loyalty_movements,
    numbered,
    sale_offer,
    unnumbered_sale,
)
from tests.pos_agent.pos_fakes import T0

REGISTER = RegisterConfig(register_id="367-1", store_id="367", data_dir=Path("/nonexistent"))
RECEIPT = OpenReceipt(
    receipt_id="r1",
    opened_at=T0,
    lines=(
        OpenLine(
            line_no=1, product_id="milk", qty_milli=2000, unit_price_minor=500, amount_minor=1000
        ),
        OpenLine(
            line_no=3, product_id="bread", qty_milli=1000, unit_price_minor=300, amount_minor=300
        ),
    ),
    card_no="C1",
)


def _calc(discount: int = 100, accruals: tuple[Accrual, ...] = ()) -> Calculation:
    total = 1300 - discount
    return Calculation(
        lines=(
            LineResult(1, "milk", 1000, (Discount("T", discount),)),
            LineResult(3, "bread", 300),
        ),
        subtotal_minor=1300,
        discount_minor=discount,
        total_minor=total,
        accruals=accruals,
        bonus_payable_max=0,
        bonus_to_spend=0,
        to_pay_minor=total,
    )


def test_sale_offer_percent_is_plain_decimal_text() -> None:
    assert sale_offer(PersonalOffer("o", ("milk",), Decimal("12.50"))).percent == "12.5"
    assert sale_offer(PersonalOffer("o", ("milk",), Decimal("10"))).percent == "10"


def test_payments_must_pay_the_total_with_the_bonus() -> None:
    check_payments([PaymentInput("cash", 1000), PaymentInput("card", 100)], 100, 1200)
    with pytest.raises(InvalidField) as caught:
        check_payments([PaymentInput("cash", 1000)], 100, 1200)
    assert caught.value.field == "payments"
    assert "1100 does not equal total_minor (1200)" in str(caught.value)


def test_loyalty_needs_a_card_and_skips_empty_accruals() -> None:
    calc = _calc(accruals=(Accrual("bonus", 12, "A"), Accrual("chips", 0, "Z")))
    assert loyalty_movements(None, calc, 50) == ()
    got = loyalty_movements("C1", calc, 50)
    assert [(m.wallet, m.kind, m.amount, m.rule_id) for m in got] == [
        ("bonus", "accrue", 12, "A"),
        ("bonus", "spend", 50, ""),
    ]


def test_unnumbered_sale_carries_lines_tenders_and_what_was_priced() -> None:
    offers = (PersonalOffer("o1", ("milk",), Decimal("25.0")),)
    priced_with = Receipt(
        lines=(),
        now=T0,
        segment="",
        segments=("", "gold"),
        customer=CustomerState(personal_offers=offers),
    )
    closed_at = T0 + timedelta(minutes=3)
    sale = unnumbered_sale(
        RECEIPT,
        _calc(),
        {1: True, 3: False},
        priced_with,
        [PaymentInput("cash", 1100)],
        100,
        sale_id="s1",
        closed_at=closed_at,
        register=REGISTER,
    )
    assert (sale.seq, sale.sale_id, sale.store_id, sale.register_id) == (0, "s1", "367", "367-1")
    assert (sale.opened_at, sale.closed_at) == (T0, closed_at)
    assert (sale.subtotal_minor, sale.discount_minor, sale.total_minor) == (1300, 100, 1200)
    assert [(p.method, p.amount_minor) for p in sale.payments] == [("cash", 1100), ("bonus", 100)]
    assert [(line.line_no, line.known_product) for line in sale.lines] == [(1, True), (3, False)]
    assert [d.rule_id for d in sale.lines[0].discounts] == ["T"]
    assert sale.lines[1].discounts == ()
    assert sale.segments == ("gold",)
    assert [(o.offer_id, o.percent) for o in sale.personal_offers] == [("o1", "25")]
    assert numbered(sale, 42).seq == 42


def test_unnumbered_sale_refuses_lines_that_disagree_with_the_engine() -> None:
    calc = _calc()
    lying = Calculation(
        lines=calc.lines,
        subtotal_minor=calc.subtotal_minor,
        discount_minor=150,
        total_minor=1150,
        accruals=(),
        bonus_payable_max=0,
        bonus_to_spend=0,
        to_pay_minor=1150,
    )
    with pytest.raises(RuntimeError, match="disagree with its lines 1300/100/1200"):
        unnumbered_sale(
            RECEIPT,
            lying,
            {1: True, 3: True},
            Receipt(lines=(), now=T0),
            [PaymentInput("cash", 1150)],
            0,
            sale_id="s1",
            closed_at=T0,
            register=REGISTER,
        )
