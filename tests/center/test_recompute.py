"""The Center recomputes a sale with the register's engine and flags every difference."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from center.cli import main
from center.config import load_config
from center.promotions.offers import OfferInput
from center.promotions.recompute import ProductInfo, promotion_set_at, recompute_sale
from center.storage import Storage, open_storage
from loyalty_engine import (
    CustomerState,
    PersonalOffer,
    PromotionSet,
    Receipt,
    ReceiptLine,
    calculate,
    default_promotions,
    default_settings,
    load_promotion_set,
    make_code,
)
from sync_protocol import (
    LineDiscount,
    LoyaltyMovement,
    Payment,
    Sale,
    SaleLine,
    SaleOffer,
    decode_sale,
)
from tests.center.center_factories import master_tables, write_config
from tests.center.conftest import BACKENDS
from tests.center.test_center_promotions import threshold

NOW = datetime(2024, 3, 1, 18, 0, tzinfo=UTC)
PRODUCTS = {"P1": ProductInfo(department="GROCERY"), "P2": ProductInfo(department="DELI")}
PROMOTIONS = load_promotion_set(default_promotions(), version=4, settings=default_settings())


KEY = default_settings()["coupon_key"]
# Issued by another sale of the chain, valid until the day after NOW (store time).
COUPON = make_code(KEY, "NEXT5", "0123456789", (NOW + timedelta(days=1)).date())


def register_sale(
    amounts: tuple[int, ...],
    spend: int = 0,
    *,
    priced_at: datetime = NOW,
    coupons: tuple[str, ...] = (),
    promotions: PromotionSet = PROMOTIONS,
    segments: tuple[str, ...] = (),
    offers: tuple[SaleOffer, ...] = (),
) -> Sale:
    """A sale as the register makes it: priced by the engine at closing, seeded by its id,
    with the card's segments and personal offers, recorded as priced."""
    lines = tuple(
        ReceiptLine(i + 1, f"P{i + 1}", 1000, a, a, department=PRODUCTS[f"P{i + 1}"].department)
        for i, a in enumerate(amounts)
    )
    receipt = Receipt(
        lines,
        priced_at,
        "367",
        "",
        "1001",
        "",
        bonus_balance=10_000,
        receipt_id="s1",
        coupon_codes=coupons,
        segments=segments,
        customer=CustomerState(
            personal_offers=tuple(
                PersonalOffer(o.offer_id, o.product_ids, Decimal(o.percent)) for o in offers
            )
        )
        if offers
        else None,
    )
    calc = calculate(receipt, promotions, bonus_to_spend=spend)
    loyalty = [
        LoyaltyMovement(a.wallet, "accrue", a.amount, a.rule_id, a.active_from, a.expires_at)
        for a in calc.accruals
    ]
    if spend:
        loyalty.append(LoyaltyMovement("bonus", "spend", spend))
    return Sale(
        sale_id="s1",
        store_id="367",
        register_id="367-1",
        seq=1,
        opened_at=NOW - timedelta(minutes=2),
        closed_at=NOW,
        card_no="1001",
        lines=tuple(
            SaleLine(
                r.line_no,
                r.product_id,
                1000,
                r.amount_minor,
                r.amount_minor,
                tuple(LineDiscount(d.rule_id, d.amount_minor) for d in r.discounts),
            )
            for r in calc.lines
        ),
        payments=(Payment("cash", calc.to_pay_minor),),
        loyalty=tuple(loyalty),
        subtotal_minor=calc.subtotal_minor,
        discount_minor=calc.discount_minor,
        total_minor=calc.total_minor,
        promo_version=calc.promo_version,
        coupons_redeemed=calc.coupons_consumed,
        coupons_issued=tuple(c.code for c in calc.coupons_issued),
        segments=segments,
        personal_offers=offers,
    )


def test_an_honest_sale_has_no_difference() -> None:
    sale = register_sale((6000, 5000), spend=300)
    result = recompute_sale(sale, PROMOTIONS, products=PRODUCTS)
    assert result.ok, result.differences
    assert sale.discount_minor == 1100  # 10 % of 11 000: the sale really had promotions
    assert len(sale.coupons_issued) == 1  # 99.00 >= 60.00: the Center made the same code


