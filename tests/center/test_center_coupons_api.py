"""Coupon routes over HTTP: generate, issue, export CSV, look up, report; who may call them."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.promotions.coupons import check_code
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import (
    CARD,
    OTHER_CARD,
    T0,
    make_sale,
    master_tables,
    write_config,
)
from tests.center.staff import StaffApi, staff_token


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # Unsigned node requests allowed: lets the test call the node route without enrolling.
    return load_config(write_config(tmp_path, signatures=False))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


@pytest.fixture
def api(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "marketer", username="marketer-1"))


BATCH = {
    "promotion_id": "base-accrual-3",
    "name": "Spring, mailing",
    "prefix": "spr",
    "count": 50,
    "valid_from": "2024-03-01",
    "valid_to": "2024-04-30",
}


async def test_batch_issue_export_and_lookup(
    api: StaffApi, client: TestClient[Any, Any], storage: Storage
) -> None:
    status, batch = await api.call("POST", "/v1/coupon-batches", BATCH)
    assert status == 201, batch
    batch_id = batch["batch_id"]
    assert batch["counts"]["codes"] == 50 and batch["created_by"] == "marketer-1"
    status, done = await api.call(
        "POST", f"/v1/coupon-batches/{batch_id}/issue", {"card_nos": [CARD, OTHER_CARD]}
    )
    assert status == 200 and done["issued"] == 2, done
    response = await client.get(
        f"/v1/coupon-batches/{batch_id}/export",
        params={"format": "csv"},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert response.status == 200 and response.content_type == "text/csv"
    assert f'filename="{batch_id}.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert len(rows) == 50 and len({r["code"] for r in rows}) == 50
    for row in rows:
        check_code(row["code"])
        assert row["check"] == "ok" and row["code"].startswith("SPR-")
        assert (row["valid_from"], row["valid_to"]) == ("2024-03-01", "2024-04-30")
    held = {r["customer_id"]: r for r in rows if r["customer_id"]}
    assert sorted(held) == ["hh-1", "hh-2"] and held["hh-1"]["card_no"] == CARD
    code = held["hh-1"]["code"]
    status, found = await api.call("GET", f"/v1/coupons/{code.lower()}")
    assert status == 200 and found["customer_id"] == "hh-1" and found["status"] == "issued"
    # A store node (unsigned, since this Center allows it) checks a code online.
    response = await client.get(f"/v1/coupons/{code}")
    assert response.status == 200 and (await response.json())["batch_id"] == batch_id
    sales = [replace(make_sale(i, card_no=CARD, register_id=f"R{i}"), coupons_redeemed=(code,))
             for i in (1, 2)]  # fmt: skip
    storage.sales.ingest(sales, T0)
    status, report = await api.call("GET", "/v1/reports/coupon-double-redemptions")
    assert status == 200 and [c["code"] for c in report["coupons"]] == [code]
    assert len(report["coupons"][0]["sales"]) == 2
    status, view = await api.call("GET", f"/v1/coupon-batches/{batch_id}")
    assert status == 200 and view["counts"]["redeemed"] == 1 and view["counts"]["assigned"] == 2


async def test_refusals_name_the_problem(api: StaffApi) -> None:
    status, body = await api.call("POST", "/v1/coupon-batches", {**BATCH, "count": 0})
    assert status == 422 and body["detail"].startswith("body.count: ")
    status, body = await api.call("GET", "/v1/coupons/SPR-22222222223")
    assert status == 422 and "check character" in body["detail"]
    good = "SPR-2222222222" + "2"
    status, body = await api.call("GET", f"/v1/coupons/{good}")
    assert status == 404 and body["error"] == "not_found"
    status, body = await api.call("GET", "/v1/coupon-batches/cb-none")
    assert status == 404
    status, body = await api.call("GET", "/v1/coupon-batches/cb-none/export")
    assert status == 404
    status, batch = await api.call("POST", "/v1/coupon-batches", {**BATCH, "count": 1})
    batch_id = batch["batch_id"]
    status, body = await api.call(
        "GET", f"/v1/coupon-batches/{batch_id}/export", query={"format": "pdf"}
    )
    assert status == 400 and body["detail"].startswith("format: ")
    status, body = await api.call(
        "POST", f"/v1/coupon-batches/{batch_id}/issue", {"customer_ids": ["hh-1", "hh-2"]}
    )
    assert status == 409 and "1 free codes" in body["detail"]
    status, body = await api.call(
        "POST", f"/v1/coupon-batches/{batch_id}/issue", {"card_nos": ["404404"]}
    )
    assert status == 422 and "404404" in body["detail"]


async def test_who_may_call(client: TestClient[Any, Any], storage: Storage) -> None:
    anonymous = await client.post("/v1/coupon-batches", json=BATCH)
    assert anonymous.status == 401
    call_center = StaffApi(client, staff_token(storage, "call_center"))
    status, body = await call_center.call("POST", "/v1/coupon-batches", BATCH)
    assert status == 403 and "coupons.write" in body["detail"]
    status, body = await call_center.call("GET", "/v1/reports/coupon-double-redemptions")
    assert status == 403
    analyst = StaffApi(client, staff_token(storage, "data_analyst"))
    status, _ = await analyst.call("GET", "/v1/reports/coupon-double-redemptions")
    assert status == 200
