"""Personal-offer routes over HTTP on both backends: set, read, delete, audit, who may call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import T0, master_tables, write_config
from tests.center.staff import StaffApi, staff_token

OFFERS = "/v1/customers/hh-1/offers"
BODY = {
    "offers": [
        {
            "product_id": "1000",
            "percent": "15",
            "valid_to": "2024-03-08T00:00:00+00:00",
            "source": "model",
        },
        {"offer_id": "bread-10", "product_id": "1001", "percent": 10},
    ]
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


async def test_set_read_delete_and_audit(client: TestClient[Any, Any], storage: Storage) -> None:
    api = StaffApi(client, staff_token(storage, "marketer", username="mia"))
    status, done = await api.call("PUT", OFFERS, BODY)
    assert status == 200, done
    assert done["changed"] is True
    assert [(o["offer_id"], o["percent"], o["source"]) for o in done["offers"]] == [
        ("1000", "15", "model"),
        ("bread-10", "10", "manual"),
    ]
    assert await api.call("PUT", OFFERS, BODY) == (200, {**done, "changed": False})
    assert await api.call("GET", OFFERS) == (
        200,
        {"customer_id": "hh-1", "offers": done["offers"]},
    )
    status, left = await api.call("DELETE", OFFERS + "/bread-10")
    assert status == 200 and [o["offer_id"] for o in left["offers"]] == ["1000"]
    status, _ = await api.call("DELETE", OFFERS + "/bread-10")
    assert status == 404
    auditor = StaffApi(client, staff_token(storage, "loyalty_manager"))
    status, audit = await auditor.call("GET", "/v1/audit", query={"kind": "customer", "id": "hh-1"})
    assert status == 200
    assert [(c["action"], c["actor"]) for c in audit["changes"]] == [
        ("offers", "mia"),
        ("offers", "mia"),
    ]


async def test_bad_bodies_name_the_field(client: TestClient[Any, Any], storage: Storage) -> None:
    api = StaffApi(client, staff_token(storage, "loyalty_manager"))
    bad = {"offers": [{"product_id": "1000", "percent": "0"}]}
    status, error = await api.call("PUT", OFFERS, bad)
    assert status == 422 and error["error"] == "invalid"
    assert error["detail"].startswith("body.offers[0].percent")
    status, error = await api.call("PUT", OFFERS, {"offers": [{"product_id": "77", "percent": 5}]})
    assert status == 404 and "body.offers[0].product_id" in error["detail"]
    status, error = await api.call("PUT", "/v1/customers/hh-404/offers", BODY)
    assert status == 404 and "customer_id" in error["detail"]
    assert await api.call("GET", OFFERS) == (200, {"customer_id": "hh-1", "offers": []})


@pytest.mark.parametrize(
    ("role", "write", "read"),
    [
        ("administrator", 200, 200),
        ("marketer", 200, 200),
        ("loyalty_manager", 200, 200),
        ("call_center", 403, 200),
        ("data_analyst", 403, 200),
    ],
)
async def test_who_may_set_offers(
    client: TestClient[Any, Any], storage: Storage, role: str, write: int, read: int
) -> None:
    api = StaffApi(client, staff_token(storage, role))
    assert (await api.call("PUT", OFFERS, BODY))[0] == write
    assert (await api.call("GET", OFFERS))[0] == read
    assert (await StaffApi(client, "nope").call("GET", OFFERS))[0] == 401
