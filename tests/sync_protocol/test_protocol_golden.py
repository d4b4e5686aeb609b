"""Golden v1 fixtures: bytes written once by the v1 encoder must decode forever.

Never regenerate these files; add new ones for new fields or versions instead.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync_protocol import (
    Ack,
    Envelope,
    Heartbeat,
    LineDiscount,
    LoyaltyMovement,
    MasterDelta,
    MasterSnapshot,
    Payment,
    Rejection,
    Sale,
    SaleBatch,
    SaleLine,
    SaleOffer,
    SalePromotion,
    chain_hash,
    decode,
    decode_sale,
    encode,
    encode_sale,
    sale_fingerprint,
)

FIXTURES = Path(__file__).parent / "fixtures"
SENT_AT = datetime(2024, 5, 17, 9, 45, 0, tzinfo=UTC)

SALE = Sale(
    sale_id="3f2b8c1e-5a6d-4f7e-9b0c-1d2e3f4a5b6c",
    store_id="367",
    register_id="367-1",
    seq=1001,
    opened_at=datetime(2024, 5, 17, 9, 30, 15, 250000, tzinfo=UTC),
    closed_at=datetime(2024, 5, 17, 9, 31, 2, tzinfo=UTC),
    card_no="2770000012345",
    lines=(
        SaleLine(
            line_no=1,
            product_id="4600001",
            qty_milli=2000,
            unit_price_minor=8990,
            amount_minor=17980,
            discounts=(LineDiscount(rule_id="threshold-1000", amount_minor=1798),),
        ),
        SaleLine(
            line_no=2,
            product_id="2000123",
            qty_milli=1250,
            unit_price_minor=39900,
            amount_minor=49875,
            weighed=True,
        ),
        SaleLine(
            line_no=3,
            product_id="unknown-77",
            qty_milli=1000,
            unit_price_minor=1500,
            amount_minor=1500,
            known_product=False,
        ),
    ),
    payments=(
        Payment(method="bonus", amount_minor=5000),
        Payment(method="card", amount_minor=62557),
    ),
    loyalty=(
        LoyaltyMovement(wallet="bonus", kind="spend", amount=5000),
        LoyaltyMovement(
            wallet="bonus",
            kind="accrue",
            amount=675,
            rule_id="accrual-1pct",
            active_from=datetime(2024, 5, 31, tzinfo=UTC),
            expires_at=datetime(2025, 5, 31, tzinfo=UTC),
        ),
    ),
    subtotal_minor=69355,
    discount_minor=1798,
    total_minor=67557,
    promo_version=7,
    prev_hash="",
    messages=("You saved 17.98",),
)

CASH_SALE = Sale(
    sale_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
    store_id="367",
    register_id="367-2",
    seq=1,
    opened_at=datetime(2024, 5, 17, 9, 40, tzinfo=UTC),
    closed_at=datetime(2024, 5, 17, 9, 40, 30, tzinfo=UTC),
    card_no=None,
    lines=(SaleLine(1, "4600002", 1000, 4500, 4500),),
    payments=(Payment("cash", 4500),),
    loyalty=(),
    subtotal_minor=4500,
    discount_minor=0,
    total_minor=4500,
    promo_version=7,
)

# Written by the encoder once coupon codes travelled with sales (additive fields of v1).
COUPON_SALE = dataclasses.replace(
    SALE,
    sale_id="c0a8012e-7d4b-4f1a-9e2d-5b6c7d8e9f01",
    seq=1002,
    prev_hash="ab" * 32,
    coupons_redeemed=("NEXT5-12345678903-0A1B2C3D-20240530",),
    coupons_issued=("NEXT5-98765432106-DEADBEEF-20240531", "PROMO10"),
)

# Written by the encoder once sales carried the customer context they were priced with
# (additive fields of v1, left out when empty).
CONTEXT_SALE = dataclasses.replace(
    SALE,
    sale_id="5d1e7f20-8a3b-4c5d-9e6f-7a8b9c0d1e2f",
    seq=1003,
    prev_hash="cd" * 32,
    segments=("gold", "students"),
    personal_offers=(
        SaleOffer(offer_id="po-4600001", product_ids=("4600001",), percent="10"),
        SaleOffer(offer_id="po-cheese", product_ids=("2000123", "2000124"), percent="12.5"),
    ),
)

# Written by the encoder once sales recorded the promotions that fired (additive, left out when
# empty): the customer state at every tier counts fires and promo quantities from them.
PROMOTIONS_SALE = dataclasses.replace(
    SALE,
    sale_id="7e2f8a31-9b4c-4d6e-8f70-8b9cad0e1f23",
    seq=1004,
    prev_hash="ef" * 32,
    promotions=(SalePromotion("welcome"), SalePromotion("milk-cap", 2000)),
)

# Written by the encoder once gift certificates travelled with sales (additive, left out when
# empty): a line sold a certificate, a tender was paid from another.
CERTIFICATE_SALE = dataclasses.replace(
    CASH_SALE,
    sale_id="3b6f1c2d-4e5a-4b7c-8d9e-0f1a2b3c4d5e",
    seq=2,
    prev_hash="12" * 32,
    lines=(
        SaleLine(1, "GIFT-1000", 1000, 100000, 100000, certificate_code="GC-123456789012"),
        SaleLine(2, "4600002", 1000, 4500, 4500),
    ),
    payments=(Payment("cash", 74500), Payment("certificate", 30000, code="GC-000000000042")),
    subtotal_minor=104500,
    total_minor=104500,
)

EXPECTED: dict[str, Envelope] = {
    "sale_batch_v1.msgpack": Envelope(
        v=1,
        type="sale_batch",
        sender="367-1",
        sent_at=SENT_AT,
        message=SaleBatch(sales=(SALE, CASH_SALE)),
    ),
    "ack_v1.msgpack": Envelope(
        v=1,
        type="ack",
        sender="store-367",
        sent_at=SENT_AT,
        message=Ack(
            accepted=("3f2b8c1e-5a6d-4f7e-9b0c-1d2e3f4a5b6c",),
            duplicates=("7c9e6679-7425-40de-944b-e07fc1f90ae7",),
            rejected=(
                Rejection(
                    sale_id="9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                    reason="seq 5 of 367-3 already used by another sale",
                ),
            ),
        ),
    ),
    "master_snapshot_v1.msgpack": Envelope(
        v=1,
        type="master_snapshot",
        sender="center",
        sent_at=SENT_AT,
        message=MasterSnapshot(
            version=12,
            tables={
                "products": (
                    {"product_id": "4600001", "name": "Milk 3.2% 1 l", "price_minor": 8990},
                    {
                        "product_id": "2000123",
                        "name": "Cheese",
                        "price_minor": 39900,
                        "weighed": True,
                    },
                ),
                "cards": ({"card_no": "2770000012345", "segment": "gold", "blocked": False},),
                "stores": ({"store_id": "367", "format": "express", "tz": "Europe/Moscow"},),
                "promotions": (
                    {
                        "promotion_id": "accrual-1pct",
                        "version": 3,
                        "doc": {
                            "promotion_id": "accrual-1pct",
                            "kind": "accrual_percent",
                            "status": "active",
                            "priority": 10,
                            "percent": "1",
                            "wallet": "bonus",
                            "stores": ["367", "368"],
                            "valid_from": datetime(2024, 1, 1, tzinfo=UTC),
                        },
                    },
                ),
                "settings": ({"name": "bonus_max_share", "value": "0.5"},),
            },
        ),
    ),
    "master_delta_v1.msgpack": Envelope(
        v=1,
        type="master_delta",
        sender="center",
        sent_at=SENT_AT,
        message=MasterDelta(
            from_version=12,
            to_version=14,
            upserts={
                "products": ({"product_id": "4600003", "name": "Bread", "price_minor": 5590},),
                "settings": ({"name": "bonus_max_share", "value": "0.3"},),
            },
            deletes={"cards": ("2770000099999",), "promotions": ("accrual-1pct",)},
        ),
    ),
    "heartbeat_v1.msgpack": Envelope(
        v=1,
        type="heartbeat",
        sender="367-1",
        sent_at=SENT_AT,
        message=Heartbeat(
            node_id="367-1",
            role="register",
            store_id="367",
            sent_at=SENT_AT,
            last_seq=1001,
            queue_depth=2,
            oldest_queued_at=datetime(2024, 5, 17, 9, 31, 2, tzinfo=UTC),
            master_version=12,
            devices={"printer": "online", "scanner": "offline"},
        ),
    ),
    "sale_batch_v1_coupons.msgpack": Envelope(
        v=1,
        type="sale_batch",
        sender="367-1",
        sent_at=SENT_AT,
        message=SaleBatch(sales=(COUPON_SALE, CASH_SALE)),
    ),
    "sale_batch_v1_context.msgpack": Envelope(
        v=1,
        type="sale_batch",
        sender="367-1",
        sent_at=SENT_AT,
        message=SaleBatch(sales=(CONTEXT_SALE, CASH_SALE)),
    ),
    # Written by hand, not by encode(): unknown keys at every level (a future sender) and
    # every defaulted field left out (a minimal sender). Must decode to the same sale values.
    "sale_batch_v1_unknown_fields.msgpack": Envelope(
        v=1,
        type="sale_batch",
        sender="367-2",
        sent_at=SENT_AT,
        message=SaleBatch(sales=(CASH_SALE,)),
    ),
}

# Pinned: fingerprints of stored sales must never change, or every duplicate check against
# sales stored by an older version would fail.
SALE_FINGERPRINT = "48d9e8e42dc511312541bead6ced5ab7f63adf4b8af73fb5b3a57129850dcae5"
COUPON_SALE_FINGERPRINT = "619f9104f879f839cf2952ae2b08e43c747ce7b906032f4cf7515727f6c2ffc1"
CONTEXT_SALE_FINGERPRINT = "8c72c19a48394e4ff22dfb93e881140b5d9d219baec2fb76fc82cb258925fa2d"
PROMOTIONS_SALE_FINGERPRINT = "d0cbb2269410bfc25d63eac7e106c23bf9187b30ac277e32316417232c3d64a8"
CERTIFICATE_SALE_FINGERPRINT = "4dc8a356865ce471f048c0af0862ce564216b51f6eb0f97b5ead549cb51e670a"
CANONICAL_SALES = {
    "sale_v1_certificates.msgpack",
    "sale_v1.msgpack",
    "sale_v1_coupons.msgpack",
    "sale_v1_context.msgpack",
    "sale_v1_promotions.msgpack",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_fixture_still_decodes(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    assert decode(data) == EXPECTED[name]


def test_every_message_type_has_a_golden_fixture() -> None:
    assert {envelope.type for envelope in EXPECTED.values()} == {
        "sale_batch",
        "ack",
        "master_snapshot",
        "master_delta",
        "heartbeat",
    }
    assert {p.name for p in FIXTURES.iterdir()} == {*EXPECTED, *CANONICAL_SALES}


def test_golden_canonical_sale_decodes_and_keeps_its_fingerprint() -> None:
    data = (FIXTURES / "sale_v1.msgpack").read_bytes()
    sale = decode_sale(data)
    assert sale == SALE
    assert sale_fingerprint(sale) == SALE_FINGERPRINT
    assert encode_sale(sale) == data


def test_golden_canonical_sale_with_coupons_decodes_and_keeps_its_fingerprint() -> None:
    data = (FIXTURES / "sale_v1_coupons.msgpack").read_bytes()
    sale = decode_sale(data)
    assert sale == COUPON_SALE
    assert sale.coupons_redeemed == ("NEXT5-12345678903-0A1B2C3D-20240530",)
    assert sale.coupons_issued == ("NEXT5-98765432106-DEADBEEF-20240531", "PROMO10")
    assert sale_fingerprint(sale) == COUPON_SALE_FINGERPRINT
    assert encode_sale(sale) == data


@pytest.mark.parametrize("name", ["sale_batch_v1.msgpack", "sale_batch_v1_unknown_fields.msgpack"])
def test_fixtures_older_than_coupon_fields_decode_with_empty_codes(name: str) -> None:
    batch = decode((FIXTURES / name).read_bytes()).message
    assert isinstance(batch, SaleBatch)
    assert [(s.coupons_redeemed, s.coupons_issued) for s in batch.sales] == [((), ())] * len(
        batch.sales
    )


def test_old_canonical_sale_bytes_leave_out_the_empty_coupon_fields() -> None:
    data = (FIXTURES / "sale_v1.msgpack").read_bytes()
    sale = decode_sale(data)
    assert (sale.coupons_redeemed, sale.coupons_issued) == ((), ())
    assert b"coupons_" not in encode_sale(sale)
    assert b"coupons_redeemed" in encode_sale(COUPON_SALE)


def test_golden_canonical_sale_with_pricing_context_decodes_and_keeps_its_fingerprint() -> None:
    data = (FIXTURES / "sale_v1_context.msgpack").read_bytes()
    sale = decode_sale(data)
    assert sale == CONTEXT_SALE
    assert sale.segments == ("gold", "students")
    assert sale.personal_offers[1] == SaleOffer("po-cheese", ("2000123", "2000124"), "12.5")
    assert sale_fingerprint(sale) == CONTEXT_SALE_FINGERPRINT
    assert encode_sale(sale) == data
    # The context is inside the canonical bytes, so inside the link the next sale carries.
    stripped = dataclasses.replace(sale, segments=(), personal_offers=())
    assert chain_hash(stripped) != chain_hash(sale)


@pytest.mark.parametrize(
    "name",
    [
        "sale_v1.msgpack",
        "sale_v1_coupons.msgpack",
    ],
)
def test_canonical_sales_older_than_the_context_fields_keep_their_bytes(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    sale = decode_sale(data)
    assert (sale.segments, sale.personal_offers) == ((), ())
    assert encode_sale(sale) == data
    assert b"segments" not in data
    assert b"personal_offers" not in data


@pytest.mark.parametrize(
    "name",
    [
        "sale_batch_v1.msgpack",
        "sale_batch_v1_coupons.msgpack",
        "sale_batch_v1_unknown_fields.msgpack",
    ],
)
def test_batches_older_than_the_context_fields_decode_without_context(name: str) -> None:
    batch = decode((FIXTURES / name).read_bytes()).message
    assert isinstance(batch, SaleBatch)
    assert all(s.segments == () and s.personal_offers == () for s in batch.sales)


def test_context_batch_fixture_is_what_the_encoder_writes_today() -> None:
    data = (FIXTURES / "sale_batch_v1_context.msgpack").read_bytes()
    envelope = EXPECTED["sale_batch_v1_context.msgpack"]
    assert encode(envelope.message, sender=envelope.sender, sent_at=envelope.sent_at) == data


def test_golden_canonical_sale_with_promotions_decodes_and_keeps_its_fingerprint() -> None:
    data = (FIXTURES / "sale_v1_promotions.msgpack").read_bytes()
    sale = decode_sale(data)
    assert sale == PROMOTIONS_SALE
    assert sale.promotions == (SalePromotion("welcome", 0), SalePromotion("milk-cap", 2000))
    assert sale_fingerprint(sale) == PROMOTIONS_SALE_FINGERPRINT
    assert encode_sale(sale) == data


@pytest.mark.parametrize(
    "name", ["sale_v1.msgpack", "sale_v1_coupons.msgpack", "sale_v1_context.msgpack"]
)
def test_canonical_sales_older_than_promotions_keep_their_bytes(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    sale = decode_sale(data)
    assert sale.promotions == ()
    assert encode_sale(sale) == data
    assert b"promotions" not in data


def test_golden_canonical_sale_with_certificates_decodes_and_keeps_its_fingerprint() -> None:
    data = (FIXTURES / "sale_v1_certificates.msgpack").read_bytes()
    sale = decode_sale(data)
    assert sale == CERTIFICATE_SALE
    assert sale.lines[0].certificate_code == "GC-123456789012"
    assert sale.payments[1] == Payment("certificate", 30000, code="GC-000000000042")
    assert sale_fingerprint(sale) == CERTIFICATE_SALE_FINGERPRINT
    assert encode_sale(sale) == data


@pytest.mark.parametrize(
    "name",
    [
        "sale_v1.msgpack",
        "sale_v1_coupons.msgpack",
        "sale_v1_context.msgpack",
        "sale_v1_promotions.msgpack",
    ],
)
def test_canonical_sales_older_than_certificates_keep_their_bytes(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    sale = decode_sale(data)
    assert all(line.certificate_code == "" for line in sale.lines)
    assert all(payment.code == "" for payment in sale.payments)
    assert encode_sale(sale) == data
    assert b"certificate_code" not in data
