"""Promotions constructor routes: roles, field-naming errors, publishing, preview, history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from loyalty_engine import Receipt, ReceiptLine, calculate, load_promotion_set
from tests.center.center_factories import CARD, T0, master_tables, write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_promotions import accrual, threshold


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


@pytest.fixture
def marketer(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "marketer", username="maria"))


@pytest.fixture
def director(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "marketing_director", username="olga"))


async def test_constructor_lifecycle_over_http(
    marketer: StaffApi, director: StaffApi, storage: Storage
) -> None:
    status, created = await marketer.call("POST", "/v1/promotions", threshold())
    assert status == 201, created
    assert (created["promotion_id"], created["status"], created["revision"]) == ("T5", "draft", 1)
    status, updated = await marketer.call(
        "PUT", "/v1/promotions/T5", {**threshold(percent="12"), "promotion_id": "T5"}
    )
    assert (status, updated["revision"]) == (200, 2)
    status, listed = await marketer.call("GET", "/v1/promotions", query={"status": "draft"})
    assert status == 200
    assert [(p["promotion_id"], p["revision"]) for p in listed["promotions"]] == [("T5", 2)]

    before = storage.feed.master_version()
    status, activated = await director.call("POST", "/v1/promotions/T5/activate")
    assert status == 200, activated
    assert activated["master_version"] == before + 1 == storage.feed.master_version()
    assert activated["promotion"]["status"] == "active"
    snapshot = storage.feed.master_snapshot("367", T0)
    assert snapshot is not None
    docs = {row["promotion_id"]: row["doc"] for row in snapshot[1]["promotions"]}
    assert docs["T5"]["steps"][1]["percent"] == "12"

    status, archived = await director.call("POST", "/v1/promotions/T5/archive")
    assert (status, archived["master_version"]) == (200, before + 2)
    snapshot = storage.feed.master_snapshot("367", T0)
    assert snapshot is not None
    assert "T5" not in {row["promotion_id"] for row in snapshot[1]["promotions"]}

    status, history = await marketer.call("GET", "/v1/promotions/T5/history")
    assert status == 200
    assert [(c["action"], c["actor"]) for c in history["changes"]] == [
        ("create", "maria"),
        ("update", "maria"),
        ("activate", "olga"),
        ("archive", "olga"),
    ]
    assert history["changes"][1]["changes"] == [
        {"field": "steps[1].percent", "old": "10", "new": "12"}
    ]
    assert all(c["at"] == T0.isoformat() for c in history["changes"])
    status, found = await marketer.call("GET", "/v1/promotions/T5")
    assert (status, found["status"], len(found["revisions"])) == (200, "archived", 2)


async def test_errors_name_the_field(marketer: StaffApi) -> None:
    bad = threshold()
    bad["steps"][1]["percent"] = "150"
    status, body = await marketer.call("POST", "/v1/promotions", bad)
    assert status == 422
    assert body["error"] == "invalid"
    assert body["detail"].startswith("steps[1].percent: ")
    status, body = await marketer.call("POST", "/v1/promotions/validate", bad)
    assert status == 200
    assert body["valid"] is False
    assert body["problems"][0]["field"] == "steps[1].percent"
    status, body = await marketer.call("POST", "/v1/promotions/validate", threshold())
    assert (status, body["valid"], body["problems"]) == (200, True, [])
    status, body = await marketer.call("PUT", "/v1/promotions/T5", threshold("OTHER"))
    assert (status, body["detail"].split(":")[0]) == (422, "promotion_id")
    status, body = await marketer.call("GET", "/v1/promotions/nope")
    assert (status, body["detail"].split(":")[0]) == (404, "promotion_id")
    status, body = await marketer.call("GET", "/v1/promotions/nope/history")
    assert status == 404
    status, body = await marketer.call("GET", "/v1/promotions", query={"status": "live"})
    assert (status, body["detail"].split(":")[0]) == (400, "status")
    await marketer.call("POST", "/v1/promotions", threshold())
    status, body = await marketer.call("POST", "/v1/promotions", threshold())
    assert (status, body["error"]) == (409, "conflict")
    status, body = await marketer.call(
        "POST", "/v1/promotions/T5/preview", {"receipt": {"lines": [{"product_id": "1000"}]}}
    )
    assert (status, body["detail"].split(":")[0]) == (
        422,
        "body.receipt.lines[0].unit_price_minor",
    )


async def test_preview_numbers_equal_the_engine(marketer: StaffApi, director: StaffApi) -> None:
    await marketer.call("POST", "/v1/promotions", accrual())
    await director.call("POST", "/v1/promotions/A3/activate")
    await marketer.call("POST", "/v1/promotions", threshold())
    sample = {
        "receipt": {
            "lines": [
                {"product_id": "1000", "qty_milli": 3000, "unit_price_minor": 250},
                {"product_id": "1001", "qty_milli": 1000, "unit_price_minor": 600},
            ],
            "card_no": CARD,
        },
        "with_live": True,
    }
    status, got = await marketer.call("POST", "/v1/promotions/T5/preview", sample)
    assert status == 200, got
    receipt = Receipt(
        lines=(
            ReceiptLine(1, "1000", 3000, 250, 750, department="DAIRY"),
            ReceiptLine(2, "1001", 1000, 600, 600, department="PASTRY"),
        ),
        now=T0,
        card_no=CARD,
        receipt_id="preview",
    )
    docs = [{**threshold(), "status": "active"}, {**accrual(), "status": "active"}]
    # The master data also holds an invalid imported row; the live set skips nothing else.
    expected = calculate(
        receipt, load_promotion_set(docs, version=got["calculation"]["promo_version"])
    )
    assert got["calculation"] == expected.to_dict()
    assert got["promotion"]["discount_minor"] == 135
    assert [a["rule_id"] for a in got["calculation"]["accrual"]] == ["A3"]
    assert any(line.startswith("T5") for line in got["calculation"]["explanation"])


async def test_roles_and_tokens_are_checked(
    client: TestClient[Any, Any], marketer: StaffApi, director: StaffApi, storage: Storage
) -> None:
    response = await client.get("/v1/promotions")
    assert response.status == 401
    response = await client.post("/v1/promotions", json=threshold())
    assert response.status == 401
    analyst = StaffApi(client, staff_token(storage, "data_analyst"))
    status, _ = await analyst.call("GET", "/v1/promotions")
    assert status == 200
    status, body = await analyst.call("POST", "/v1/promotions", threshold())
    assert (status, body["error"]) == (403, "forbidden")
    status, _ = await marketer.call("POST", "/v1/promotions", threshold())
    assert status == 201
    # A marketer drafts; publishing is promotions.publish (marketing director).
    status, body = await director.call("PUT", "/v1/promotions/T5", threshold(percent="12"))
    assert status == 403
    call_center = StaffApi(client, staff_token(storage, "call_center"))
    status, _ = await call_center.call("POST", "/v1/promotions/T5/activate")
    assert status == 403
    assert storage.promotions.get_promotion("T5")["status"] == "draft"  # type: ignore[index]


async def test_validate_refuses_a_mistyped_setting_and_warns_on_formats(
    marketer: StaffApi, storage: Storage
) -> None:
    tables = master_tables()
    tables["stores"][0]["format"] = "Discounter"
    storage.feed.upsert_master(tables)
    doc = {**threshold(), "place": {"formats": ["discounter", "hypermarket"]}}
    status, body = await marketer.call("POST", "/v1/promotions/validate", doc)
    assert (status, body["valid"]) == (200, True), body
    # "discounter" is store 367's "Discounter"; no store is a hypermarket.
    assert body["warnings"] == [
        "place.formats: no store has store format 'hypermarket': the rule can never fire in "
        "such a store"
    ]
    tables["settings"] = [{"name": "max_discount_shares", "value": "0.2"}]
    storage.feed.upsert_master(tables)
    status, body = await marketer.call("POST", "/v1/promotions/validate", doc)
    assert (status, body["valid"]) == (200, False)
    assert [p["field"] for p in body["problems"]] == ["settings.max_discount_shares"]
    status, body = await marketer.call("POST", "/v1/promotions", doc)
    assert status == 422
    assert body["detail"].startswith("settings.max_discount_shares: unknown setting")


async def test_a_format_outside_the_chains_managed_list_is_an_error(
    marketer: StaffApi, storage: Storage
) -> None:
    doc = {**threshold(), "place": {"formats": ["DISCOUNTER", "Hypermarket"]}}
    # No managed list yet: any format is accepted (with a warning, no store has it).
    status, body = await marketer.call("POST", "/v1/promotions/validate", doc)
    assert (status, body["valid"]) == (200, True), body
    storage.master.load_csv("formats", b"name\nDiscounter\n", actor="t", now=T0)
    status, body = await marketer.call("POST", "/v1/promotions/validate", doc)
    assert (status, body["valid"]) == (200, False), body
    # "DISCOUNTER" is the list's "Discounter" (case-insensitive); "Hypermarket" is not listed.
    assert [p["field"] for p in body["problems"]] == ["place.formats"]
    assert "'hypermarket'" in body["problems"][0]["message"]
