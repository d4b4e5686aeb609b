"""Personal offers and issued coupons on card rows of the master feed, on both backends."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from center.errors import Conflict, InvalidRequest, UnknownObject
from center.promotions.coupons import BatchRequest, IssueRequest
from center.promotions.offers import OfferInput, parse_offers
from center.storage import Storage
from sync_protocol import MasterDelta, MasterSnapshot
from tests.center.center_factories import CARD, OTHER_CARD, make_sale, master_tables
from tests.center.test_center_feed import FAST, NOW, Replica
from tests.center.test_center_feed import apply as apply_as_store


def apply(replica: Replica, message: MasterSnapshot | MasterDelta | None) -> int:
    """As a store applies it; every message of these tests must carry a checksum to compare."""
    assert message is not None and message.checksum, "every message of these tests is checksummed"
    return apply_as_store(replica, message)


def sync(storage: Storage, replica: Replica, since: int, now: datetime = NOW) -> int:
    """Poll store 367 until up to date; the final version."""
    for _ in range(50):
        message = storage.feed.master_feed("367", since, now, FAST)
        version = apply(replica, message)
        if isinstance(message, MasterDelta) and message.from_version == message.to_version:
            return version
        since = version
    raise AssertionError("feed never settled")


def delta(storage: Storage, since: int, now: datetime = NOW) -> MasterDelta:
    message = storage.feed.master_feed("367", since, now, FAST)
    assert isinstance(message, MasterDelta)
    return message


@pytest.fixture
def loaded(storage: Storage) -> Storage:
    storage.feed.upsert_master(master_tables())
    storage.sales.ingest([make_sale(1, card_no=CARD, accrue=40)], NOW)
    return storage


def offer(product_id: str = "1000", percent: str = "15", **kw: Any) -> OfferInput:
    return OfferInput(kw.pop("offer_id", product_id), product_id, Decimal(percent), **kw)


# -- storage -------------------------------------------------------------------------------------


def test_offers_are_stored_replaced_and_audited(loaded: Storage) -> None:
    until = NOW + timedelta(days=7)
    done = loaded.offers.set_personal_offers(
        "hh-1", [offer(valid_to=until, source="model"), offer("1001", "12.50")], "ann", NOW
    )
    assert done["changed"] is True
    assert done["offers"] == [
        {
            "offer_id": "1000",
            "product_id": "1000",
            "percent": "15",
            "valid_from": None,
            "valid_to": until.isoformat(),
            "source": "model",
        },
        {
            "offer_id": "1001",
            "product_id": "1001",
            "percent": "12.5",
            "valid_from": None,
            "valid_to": None,
            "source": "manual",
        },
    ]
    assert loaded.offers.personal_offers("hh-1") == {
        "customer_id": "hh-1",
        "offers": done["offers"],
    }
    assert loaded.offers.personal_offers("hh-404") is None
    version = loaded.counts().master_version
    again = loaded.offers.set_personal_offers(
        "hh-1", [offer("1001", "12.5"), offer(valid_to=until, source="model")], "bob", NOW
    )
    assert again["changed"] is False
    assert loaded.counts().master_version == version  # nothing written, nothing bumped
    (change,) = [
        c for c in loaded.audit.audit_history("customer", "hh-1") if c["action"] == "offers"
    ]
    assert change["before"] == {"offers": []} and change["after"] == {"offers": done["offers"]}
    assert change["actor"] == "ann"
    loaded.offers.set_personal_offers("hh-1", [], "bob", NOW)
    assert loaded.offers.personal_offers("hh-1") == {"customer_id": "hh-1", "offers": []}


def test_bad_offers_name_the_field_and_write_nothing(loaded: Storage) -> None:
    with pytest.raises(UnknownObject, match=r"body\.offers\[1\]\.product_id"):
        loaded.offers.set_personal_offers("hh-1", [offer(), offer("9999")], "ann", NOW)
    with pytest.raises(UnknownObject, match="customer_id"):
        loaded.offers.set_personal_offers("hh-404", [offer()], "ann", NOW)
    with pytest.raises(UnknownObject, match="offer_id"):
        loaded.offers.delete_personal_offer("hh-1", "1000", "ann", NOW)
    assert loaded.offers.personal_offers("hh-1") == {"customer_id": "hh-1", "offers": []}
    loaded.feed.upsert_master({"customers": [{"customer_id": "hh-3"}]})
    loaded.customers.merge_customers("hh-1", "hh-3", "ann", NOW)
    with pytest.raises(Conflict, match="merged into hh-1"):
        loaded.offers.set_personal_offers("hh-3", [offer()], "ann", NOW)


def test_parse_offers_names_each_bad_field() -> None:
    (parsed,) = parse_offers(
        {"offers": [{"product_id": "1000", "percent": 7, "valid_from": "2024-03-01T00:00:00Z"}]}
    )
    assert parsed.percent == Decimal(7) and parsed.offer_id == "1000"
    assert parsed.valid_from is not None and parsed.valid_from.utcoffset() == timedelta(0)
    cases = {
        "body.offers": {"offers": {}},
        "body.extra": {"offers": [], "extra": 1},
        "body.offers[0].percent": {"offers": [{"product_id": "1", "percent": "101"}]},
        "body.offers[0].product_id": {"offers": [{"percent": "5"}]},
        "body.offers[0].valid_to": {
            "offers": [{"product_id": "1", "percent": 5, "valid_to": "2024-03-01T00:00:00"}]
        },
        "body.offers[1].offer_id": {
            "offers": [{"product_id": "1", "percent": 5}, {"product_id": "1", "percent": 6}]
        },
        "body.offers[0].source": {"offers": [{"product_id": "1", "percent": 5, "source": "X"}]},
    }
    for field, body in cases.items():
        with pytest.raises(InvalidRequest) as caught:
            parse_offers(body)
        assert caught.value.field == field, (field, caught.value)
    with pytest.raises(InvalidRequest, match="at most two decimals"):
        parse_offers({"offers": [{"product_id": "1", "percent": "1.005"}]})


# -- the feed ------------------------------------------------------------------------------------


def test_an_offer_travels_with_the_card_and_leaves_when_deleted(loaded: Storage) -> None:
    replica: Replica = {}
    version = sync(loaded, replica, 0)
    assert "personal_offers" not in replica["cards"][CARD]
    loaded.offers.set_personal_offers("hh-1", [offer(), offer("1001", "30")], "ann", NOW)
    message = delta(loaded, version)
    assert message.to_version > version
    (card,) = message.upserts["cards"]
    assert card["card_no"] == CARD
    assert [(o["product_id"], o["percent"]) for o in card["personal_offers"]] == [
        ("1000", "15"),
        ("1001", "30"),
    ]
    assert "coupons" not in card  # the customer holds none
    version = apply(replica, message)
    assert sync(loaded, replica, version) == version
    # A snapshot says the same as the deltas.
    snapshot = loaded.feed.master_feed("367", 0, NOW, FAST)
    assert isinstance(snapshot, MasterSnapshot)
    assert dict(snapshot.tables["cards"][0]) == replica["cards"][CARD]

    done = loaded.offers.delete_personal_offer("hh-1", "1000", "bob", NOW)
    assert [o["offer_id"] for o in done["offers"]] == ["1001"]
    message = delta(loaded, version)
    assert [o["offer_id"] for o in message.upserts["cards"][0]["personal_offers"]] == ["1001"]
    version = apply(replica, message)
    loaded.offers.set_personal_offers("hh-1", [], "bob", NOW)
    message = delta(loaded, version)
    assert "personal_offers" not in message.upserts["cards"][0]
    apply(replica, message)


def test_an_expired_offer_leaves_the_card_without_a_write(loaded: Storage) -> None:
    ends = NOW + timedelta(hours=1)
    loaded.offers.set_personal_offers("hh-1", [offer(valid_to=ends), offer("1001")], "ann", NOW)
    replica: Replica = {}
    version = sync(loaded, replica, 0)
    assert len(replica["cards"][CARD]["personal_offers"]) == 2
    later = ends + timedelta(minutes=1)
    message = delta(loaded, version, later)  # the tick finds the expiry and moves the version
    assert message.to_version > version
    assert [o["offer_id"] for o in message.upserts["cards"][0]["personal_offers"]] == ["1001"]
    apply(replica, message)


def _batch(storage: Storage, *, single_use: bool = True, valid_to: date | None = None) -> str:
    request = BatchRequest("base-accrual-3", "spring", "SPR", 3, single_use, None, valid_to)
    return str(storage.coupons.create_coupon_batch(request, "ann", NOW)["batch_id"])


def test_an_issued_coupon_travels_with_the_card_until_redeemed(loaded: Storage) -> None:
    replica: Replica = {}
    version = sync(loaded, replica, 0)
    batch_id = _batch(loaded, valid_to=date(2024, 3, 31))
    issued = loaded.coupons.issue_coupons(
        batch_id, IssueRequest(customer_ids=("hh-1",)), "ann", NOW
    )
    (code,) = [c["code"] for c in issued["codes"]]
    message = delta(loaded, version)
    (card,) = message.upserts["cards"]
    assert card["coupons"] == [
        {
            "code": code,
            "batch_id": batch_id,
            "promotion_id": "base-accrual-3",
            "single_use": True,
            "valid_from": None,
            "valid_to": "2024-03-31",
        }
    ]
    version = apply(replica, message)
    assert sync(loaded, replica, version) == version

    # Redeemed at another store's register: ingest takes no master lock, the feed finds it.
    sale = dataclasses.replace(
        make_sale(1, card_no=None, store_id="406", register_id="406-1"), coupons_redeemed=(code,)
    )
    loaded.sales.ingest([sale], NOW)
    message = delta(loaded, version)
    assert message.to_version > version
    (card,) = message.upserts["cards"]
    assert card["card_no"] == CARD and "coupons" not in card
    version = apply(replica, message)
    assert sync(loaded, replica, version) == version


def test_multi_use_coupons_stay_and_expired_ones_go(loaded: Storage) -> None:
    keep = _batch(loaded, single_use=False)
    ends = _batch(loaded, valid_to=NOW.date())
    for batch_id in (keep, ends):
        loaded.coupons.issue_coupons(batch_id, IssueRequest(card_nos=(CARD,)), "ann", NOW)
    replica: Replica = {}
    version = sync(loaded, replica, 0)
    assert {c["batch_id"] for c in replica["cards"][CARD]["coupons"]} == {keep, ends}
    (kept,) = [c["code"] for c in replica["cards"][CARD]["coupons"] if c["batch_id"] == keep]
    sale = dataclasses.replace(make_sale(2, card_no=CARD), coupons_redeemed=(kept,))
    loaded.sales.ingest([sale], NOW)
    version = sync(loaded, replica, version)
    assert {c["batch_id"] for c in replica["cards"][CARD]["coupons"]} == {keep, ends}
    # The last day of `ends` is over the next (UTC) day.
    version = sync(loaded, replica, version, NOW + timedelta(days=1))
    assert [c["batch_id"] for c in replica["cards"][CARD]["coupons"]] == [keep]
    assert "coupons" not in replica["cards"].get(OTHER_CARD, {})


def test_lookup_answers_the_card_with_its_offers_and_coupons(loaded: Storage) -> None:
    loaded.offers.set_personal_offers("hh-2", [offer("1001", "20")], "ann", NOW)
    batch_id = _batch(loaded)
    loaded.coupons.issue_coupons(batch_id, IssueRequest(customer_ids=("hh-2",)), "ann", NOW)
    row = loaded.feed.lookup_card("367", OTHER_CARD, NOW)
    assert row is not None
    assert [o["percent"] for o in row["personal_offers"]] == ["20"]
    assert [c["batch_id"] for c in row["coupons"]] == [batch_id]


def test_a_merge_sends_the_survivors_cards_with_the_merged_coupons(loaded: Storage) -> None:
    replica: Replica = {}
    version = sync(loaded, replica, 0)
    batch_id = _batch(loaded)
    issued = loaded.coupons.issue_coupons(
        batch_id, IssueRequest(customer_ids=("hh-2",)), "ann", NOW
    )
    (code,) = [c["code"] for c in issued["codes"]]
    version = sync(loaded, replica, version)
    assert "coupons" not in replica["cards"][CARD]
    loaded.customers.merge_customers("hh-1", "hh-2", "ann", NOW)
    # The survivor's own card (the one this store holds) now carries the merged coupon; the
    # delta must say so, or the store's checksum would no longer match the Center's.
    message = delta(loaded, version)
    upserted = {row["card_no"]: row for row in message.upserts["cards"]}
    assert [c["code"] for c in upserted[CARD]["coupons"]] == [code]
    version = apply(replica, message)
    assert sync(loaded, replica, version) == version
