"""Promotions constructor: drafts, revisions, publishing to the master table, history, preview."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from center.errors import Conflict, InvalidRequest, MalformedRequest, UnknownObject
from center.promotions.constructor import (
    Sample,
    SampleLine,
    check_doc,
    diff_docs,
    parse_sample,
    prepare_doc,
    preview,
    published_doc,
    sample_receipt,
)
from center.promotions.validation import Known
from center.storage import Storage
from loyalty_engine import Receipt, ReceiptLine, calculate, default_settings, load_promotion_set
from sync_protocol import MasterDelta
from tests.center.center_factories import CARD, T0, master_tables

T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)


def threshold(promotion_id: str = "T5", percent: str = "10") -> dict[str, Any]:
    return {
        "promotion_id": promotion_id,
        "kind": "threshold_discount",
        "title": "Threshold",
        "priority": 10,
        "steps": [
            {"min_total_minor": 500, "percent": "5"},
            {"min_total_minor": 1000, "percent": percent},
        ],
    }


def accrual(promotion_id: str = "A3") -> dict[str, Any]:
    return {
        "promotion_id": promotion_id,
        "kind": "accrual_percent",
        "priority": 100,
        "requires_card": True,
        "percent": "3",
    }


def live_ids(storage: Storage) -> dict[str, dict[str, Any]]:
    found = storage.feed.master_snapshot("367", T2)
    assert found is not None
    return {row["promotion_id"]: row for row in found[1]["promotions"]}


# -- pure ----------------------------------------------------------------------------------------


def test_check_doc_names_every_bad_field() -> None:
    doc = {**threshold(), "priority": "high"}
    doc["steps"][1]["percent"] = "150"
    problems, _ = check_doc(doc)
    fields = {p.field for p in problems}
    assert {"steps[1].percent", "priority"} <= fields
    assert any("150" in p.message for p in problems if p.field == "steps[1].percent")
    assert check_doc(threshold()) == ([], [])


def test_check_doc_refuses_unknown_fields_and_settings() -> None:
    # At the Center an unknown field is an error naming it (it used to be a warning, and a
    # typo went live); only an older register's parsing tolerates newer fields.
    problems, _ = check_doc({**threshold(), "colour": "red"})
    assert [(p.field, p.message) for p in problems] == [
        ("colour", "unknown field for a threshold_discount rule")
    ]
    problems, _ = check_doc(threshold(), {"max_discount_shares": "0.2"})
    assert [p.field for p in problems] == ["settings.max_discount_shares"]
    assert problems[0].message.startswith("unknown setting (known: ")
    # Other components' settings are dotted and none of the engine's business.
    assert check_doc(threshold(), {"offline.max_spend_per_card_minor": "500"}) == ([], [])
    # So are the Center's own settings (offline allowances, leases, the console's language):
    # a chain that set them can still write rules.
    own = {"offline_overdraft_ceiling_minor": "100", "console_language": "ru", "timezone": "UTC"}
    assert check_doc(threshold(), own) == ([], [])
    tolerant = load_promotion_set(
        [{**published_doc(threshold()), "colour": "red"}], version=1, settings={"x": "1"}
    )
    assert tolerant.warnings == ("promotion 'T5': unknown field 'colour' ignored",)


def test_check_doc_against_managed_lists_and_rules_that_can_never_fire() -> None:
    doc = {**threshold(), "place": {"formats": ["Discounter"], "regions": ["North"]}}
    managed = Known(formats=frozenset({"discounter", "hyper"}), regions=frozenset({"south"}))
    problems, _ = check_doc(doc, known=managed)
    # "Discounter" is the managed "discounter" (case-insensitive); "North" is not a region.
    assert [(p.field, p.message) for p in problems] == [
        ("place.regions", "unknown region 'north' (managed list: south)")
    ]
    problems, warnings = check_doc(doc, known=Known(store_formats=frozenset({"hyper"})))
    assert problems == []
    assert warnings == [
        "place.formats: no store has store format 'discounter': the rule can never fire in "
        "such a store"
    ]
    tiered = {**threshold(), "tiers": ["gold"]}
    assert check_doc(tiered)[1] == ["tiers: no tiers are defined: this rule can never fire"]
    exchange = {
        "promotion_id": "X",
        "kind": "wallet_exchange",
        "wallet": "stickers",
        "value_minor": 100,
    }
    assert check_doc(exchange)[1] == [
        "wallet: no live rule accrues 'stickers': nobody can have any to spend, "
        "the rule can never fire"
    ]
    assert check_doc(exchange, known=Known(accrued_wallets=frozenset({"stickers"}))) == ([], [])
    funded = {**threshold(), "funding": {"by": "supplier:acme", "budget_minor": 10_000}}
    assert check_doc(funded)[1] == [
        "funding.budget_minor: no budget state is kept for this campaign: a budget-funded "
        "rule does not fire without it"
    ]


def test_bonus_amounts_in_major_units_and_the_old_minor_field() -> None:
    coupon = {"promotion_id": "C", "kind": "coupon", "codes": ["GIFT"], "bonus": "200.00"}
    assert check_doc(coupon) == ([], [])
    old = {"promotion_id": "C", "kind": "coupon", "codes": ["GIFT"], "bonus_points": 20000}
    # Stored before: still read (no migration needed), with a hint for the next edit.
    assert check_doc(old)[0] == []
    assert check_doc(old)[1] == [
        "bonus_points: minor units (20000 = 200.00); the constructor takes bonus: '200.00'"
    ]
    both = [
        load_promotion_set([published_doc(d)], version=1).promotions[0].terms for d in (coupon, old)
    ]
    assert [getattr(t, "bonus_points", None) for t in both] == [20000, 20000]
    problems, _ = check_doc({**coupon, "bonus": "200.001"})
    assert [(p.field, p.message) for p in problems] == [
        ("bonus", "expected at most 2 decimal places, got '200.001'")
    ]
    welcome = {
        "promotion_id": "W",
        "kind": "counter_reward",
        "counter": "purchases",
        "at": 1,
        "bonus": "100.00",
    }
    (promotion,) = load_promotion_set([published_doc(welcome)], version=1).promotions
    assert getattr(promotion.terms, "points", None) == 10000


def test_prepare_doc_owns_the_id_and_status() -> None:
    assert prepare_doc({**threshold(), "status": "draft"}) == threshold()
    generated = prepare_doc({"kind": "threshold_discount"})
    assert generated["promotion_id"].startswith("promo-")
    with pytest.raises(InvalidRequest, match=r"^status: "):
        prepare_doc({**threshold(), "status": "active"})
    with pytest.raises(InvalidRequest, match=r"^promotion_id: expected 'X'"):
        prepare_doc(threshold(), "X")
    with pytest.raises(InvalidRequest, match=r"^promotion_id: "):
        prepare_doc({**threshold(), "promotion_id": "bad id"})
    with pytest.raises(MalformedRequest, match=r"^body: "):
        prepare_doc([1])


def test_diff_names_changed_added_and_removed_fields() -> None:
    before = {**threshold(), "messages": {"slip": "a"}}
    after = {**threshold(percent="12"), "requires_card": True}
    assert diff_docs(before, after) == [
        {"field": "messages", "old": {"slip": "a"}, "new": None},
        {"field": "requires_card", "old": None, "new": True},
        {"field": "steps[1].percent", "old": "10", "new": "12"},
    ]
    assert diff_docs({"a": [1, 2]}, {"a": [1]}) == [{"field": "a[1]", "old": 2, "new": None}]
    assert diff_docs({"a": 1}, {"a": True}) == [{"field": "a", "old": 1, "new": True}]
    assert diff_docs(threshold(), threshold()) == []


def test_parse_sample_names_the_bad_field() -> None:
    good = {
        "receipt": {"lines": [{"product_id": "1000", "qty_milli": 2000, "unit_price_minor": 250}]}
    }
    sample = parse_sample(good)
    assert sample.lines == (SampleLine("1000", 2000, 250),)
    bad = {"receipt": {"lines": [{"product_id": "1000", "qty_milli": -1, "unit_price_minor": 1}]}}
    with pytest.raises(InvalidRequest, match=r"^body\.receipt\.lines\[0\]\.qty_milli: "):
        parse_sample(bad)
    missing = {"receipt": {"lines": [{"product_id": "1000"}]}}
    with pytest.raises(InvalidRequest, match=r"^body\.receipt\.lines\[0\]\.unit_price_minor: "):
        parse_sample(missing)
    with pytest.raises(InvalidRequest, match=r"^body\.receipt\.now: "):
        parse_sample({"receipt": {**good["receipt"], "now": "2024-03-01T12:00:00"}})
    with pytest.raises(InvalidRequest, match=r"^body\.with_live: "):
        parse_sample({**good, "with_live": "yes"})


def test_preview_equals_the_engines_own_calculation() -> None:
    settings = default_settings()
    sample = Sample(
        lines=(SampleLine("1000", 3000, 250), SampleLine("1001", 1000, 600)),
        card_no=CARD,
        with_live=True,
    )
    products = {"1000": {"department": "DAIRY"}}
    live = [("A3", published_doc(accrual())), ("T5", published_doc(threshold(percent="50")))]
    got = preview(
        threshold(), sample, products=products, settings=settings, live=live, version=7, now=T0
    )
    expected = calculate(
        Receipt(
            lines=(
                ReceiptLine(1, "1000", 3000, 250, 750, department="DAIRY"),
                ReceiptLine(2, "1001", 1000, 600, 600),
            ),
            now=T0,
            card_no=CARD,
            receipt_id="preview",
        ),
        load_promotion_set(
            [published_doc(threshold()), published_doc(accrual())], version=7, settings=settings
        ),
    )
    assert got["calculation"] == expected.to_dict()
    # The draft replaced its own live version (50 %): 10 % of 1 350.
    assert got["promotion"] == {"discount_minor": 135, "accrual": 0}
    assert got["calculation"]["accrual"][0]["rule_id"] == "A3"
    alone = preview(
        threshold(),
        Sample(lines=sample.lines, card_no=CARD),
        products=products,
        settings=settings,
        live=live,
        now=T0,
    )
    assert alone["calculation"]["accrual"] == []
    assert alone["calculation"]["discount_minor"] == 135


def test_sample_attributes_win_over_master_products() -> None:
    sample = Sample(lines=(SampleLine("1000", 1000, 100, department="DELI"),))
    receipt = sample_receipt(
        sample, products={"1000": {"department": "DAIRY", "brand": "B"}}, store_format="", now=T0
    )
    assert (receipt.lines[0].department, receipt.lines[0].brand) == ("DELI", "B")


# -- storage -------------------------------------------------------------------------------------


def test_create_and_update_make_revisions(storage: Storage) -> None:
    created = storage.promotions.create_promotion(threshold(), "maria", T0)
    assert (created["status"], created["revision"], created["live_revision"]) == ("draft", 1, None)
    assert created["doc"] == threshold()
    assert created["created_by"] == "maria"
    updated = storage.promotions.update_promotion("T5", threshold(percent="12"), "ivan", T1)
    assert updated["revision"] == 2
    assert updated["doc"]["steps"][1]["percent"] == "12"
    assert [(r["revision"], r["author"], r["status"]) for r in updated["revisions"]] == [
        (1, "maria", "draft"),
        (2, "ivan", "draft"),
    ]
    again = storage.promotions.update_promotion("T5", threshold(percent="12"), "ivan", T2)
    assert again["revision"] == 2
    assert storage.promotions.get_promotion("nope") is None
    with pytest.raises(Conflict, match=r"^promotion_id: "):
        storage.promotions.create_promotion(threshold(), "maria", T0)
    with pytest.raises(UnknownObject):
        storage.promotions.update_promotion("nope", threshold("nope"), "maria", T0)


def test_invalid_documents_are_refused_naming_the_field(storage: Storage) -> None:
    bad = threshold()
    bad["steps"][1]["percent"] = "150"
    with pytest.raises(InvalidRequest) as caught:
        storage.promotions.create_promotion(bad, "maria", T0)
    assert caught.value.field == "steps[1].percent"
    assert str(caught.value).startswith("steps[1].percent: ")
    assert storage.promotions.get_promotion("T5") is None
    storage.promotions.create_promotion(threshold(), "maria", T0)
    with pytest.raises(InvalidRequest, match=r"^steps\[1\]\.percent: "):
        storage.promotions.update_promotion("T5", bad, "maria", T1)
    assert storage.promotions.get_promotion("T5")["revision"] == 1  # type: ignore[index]


def test_activate_publishes_to_the_stores_with_a_new_master_version(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    storage.promotions.create_promotion(threshold(), "maria", T0)
    before = storage.feed.master_version()
    assert "T5" not in live_ids(storage)
    version = storage.promotions.activate_promotion("T5", "director", T1)
    assert version == before + 1 == storage.feed.master_version()
    row = live_ids(storage)["T5"]
    assert row["version"] == version
    assert row["doc"] == {**threshold(), "status": "active"}
    assert storage.promotions.activate_promotion("T5", "director", T1) == version  # already live
    delta = storage.feed.master_feed("367", before, T1)
    assert isinstance(delta, MasterDelta)
    assert [r["promotion_id"] for r in delta.upserts["promotions"]] == ["T5"]
    assert storage.feed.master_version() == version
    found = storage.promotions.get_promotion("T5")
    assert found is not None
    assert (found["status"], found["live_revision"], found["published_version"]) == (
        "active",
        1,
        version,
    )
    # A new revision stays a draft; the stores keep the live one until it is activated.
    storage.promotions.update_promotion("T5", threshold(percent="12"), "maria", T1)
    assert live_ids(storage)["T5"]["doc"]["steps"][1]["percent"] == "10"
    second = storage.promotions.activate_promotion("T5", "director", T2)
    assert second == version + 1
    assert live_ids(storage)["T5"]["doc"]["steps"][1]["percent"] == "12"
    found = storage.promotions.get_promotion("T5")
    assert found is not None
    assert [
        (r["status"], r["published_version"], r["archived_version"]) for r in found["revisions"]
    ] == [
        ("archived", version, second),
        ("active", second, None),
    ]
    assert [p["promotion_id"] for p in storage.promotions.list_promotions("active")] == ["T5"]
    assert storage.promotions.list_promotions("draft") == []


def test_archive_removes_the_promotion_from_the_stores(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    storage.promotions.create_promotion(threshold(), "maria", T0)
    published = storage.promotions.activate_promotion("T5", "director", T1)
    archived = storage.promotions.archive_promotion("T5", "director", T2)
    assert archived == published + 1 == storage.feed.master_version()
    assert "T5" not in live_ids(storage)
    # A store that saw the activation gets the removal as a delta tombstone.
    delta = storage.feed.master_feed("367", published, T2)
    assert isinstance(delta, MasterDelta)
    assert (delta.from_version, delta.to_version) == (published, archived)
    assert tuple(delta.deletes.get("promotions", ())) == ("T5",)
    assert storage.promotions.archive_promotion("T5", "director", T2) == archived  # idempotent
    found = storage.promotions.get_promotion("T5")
    assert found is not None
    assert (found["status"], found["live_revision"]) == ("archived", None)
    assert found["revisions"][0]["archived_version"] == archived
    with pytest.raises(Conflict, match="archived"):
        storage.promotions.update_promotion("T5", threshold(percent="12"), "maria", T2)
    with pytest.raises(Conflict, match="archived"):
        storage.promotions.activate_promotion("T5", "director", T2)
    # A draft never published is archived without touching master data.
    storage.promotions.create_promotion(accrual(), "maria", T0)
    assert storage.promotions.archive_promotion("A3", "director", T2) == archived
    assert storage.feed.master_version() == archived
    assert [p["promotion_id"] for p in storage.promotions.list_promotions("archived")] == [
        "A3",
        "T5",
    ]


def test_history_shows_who_when_and_what_changed(storage: Storage) -> None:
    storage.promotions.create_promotion(threshold(), "maria", T0)
    storage.promotions.update_promotion("T5", threshold(percent="12"), "ivan", T1)
    version = storage.promotions.activate_promotion("T5", "director", T2)
    storage.promotions.archive_promotion("T5", "director", T2)
    history = storage.promotions.promotion_history("T5")
    assert history is not None
    assert [(h["action"], h["actor"], h["at"]) for h in history] == [
        ("create", "maria", T0.isoformat()),
        ("update", "ivan", T1.isoformat()),
        ("activate", "director", T2.isoformat()),
        ("archive", "director", T2.isoformat()),
    ]
    assert {c["field"] for c in history[0]["changes"]} >= {"promotion_id", "steps", "status"}
    assert history[1]["changes"] == [{"field": "steps[1].percent", "old": "10", "new": "12"}]
    assert history[2]["changes"] == [{"field": "status", "old": "draft", "new": "active"}]
    assert history[2]["master_version"] == version
    assert history[3]["changes"] == [{"field": "status", "old": "active", "new": "archived"}]
    assert storage.promotions.promotion_history("nope") is None


def test_promotion_set_is_the_set_live_at_a_master_version(storage: Storage) -> None:
    storage.feed.upsert_master(
        {"promotions": [{"promotion_id": "imported", "doc": published_doc(accrual("imported"))}]}
    )
    imported_at = storage.feed.master_version()
    storage.promotions.create_promotion(threshold(), "maria", T0)
    v1 = storage.promotions.activate_promotion("T5", "director", T0)
    storage.promotions.update_promotion("T5", threshold(percent="12"), "maria", T1)
    v2 = storage.promotions.activate_promotion("T5", "director", T1)
    v3 = storage.promotions.archive_promotion("T5", "director", T2)

    def percent_at(version: int) -> str | None:
        found = dict(storage.promotions.promotion_set(version))
        return found["T5"]["steps"][1]["percent"] if "T5" in found else None

    assert [percent_at(v) for v in (imported_at, v1, v2, v3)] == [None, "10", "12", None]
    assert [pid for pid, _ in storage.promotions.promotion_set(v1)] == ["T5", "imported"]
    assert dict(storage.promotions.promotion_set(v1))["T5"]["status"] == "active"
    assert storage.promotions.promotion_set(imported_at - 1) == []
    assert storage.promotions.has_promotion_revisions()


def test_creating_a_live_imported_promotion_takes_it_over(storage: Storage) -> None:
    storage.feed.upsert_master(
        {"promotions": [{"promotion_id": "T5", "doc": published_doc(threshold())}]}
    )
    imported_at = storage.feed.master_version()
    assert not storage.promotions.has_promotion_revisions()
    created = storage.promotions.create_promotion(threshold(percent="12"), "maria", T0)
    assert (created["status"], created["revision"], created["live_revision"]) == ("active", 2, 1)
    assert created["revisions"][0]["published_version"] == imported_at
    assert created["revisions"][0]["author"] == "master-import"
    assert live_ids_any(storage)["T5"]["steps"][1]["percent"] == "10"
    version = storage.promotions.activate_promotion("T5", "director", T1)
    assert dict(storage.promotions.promotion_set(imported_at))["T5"]["steps"][1]["percent"] == "10"
    assert dict(storage.promotions.promotion_set(version))["T5"]["steps"][1]["percent"] == "12"


def live_ids_any(storage: Storage) -> dict[str, dict[str, Any]]:
    return {
        pid: doc for pid, doc in storage.promotions.promotion_set(storage.feed.master_version())
    }


def test_pricing_context_reads_products_store_settings_and_live_set(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    storage.promotions.create_promotion(threshold(), "maria", T0)
    version = storage.promotions.activate_promotion("T5", "director", T0)
    context = storage.promotions.promotion_pricing_context(["1000", "unknown"], "367")
    assert context["products"] == {
        "1000": {"department": "DAIRY", "category": "", "brand": "", "type": ""}
    }
    assert context["settings"] == {"bonus_max_share": "0.5"}
    assert context["version"] == version
    assert [pid for pid, _ in context["live"]] == ["T5", "base-accrual-3"]
    assert storage.promotions.promotion_settings() == {"bonus_max_share": "0.5"}
