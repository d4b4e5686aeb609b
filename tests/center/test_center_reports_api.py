"""Report routes called by staff users, and `loyalty-center report` writing the HTML page."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.cli import main
from center.config import Config, load_config
from center.reporting import queries as reports_sql
from center.storage import Storage, open_storage
from center.web.app import create_app
from tests.center.center_factories import T0, write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_reports import FIRST, LAST, STRANGE, SVG, sell

PERIOD = {"from": FIRST.isoformat(), "to": LAST.isoformat()}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    sell(storage)
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


@pytest.fixture
def api(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "data_analyst"))


async def test_json_reports_answer_what_storage_computes(api: StaffApi, storage: Storage) -> None:
    status, sales = await api.call("GET", "/v1/reports/sales", query=PERIOD)
    assert status == 200, sales
    assert sales == reports_sql.sales_report(storage, FIRST, LAST)
    assert sales["total"]["receipts"] == 6 and sales["total"]["refund_minor"] == 199
    status, one = await api.call("GET", "/v1/reports/sales", query={**PERIOD, "store_id": "406"})
    assert status == 200 and [s["name"] for s in one["stores"]] == [STRANGE]
    status, loyalty = await api.call("GET", "/v1/reports/loyalty", query=PERIOD)
    assert status == 200 and loyalty == reports_sql.loyalty_report(storage, FIRST, LAST)
    status, cats = await api.call("GET", "/v1/reports/categories", query={**PERIOD, "limit": "2"})
    assert status == 200 and len(cats["categories"]) == 2 and cats["other_categories"] == 1
    status, segments = await api.call("GET", "/v1/reports/segments", query=PERIOD)
    assert status == 200 and segments["segments"] == [] and len(segments["days"]) == 10


async def test_svg_routes_draw_the_report(client: TestClient[Any, Any], api: StaffApi) -> None:
    headers = {"Authorization": f"Bearer {api.token}"}
    response = await client.get("/v1/reports/sales.svg", params=PERIOD, headers=headers)
    assert response.status == 200
    assert response.content_type == "image/svg+xml"
    svg = ET.fromstring(await response.text())
    bars = svg.findall(f".//{SVG}rect[@class='bar']")
    assert sorted(b.get("data-label") or "" for b in bars) == [
        "Store 367 (367)",
        f"{STRANGE} (406)",
    ]
    assert len(svg.findall(f".//{SVG}g[@data-series='receipts']/{SVG}circle")) == 10
    response = await client.get("/v1/reports/loyalty.svg", params=PERIOD, headers=headers)
    svg = ET.fromstring(await response.text())
    points = svg.findall(f".//{SVG}g[@data-series='liability']/{SVG}circle")
    assert [p.get("data-label") for p in points] == ["03-04", "03-11"]
    assert [p.get("data-value") for p in points] == ["117", "115"]
    response = await client.get("/v1/reports/categories.svg", params=PERIOD, headers=headers)
    svg = ET.fromstring(await response.text())
    assert [b.get("data-label") for b in svg.findall(f".//{SVG}rect[@class='bar']")] == [
        "DAIRY",
        "PASTRY",
        "(no category)",
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2024-02-30"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2024-03-10", "to": "2024-03-01"}, "from"),
        ({"store_id": "<&>"}, "store_id"),
        ({"limit": "0"}, "limit"),
    ],
)
async def test_bad_query_is_400_naming_the_field(
    api: StaffApi, query: dict[str, str], field: str
) -> None:
    path = "/v1/reports/categories.svg" if "limit" in query else "/v1/reports/sales.svg"
    status, body = await api.call("GET", path, query=query)
    assert status == 400, body
    assert body["error"] == "malformed" and body["detail"].startswith(f"{field}: ")


async def test_reports_need_a_token_and_reports_read(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    for path in ("/v1/reports/sales", "/v1/reports/loyalty.svg", "/v1/reports/segments"):
        response = await client.get(path, params=PERIOD)
        assert response.status == 401, path
        call_center = StaffApi(client, staff_token(storage, "call_center"))
        status, _ = await call_center.call("GET", path, query=PERIOD)
        assert status == 403, path
        marketer = StaffApi(client, staff_token(storage, "marketer"))
        status, _ = await marketer.call("GET", path, query=PERIOD)
        assert status == 200, path


def test_report_command_writes_the_html_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    storage = open_storage(load_config(path).storage)
    try:
        sell(storage)
    finally:
        storage.close()
    out = tmp_path / "out"
    argv = ["report", "--config", str(path), "--from", "2024-03-04", "--to", "2024-03-13"]
    assert main([*argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out / "report.html")
    assert "[1/5] reading sales" in captured.err and "drawing charts" in captured.err
    page = (out / "report.html").read_text()
    assert page.count("<svg ") == 4 and "Average receipt" in page
    assert "Tom &amp; &lt;Jerry&gt;" in page and STRANGE not in page
    for name in ("sales", "loyalty", "categories", "segments"):
        ET.fromstring((out / f"{name}.svg").read_text())
    assert main([*argv[:-1], "2024-02-30", "--out", str(out)]) == 2
    assert "--to: expected a date" in capsys.readouterr().err