def test_accrual_dates_a_moment_off_are_tolerated() -> None:
    # Registers of earlier versions priced a fraction of a second before closing.
    sale = register_sale((3000,), priced_at=NOW - timedelta(milliseconds=300))
    assert sale.coupons_issued == ()
    result = recompute_sale(sale, PROMOTIONS, products=PRODUCTS)
    assert result.ok, result.differences
    assert sale.loyalty[0].expires_at != NOW + timedelta(days=365)


def test_a_sale_that_redeemed_a_coupon_recomputes_without_difference() -> None:
    sale = register_sale((6000, 5000), coupons=(COUPON,))
    assert sale.coupons_redeemed == (COUPON,)
    assert "next-visit-redeem" in {d.rule_id for line in sale.lines for d in line.discounts}
    result = recompute_sale(sale, PROMOTIONS, products=PRODUCTS)
    assert result.ok, result.differences


def test_a_tampered_issued_code_is_flagged() -> None:
    sale = register_sale((6000, 5000))
    (real,) = sale.coupons_issued
    forged = make_code(KEY, "NEXT5", "9999999999", (NOW + timedelta(days=14)).date())
    result = recompute_sale(replace(sale, coupons_issued=(forged,)), PROMOTIONS, products=PRODUCTS)
    assert result.differences == (f"coupons_issued: sale ['{forged}'], recomputed ['{real}']",)
    extra = recompute_sale(
        replace(sale, coupons_issued=(real, forged)), PROMOTIONS, products=PRODUCTS
    )
    assert [d.split(":")[0] for d in extra.differences] == ["coupons_issued"]


@pytest.mark.parametrize(
    "code",
    [
        "-".join(p if i != 2 else "00000000" for i, p in enumerate(COUPON.split("-"))),
        make_code(KEY, "NEXT5", "0123456789", (NOW - timedelta(days=2)).date()),  # expired
        make_code("another-chain", "NEXT5", "0123456789"),
    ],
)
def test_a_redeemed_code_the_rules_refuse_is_flagged(code: str) -> None:
    honest = register_sale((6000, 5000), coupons=(COUPON,))
    # The register claims the coupon discount for a code the rules do not accept.
    result = recompute_sale(
        replace(honest, coupons_redeemed=(code,)), PROMOTIONS, products=PRODUCTS
    )
    assert f"coupons_redeemed: sale ['{code}'], recomputed []" in result.differences
    assert any(d.startswith("discount_minor: sale ") for d in result.differences)


def test_a_tampered_discount_and_accrual_are_flagged() -> None:
    sale = register_sale((6000, 5000))
    line = sale.lines[0]
    forged = replace(
        sale,
        lines=(replace(line, discounts=(LineDiscount("threshold-5-10", 900),)), *sale.lines[1:]),
        discount_minor=sale.discount_minor + 300,
        total_minor=sale.total_minor - 300,
        loyalty=(replace(sale.loyalty[0], amount=sale.loyalty[0].amount * 10),),
    )
    result = recompute_sale(forged, PROMOTIONS, products=PRODUCTS)
    text = "\n".join(result.differences)
    assert "lines[1].discounts: sale [('threshold-5-10', 900)], recomputed" in text
    assert "discount_minor: sale 1400, recomputed 1100" in text
    assert "loyalty.accrue: sale [('bonus', 'base-accrual-3', 2970)]" in text


def test_configuration_drift_and_version_are_reported() -> None:
    sale = register_sale((6000, 5000))
    drifted = load_promotion_set(
        [
            {**d, "steps": [{"min_total_minor": 0, "percent": "20"}]}
            if d["kind"] == "threshold_discount"
            else d
            for d in default_promotions()
        ],
        version=5,
        settings=default_settings(),
    )
    result = recompute_sale(sale, drifted, products=PRODUCTS)
    assert result.differences[0] == "promo_version: sale used 4, recomputed with 5"
    assert any(
        d.startswith("discount_minor: sale 1100, recomputed 2200") for d in result.differences
    )


def test_promotion_set_at_a_version_leaves_out_later_rows() -> None:
    rows = [
        {"doc": d, "version": v} for d, v in zip(default_promotions()[:3], (1, 3, 9), strict=True)
    ]
    at_four = promotion_set_at(rows, default_settings(), 4)
    assert [p.promotion_id for p in at_four.promotions] == ["threshold-5-10", "base-accrual-3"]
    assert at_four.version == 4


# -- rules that changed after the sale (promotions constructor history) --------------------------


SALE_ID = "5a1e0000-0000-4000-8000-000000000001"


