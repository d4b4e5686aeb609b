"""Master-data routes over HTTP on both backends: CSV import and JSON rows, every bad line in
the answer and nothing written, settings checked, the feed publishing the change, permissions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import T0, write_config
from tests.center.staff import StaffApi, staff_token

STORES_CSV = (
    b"store_id,name,format,region,timezone,address\n"
    b"S1,Tverskaya,DISCOUNTER,Moscow,Europe/Moscow,Tverskaya 1\n"
    b"S2,Nevsky,,,Europe/Moscow,\n"
)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


async def _csv(client: TestClient[Any, Any], token: str, kind: str, data: bytes) -> tuple[int, Any]:
    response = await client.post(
        f"/v1/master/{kind}/import",
        data=data,
        params={"file": f"{kind}.csv"},
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    )
    return response.status, await response.json()


async def test_csv_import_lists_then_stores_published_down_the_feed(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    token = staff_token(storage, "administrator", username="ada")
    api = StaffApi(client, token)
    assert (await _csv(client, token, "formats", b"name\nDiscounter\n"))[0] == 200
    assert (await _csv(client, token, "regions", b"name\nMoscow\n"))[0] == 200
    status, report = await _csv(client, token, "stores", STORES_CSV)
    assert status == 200, report
    assert (report["rows"], report["changed"]) == (2, 2)
    version = report["master_version"]
    # Idempotent: the same file again changes nothing.
    status, again = await _csv(client, token, "stores", STORES_CSV)
    assert (again["changed"], again["master_version"]) == (0, version)
    status, listed = await api.call("GET", "/v1/master/stores")
    assert status == 200
    assert [(r["store_id"], r["format"], r["region"]) for r in listed["rows"]] == [
        ("S1", "Discounter", "Moscow"),
        ("S2", "", ""),
    ]
    # The store's replica carries the format, region, time zone and address.
    snapshot = storage.feed.master_feed("S1", 0, T0)
    assert snapshot is not None
    (store,) = snapshot.tables["stores"]  # type: ignore[union-attr]
    assert store == {
        "store_id": "S1",
        "name": "Tverskaya",
        "format": "Discounter",
        "region": "Moscow",
        "timezone": "Europe/Moscow",
        "address": "Tverskaya 1",
    }
    status, audit = await api.call("GET", "/v1/audit", query={"kind": "store", "id": "S1"})
    assert status == 200
    assert [(c["action"], c["actor"]) for c in audit["changes"]] == [("create", "ada")]


async def test_bad_lines_are_all_listed_and_nothing_is_written(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    token = staff_token(storage, "administrator")
    version = storage.feed.master_version()
    bad = STORES_CSV + b"S3,Third,Hyper,Nowhere,Europe/Moskva,\n"
    status, error = await _csv(client, token, "stores", bad)
    assert status == 422, error
    assert error["detail"].startswith("line 2: format: unknown format 'DISCOUNTER'")
    assert [(p["line"], p["field"]) for p in error["problems"]] == [
        (2, "format"),
        (2, "region"),
        (4, "format"),
        (4, "region"),
        (4, "timezone"),
    ]
    assert storage.feed.master_version() == version
    assert storage.master.rows("stores") == []
    # JSON rows name rows[i].field the same way.
    api = StaffApi(client, token)
    status, error = await api.call(
        "POST",
        "/v1/master/products",
        {"rows": [{"product_id": "P1", "name": "Milk", "price_minor": "12.50"}, {"name": "x"}]},
    )
    assert status == 422
    assert [p["where"] for p in error["problems"]] == ["rows[0].price_minor", "rows[1].product_id"]
    assert storage.master.rows("products") == []
    status, error = await api.call("POST", "/v1/master/shelves", {"rows": [{}]})
    assert status == 404 and error["detail"].startswith("kind:")
    response = await client.post(
        "/v1/master/stores/import",
        data=b"{}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status == 415


async def test_json_rows_and_price_changes(client: TestClient[Any, Any], storage: Storage) -> None:
    api = StaffApi(client, staff_token(storage, "administrator"))
    rows = [
        {
            "product_id": "P1",
            "name": "Milk",
            "category_path": "Dairy > Milk",
            "brand": "Farm",
            "price_minor": 8990,
            "cost_minor": 6100,
            "weighed": False,
        }
    ]
    status, report = await api.call("POST", "/v1/master/products", {"rows": rows})
    assert status == 200 and report["changed"] == 1, report
    status, report = await api.call(
        "POST",
        "/v1/master/prices",
        {"rows": [{"product_id": "P1", "price_minor": 7990, "effective_from": "2024-03-01"}]},
    )
    assert status == 200 and report["prices_applied"] == 1, report
    snapshot = storage.feed.master_feed("S-none", 0, T0)
    assert snapshot is None  # an unknown store still gets nothing
    status, listed = await api.call("GET", "/v1/master/products")
    (product,) = listed["rows"]
    assert (product["price_minor"], product["cost_minor"], product["department"]) == (
        7990,
        6100,
        "Dairy",
    )
    status, listed = await api.call("GET", "/v1/master/prices")
    assert [(r["price_minor"], r["applied"]) for r in listed["rows"]] == [(7990, True)]


async def test_settings_are_validated_naming_the_key(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    api = StaffApi(client, staff_token(storage, "administrator"))
    status, done = await api.call(
        "PATCH", "/v1/settings", {"max_discount_share": "0.25", "currency": "RUB"}
    )
    assert status == 200, done
    assert done["settings"]["max_discount_share"] == "0.25"
    assert done["settings"]["currency_exponent"] == "2"
    status, error = await api.call("PATCH", "/v1/settings", {"max_discount_shares": "0.5"})
    assert status == 422 and error["detail"].startswith("max_discount_shares: unknown setting")
    status, error = await api.call(
        "PATCH", "/v1/settings", {"bonus_max_share": 2, "max_accrual_minor": "lots"}
    )
    assert status == 422
    assert [p["field"] for p in error["problems"]] == ["bonus_max_share", "max_accrual_minor"]
    status, shown = await api.call("GET", "/v1/settings")
    assert status == 200 and "bonus_max_share" not in shown["settings"]
    # The stores get the settings in their feed.
    await api.call(
        "POST",
        "/v1/master/stores",
        {"rows": [{"store_id": "S1", "name": "One", "timezone": "UTC"}]},
    )
    snapshot = storage.feed.master_feed("S1", 0, T0)
    assert snapshot is not None
    settings = {s["name"]: s["value"] for s in snapshot.tables["settings"]}  # type: ignore[union-attr]
    assert settings["max_discount_share"] == "0.25"


async def test_who_may_load_and_read(client: TestClient[Any, Any], storage: Storage) -> None:
    analyst = StaffApi(client, staff_token(storage, "data_analyst"))
    assert (await analyst.call("GET", "/v1/master/stores"))[0] == 200
    assert (await analyst.call("GET", "/v1/settings"))[0] == 200
    assert (await analyst.call("PATCH", "/v1/settings", {"currency": "RUB"}))[0] == 403
    marketer = staff_token(storage, "marketer")
    assert (await _csv(client, marketer, "formats", b"name\nDiscounter\n"))[0] == 403
    response = await client.get("/v1/master/stores")
    assert response.status == 401
