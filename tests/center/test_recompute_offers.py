"""Recompute checks that the personal offers a sale claims were the customer's, on both
backends: the offers held at closed_at are rebuilt from the current rows and the audit trail."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from center.promotions.offers import OfferInput
from center.promotions.recompute import OFFER_LAG_TOLERANCE, recompute_sale
from center.storage import Storage
from sync_protocol import Sale, SaleOffer
from tests.center.center_factories import master_tables
from tests.center.test_recompute import NOW, PRODUCTS, PROMOTIONS, register_sale

CUSTOMER = "hh-1"
HELD = SaleOffer("po-p1", ("P1",), "12.5")
AT = NOW.isoformat()


def offer(
    offer_id: str = "po-p1", product_id: str = "P1", percent: str = "12.5", **kw: Any
) -> OfferInput:
    return OfferInput(offer_id, product_id, Decimal(percent), **kw)


@pytest.fixture
def loaded(storage: Storage) -> Storage:
    """Card C1 of customer hh-1 (the card register_sale uses) and products P1, P2."""
    tables = master_tables()
    tables["products"] += [
        {"product_id": "P1", "name": "One", "department": "GROCERY", "price_minor": 100},
        {"product_id": "P2", "name": "Two", "department": "DELI", "price_minor": 100},
    ]
    tables["cards"] += [{"card_no": "1001", "customer_id": CUSTOMER}]
    storage.feed.upsert_master(tables)
    return storage


def judge(storage: Storage, *claimed: SaleOffer) -> tuple[str, ...]:
    """The differences recompute reports for a sale at NOW on C1 claiming these offers."""
    sale = register_sale((6000, 5000), offers=claimed)
    held = storage.offers.personal_offers_at("1001", NOW, since=NOW - OFFER_LAG_TOLERANCE)
    assert held is not None
    return recompute_sale(
        sale, PROMOTIONS, products=PRODUCTS, held_offers=held["offers"]
    ).differences


def test_a_held_offer_has_no_difference(loaded: Storage) -> None:
    loaded.offers.set_personal_offers(CUSTOMER, [offer()], "maria", NOW - timedelta(days=2))
    # Changed again later (another offer added): the first one was still held at the sale.
    loaded.offers.set_personal_offers(
        CUSTOMER, [offer(), offer("po-p2", "P2", "5")], "maria", NOW + timedelta(days=1)
    )
    assert judge(loaded, HELD) == ()
    held = loaded.offers.personal_offers_at("1001", NOW)
    assert held is not None
    assert (held["customer_ids"], [o["offer_id"] for o in held["offers"]]) == (
        [CUSTOMER],
        ["po-p1"],
    )


def test_an_invented_offer_is_reported(loaded: Storage) -> None:
    loaded.offers.set_personal_offers(CUSTOMER, [offer()], "maria", NOW - timedelta(days=2))
    invented = SaleOffer("po-90", ("P2",), "90")
    assert judge(loaded, HELD, invented) == (
        f"personal_offers[po-90]: not held by the customer at {AT}",
    )


def test_a_wrong_percent_or_product_is_reported(loaded: Storage) -> None:
    loaded.offers.set_personal_offers(CUSTOMER, [offer()], "maria", NOW - timedelta(days=2))
    assert judge(loaded, SaleOffer("po-p1", ("P1",), "50")) == (
        f"personal_offers[po-p1]: sale 50% on P1, held 12.5% on P1 at {AT}",
    )
    assert judge(loaded, SaleOffer("po-p1", ("P2",), "12.5")) == (
        f"personal_offers[po-p1]: sale 12.5% on P2, held 12.5% on P1 at {AT}",
    )


def test_an_offer_removed_a_day_before_is_reported(loaded: Storage) -> None:
    loaded.offers.set_personal_offers(CUSTOMER, [offer()], "maria", NOW - timedelta(days=3))
    loaded.offers.delete_personal_offer(CUSTOMER, "po-p1", "maria", NOW - timedelta(days=1))
    assert judge(loaded, HELD) == (f"personal_offers[po-p1]: not held by the customer at {AT}",)


def test_an_offer_removed_within_the_replica_lag_still_counts(loaded: Storage) -> None:
    loaded.offers.set_personal_offers(CUSTOMER, [offer()], "maria", NOW - timedelta(days=3))
    loaded.offers.set_personal_offers(CUSTOMER, [], "maria", NOW - OFFER_LAG_TOLERANCE / 2)
    assert judge(loaded, HELD) == ()
    # Without the tolerance it was not held at closed_at.
    held = loaded.offers.personal_offers_at("1001", NOW)
    assert held is not None and held["offers"] == []


def test_an_offer_set_after_the_sale_is_reported(loaded: Storage) -> None:
    loaded.offers.set_personal_offers(CUSTOMER, [offer()], "maria", NOW + timedelta(minutes=1))
    assert judge(loaded, HELD) == (f"personal_offers[po-p1]: not held by the customer at {AT}",)


def test_an_offer_held_but_expired_is_reported(loaded: Storage) -> None:
    ended = offer(valid_to=NOW - timedelta(days=1))
    loaded.offers.set_personal_offers(CUSTOMER, [ended], "maria", NOW - timedelta(days=2))
    assert judge(loaded, HELD) == (f"personal_offers[po-p1]: held but not valid at {AT}",)


def test_a_long_history_is_read_back_page_by_page(
    loaded: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("center.promotions.offers_store._AUDIT_PAGE", 3)
    # Held at the sale, then 8 later changes: the walk back crosses several pages.
    loaded.offers.set_personal_offers(CUSTOMER, [offer()], "maria", NOW - timedelta(days=2))
    for n in range(8):
        loaded.offers.set_personal_offers(
            CUSTOMER, [offer(percent=str(20 + n))], "maria", NOW + timedelta(hours=n + 1)
        )
    assert judge(loaded, HELD) == ()
    assert judge(loaded, SaleOffer("po-p1", ("P1",), "27")) == (
        f"personal_offers[po-p1]: sale 27% on P1, held 12.5% on P1 at {AT}",
    )


def test_a_merged_customer_is_the_one_the_card_had_at_the_sale(loaded: Storage) -> None:
    """A card moved by a merge after the sale is judged by the offers of its old customer."""
    loaded.offers.set_personal_offers(CUSTOMER, [offer()], "maria", NOW - timedelta(days=2))
    loaded.offers.set_personal_offers("hh-2", [offer("po-other", "P2", "30")], "maria", NOW)
    loaded.customers.merge_customers("hh-2", CUSTOMER, "maria", NOW + timedelta(days=1))
    assert judge(loaded, HELD) == ()
    assert judge(loaded, SaleOffer("po-other", ("P2",), "30")) == (
        f"personal_offers[po-other]: not held by the customer at {AT}",
    )
    later = loaded.offers.personal_offers_at("1001", NOW + timedelta(days=2))
    assert later is not None and later["customer_ids"] == ["hh-2"]


def test_an_unknown_card_is_none_and_a_sale_without_offers_is_not_checked(
    loaded: Storage,
) -> None:
    assert loaded.offers.personal_offers_at("NO-SUCH-CARD", NOW) is None
    sale: Sale = replace(register_sale((6000, 5000)), personal_offers=())
    assert recompute_sale(sale, PROMOTIONS, products=PRODUCTS, held_offers=[]).ok
