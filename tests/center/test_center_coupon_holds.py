"""Single-use codes at the Center, both backends: holds, register-issued codes, policies."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from center.errors import Conflict, InvalidRequest, MalformedRequest, UnknownObject
from center.promotions.coupons import BatchRequest, IssueRequest
from center.promotions.coupons_holds import (
    CommitRequest,
    CouponTaken,
    HoldRequest,
    merge_policies,
    parse_batch_update,
    parse_hold,
)
from center.storage import Storage
from loyalty_engine import default_settings, make_code
from tests.center.center_factories import CARD, T0, make_sale, master_tables

KEY = default_settings()["coupon_key"]
NEXT5 = make_code(KEY, "NEXT5", "0123456789")


def _paper(storage: Storage, *, count: int = 2, offline: str | None = None) -> list[str]:
    storage.feed.upsert_master(master_tables())
    batch = storage.coupons.create_coupon_batch(
        BatchRequest("base-accrual-3", "paper", "PAPER", count, True, None, None, offline=offline),
        "m",
        T0,
    )
    return [row[0] for row in storage.coupons.coupon_export_page(batch["batch_id"], "", 10)]


def _hold(store: str, hold_id: str, *codes: str, ttl_s: int = 300) -> HoldRequest:
    return HoldRequest(store, hold_id, codes, ttl_s)


def test_one_store_holds_a_code_the_other_is_refused_naming_it(storage: Storage) -> None:
    code, other = _paper(storage)
    held = storage.coupon_holds.hold(_hold("367", "h1", code), T0)
    assert held["codes"] == [{"code": code, "held": True, "origin": "head_office"}]
    with pytest.raises(CouponTaken, match=f"^codes: {code} is held by store 367 for another"):
        storage.coupon_holds.hold(_hold("406", "h2", code), T0 + timedelta(seconds=1))
    # All or none: the free code asked with it is not held either.
    with pytest.raises(CouponTaken):
        storage.coupon_holds.hold(_hold("406", "h2", other, code), T0)
    assert storage.coupon_holds.hold_of(other) is None
    # The same hold again renews; dropping a code from the hold frees it.
    storage.coupon_holds.hold(_hold("367", "h1", code, other), T0 + timedelta(seconds=2))
    storage.coupon_holds.hold(_hold("367", "h1", other), T0 + timedelta(seconds=3))
    storage.coupon_holds.hold(_hold("406", "h2", code), T0 + timedelta(seconds=4))
    # Another store cannot take over a hold by naming its id.
    with pytest.raises(CouponTaken):
        storage.coupon_holds.hold(_hold("406", "h1", other), T0 + timedelta(seconds=5))
    # The same store takes over its own stale hold (its node checked its own holds first).
    storage.coupon_holds.hold(_hold("367", "h9", other), T0 + timedelta(seconds=6))
    assert storage.coupon_holds.release("h1", "367")["released"] == []
    assert storage.coupon_holds.release("h9", "367")["released"] == [other]


def test_release_and_expiry_free_the_code(storage: Storage) -> None:
    (code,) = _paper(storage, count=1)
    storage.coupon_holds.hold(_hold("367", "h1", code, ttl_s=60), T0)
    assert storage.coupon_holds.release("h1", "406")["released"] == []  # not its hold
    assert storage.coupon_holds.release("h1", "367")["released"] == [code]
    assert storage.coupon_holds.release("h1", "367")["released"] == []  # idempotent
    storage.coupon_holds.hold(_hold("406", "h2", code, ttl_s=60), T0)
    with pytest.raises(CouponTaken):
        storage.coupon_holds.hold(_hold("367", "h3", code), T0 + timedelta(seconds=59))
    storage.coupon_holds.hold(_hold("367", "h3", code), T0 + timedelta(seconds=60))


def test_commit_takes_the_redeemed_code_until_its_sale_arrives(storage: Storage) -> None:
    code, unused = _paper(storage)
    sale = replace(make_sale(1, card_no=CARD), coupons_redeemed=(code,))
    storage.coupon_holds.hold(_hold("367", "h1", code, unused), T0)
    done = storage.coupon_holds.commit(
        "h1", CommitRequest("367", sale.sale_id, (code,)), T0 + timedelta(seconds=5)
    )
    assert done == {"hold_id": "h1", "committed": [code], "lost": []}
    # The code the sale did not redeem is free at once; the redeemed one is taken for good,
    # even long after the hold's TTL, until the sale comes in.
    storage.coupon_holds.hold(_hold("406", "h2", unused), T0 + timedelta(seconds=6))
    with pytest.raises(CouponTaken, match=f"redeemed by sale {sale.sale_id} at store 367"):
        storage.coupon_holds.hold(_hold("406", "h3", code), T0 + timedelta(days=1))
    storage.sales.ingest([sale], T0 + timedelta(days=1))
    assert storage.coupon_holds.hold_of(code) is None  # settled: the redemption refuses it now
    with pytest.raises(CouponTaken, match=f"{code} was already redeemed by sale {sale.sale_id}"):
        storage.coupon_holds.hold(_hold("406", "h3", code), T0 + timedelta(days=1))


def test_a_commit_after_its_sale_and_one_that_redeemed_nothing(storage: Storage) -> None:
    code, other = _paper(storage)
    sale = replace(make_sale(1), coupons_redeemed=(code,))
    storage.coupon_holds.hold(_hold("367", "h1", code), T0)
    storage.sales.ingest([sale], T0)  # the sale overtook the commit
    storage.coupon_holds.commit("h1", CommitRequest("367", sale.sale_id, (code,)), T0)
    assert storage.coupon_holds.hold_of(code) is None
    # Delivered again (the node timed out waiting for the first answer): nothing is lost.
    again = storage.coupon_holds.commit("h1", CommitRequest("367", sale.sale_id, (code,)), T0)
    assert again == {"hold_id": "h1", "committed": [code], "lost": []}
    # A register of the release before commits every held code: its sale frees what it did
    # not redeem.
    empty = make_sale(2)
    storage.coupon_holds.hold(_hold("367", "h2", other), T0)
    storage.coupon_holds.commit("h2", CommitRequest("367", empty.sale_id, (other,)), T0)
    assert storage.coupon_holds.hold_of(other) == {
        "store_id": "367",
        "state": "committed",
        "sale_id": empty.sale_id,
        "expires_at": T0.isoformat(),
    }
    storage.sales.ingest([empty], T0)
    storage.coupon_holds.hold(_hold("406", "h3", other), T0)


def test_register_issued_codes_are_known_with_the_sale_that_issued_them(
    storage: Storage,
) -> None:
    storage.feed.upsert_master(
        master_tables() | {"settings": [{"name": "coupon_key", "value": KEY}]}
    )
    issuing = replace(make_sale(1, card_no=CARD), coupons_issued=(NEXT5, "PROMO10"))
    storage.sales.ingest([issuing], T0)
    found = storage.coupons.coupon(NEXT5)
    assert found is not None
    assert (found["batch_id"], found["origin"], found["offline"]) == (
        "register:NEXT5",
        "register",
        "issuing_store",
    )
    assert (found["issued_store_id"], found["issued_sale_id"]) == ("367", issuing.sale_id)
    assert (found["customer_id"], found["single_use"], found["status"]) == ("hh-1", True, "issued")
    assert storage.coupons.coupon("PROMO10") is None  # not signed: no register issued it
    # Redeemed in two stores (one of them offline): the report names customer, stores, sales.
    first = replace(make_sale(2, card_no=CARD), coupons_redeemed=(NEXT5,))
    second = replace(
        make_sale(3, register_id="406-1", store_id="406"), coupons_redeemed=(NEXT5.lower(),)
    )
    storage.sales.ingest([first, second], T0)
    (report,) = storage.coupons.coupon_double_redemptions()
    assert report["code"] == NEXT5 and report["origin"] == "register"
    assert report["customer_id"] == "hh-1" and report["issued_store_id"] == "367"
    assert report["stores"] == ["367", "406"]
    assert [
        (s["sale_id"], s["store_id"], s["register_id"], s["card_no"]) for s in report["sales"]
    ] == [
        (first.sale_id, "367", "367-1", CARD),
        (second.sale_id, "406", "406-1", None),
    ]
    assert report["sales"][0]["customer_id"] == "hh-1"
    # The batch of register codes issues nothing to customers.
    with pytest.raises(Conflict, match="holds the codes registers issued"):
        storage.coupons.issue_coupons(
            "register:NEXT5", IssueRequest(customer_ids=("hh-1",)), "m", T0
        )


def test_a_redemption_before_its_issuing_sale_creates_the_code(storage: Storage) -> None:
    storage.feed.upsert_master(
        master_tables() | {"settings": [{"name": "coupon_key", "value": KEY}]}
    )
    redeeming = replace(
        make_sale(5, store_id="406", register_id="406-1"), coupons_redeemed=(NEXT5,)
    )
    storage.sales.ingest([redeeming], T0)
    found = storage.coupons.coupon(NEXT5)
    assert found is not None and found["redemptions"] == 1 and found["status"] == "redeemed"
    assert found["issued_sale_id"] is None
    issuing = replace(make_sale(1, card_no=CARD), coupons_issued=(NEXT5,))
    storage.sales.ingest([issuing], T0)
    found = storage.coupons.coupon(NEXT5)
    assert found is not None and found["issued_sale_id"] == issuing.sale_id
    assert found["status"] == "redeemed" and found["redemptions"] == 1
    with pytest.raises(CouponTaken, match=f"redeemed by sale {redeeming.sale_id} at store 406"):
        storage.coupon_holds.hold(_hold("367", "h1", NEXT5), T0)


def test_offline_policies_per_prefix_and_their_changes(storage: Storage) -> None:
    _paper(storage, count=1)
    _paper(storage, count=1, offline="any_store")
    storage.coupons.create_coupon_batch(
        BatchRequest("base-accrual-3", "flyer", "FLYER", 1, True, None, None, offline="any_store"),
        "m",
        T0,
    )
    assert storage.coupon_holds.policies() == [
        {"prefix": "FLYER", "origin": "head_office", "offline": "any_store"},
        # Two PAPER batches cannot be told apart offline: the stricter one wins.
        {"prefix": "PAPER", "origin": "head_office", "offline": "never"},
    ]
    flyer = storage.db.execute(
        "SELECT batch_id FROM coupon_batches WHERE prefix = 'FLYER'"
    ).fetchone()[0]
    done = storage.coupon_holds.set_offline(flyer, "never", "ann", T0)
    assert done == {"batch_id": flyer, "origin": "head_office", "offline": "never"}
    with pytest.raises(InvalidRequest, match=r"^body\.offline: a head_office batch takes one of"):
        storage.coupon_holds.set_offline(flyer, "issuing_store", "ann", T0)
    with pytest.raises(UnknownObject):
        storage.coupon_holds.set_offline("cb-none", "never", "ann", T0)
    audit = storage.db.execute(
        "SELECT action FROM audit WHERE kind = 'coupon_batch' AND object_id = ?", (flyer,)
    ).fetchall()
    assert [a[0] for a in audit] == ["create", "offline"]


def test_bad_hold_bodies_name_the_field() -> None:
    for body, field in (
        ([], "body"),
        ({"store_id": "367", "hold_id": "h", "codes": ["A"], "x": 1}, "body.x"),
        ({"hold_id": "h", "codes": []}, "body.store_id"),
        ({"store_id": "367", "hold_id": "", "codes": []}, "body.hold_id"),
        ({"store_id": "367", "hold_id": "h", "codes": ["A"] * 21}, "body.codes"),
        ({"store_id": "367", "hold_id": "h", "codes": [5]}, "body.codes[0]"),
        ({"store_id": "367", "hold_id": "h", "codes": [], "ttl_s": 0}, "body.ttl_s"),
        ({"store_id": "367", "hold_id": "h", "codes": [], "ttl_s": True}, "body.ttl_s"),
    ):
        with pytest.raises((InvalidRequest, MalformedRequest)) as caught:
            parse_hold(body)
        assert caught.value.field == field, body
    with pytest.raises(InvalidRequest, match=r"^body\.offline"):
        parse_batch_update({"offline": "sometimes"})


def test_merge_policies_keeps_the_strictest() -> None:
    rows = [("A", "register", "any_store"), ("A", "register", "issuing_store"), ("B", "x", "?")]
    assert merge_policies(rows) == [
        {"prefix": "A", "origin": "register", "offline": "issuing_store"},
        {"prefix": "B", "origin": "x", "offline": "never"},
    ]