def _publish_then_change(storage: Storage) -> tuple[Sale, int]:
    """A sale priced under T5 at 10 %, stored; then T5 is raised to 20 % and republished."""
    storage.feed.upsert_master({**master_tables(), "promotions": []})
    settings = storage.promotions.promotion_settings()
    storage.promotions.create_promotion(threshold(), "maria", NOW)
    sold_under = storage.promotions.activate_promotion("T5", "olga", NOW)
    docs = [doc for _, doc in storage.promotions.promotion_set(sold_under)]
    promotions = load_promotion_set(docs, version=sold_under, settings=settings)
    # No coupon rule here, so the id that seeds codes may become the UUID ingest wants.
    sale = replace(register_sale((600, 500), promotions=promotions), sale_id=SALE_ID)
    assert sale.discount_minor == 110
    assert storage.sales.ingest([sale], NOW).accepted == (SALE_ID,)
    storage.promotions.update_promotion("T5", threshold(percent="20"), "maria", NOW)
    assert storage.promotions.activate_promotion("T5", "olga", NOW) > sold_under
    return sale, sold_under


def test_a_sale_is_judged_by_the_rules_it_was_sold_under(storage: Storage) -> None:
    sale, sold_under = _publish_then_change(storage)
    settings = storage.promotions.promotion_settings()
    master = storage.feed.pricing_master()
    rows = [{"doc": json.loads(doc), "version": version} for doc, version in master["promotions"]]
    history = storage.promotions.promotion_sets_between(
        NOW - timedelta(days=1), NOW + timedelta(days=1)
    )
    assert list(history) == [sold_under]
    judged = recompute_sale(
        sale, promotion_set_at(rows, settings, sold_under, history), products=PRODUCTS
    )
    assert judged.ok, judged.differences
    # Without the history the changed row is unknown at that version: a false difference.
    blind = recompute_sale(sale, promotion_set_at(rows, settings, sold_under), products=PRODUCTS)
    assert "discount_minor: sale 110, recomputed 0" in blind.differences


def test_recompute_command_uses_the_promotion_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    storage = open_storage(load_config(path).storage)
    try:
        _publish_then_change(storage)
    finally:
        storage.close()
    code = main(["recompute", "--config", str(path), "--from", "2024-03-01", "--to", "2024-03-01"])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["recomputed"], out["differing"]) == (0, 1, [])


def test_recompute_command_skips_returns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    storage = open_storage(load_config(path).storage)
    try:
        sale, _ = _publish_then_change(storage)
        # A full return of the sale: its lines as sold, no loyalty of its own (the Center
        # reverses the original's accrual in proportion; the engine does not price returns).
        refund = replace(
            sale,
            sale_id="5a1e0000-0000-4000-8000-000000000002",
            seq=sale.seq + 1,
            loyalty=(),
            coupons_issued=(),
            return_of=SALE_ID,
        )
        assert storage.sales.ingest([refund], NOW).accepted == (refund.sale_id,)
    finally:
        storage.close()
    code = main(["recompute", "--config", str(path), "--from", "2024-03-01", "--to", "2024-03-01"])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["recomputed"], out["returns_skipped"], out["differing"]) == (0, 1, 1, [])


# -- the customer context the register priced with (segments, personal offers) ------------------

GOLD = {**threshold("GOLD10"), "segments": ["gold"]}
PERSONAL = {"promotion_id": "PO", "kind": "personal_offers", "title": "Personal", "priority": 20}
OFFER = SaleOffer("po-p1", ("P1",), "12.5")
CONTEXT_SALE_ID = "5a1e0000-0000-4000-8000-0000000000c1"
STRIPPED_SALE_ID = "5a1e0000-0000-4000-8000-0000000000c2"
INVENTED_SALE_ID = "5a1e0000-0000-4000-8000-0000000000c3"


def _publish_context_rules(storage: Storage) -> PromotionSet:
    """A gold-segment threshold and the personal-offers rule, published in the constructor."""
    storage.feed.upsert_master({**master_tables(), "promotions": []})
    for doc in (GOLD, PERSONAL):
        storage.promotions.create_promotion(doc, "maria", NOW)
        version = storage.promotions.activate_promotion(doc["promotion_id"], "olga", NOW)
    docs = [doc for _, doc in storage.promotions.promotion_set(version)]
    return load_promotion_set(
        docs, version=version, settings=storage.promotions.promotion_settings()
    )


