"""The promotion effect report: receipts a promotion touched against the rest, on both backends,
its SVG, and its route's errors and permission."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.errors import UnknownObject
from center.reporting import queries as reports_sql
from center.reporting import reports
from center.storage import Storage
from center.web.app import create_app
from sync_protocol import LineDiscount, LoyaltyMovement, Payment, Sale
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_returns import make_return

SVG = "{http://www.w3.org/2000/svg}"
PROMO = "promo-1"
OTHER = "other-9"
D0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
FIRST, LAST = date(2024, 3, 4), date(2024, 3, 6)
PERIOD = {"from": FIRST.isoformat(), "to": LAST.isoformat()}


def _sale(
    seq: int,
    day: int,
    *,
    store_id: str = "367",
    amounts: tuple[int, ...] = (250, 199),
    discounts: dict[int, tuple[tuple[str, int], ...]] | None = None,
    card_no: str | None = None,
    accrue: int = 0,
) -> Sale:
    """A consistent sale on day `day` after D0 with line discounts by rule (line_no -> (rule,
    amount)) and an accrual of PROMO."""
    base = make_sale(seq, register_id=f"{store_id}-1", store_id=store_id, amounts=amounts)
    lines = tuple(
        dataclasses.replace(
            line,
            discounts=tuple(LineDiscount(r, a) for r, a in (discounts or {}).get(line.line_no, ())),
        )
        for line in base.lines
    )
    discount = sum(d.amount_minor for line in lines for d in line.discounts)
    total = base.subtotal_minor - discount
    closed = D0 + timedelta(days=day, minutes=seq)
    return dataclasses.replace(
        base,
        lines=lines,
        card_no=card_no,
        discount_minor=discount,
        total_minor=total,
        payments=(Payment("cash", total),),
        loyalty=(LoyaltyMovement("bonus", "accrue", accrue, PROMO),) if accrue else (),
        opened_at=closed - timedelta(minutes=1),
        closed_at=closed,
    )


def sell(storage: Storage) -> None:
    """Receipts in stores 367 and 406 (where PROMO applies) and 500 (where it never does)."""
    tables = master_tables()
    tables["stores"].append({"store_id": "500", "name": "Store 500"})
    tables["promotions"].append({"promotion_id": PROMO, "doc": {"promotion_id": PROMO}})
    storage.feed.upsert_master(tables)
    accrued_and_discounted = _sale(
        5, 1, discounts={1: ((PROMO, 15),), 2: ((PROMO, 5),)}, card_no=CARD, accrue=7
    )
    sales = [
        _sale(1, 0, discounts={1: ((PROMO, 30),), 2: ((OTHER, 10),)}),  # 409, PROMO 30
        _sale(2, 0),  # 449
        _sale(3, 0, discounts={1: ((OTHER, 20),)}),  # 429, not touched
        _sale(4, 1, card_no=CARD, accrue=12),  # 449, touched by the accrual only
        accrued_and_discounted,  # 429, PROMO 20, accrual 7
        _sale(6, -1, discounts={1: ((PROMO, 30),)}),  # before the period
        _sale(1, 2, store_id="406", amounts=(999,), discounts={1: ((PROMO, 50),)}),  # 949
        _sale(2, 2, store_id="406", amounts=(100,)),  # 100
        _sale(1, 0, store_id="500", amounts=(700,)),  # a store PROMO never touched
    ]
    whole = {line.line_no: line.qty_milli for line in accrued_and_discounted.lines}
    back = make_return(9, accrued_and_discounted, whole)
    back = dataclasses.replace(
        back, closed_at=D0 + timedelta(days=2, minutes=30), opened_at=D0 + timedelta(days=2)
    )
    ack = storage.sales.ingest([*sales, back], D0)
    assert len(ack.accepted) == len(sales) + 1, ack


# (receipts, with, revenue, revenue with, discount, accrued, reversed) per day, by hand.
EXPECTED = {
    "2024-03-04": (3, 1, 409 + 449 + 429, 409, 30, 0, 0),
    "2024-03-05": (2, 2, 449 + 429, 449 + 429, 20, 19, 0),
    "2024-03-06": (2, 1, 949 + 100, 949, 50, 0, 7),
}


def _figures(day: dict[str, Any]) -> tuple[int, ...]:
    return tuple(
        day[k]
        for k in (
            "receipts",
            "receipts_with",
            "revenue_minor",
            "revenue_with_minor",
            "discount_minor",
            "bonus_accrued",
            "bonus_reversed",
        )
    )


def test_figures_match_the_receipts_sold(storage: Storage) -> None:
    sell(storage)
    report = reports_sql.promotion_report(storage, PROMO, FIRST, LAST)
    assert report["stores"] == ["367", "406"]
    assert {d["day"]: _figures(d) for d in report["days"]} == EXPECTED
    first = report["days"][0]
    assert (first["receipts_without"], first["revenue_without_minor"]) == (2, 449 + 429)
    assert (first["average_with_minor"], first["average_without_minor"]) == (409, 439)
    total = report["total"]
    assert _figures(total) == (7, 4, 3214, 2236, 100, 19, 7)
    assert total["average_with_minor"] == 559  # 2236 / 4
    assert total["average_without_minor"] == 326  # 978 / 3 = 326.0
    assert total["share_with"] == "0.5714"


def test_days_are_those_of_the_reports_zone(storage: Storage) -> None:
    sell(storage)
    # 10:00 UTC is midnight of the next day at UTC+14.
    report = reports_sql.promotion_report(
        storage,
        PROMO,
        FIRST + timedelta(days=1),
        LAST + timedelta(days=1),
        zone="Pacific/Kiritimati",
    )
    shifted = {
        (date.fromisoformat(day) + timedelta(days=1)).isoformat(): v for day, v in EXPECTED.items()
    }
    assert {d["day"]: _figures(d) for d in report["days"]} == shifted


def test_unknown_promotion_and_quiet_promotion(storage: Storage) -> None:
    sell(storage)
    with pytest.raises(UnknownObject, match="nope-1"):
        reports_sql.promotion_report(storage, "nope-1", FIRST, LAST)
    quiet = reports_sql.promotion_report(storage, "base-accrual-3", FIRST, LAST)
    assert quiet["stores"] == [] and _figures(quiet["total"]) == (0,) * 7
    assert len(quiet["days"]) == 3
    ET.fromstring(reports.promotion_svg(quiet))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    sell(storage)
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


async def test_route_answers_json_and_svg(client: TestClient[Any, Any], storage: Storage) -> None:
    api = StaffApi(client, staff_token(storage, "marketer"))
    status, body = await api.call("GET", f"/v1/reports/promotions/{PROMO}", query=PERIOD)
    assert status == 200, body
    assert body == reports_sql.promotion_report(storage, PROMO, FIRST, LAST)
    assert body["total"]["discount_minor"] == 100
    headers = {"Authorization": f"Bearer {api.token}"}
    response = await client.get(
        f"/v1/reports/promotions/{PROMO}.svg", params=PERIOD, headers=headers
    )
    assert response.status == 200
    assert response.content_type == "image/svg+xml"
    svg = ET.fromstring(await response.text())
    series = {
        "receipts with it": ["1", "2", "1"],
        "receipts without it": ["2", "0", "1"],
        "discount given": ["30", "20", "50"],
        "accrued": ["0", "19", "0"],
        "reversed by returns": ["0", "0", "7"],
    }
    for name, values in series.items():
        points = svg.findall(f".//{SVG}g[@data-series='{name}']/{SVG}circle")
        assert [p.get("data-value") for p in points] == values, name
        assert [p.get("data-label") for p in points] == ["03-04", "03-05", "03-06"]


@pytest.mark.parametrize(
    ("path", "query", "status", "field"),
    [
        ("/v1/reports/promotions/nope-1", PERIOD, 404, "promotion_id"),
        ("/v1/reports/promotions/nope-1.svg", PERIOD, 404, "promotion_id"),
        (
            f"/v1/reports/promotions/{PROMO}",
            {"from": "2024-01-01", "to": "2025-01-01"},
            400,
            "from",
        ),
        (f"/v1/reports/promotions/{PROMO}.svg", {"to": "2024-02-30"}, 400, "to"),
        (
            f"/v1/reports/promotions/{PROMO}",
            {"from": "2024-03-06", "to": "2024-03-04"},
            400,
            "from",
        ),
        ("/v1/reports/promotions/<&>", PERIOD, 400, "promotion_id"),
    ],
)
async def test_errors_name_what_was_wrong(
    client: TestClient[Any, Any],
    storage: Storage,
    path: str,
    query: dict[str, str],
    status: int,
    field: str,
) -> None:
    api = StaffApi(client, staff_token(storage, "data_analyst"))
    found, body = await api.call("GET", path, query=query)
    assert found == status, body
    assert body["detail"].startswith(f"{field}: ")
    if status == 404:
        assert body["error"] == "not_found" and "nope-1" in body["detail"]


async def test_a_leap_year_is_not_too_long(client: TestClient[Any, Any], storage: Storage) -> None:
    api = StaffApi(client, staff_token(storage, "data_analyst"))
    query = {"from": "2024-01-01", "to": "2024-12-31"}
    status, body = await api.call("GET", f"/v1/reports/promotions/{PROMO}", query=query)
    assert status == 200, body
    assert len(body["days"]) == 366 and body["total"]["receipts_with"] == 5


async def test_route_needs_reports_read(client: TestClient[Any, Any], storage: Storage) -> None:
    for suffix in ("", ".svg"):
        path = f"/v1/reports/promotions/{PROMO}{suffix}"
        response = await client.get(path, params=PERIOD)
        assert response.status == 401, path
        call_center = StaffApi(client, staff_token(storage, "call_center"))
        status, _ = await call_center.call("GET", path, query=PERIOD)
        assert status == 403, path
        director = StaffApi(client, staff_token(storage, "marketing_director"))
        status, _ = await director.call("GET", path, query=PERIOD)
        assert status == 200, path
