"""Segments: rule validation, dynamic membership on a hand-made data set, static uploads."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from center.errors import Conflict, InvalidRequest, UnknownObject
from center.promotions.segments import (
    DEFAULT_WINDOW_DAYS,
    MembersInput,
    Rule,
    SegmentInput,
    Window,
    parse_members,
    parse_rule,
    parse_segment,
)
from center.storage import Storage
from sync_protocol import Sale
from tests.center.center_factories import T0, make_sale

NOW = T0 + timedelta(days=100)
_seq = iter(range(1, 10_000))


def sale(
    card_no: str, days_ago: float, amount: int, product_id: str, store_id: str = "367"
) -> Sale:
    base = make_sale(next(_seq), card_no=card_no, amounts=(amount,), store_id=store_id)
    closed = NOW - timedelta(days=days_ago)
    line = replace(base.lines[0], product_id=product_id)
    return replace(base, lines=(line,), closed_at=closed, opened_at=closed - timedelta(minutes=1))


def master() -> dict[str, list[dict[str, Any]]]:
    return {
        "products": [
            {"product_id": "milk-1", "name": "Milk", "category": "MILK"},
            {"product_id": "bread-1", "name": "Bread", "category": "BREAD"},
        ],
        "stores": [{"store_id": "367"}, {"store_id": "406"}],
        "customers": [
            {"customer_id": "c1", "attributes": {"city": "Kazan", "gender": "F"}},
            {"customer_id": "c2", "attributes": {"city": "Kazan"}},
            {"customer_id": "c3", "attributes": {"city": "Moscow"}},
            {"customer_id": "c4", "attributes": {"city": "Kazan"}},
        ],
        "cards": [
            {"card_no": "1001", "customer_id": "c1"},
            {"card_no": "1012", "customer_id": "c1"},
            {"card_no": "1002", "customer_id": "c2"},
            {"card_no": "1003", "customer_id": "c3"},
            {"card_no": "1004", "customer_id": "c4"},
        ],
    }


@pytest.fixture
def shop(storage: Storage) -> Storage:
    """c1: two cards, recent milk and older bread; c2: three small bread receipts;
    c3: one big recent milk receipt in store 406; c4: never bought."""
    storage.feed.upsert_master(master())
    sales = [
        sale("1001", 5, 500, "milk-1"),
        sale("1012", 40, 300, "bread-1", store_id="406"),
        sale("1001", 200, 1000, "bread-1"),
        sale("1002", 20, 100, "bread-1"),
        sale("1002", 25, 100, "bread-1"),
        sale("1002", 29, 100, "bread-1"),
        sale("1003", 2, 5000, "milk-1", store_id="406"),
    ]
    ack = storage.sales.ingest(sales, NOW)
    assert len(ack.accepted) == len(sales), ack
    return storage


def members(storage: Storage, rule: dict[str, Any], at: datetime = NOW) -> set[str]:
    sql, params = storage.segments.membership_query(parse_rule(rule), at)
    return {r[0] for r in storage.db.execute(sql, params).fetchall()}


# -- pure ----------------------------------------------------------------------------------------


def test_parse_rule_reads_every_part() -> None:
    rule = parse_rule(
        {
            "attributes": {"city": ["Kazan", "Moscow"], "gender": "F"},
            "recency_days": 30,
            "frequency": {"min_receipts": 3},
            "monetary": {"min_minor": 100, "max_minor": 900, "window_days": 60},
            "categories": {"any": ["MILK"], "window_days": 7},
            "stores": {"any": ["367", "367"]},
        }
    )
    assert rule == Rule(
        attributes=(("city", ("Kazan", "Moscow")), ("gender", ("F",))),
        recency_days=30,
        frequency=Window(DEFAULT_WINDOW_DAYS, minimum=3),
        monetary=Window(60, minimum=100, maximum=900),
        categories=Window(7, values=("MILK",)),
        stores=Window(DEFAULT_WINDOW_DAYS, values=("367",)),
    )
    assert parse_rule(rule.to_doc()) == rule


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({}, "rule"),
        ({"recency": 3}, "rule.recency"),
        ({"recency_days": 0}, "rule.recency_days"),
        ({"frequency": {"window_days": 30}}, "rule.frequency.min_receipts"),
        ({"frequency": {"min_receipts": 2, "days": 3}}, "rule.frequency.days"),
        ({"monetary": {"window_days": 30}}, "rule.monetary"),
        ({"monetary": {"min_minor": 5, "max_minor": 4}}, "rule.monetary.max_minor"),
        ({"categories": {"any": []}}, "rule.categories.any"),
        ({"stores": {"any": ["367", 5]}}, r"rule.stores.any\[1\]"),
        ({"attributes": {"bad name": "x"}}, "rule.attributes.bad name"),
        ({"attributes": {"city": 5}}, "rule.attributes.city"),
    ],
)
def test_parse_rule_names_the_bad_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest, match=f"^{field}: "):
        parse_rule(doc)


def test_parse_segment_and_members() -> None:
    static = parse_segment({"name": "Mail", "kind": "static", "card_nos": ["1001", "1001"]})
    assert static == SegmentInput(None, "Mail", "static", card_nos=("1001",))
    dynamic = parse_segment({"segment_id": "vip", "name": "VIP", "kind": "dynamic",
                             "rule": {"recency_days": 3}})  # fmt: skip
    assert dynamic.rule == Rule(recency_days=3)
    for body, field in [
        ({"name": "X", "kind": "smart"}, "body.kind"),
        ({"name": "X", "kind": "dynamic"}, "body.rule"),
        ({"name": "X", "kind": "static", "rule": {"recency_days": 3}}, "body.rule"),
        ({"name": "X", "kind": "dynamic", "rule": {"recency_days": 3}, "card_nos": []},
         "body.card_nos"),
        ({"name": "", "kind": "static"}, "body.name"),
    ]:  # fmt: skip
        with pytest.raises(InvalidRequest, match=f"^{field}: "):
            parse_segment(body)
    assert parse_members({"customer_ids": ["c1"], "mode": "add"}) == MembersInput(
        ("c1",), (), "add"
    )
    with pytest.raises(InvalidRequest, match=r"^body\.mode: "):
        parse_members({"mode": "merge"})


# -- membership ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"recency_days": 10}, {"c1", "c3"}),
        ({"frequency": {"min_receipts": 3, "window_days": 60}}, {"c2"}),
        ({"frequency": {"min_receipts": 2, "window_days": 60}}, {"c1", "c2"}),
        ({"monetary": {"min_minor": 700, "window_days": 90}}, {"c1", "c3"}),
        ({"monetary": {"min_minor": 700, "max_minor": 1000, "window_days": 90}}, {"c1"}),
        ({"monetary": {"max_minor": 300, "window_days": 90}}, {"c2"}),
        ({"categories": {"any": ["MILK"]}}, {"c1", "c3"}),
        ({"categories": {"any": ["BREAD"], "window_days": 30}}, {"c2"}),
        ({"categories": {"any": ["BREAD"], "window_days": 365}}, {"c1", "c2"}),
        ({"stores": {"any": ["406"]}}, {"c1", "c3"}),
        ({"attributes": {"city": "Kazan"}}, {"c1", "c2", "c4"}),
        ({"attributes": {"city": "Kazan", "gender": "F"}}, {"c1"}),
        ({"attributes": {"city": ["Kazan", "Moscow"]}, "recency_days": 10}, {"c1", "c3"}),
        ({"attributes": {"city": "Kazan"}, "categories": {"any": ["MILK"]}}, {"c1"}),
        ({"recency_days": 1}, set()),
    ],
)
def test_dynamic_membership(shop: Storage, rule: dict[str, Any], expected: set[str]) -> None:
    assert members(shop, rule) == expected


def test_recalculation_history_and_master_version(shop: Storage) -> None:
    rule = parse_rule({"recency_days": 10})
    view = shop.segments.create_segment(
        SegmentInput("recent", "Recent", "dynamic", rule=rule), "m", NOW
    )
    assert view["members"] == 2 and view["kind"] == "dynamic"
    assert shop.segments.segment_members("recent") == ["c1", "c3"]
    assert shop.segments.customer_segments(["c1", "c2"]) == {"c1": ["recent"]}
    later = NOW + timedelta(days=1)
    assert shop.sales.ingest([sale("1002", -1, 100, "bread-1")], later).accepted
    version = shop.feed.master_version()
    done = shop.segments.recalculate_segment("recent", "m", later)
    assert (done["members"], done["added"], done["removed"]) == (3, 1, 0)
    assert shop.feed.master_version() == version + 1
    card_version = shop.db.execute(  # type: ignore[attr-defined]
        "SELECT version FROM cards WHERE card_no = '1002'"
    ).fetchone()[0]
    assert int(card_version) == version + 1
    same = shop.segments.recalculate_segment("recent", "m", later + timedelta(minutes=1))
    assert (same["added"], same["removed"]) == (0, 0)
    assert shop.feed.master_version() == version + 1
    week = NOW + timedelta(days=7)
    done = shop.segments.recalculate_segments("scheduler", week)
    assert [(d["segment_id"], d["members"], d["removed"]) for d in done] == [("recent", 2, 1)]
    assert shop.segments.segment_members("recent") == ["c2", "c3"]
    found = shop.segments.segment("recent")
    assert found is not None
    assert [h["members"] for h in found["history"]] == [2, 3, 3, 2]
    assert found["history"][-1]["at"] == week.isoformat()
    assert found["recalculated_at"] == week.isoformat()
    actions = shop.db.execute(  # type: ignore[attr-defined]
        "SELECT action, actor, after FROM audit WHERE kind = 'segment' AND object_id = 'recent' "
        "ORDER BY audit_id"
    ).fetchall()
    assert [a[0] for a in actions] == [
        "create",
        "members",
        "recalculate",
        "recalculate",
        "recalculate",
    ]
    assert actions[-1][1] == "scheduler" and json.loads(actions[-1][2])["removed_ids"] == ["c1"]


def test_static_segment_upload(shop: Storage) -> None:
    view = shop.segments.create_segment(
        SegmentInput(None, "Mail", "static", customer_ids=("c4",), card_nos=("1012",)), "m", NOW
    )
    segment_id = view["segment_id"]
    assert segment_id.startswith("seg-") and view["members"] == 2
    assert shop.segments.segment_members(segment_id) == ["c1", "c4"]
    with pytest.raises(InvalidRequest, match=r"^body\.card_nos: 2 unknown card\(s\): 9009, 9008;"):
        shop.segments.set_segment_members(
            segment_id, MembersInput(card_nos=("1002", "9009", "9008")), "m", NOW
        )
    with pytest.raises(InvalidRequest, match=r"^body\.customer_ids: 1 unknown customer\(s\): c9"):
        shop.segments.set_segment_members(segment_id, MembersInput(customer_ids=("c9",)), "m", NOW)
    assert shop.segments.segment_members(segment_id) == ["c1", "c4"]
    added = shop.segments.set_segment_members(
        segment_id, MembersInput(card_nos=("1002",), mode="add"), "m", NOW
    )
    assert added["members"] == 3 and added["added"] == 1
    replaced = shop.segments.set_segment_members(
        segment_id, MembersInput(customer_ids=("c3",)), "m", NOW
    )
    assert (replaced["members"], replaced["removed"]) == (1, 3)
    assert shop.segments.segment_members(segment_id) == ["c3"]
    with pytest.raises(Conflict, match="is static"):
        shop.segments.recalculate_segment(segment_id, "m", NOW)
    with pytest.raises(UnknownObject):
        shop.segments.recalculate_segment("nope", "m", NOW)
    with pytest.raises(Conflict, match="already exists"):
        shop.segments.create_segment(SegmentInput(segment_id, "Again", "static"), "m", NOW)
    assert [s["segment_id"] for s in shop.segments.list_segments()] == [segment_id]
    assert shop.segments.segment("nope") is None and shop.segments.segment_members("nope") is None


def test_dynamic_segment_refuses_uploads(shop: Storage) -> None:
    rule = parse_rule({"stores": {"any": ["406"]}})
    shop.segments.create_segment(SegmentInput("s406", "Store 406", "dynamic", rule=rule), "m", NOW)
    with pytest.raises(Conflict, match="is dynamic"):
        shop.segments.set_segment_members("s406", MembersInput(customer_ids=("c1",)), "m", NOW)


# -- churn risk ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"churn_risk": {"min": 0.5}}, {"c1", "c3"}),
        ({"churn_risk": {"min": 0.5, "max": 0.7}}, {"c1"}),
        ({"churn_risk": {"max": 0.5}}, {"c2"}),
        ({"churn_risk": {"min": 0, "max": 1}}, {"c1", "c2", "c3"}),
        ({"churn_risk": {"min": 0.5}, "categories": {"any": ["MILK"]}}, {"c1", "c3"}),
        ({"churn_risk": {"min": 0.5}, "stores": {"any": ["406"]}, "recency_days": 3}, {"c3"}),
    ],
)
def test_churn_risk_condition_on_the_models_scores(
    shop: Storage, rule: dict[str, Any], expected: set[str]
) -> None:
    # c4 was never scored: no risk, so no churn condition ever matches them
    shop.models.replace_churn_risk([("c1", 0.6), ("c2", 0.3), ("c3", 0.91)], 1, NOW)
    assert members(shop, rule) == expected


def test_churn_risk_rule_round_trips_and_names_bad_fields() -> None:
    rule = parse_rule({"churn_risk": {"min": 0.5}})
    assert parse_rule(rule.to_doc()) == rule and rule.to_doc() == {"churn_risk": {"min": 0.5}}
    for doc, field in (
        ({"churn_risk": {}}, "rule.churn_risk"),
        ({"churn_risk": {"min": 1.5}}, "rule.churn_risk.min"),
        ({"churn_risk": {"min": True}}, "rule.churn_risk.min"),
        ({"churn_risk": {"max": "0.5"}}, "rule.churn_risk.max"),
        ({"churn_risk": {"min": 0.8, "max": 0.2}}, "rule.churn_risk.max"),
        ({"churn_risk": {"min": 0.5, "above": 1}}, "rule.churn_risk.above"),
        ({"churn_risk": 0.5}, "rule.churn_risk"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            parse_rule(doc)
        assert caught.value.field == field, doc