def _context_sales(promotions: PromotionSet) -> tuple[Sale, Sale]:
    """A sale priced with the segment and the offer, and the same sale without its context."""
    sale = replace(
        register_sale((6000, 5000), promotions=promotions, segments=("gold",), offers=(OFFER,)),
        sale_id=CONTEXT_SALE_ID,
    )
    # The context really priced it: 10 % for gold, then 12.5 % of what is left of P1.
    assert [[(d.rule_id, d.amount_minor) for d in line.discounts] for line in sale.lines] == [
        [("GOLD10", 600), ("PO", 675)],
        [("GOLD10", 500)],
    ]
    stripped = replace(sale, sale_id=STRIPPED_SALE_ID, seq=2, segments=(), personal_offers=())
    return sale, stripped


def test_a_sale_priced_with_segment_and_offer_recomputes_exactly_from_storage(
    storage: Storage,
) -> None:
    promotions = _publish_context_rules(storage)
    sale, stripped = _context_sales(promotions)
    assert storage.sales.ingest([sale], NOW).accepted == (CONTEXT_SALE_ID,)
    (payload,) = storage.sales.sale_payloads(NOW - timedelta(days=1), NOW + timedelta(days=1))
    stored = decode_sale(payload)
    assert (stored.segments, stored.personal_offers) == (("gold",), (OFFER,))
    result = recompute_sale(stored, promotions, products=PRODUCTS)
    assert result.ok, result.differences
    # Without the context the same discounts cannot be explained: the context is used.
    blind = recompute_sale(stripped, promotions, products=PRODUCTS)
    assert blind.differences[:3] == (
        "lines[1].discounts: sale [('GOLD10', 600), ('PO', 675)], recomputed []",
        "lines[2].discounts: sale [('GOLD10', 500)], recomputed []",
        "discount_minor: sale 1775, recomputed 0",
    )
    # Each half of the context matters on its own.
    no_offer = recompute_sale(replace(stored, personal_offers=()), promotions, products=PRODUCTS)
    assert no_offer.differences[0] == (
        "lines[1].discounts: sale [('GOLD10', 600), ('PO', 675)], recomputed [('GOLD10', 600)]"
    )
    no_segment = recompute_sale(replace(stored, segments=()), promotions, products=PRODUCTS)
    assert no_segment.differences[0].startswith(
        "lines[1].discounts: sale [('GOLD10', 600), ('PO', 675)], recomputed [('PO', 750)]"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_recompute_command_prices_with_the_recorded_context(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgresql" else ""
    path = write_config(tmp_path, backend=backend, dsn=dsn)
    storage = open_storage(load_config(path).storage)
    try:
        sale, stripped = _context_sales(_publish_context_rules(storage))
        _give_card_the_offer(storage)
        # The same sale claiming a 90 % offer the customer never had (it prices the same: the
        # offer is on a product the sale does not hold).
        invented = replace(
            sale,
            sale_id=INVENTED_SALE_ID,
            seq=3,
            personal_offers=(OFFER, SaleOffer("po-90", ("P9",), "90")),
        )
        assert storage.sales.ingest([sale, stripped, invented], NOW).accepted == (
            sale.sale_id,
            stripped.sale_id,
            invented.sale_id,
        )
    finally:
        storage.close()
    code = main(["recompute", "--config", str(path), "--from", "2024-03-01", "--to", "2024-03-01"])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["recomputed"]) == (1, 3)
    # The sale whose context was stripped differs, and the one claiming an invented offer.
    differing = {d["sale_id"]: d["differences"] for d in out["differing"]}
    assert sorted(differing) == [STRIPPED_SALE_ID, INVENTED_SALE_ID]
    assert "discount_minor: sale 1775, recomputed 0" in differing[STRIPPED_SALE_ID]
    assert differing[INVENTED_SALE_ID] == [
        f"personal_offers[po-90]: not held by the customer at {NOW.isoformat()}"
    ]


def _give_card_the_offer(storage: Storage) -> None:
    """Card C1 (the sales') belongs to hh-1, who was given OFFER the day before NOW."""
    storage.feed.upsert_master(
        {
            "products": [{"product_id": "P1", "name": "One", "price_minor": 6000}],
            "cards": [{"card_no": "1001", "customer_id": "hh-1"}],
        }
    )
    storage.offers.set_personal_offers(
        "hh-1",
        [OfferInput(OFFER.offer_id, "P1", Decimal(OFFER.percent))],
        "maria",
        NOW - timedelta(days=1),
    )
