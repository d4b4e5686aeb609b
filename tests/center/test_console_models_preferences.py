"""Segments, associations per segment and a customer's preferences through the HTTP app: trained
by POST /v1/models/train from the analytics store, stored with a version, read back by the
routes and shown on the console pages (signed-in people, their permissions, ru/en)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.people import add_person
from center.config import load_config
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_analytics import CARDS, D0, _master, _sales

PASSWORD = "correct horse battery"


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = SqliteStorage(tmp_path / "prefs.db")
    storage.migrate()
    for name, role in (("ann", "data_analyst"), ("olga", "call_center")):
        add_person(storage, name, role, PASSWORD, "test", D0)
    master = _master()
    for i, customer in enumerate(master["customers"]):
        customer["attributes"] = {"birth_date": f"{1950 + 5 * i}-05-01"}
    storage.feed.upsert_master(master)
    storage.sales.ingest(_sales(400), D0)
    return storage


@pytest.fixture
async def client(tmp_path: Path, db: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    extra = '\n[analytics]\nfeed_interval_s = 1\ndatabase = "prefs_test"\n'
    app = create_app(load_config(write_config(tmp_path, extra=extra)), db, clock=lambda: D0)
    browser = {"Accept-Language": "en", "Accept": "text/html,*/*;q=0.8"}
    async with TestClient(TestServer(app), headers=browser) as client:
        yield client
    db.close()


async def _sign_in(client: TestClient[Any, Any], username: str) -> None:
    page = await client.get("/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
    assert token
    form = {"csrf_token": token.group(1), "username": username, "password": PASSWORD}
    response = await client.post("/sign-in", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()


async def _trained(client: TestClient[Any, Any], db: Storage) -> StaffApi:
    manager = StaffApi(client, staff_token(db, "loyalty_manager"))
    analyst = StaffApi(client, staff_token(db, "data_analyst", username="analyst-2"))
    for _ in range(240):  # the feeder job runs every second
        code, fed = await analyst.call("GET", "/v1/analytics/status")
        if code == 200 and fed["rows"]["sales"] == 400 and fed["pending_sales"] == 0:
            break
        await asyncio.sleep(0.25)
    code, done = await manager.call("POST", "/v1/models/train", body={})
    assert code == 200, done
    assert done["preferences_scored"] == len(CARDS)
    return analyst


async def test_trained_preferences_are_served_and_shown(
    client: TestClient[Any, Any], db: Storage
) -> None:
    analyst = await _trained(client, db)
    code, listed = await analyst.call("GET", "/v1/models")
    version = next(v for v in listed["versions"] if v["kind"] == "preferences")
    assert version["version"] == 1 and version["metrics"]["customers"] == len(CARDS)
    assert version["metrics"]["associations_s_max_segment"] < 5

    # every sale of hh-0 is counted to find its preferred store
    sales = [s for s in _sales(400) if s.card_no == CARDS[0]]
    per_store = {store: sum(1 for s in sales if s.store_id == store) for store in ("367", "406")}
    code, mine = await analyst.call("GET", "/v1/models/preferences/hh-0")
    assert code == 200, mine
    best = max(per_store, key=lambda k: per_store[k])
    if per_store["367"] != per_store["406"]:
        assert mine["preferred_store"] == best
    assert mine["store_share"] == pytest.approx(
        per_store[mine["preferred_store"]] / len(sales), abs=1e-4
    )
    assert mine["segment"].split("/")[0] == "boomers"  # born 1950
    assert mine["model_version"] == 1 and mine["categories"]
    assert {c["item"] for c in mine["categories"]} <= {"DAIRY", "PASTRY", "PRODUCE", "MEAT"}
    assert db.models.customers_preferring(mine["preferred_store"]) >= {"hh-0"}

    code, segments = await analyst.call("GET", "/v1/models/segments")
    assert code == 200 and sum(s["customers"] for s in segments["segments"]) == len(CARDS)
    with_pairs = [s for s in segments["segments"] if s["pairs"]]
    assert with_pairs
    name = with_pairs[0]["segment"]
    code, pairs = await analyst.call(
        "GET", "/v1/models/associations", query={"segment": name, "limit": "3"}
    )
    assert code == 200 and 1 <= len(pairs["associations"]) <= 3
    assert all(p["segment"] == name for p in pairs["associations"])
    lifts = [p["lift"] for p in pairs["associations"]]
    assert lifts == sorted(lifts, reverse=True)

    for path, query, field in (
        ("/v1/models/associations", {"limit": "0"}, "limit"),
        ("/v1/models/associations", {"segment": "x" * 70}, "segment"),
    ):
        code, error = await analyst.call("GET", path, query=query)
        assert code == 400 and field in str(error), error
    code, _ = await analyst.call("GET", "/v1/models/preferences/nobody")
    assert code == 404

    # the pages: the analyst sees the segments and a segment's pairs
    await _sign_in(client, "ann")
    html = await (await client.get("/console/models")).text()
    assert 'id="segments"' in html and name in html
    page = await client.get("/console/models/associations", params={"segment": name})
    text = await page.text()
    assert page.status == 200 and len(re.findall(r'class="pair"', text)) >= 1
    bad = await (await client.get("/console/models/associations?limit=x")).text()
    assert 'id="limit-error"' in bad
    shown = await (await client.get("/console/models/preferences?customer_id=hh-0")).text()
    assert f'id="preferred-store">{mine["preferred_store"]}<' in shown
    assert 'id="categories"' in shown and mine["categories"][0]["item"] in shown
    ru = await client.get(
        "/console/models/preferences?customer_id=hh-0", headers={"Accept-Language": "ru"}
    )
    assert "Любимый магазин" in await ru.text()


async def test_the_call_center_reads_preferences_but_not_segments(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _trained(client, db)
    await _sign_in(client, "olga")
    page = await client.get("/console/models/preferences?customer_id=hh-1")
    assert page.status == 200 and 'id="preferred-store"' in await page.text()
    missing = await client.get("/console/models/preferences?customer_id=nobody")
    assert 'id="not-scored"' in await missing.text()
    assert (await client.get("/console/models/associations")).status == 403


def _pref(customer: str, store: str, segment: str) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "preferred_store": store,
        "store_share": 0.75,
        "segment": segment,
        "categories": [],
        "brands": [],
    }


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"preferred_store": ["367"]}, {"hh-0", "hh-2"}),
        ({"preferred_store": ["406", "367"]}, {"hh-0", "hh-1", "hh-2"}),
        ({"model_segment": ["gen_x/high"]}, {"hh-1", "hh-2"}),
        ({"preferred_store": ["367"], "model_segment": ["gen_x/high"]}, {"hh-2"}),
        ({"preferred_store": ["999"]}, set()),
    ],
)
def test_segment_conditions_on_preferred_store_and_model_segment(
    storage: Storage, rule: dict[str, Any], expected: set[str]
) -> None:
    from center.promotions.segments import parse_rule

    storage.feed.upsert_master(_master())
    storage.models.replace_preferences(
        [
            _pref("hh-0", "367", "boomers/low"),
            _pref("hh-1", "406", "gen_x/high"),
            _pref("hh-2", "367", "gen_x/high"),
        ],
        [],
        1,
        D0,
    )
    parsed = parse_rule(rule)
    assert parse_rule(parsed.to_doc()) == parsed and parsed.to_doc() == rule
    sql, params = storage.segments.membership_query(parsed, D0)
    assert {r[0] for r in storage.db.execute(sql, params).fetchall()} == expected  # type: ignore[attr-defined]


def test_preference_conditions_name_bad_fields() -> None:
    from center.errors import InvalidRequest
    from center.promotions.segments import parse_rule

    for doc, field in (
        ({"preferred_store": "367"}, "rule.preferred_store"),
        ({"preferred_store": []}, "rule.preferred_store"),
        ({"model_segment": [""]}, "rule.model_segment[0]"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            parse_rule(doc)
        assert caught.value.field == field, (doc, caught.value)
