"""The console's analytics pages through the HTTP app with a signed-in person: the list with the
feed's lag, each report's filters, chart, table and CSV (the same figures as the JSON route),
bad filters shown by their field, Russian titles, no page for a role without reports.read."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.people import add_person
from center.analytics import queries
from center.analytics.feeder import feed, read_batch
from center.analytics.pages import FILTERS
from center.config import load_config
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from center.web.keys import ANALYTICS_KEY
from tests.center.center_factories import write_config
from tests.center.test_center_analytics import D0, _master, _sales

PASSWORD = "correct horse battery"
PERIOD = "from=2024-01-01&to=2024-04-30"


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = SqliteStorage(tmp_path / "console.db")
    storage.migrate()
    for name, role in (("ann", "data_analyst"), ("olga", "call_center")):
        add_person(storage, name, role, PASSWORD, "test", D0)
    storage.feed.upsert_master(_master())
    storage.sales.ingest(_sales(200), D0)
    return storage


@pytest.fixture
async def client(tmp_path: Path, db: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    extra = '\n[analytics]\nfeed_interval_s = 0\ndatabase = "console_test"\n'
    app = create_app(load_config(write_config(tmp_path, extra=extra)), db, clock=lambda: D0)
    browser = {"Accept-Language": "en", "Accept": "text/html,*/*;q=0.8"}
    async with TestClient(TestServer(app), headers=browser) as client:
        store = app[ANALYTICS_KEY].get()
        feed(
            lambda cursor, already, back: read_batch(db, cursor, already=already, lookback=back),
            store,
            lambda: datetime.now(UTC),
        )
        yield client
    db.close()


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _sign_in(client: TestClient[Any, Any], username: str) -> None:
    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": username, "password": PASSWORD}
    response = await client.post("/sign-in", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()


def _cells(html: str) -> list[list[str]]:
    body = html.split('<table id="rows">', 1)[1].split("</table>", 1)[0]
    body = body.split("<tbody>", 1)[1]
    return [
        [html_lib.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


async def test_every_report_has_a_page_whose_table_is_the_json_rows(
    client: TestClient[Any, Any],
) -> None:
    await _sign_in(client, "ann")
    index = await client.get("/console/analytics")
    text = await index.text()
    assert index.status == 200 and 'id="nav-analytics"' in text
    assert 'id="lag"' in text and "lag, s" in text
    assert set(re.findall(r'id="report-([a-z-]+)"', text)) == set(queries.REPORTS) == set(FILTERS)
    for name in queries.REPORTS:
        query = PERIOD + ("&rule_id=base-accrual-3" if name == "effect" else "")
        page = await client.get(f"/console/analytics/{name}?{query}")
        html = await page.text()
        assert page.status == 200, (name, html[:300])
        json_route = await client.get(f"/v1/analytics/{name}?{query}")
        assert json_route.status == 200, name  # the person's session opens the API too
        report = await json_route.json()
        assert f'src="/v1/analytics/{name}.svg?{query.replace("&", "&amp;")}"' in html
        assert f'href="/v1/analytics/{name}.csv?{query.replace("&", "&amp;")}"' in html
        cells = _cells(html)
        assert len(cells) == len(report["rows"]), name
        # the plain (not money) cells equal the JSON's values, row by row
        for shown, row in zip(cells, queries.report_table(report), strict=True):
            for column, cell, value in zip(report["columns"], shown, row, strict=True):
                if not column.endswith("_minor"):
                    assert cell == str(value), (name, column)
    svg = await client.get(f"/v1/analytics/churn.svg?{PERIOD}")
    assert svg.status == 200 and "Churn by segment" in await svg.text()


async def test_filters_select_and_bad_ones_are_named(client: TestClient[Any, Any]) -> None:
    await _sign_in(client, "ann")
    page = await client.get(f"/console/analytics/abc?{PERIOD}&level=customer&segment=champions")
    html = await page.text()
    assert page.status == 200
    assert '<option value="customer" selected>' in html
    assert '<option value="champions" selected>' in html
    assert all(re.match(r"hh-\d+$", row[0]) for row in _cells(html))
    bad = await client.get("/console/analytics/abc?segment=whales&level=brand")
    text = await bad.text()
    assert bad.status == 200 and 'id="segment-error"' in text and "whales" in text
    short = await client.get("/console/analytics/churn?from=2024-03-01&to=2024-04-30")
    assert 'id="from-error"' in await short.text()
    unnamed = await client.get("/console/analytics/effect")
    assert unnamed.status == 200 and 'id="rule_id-error"' in await unnamed.text()
    missing = await client.get("/console/analytics/nothing")
    assert missing.status == 404
    ru = await client.get("/console/analytics/churn", headers={"Accept-Language": "ru"})
    assert "Отток по сегментам" in await ru.text()


async def test_no_analytics_for_the_call_center(client: TestClient[Any, Any]) -> None:
    await _sign_in(client, "olga")
    assert (await client.get("/console/analytics")).status == 403
    assert (await client.get("/console/analytics/rfm")).status == 403
    home = await client.get("/")
    assert 'id="nav-analytics"' not in await home.text()
