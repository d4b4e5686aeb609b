"""Head-office reports: figures from real sales on both backends, and the SVG drawn of them."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from center.errors import MalformedRequest
from center.promotions.segments import MembersInput, SegmentInput
from center.reporting import queries as reports_sql
from center.reporting import reports
from center.storage import LedgerEntry, Storage
from sync_protocol import Sale
from tests.center.center_factories import CARD, make_sale, master_tables
from tests.center.test_center_returns import make_return

SVG = "{http://www.w3.org/2000/svg}"
D0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)  # a Monday
FIRST, LAST = date(2024, 3, 4), date(2024, 3, 13)
STRANGE = 'Tom & <Jerry> "1"'


def _at(sale: Sale, day: int) -> Sale:
    closed = D0 + timedelta(days=day, minutes=sale.seq)
    return dataclasses.replace(sale, opened_at=closed - timedelta(minutes=1), closed_at=closed)


@dataclasses.dataclass
class Sold:
    sales: list[Sale]
    returns: list[Sale]
    movements: list[tuple[datetime, str, int]]
    """(at, kind, signed amount) of every bonus movement written, the expiry included."""


def sell(storage: Storage) -> Sold:
    """Sales over two weeks in two stores, a return, a welcome credit, an adjustment and an
    expiry; one sale before and one after the period [FIRST, LAST]."""
    storage.feed.upsert_master(master_tables())
    storage.feed.upsert_master({"stores": [{"store_id": "406", "name": STRANGE}]})
    expiring = D0 + timedelta(days=1) - timedelta(hours=10)  # 2024-03-05 00:00
    sales = [
        _at(make_sale(1, card_no=CARD, accrue=11), -3),
        _at(make_sale(2), 0),
        _at(make_sale(3, card_no=CARD, amounts=(250, 199, 300), discount=20, accrue=13), 0),
        _at(make_sale(4, card_no=CARD, accrue=7, expires_at=expiring), 0),
        _at(make_sale(5, card_no=CARD, spend=5), 2),
        _at(make_sale(1, register_id="406-1", store_id="406", amounts=(999,)), 1),
        _at(make_sale(2, register_id="406-1", store_id="406", card_no=CARD, accrue=3, spend=5), 8),
        _at(make_sale(3, register_id="406-1", store_id="406", card_no=CARD, accrue=50), 12),
    ]
    returns = [_at(make_return(9, sales[1], {2: 1000}), 8)]
    ack = storage.sales.ingest([*sales, *returns], D0)
    assert len(ack.accepted) == len(sales) + 1, ack
    storage.ledger.add_ledger_entries(
        [LedgerEntry(CARD, "bonus", "welcome", 100, "welcome", f"welcome:{CARD}", D0)]
    )
    storage.returns.adjust(
        CARD, "bonus", -2, "goodwill", "tester", D0 + timedelta(days=3), idempotency_key="k1"
    )
    assert storage.ledger.expire_lots(D0 + timedelta(days=9)) == 1
    movements = [
        (s.closed_at, m.kind, m.amount if m.kind == "accrue" else -m.amount)
        for s in sales
        for m in s.loyalty
    ]
    movements += [
        (D0, "welcome", 100),
        (D0 + timedelta(days=3), "adjustment", -2),
        (expiring, "expire", -7),
    ]
    return Sold(sales, returns, movements)


def _in_period(at: datetime) -> bool:
    return FIRST <= at.date() <= LAST


def test_sales_report_equals_sums_of_the_sales_made(storage: Storage) -> None:
    sold = sell(storage)
    report = reports_sql.sales_report(storage, FIRST, LAST)
    expected: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    per_store: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    for sale in sold.sales:
        if _in_period(sale.closed_at):
            for figures in (expected[sale.closed_at.date().isoformat()], per_store[sale.store_id]):
                figures[0] += 1
                figures[1] += sale.total_minor
                figures[2] += sale.discount_minor
                figures[3] += sale.card_no is not None
    for sale in sold.returns:
        for figures in (expected[sale.closed_at.date().isoformat()], per_store[sale.store_id]):
            figures[4] += 1
            figures[5] += sale.total_minor
    assert len(report["days"]) == 10 and report["days"][0]["day"] == "2024-03-04"
    for day in report["days"]:
        receipts, revenue, discount, cards, returns, refund = expected[day["day"]]
        assert (day["receipts"], day["revenue_minor"], day["discount_minor"]) == (
            receipts,
            revenue,
            discount,
        )
        assert (day["card_receipts"], day["returns"], day["refund_minor"]) == (
            cards,
            returns,
            refund,
        )
    total = report["total"]
    receipts = sum(v[0] for v in expected.values())
    revenue = sum(v[1] for v in expected.values())
    refund = sum(v[5] for v in expected.values())
    assert total["receipts"] == receipts == 6
    assert total["revenue_minor"] == revenue
    assert total["net_revenue_minor"] == revenue - refund and refund == 199
    assert total["average_receipt_minor"] == round(revenue / receipts)
    assert total["card_share"] == f"{sum(v[3] for v in expected.values()) / receipts:.4f}"
    assert {s["store_id"]: s["revenue_minor"] for s in report["stores"]} == {
        k: v[1] for k, v in per_store.items()
    }
    assert {s["store_id"]: s["name"] for s in report["stores"]} == {
        "367": "Store 367",
        "406": STRANGE,
    }
    one = reports_sql.sales_report(storage, FIRST, LAST, "406")
    assert one["total"]["revenue_minor"] == per_store["406"][1]
    assert [s["store_id"] for s in one["stores"]] == ["406"]


def test_loyalty_report_sums_the_ledger_per_week(storage: Storage) -> None:
    sold = sell(storage)
    report = reports_sql.loyalty_report(storage, FIRST, LAST)
    opening = sum(a for at, _, a in sold.movements if at.date() < FIRST)
    assert report["opening_liability"] == opening == 11
    weeks = [(date(2024, 3, 4), date(2024, 3, 10)), (date(2024, 3, 11), LAST)]
    assert [(w["week"], w["to"]) for w in report["weeks"]] == [
        (a.isoformat(), b.isoformat()) for a, b in weeks
    ]
    liability = opening
    names = {"accrue": "accrued", "spend": "spent", "expire": "expired"}
    for week, (first, last) in zip(report["weeks"], weeks, strict=True):
        inside = [(k, a) for at, k, a in sold.movements if first <= at.date() <= last]
        for kind, name in names.items():
            assert week[name] == abs(sum(a for k, a in inside if k == kind)), (week, name)
        assert week["adjusted"] == sum(a for k, a in inside if k == "adjustment")
        assert week["other"] == sum(a for k, a in inside if k == "welcome")
        liability += sum(a for _, a in inside)
        assert week["liability"] == liability
    assert report["weeks"][0]["expired"] == 7 and report["weeks"][0]["other"] == 100
    assert report["closing_liability"] == liability == storage.ledger.lot_totals()[0] - 50
    assert report["total"]["accrued"] == 13 + 7 + 3
    accrued = sum(a for at, k, a in sold.movements if k == "accrue" and _in_period(at))
    assert report["rules"] == [{"rule_id": "base-accrual-3", "accrued": accrued}]
    svg = ET.fromstring(reports.loyalty_svg(report))
    bars = svg.findall(f".//{SVG}rect[@class='bar']")
    assert [(b.get("data-label"), b.get("data-value")) for b in bars] == [
        ("base-accrual-3", str(accrued))
    ]


def test_categories_report_nets_returns_and_ranks_by_revenue(storage: Storage) -> None:
    sold = sell(storage)
    report = reports_sql.categories_report(storage, FIRST, LAST)
    department = {"1000": "DAIRY", "1001": "PASTRY", "1002": reports.NO_CATEGORY}
    expected: dict[str, int] = defaultdict(int)
    receipts: dict[str, int] = defaultdict(int)
    lines: dict[str, int] = defaultdict(int)
    for sale in sold.sales:
        if _in_period(sale.closed_at):
            for line in sale.lines:
                paid = line.amount_minor - sum(d.amount_minor for d in line.discounts)
                expected[department[line.product_id]] += paid
                lines[department[line.product_id]] += 1
            for name in {department[line.product_id] for line in sale.lines}:
                receipts[name] += 1
    for sale in sold.returns:
        for line in sale.lines:
            expected[department[line.product_id]] -= line.amount_minor
    found = {c["category"]: c["revenue_minor"] for c in report["categories"]}
    assert found == expected
    assert {c["category"]: c["receipts"] for c in report["categories"]} == receipts
    assert {c["category"]: c["lines"] for c in report["categories"]} == lines
    revenues = [c["revenue_minor"] for c in report["categories"]]
    assert revenues == sorted(revenues, reverse=True)
    assert report["revenue_minor"] == sum(expected.values())
    top = reports_sql.categories_report(storage, FIRST, LAST, limit=1)
    assert len(top["categories"]) == 1 and top["other_categories"] == 2
    assert top["other_revenue_minor"] == sum(expected.values()) - revenues[0]


def test_segment_sizes_per_day_carry_the_last_count(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    segment = SegmentInput("vip", "V.I.P. <gold>", "static")
    assert (
        storage.segments.create_segment(segment, "tester", D0 - timedelta(days=2))["members"] == 0
    )
    for customer, day in (("hh-1", -1), ("hh-2", 2)):
        members = MembersInput(customer_ids=(customer,), mode="add")
        storage.segments.set_segment_members("vip", members, "tester", D0 + timedelta(days=day))
    report = reports_sql.segments_report(storage, FIRST, date(2024, 3, 7))
    assert report["days"] == ["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"]
    assert report["segments"] == [
        {"segment_id": "vip", "name": "V.I.P. <gold>", "members": [1, 1, 2, 2]}
    ]
    svg = ET.fromstring(reports.segments_svg(report))
    assert len(svg.findall(f".//{SVG}circle[@class='point']")) == 4


# -- pure ---------------------------------------------------------------------------------------


def test_money_is_formatted_from_minor_units_without_floats() -> None:
    assert reports.format_minor(123456) == "1,234.56"
    assert reports.format_minor(-5) == "-0.05"
    assert reports.format_minor(100_000_000_00, fraction=False) == "100,000,000"
    assert reports.format_minor(10**20 + 1) == "1,000,000,000,000,000,000.01"
    assert reports.format_count(1234567) == "1,234,567"


def test_bad_periods_name_the_field() -> None:
    today = date(2024, 3, 31)
    assert reports.parse_period(None, None, today) == (date(2024, 3, 4), today)
    for args, field in [
        (("2024-13-01", None), "from"),
        (("2024-03-01", "31.03.2024"), "to"),
        (("2024-3-1", None), "from"),
        (("2024-03-02", "2024-03-01"), "from"),
        (("2020-01-01", "2024-01-01"), "from"),
    ]:
        with pytest.raises(MalformedRequest) as caught:
            reports.parse_period(*args, today)
        assert caught.value.field == field


def test_loyalty_weeks_start_on_monday_and_are_cut_to_the_period() -> None:
    rows = [
        ("2024-03-02", "accrue", 10),
        ("2024-03-04", "spend", -4),
        ("2024-03-04", "x", 1),
        ("2024-03-05", "return_accrual", -3),
        ("2024-03-05", "return_spend", 2),
    ]
    report = reports.loyalty_report(5, rows, date(2024, 3, 1), date(2024, 3, 5))
    assert [(w["week"], w["to"], w["liability"]) for w in report["weeks"]] == [
        ("2024-03-01", "2024-03-03", 15),
        ("2024-03-04", "2024-03-05", 11),
    ]
    second = report["weeks"][1]
    assert (second["spent"], second["other"], second["returned"], second["net"]) == (4, 1, -1, -4)


def _svg_of(storage: Storage) -> tuple[dict[str, Any], ET.Element, str]:
    sell(storage)
    report = reports_sql.sales_report(storage, FIRST, LAST)
    text = reports.sales_svg(report)
    return report, ET.fromstring(text), text


def test_sales_svg_has_a_point_per_day_a_bar_per_store_and_escaped_labels(
    storage: Storage,
) -> None:
    report, svg, text = _svg_of(storage)
    assert svg.tag == f"{SVG}svg"
    revenue = svg.findall(f".//{SVG}g[@data-series='revenue']/{SVG}circle")
    assert [(c.get("data-label"), int(c.get("data-value") or 0)) for c in revenue] == [
        (d["day"][5:], d["revenue_minor"]) for d in report["days"]
    ]
    bars = svg.findall(f".//{SVG}rect[@class='bar']")
    assert [b.get("data-label") for b in bars] == [
        f"{s['name']} ({s['store_id']})" for s in report["stores"]
    ]
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "bar-label"]
    assert f"{STRANGE} (406)" in labels
    assert "Tom &amp; &lt;Jerry&gt; &quot;1&quot;" in text and STRANGE not in text
    titles = "".join(t.text or "" for t in svg.iter(f"{SVG}text") if t.get("class") == "title")
    assert "Sales per day, 2024-03-04 to 2024-03-13" in titles
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert "03-04" in ticks and "03-13" in ticks
    legend = [t.text for t in svg.iter(f"{SVG}text") if t.text in ("revenue", "discount")]
    assert legend == ["revenue", "discount"]
    assert reports.sales_svg(report) == text  # deterministic


def test_a_chain_of_many_stores_draws_only_the_best_stores() -> None:
    stores = [(f"S{i:03d}", f"Shop {i}", 1, 100 * i, 0, 0, 0, 0) for i in range(1, 101)]
    report = reports.sales_report([], stores, FIRST, FIRST)
    svg = ET.fromstring(reports.sales_svg(report))
    bars = svg.findall(f".//{SVG}rect[@class='bar']")
    assert len(bars) == reports.MAX_STORE_BARS and bars[0].get("data-value") == "10000"
    titles = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "title"]
    assert f"Revenue per store (top {reports.MAX_STORE_BARS} of 100)" in titles


def test_charts_survive_empty_negative_and_hostile_input() -> None:
    empty = ET.fromstring(reports.svg_document(reports.bar_chart("Nothing", [], [])))
    assert [t.text for t in empty.iter(f"{SVG}text") if t.get("class") == "empty"] == ["no data"]
    hostile = "a\x01b</text><script>alert(1)</script>"
    chart = reports.line_chart(
        hostile, ["d1", "d2"], [reports.Series(hostile, (-250, 1000))], money=True
    )
    svg = ET.fromstring(reports.svg_document(chart))
    assert not list(svg.iter(f"{SVG}script"))
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert "-5" in ticks and "10" in ticks  # money ticks in currency units
    with pytest.raises(ValueError, match="series"):
        reports.line_chart("t", ["a"], [reports.Series("s", (1, 2))])
