"""Compliment passes at the Center: a sale records the passes it opened or used, the Center
prices it again with them (the 30-day recompute from the sale alone, verification from the
entitled state) and a claimed pass the engine does not give is a difference."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from center.promotions.recompute import (
    ProductInfo,
    engine_passes,
    recompute_sale,
    reprice_sale,
    sale_differences,
)
from loyalty_engine import Calculation, ComplimentPass, CustomerState, load_promotion_set
from sync_protocol import LineDiscount, Sale, SalePass
from tests.center.center_factories import CARD, T0, make_sale

RULES = [
    {
        "promotion_id": "compl-use",
        "kind": "compliment_redeem",
        "status": "active",
        "goods": {"products": ["1000"]},
        "wallet": "compliment",
        "default_cap": 3,
        "min_unit_price_minor": 100,
    }
]
PROMOTIONS = load_promotion_set(RULES, version=1, settings={})
PRODUCTS = {"1000": ProductInfo(department="DAIRY"), "1001": ProductInfo(department="PASTRY")}
RUNNING = ComplimentPass("compl-use", "1000", T0 - timedelta(days=1), T0 + timedelta(days=6), 3, 2)


def _milk_sale() -> Sale:
    """Two milks at 2.50 and bread, with the card, no discount yet."""
    return dataclasses.replace(
        make_sale(1, card_no=CARD, amounts=(250, 199)),
        lines=tuple(
            dataclasses.replace(line, qty_milli=2000, amount_minor=500, discounts=())
            if line.product_id == "1000"
            else line
            for line in make_sale(1, card_no=CARD, amounts=(250, 199)).lines
        ),
    )


def _as_register_records(sale: Sale, calc: Calculation, before: CustomerState) -> Sale:
    """``sale`` as a register writes it from the engine's ``calc`` priced with ``before``."""
    by_line = {r.line_no: r for r in calc.lines}
    lines = tuple(
        dataclasses.replace(
            line,
            discounts=tuple(
                LineDiscount(d.rule_id, d.amount_minor) for d in by_line[line.line_no].discounts
            ),
        )
        for line in sale.lines
    )
    held = {p.key: p for p in before.compliment_passes}
    passes = tuple(
        SalePass(
            p.promotion_id,
            p.product_id,
            p.valid_from,
            p.valid_until,
            p.units,
            used=p.used - (held[p.key].used if p.key in held else 0),
            used_before=held[p.key].used if p.key in held else 0,
            opened=p.key not in held,
        )
        for p in calc.passes
    )
    subtotal = sum(line.amount_minor for line in lines)
    discount = calc.discount_minor
    return dataclasses.replace(
        sale,
        lines=lines,
        subtotal_minor=subtotal,
        discount_minor=discount,
        total_minor=subtotal - discount,
        payments=(dataclasses.replace(sale.payments[-1], amount_minor=subtotal - discount),),
        passes=passes,
    )


def test_a_running_pass_prices_again_from_the_sale_alone_and_from_the_state() -> None:
    state = CustomerState(compliment_passes=(RUNNING,))
    base = _milk_sale()
    calc = reprice_sale(base, PROMOTIONS, products=PRODUCTS, customer=state)
    # One unit of the pass's 3 is left: one milk at its floor of 1.00 (1.50 off).
    assert calc.discount_minor == 150
    sale = _as_register_records(base, calc, state)
    assert [(p.used_before, p.used, p.opened) for p in sale.passes] == [(2, 1, False)]
    # The 30-day recompute has only the sale: it rebuilds the pass as it stood before.
    assert recompute_sale(sale, PROMOTIONS, products=PRODUCTS).differences == ()
    # Verification prices with the entitled state: the same.
    again = reprice_sale(sale, PROMOTIONS, products=PRODUCTS, customer=state)
    assert sale_differences(sale, again) == []


def test_a_claimed_pass_the_state_does_not_hold_is_a_difference() -> None:
    state = CustomerState(compliment_passes=(RUNNING,))
    base = _milk_sale()
    sale = _as_register_records(
        base, reprice_sale(base, PROMOTIONS, products=PRODUCTS, customer=state), state
    )
    # The Center's entitled state holds no pass: no discount, and the pass is not explained.
    verified = reprice_sale(sale, PROMOTIONS, products=PRODUCTS, customer=CustomerState())
    diffs = sale_differences(sale, verified)
    assert any(d.startswith("passes:") for d in diffs), diffs
    assert any(d.startswith("lines[1].discounts") for d in diffs), diffs
    # A register claiming a bigger pass than the rule gives (cap 30 for 3) is caught too.
    inflated = dataclasses.replace(
        sale, passes=tuple(dataclasses.replace(p, units=30) for p in sale.passes)
    )
    honest = reprice_sale(sale, PROMOTIONS, products=PRODUCTS, customer=state)
    assert sale_differences(sale, honest) == []
    assert [d[:7] for d in sale_differences(inflated, honest)] == ["passes:"]


def test_a_state_s_passes_are_the_engine_s() -> None:
    sale_pass = SalePass("p", "milk", T0, T0 + timedelta(days=7), 10, 4, used_before=1)
    assert engine_passes([sale_pass]) == (
        ComplimentPass("p", "milk", T0, T0 + timedelta(days=7), 10, 4),
    )
    assert engine_passes([sale_pass], before=True)[0].used == 1
    opened = dataclasses.replace(sale_pass, opened=True)
    assert engine_passes([opened], before=True) == ()
