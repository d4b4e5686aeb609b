"""Analytics routes: the Center's job feeds the store, the status shows the lag, each report
answers JSON, CSV and SVG, bad filters are 400s naming the field."""

from __future__ import annotations

import asyncio
import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.analytics import queries
from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_analytics import D0, _master, _sales

SVG = "{http://www.w3.org/2000/svg}"
PERIOD = {"from": "2024-01-01", "to": "2024-04-30"}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    extra = '\n[analytics]\nfeed_interval_s = 1\ndatabase = "api_test"\n'
    return load_config(write_config(tmp_path, signatures=True, extra=extra))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(_master())
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: D0))) as client:
        yield client


async def test_the_job_feeds_and_the_reports_answer(
    client: TestClient[Any, Any], storage: Storage, config: Config
) -> None:
    api = StaffApi(client, staff_token(storage, "data_analyst"))
    sales = _sales(80)
    storage.sales.ingest(sales, D0)
    assert (await client.get("/v1/analytics/status")).status == 401
    for _ in range(120):  # the scheduled job runs every second
        code, found = await api.call("GET", "/v1/analytics/status")
        assert code == 200, found
        # rows are written before the watermark moves: wait for both
        if found["rows"]["sales"] == len(sales) and found["pending_sales"] == 0:
            break
        await asyncio.sleep(0.5)
    assert found["pending_sales"] == 0 and found["lag_s"] == 0.0 and found["engine"] == "chdb"
    assert (config.center.data_dir / "analytics").is_dir()

    code, sizes = await api.call("GET", "/v1/analytics/receipt-sizes", query=PERIOD)
    in_period = [s for s in sales if date(2024, 1, 1) <= s.closed_at.date() <= date(2024, 4, 30)]
    assert code == 200 and sizes["receipts"] == len(in_period)
    code, one = await api.call("GET", "/v1/analytics/rfm", query={**PERIOD, "store_id": "406"})
    assert code == 200 and one["store_id"] == "406"
    assert one["customers"] == len(
        {s.card_no for s in in_period if s.card_no and s.store_id == "406"}
    )

    headers = {"Authorization": f"Bearer {api.token}"}
    for name in queries.REPORTS:
        query = {**PERIOD, **({"rule_id": "base-accrual-3"} if name == "effect" else {})}
        response = await client.get(f"/v1/analytics/{name}.csv", params=query, headers=headers)
        assert response.status == 200 and response.content_type == "text/csv"
        table = list(csv.reader(io.StringIO(await response.text())))
        code, report = await api.call("GET", f"/v1/analytics/{name}", query=query)
        assert table[0] == report["columns"] and len(table) == len(report["rows"]) + 1
        response = await client.get(f"/v1/analytics/{name}.svg", params=query, headers=headers)
        assert response.status == 200 and response.content_type == "image/svg+xml"
        svg = ET.fromstring(await response.text())
        if name != "effect":  # no receipt before the period here: no stratum to chart
            assert svg.findall(f".//{SVG}rect[@class='bar']") or svg.findall(f".//{SVG}circle")
    code, abc = await api.call("GET", "/v1/analytics/abc", query={**PERIOD, "level": "product"})
    assert code == 200 and {r["item"] for r in abc["rows"]} <= {"1000", "1001", "1002", "1003"}

    for query, field in (
        ({"level": "shelf"}, "level"),
        ({"bin_minor": "0"}, "bin_minor"),
        ({"from": "2024-05-01", "to": "2024-04-01"}, "from"),
        ({"store_id": "a b"}, "store_id"),
        ({"segment": "whales"}, "segment"),
        ({"level": "customer", "limit": "x"}, "limit"),
    ):
        name = "receipt-sizes" if field == "bin_minor" else "abc"
        code, error = await api.call("GET", f"/v1/analytics/{name}", query=query)
        assert code == 400 and field in str(error), (query, error)
