"""Report days are the chain's business days (`[reports] timezone`), on both backends, across a
daylight-saving change; the setting is validated naming its key."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import load_config
from center.errors import ConfigError
from center.reporting import queries as reports_sql
from center.storage import Storage
from center.web.app import create_app
from sync_protocol import Sale
from tests.center.center_factories import CARD, make_sale, master_tables, write_config
from tests.center.staff import StaffApi, staff_token

CHICAGO = "America/Chicago"  # UTC-6, UTC-5 from 2024-03-10 02:00 local
LOCAL = ZoneInfo(CHICAGO)


def _local(sale: Sale, *args: int) -> Sale:
    closed = datetime(*args, tzinfo=LOCAL).astimezone(UTC)  # type: ignore[misc]
    return dataclasses.replace(sale, opened_at=closed - timedelta(minutes=1), closed_at=closed)


@pytest.fixture
def late_sales(storage: Storage) -> list[Sale]:
    """Sales at 23:30 local: next day in UTC. One on Sunday 3 March (Monday in UTC), one each
    side of the DST change, and one at 00:30 local on 5 March (still 5 March in UTC)."""
    storage.feed.upsert_master(master_tables())
    sales = [
        _local(make_sale(1, card_no=CARD, accrue=7), 2024, 3, 3, 23, 30),
        _local(make_sale(2, amounts=(100,)), 2024, 3, 5, 0, 30),
        _local(make_sale(3, amounts=(300,)), 2024, 3, 9, 23, 30),
        _local(make_sale(4, amounts=(500,)), 2024, 3, 10, 23, 30),
    ]
    storage.sales.ingest(sales, datetime(2024, 3, 12, tzinfo=UTC))
    return sales


def _revenue_days(report: dict[str, Any]) -> dict[str, int]:
    return {d["day"]: d["revenue_minor"] for d in report["days"] if d["receipts"]}


def test_sales_are_grouped_by_local_days(storage: Storage, late_sales: list[Sale]) -> None:
    first, last = date(2024, 3, 1), date(2024, 3, 12)
    local = reports_sql.sales_report(storage, first, last, zone=CHICAGO)
    assert _revenue_days(local) == {
        "2024-03-03": 449,
        "2024-03-05": 100,
        "2024-03-09": 300,
        "2024-03-10": 500,
    }
    utc = reports_sql.sales_report(storage, first, last)
    assert _revenue_days(utc) == {
        "2024-03-04": 449,
        "2024-03-05": 100,
        "2024-03-10": 300,
        "2024-03-11": 500,
    }
    # The period is local midnight to local midnight: the 23:30 sale of 3 March is in a
    # report of 3 March alone, and not in one of 4 March.
    assert local["total"]["receipts"] == 4
    only = reports_sql.sales_report(storage, date(2024, 3, 3), date(2024, 3, 3), zone=CHICAGO)
    assert only["total"]["revenue_minor"] == 449
    after = reports_sql.sales_report(storage, date(2024, 3, 4), date(2024, 3, 4), zone=CHICAGO)
    assert after["total"]["receipts"] == 0


def test_loyalty_weeks_follow_local_days(storage: Storage, late_sales: list[Sale]) -> None:
    # Sunday 23:30 in Chicago is Monday in UTC: the accrual belongs to the week of 26 Feb.
    first, last = date(2024, 2, 26), date(2024, 3, 10)
    local = reports_sql.loyalty_report(storage, first, last, zone=CHICAGO)
    assert [(w["week"], w["accrued"]) for w in local["weeks"]] == [
        ("2024-02-26", 7),
        ("2024-03-04", 0),
    ]
    utc = reports_sql.loyalty_report(storage, first, last)
    assert [(w["week"], w["accrued"]) for w in utc["weeks"]] == [
        ("2024-02-26", 0),
        ("2024-03-04", 7),
    ]


def test_offset_spans_find_the_dst_change() -> None:
    start = datetime(2024, 3, 1, 6, tzinfo=UTC)
    end = datetime(2024, 3, 20, 5, tzinfo=UTC)
    assert reports_sql.offset_spans(LOCAL, start, end) == [
        (start, -6 * 3600),
        (datetime(2024, 3, 10, 8, tzinfo=UTC), -5 * 3600),
    ]
    assert reports_sql.offset_spans(ZoneInfo("UTC"), start, end) == [(start, 0)]


def test_the_timezone_setting_is_validated_naming_its_key(tmp_path: Path) -> None:
    good = load_config(write_config(tmp_path, extra=f'\n[reports]\ntimezone = "{CHICAGO}"\n'))
    assert good.reports.timezone == CHICAGO
    assert load_config(write_config(tmp_path)).reports.timezone == "UTC"
    for bad in ("Mars/Olympus_Mons", "../etc/passwd", "Europe/Moscow'; --"):
        path = write_config(tmp_path, extra=f'\n[reports]\ntimezone = "{bad}"\n')
        with pytest.raises(ConfigError, match=r"reports\.timezone: "):
            load_config(path)
    path = write_config(tmp_path, extra="\n[reports]\ntimezone = 3\nzone = 'UTC'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "reports.timezone: expected a string" in str(caught.value)
    assert "reports.zone: unknown key" in str(caught.value)


async def test_the_report_routes_use_the_configured_zone(
    tmp_path: Path, storage: Storage, late_sales: list[Sale]
) -> None:
    extra = f'\n[reports]\ntimezone = "{CHICAGO}"\n'
    config = load_config(write_config(tmp_path, signatures=True, extra=extra))
    # 01:00 UTC on 4 March is still 3 March in Chicago: the default period ends that day.
    now = datetime(2024, 3, 4, 1, tzinfo=UTC)
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: now))) as client:
        api = StaffApi(client, staff_token(storage, "data_analyst"))
        status, report = await api.call(
            "GET", "/v1/reports/sales", query={"from": "2024-03-03", "to": "2024-03-03"}
        )
        assert status == 200, report
        assert _revenue_days(report) == {"2024-03-03": 449}
        status, default = await api.call("GET", "/v1/reports/sales")
        assert status == 200 and default["to"] == "2024-03-03"
        status, svg = await api.call(
            "GET", "/v1/reports/sales.svg", query={"from": "2024-03-03", "to": "2024-03-03"}
        )
        assert status == 200 and 'data-label="03-03" data-value="449"' in svg
