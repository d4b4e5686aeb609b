"""The reads behind the head-office reports: aggregated in SQL, one snapshot per report.

Functions take the storage (a SqlStorage) and a period [start, end) of aware datetimes and
return plain rows for center.reporting.reports. Days are the calendar days of the chain's zone
(`[reports] timezone`, IANA, default UTC), grouped in SQL: PostgreSQL formats the TIMESTAMPTZ
`AT TIME ZONE` the zone; SQLite stores `_ts` as a UTC ISO string, so the period is cut into
the spans where the zone's UTC offset is constant (DST changes) and each span's rows are
shifted by its offset before taking the first 10 characters. A period runs from local midnight
to local midnight. A return (a sale listed in `returns`) is not a receipt: its count and refund
are separate columns.
"""

from __future__ import annotations

import json
import re
import sys
import zoneinfo
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from center.errors import MalformedRequest, StorageError, UnknownObject
from center.reporting import reports
from center.storage.database import Database
from sync_protocol import decode_sale

if TYPE_CHECKING:
    from center.config import Config

__all__ = [
    "categories",
    "categories_report",
    "ledger_daily",
    "loyalty_report",
    "offset_spans",
    "promotion_effect",
    "promotion_report",
    "report_command",
    "sales_by_store",
    "sales_daily",
    "sales_report",
    "segment_counts",
    "segments_report",
    "write_report",
    "zone_of",
]


_RETURNS_JOIN = "LEFT JOIN returns r ON r.return_id = s.sale_id AND r.owner_id = s.owner_id"
"""A receipt's returns row, if it is a return: a return lives with its sale (same owner)."""


def _sql(storage: Any) -> Database:
    """The Database the reports read (they never write)."""
    db = getattr(storage, "db", None)
    if not isinstance(db, Database):
        raise StorageError(f"reports need a SQL storage, got {type(storage).__name__}")
    return db


_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
_PROBE = timedelta(hours=6)
"""Offset changes are looked for at this step (no zone changes its offset twice in 6 hours)."""


def zone_of(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; MalformedRequest naming `timezone` when it is not one."""
    if not _ZONE_NAME.match(name) or len(name) > 64:
        raise MalformedRequest("timezone", f"expected an IANA time zone name, got {name[:80]!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise MalformedRequest("timezone", f"unknown IANA time zone {name!r}") from None


def offset_spans(
    zone: zoneinfo.ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, int]]:
    """[(from, UTC offset in seconds)]: the zone's offset is constant from each `from` (the
    first is `start`) to the next one, up to `end`."""

    def offset(at: datetime) -> int:
        found = at.astimezone(zone).utcoffset()
        return 0 if found is None else int(found.total_seconds())

    spans = [(start, offset(start))]
    at = start
    while at < end:
        probe = min(at + _PROBE, end)
        if offset(probe) != spans[-1][1]:
            # Bisect to the first whole second of the new offset.
            low, high = int(at.timestamp()), int(probe.timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                if offset(datetime.fromtimestamp(middle, UTC)) == spans[-1][1]:
                    low = middle
                else:
                    high = middle
            changed = datetime.fromtimestamp(high, UTC)
            spans.append((changed, offset(changed)))
        at = probe
    return spans


def _day(db: Database, column: str, zone: str, start: datetime, end: datetime) -> str:
    """SQL of the zone's calendar day (YYYY-MM-DD) of a timestamp column in [start, end)."""
    if db.dialect.zone_functions:
        zone_of(zone)  # a checked name: safe to quote as a literal
        return f"to_char({column} AT TIME ZONE '{zone}', 'YYYY-MM-DD')"
    spans = offset_spans(zone_of(zone), start, end)
    if spans == [(start, 0)]:
        return f"substr({column}, 1, 10)"

    def shifted(seconds: int) -> str:
        return f"substr(datetime({column}, '{seconds:+d} seconds'), 1, 10)"

    cases = " ".join(
        f"WHEN {column} < '{db.ts(spans[i + 1][0])}' THEN {shifted(seconds)}"
        for i, (_, seconds) in enumerate(spans[:-1])
    )
    last = shifted(spans[-1][1])
    return f"CASE {cases} ELSE {last} END" if cases else last


def _sum(expression: str) -> str:
    # PostgreSQL sums BIGINT to NUMERIC: cast back so both drivers return ints.
    return f"CAST(COALESCE(SUM({expression}), 0) AS BIGINT)"


_SALE = "r.return_id IS NULL"
_FIGURES = ", ".join(
    (
        _sum(f"CASE WHEN {_SALE} THEN 1 ELSE 0 END"),
        _sum(f"CASE WHEN {_SALE} THEN s.total_minor ELSE 0 END"),
        _sum(f"CASE WHEN {_SALE} THEN s.discount_minor ELSE 0 END"),
        _sum(f"CASE WHEN {_SALE} AND s.card_no IS NOT NULL AND s.card_no <> '' THEN 1 ELSE 0 END"),
        _sum(f"CASE WHEN {_SALE} THEN 0 ELSE 1 END"),
        _sum(f"CASE WHEN {_SALE} THEN 0 ELSE s.total_minor END"),
    )
)
"""receipts, revenue, discount, receipts with a card, returns, refund."""


def _period_where(
    db: Database, start: datetime, end: datetime, store_id: str | None
) -> tuple[str, list[Any]]:
    where = "s.closed_at >= ? AND s.closed_at < ?"
    params: list[Any] = [db.ts(start), db.ts(end)]
    if store_id is not None:
        where += " AND s.store_id = ?"
        params.append(store_id)
    return where, params


def sales_daily(
    storage: object,
    start: datetime,
    end: datetime,
    store_id: str | None = None,
    *,
    zone: str = "UTC",
) -> list[tuple[Any, ...]]:
    """(day, receipts, revenue, discount, card receipts, returns, refund) per day of `zone`."""
    db = _sql(storage)
    where, params = _period_where(db, start, end, store_id)
    day = _day(db, "s.closed_at", zone, start, end)
    with db.guard("report sales per day"), db.snapshot():
        rows = db.execute(
            f"SELECT {day}, {_FIGURES} FROM sales s "
            f"{_RETURNS_JOIN} WHERE {where} "
            "GROUP BY 1 ORDER BY 1",
            params,
        ).fetchall()
    return [tuple(r) for r in rows]


def sales_by_store(
    storage: object, start: datetime, end: datetime, store_id: str | None = None
) -> list[tuple[Any, ...]]:
    """(store_id, name, receipts, revenue, discount, card receipts, returns, refund) per store."""
    db = _sql(storage)
    where, params = _period_where(db, start, end, store_id)
    with db.guard("report sales per store"), db.snapshot():
        rows = db.execute(
            f"SELECT s.store_id, MAX(st.name), {_FIGURES} FROM sales s "
            f"{_RETURNS_JOIN} "
            f"LEFT JOIN stores st ON st.store_id = s.store_id WHERE {where} "
            "GROUP BY s.store_id ORDER BY s.store_id",
            params,
        ).fetchall()
    return [tuple(r) for r in rows]


def ledger_daily(
    storage: object, start: datetime, end: datetime, wallet: str = "bonus", *, zone: str = "UTC"
) -> tuple[int, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(opening sum, [(day, kind, signed sum)], [(rule_id, points accrued)]) of `wallet`'s
    journal, days of `zone`, in one snapshot."""
    db = _sql(storage)
    day = _day(db, "created_at", zone, start, end)
    with db.guard("report ledger per day"), db.snapshot():
        opening = db.execute(
            f"SELECT {_sum('amount')} FROM ledger WHERE wallet = ? AND created_at < ?",
            (wallet, db.ts(start)),
        ).fetchone()
        rows = db.execute(
            f"SELECT {day}, kind, {_sum('amount')} FROM ledger "
            "WHERE wallet = ? AND created_at >= ? AND created_at < ? GROUP BY 1, 2 ORDER BY 1, 2",
            (wallet, db.ts(start), db.ts(end)),
        ).fetchall()
        rules = db.execute(
            f"SELECT rule_id, {_sum('amount')} FROM ledger WHERE wallet = ? AND kind = 'accrue' "
            "AND created_at >= ? AND created_at < ? GROUP BY rule_id ORDER BY 2 DESC, 1",
            (wallet, db.ts(start), db.ts(end)),
        ).fetchall()
    return int(opening[0]), [tuple(r) for r in rows], [tuple(r) for r in rules]


def categories(
    storage: object, start: datetime, end: datetime, store_id: str | None = None
) -> list[tuple[Any, ...]]:
    """(category, net revenue, discount, receipts, lines) per product category.

    The category is the product's `category`, else its `department`, else "" (unknown
    product); net revenue = line amounts after discounts, returned lines subtracted.
    """
    db = _sql(storage)
    where, params = _period_where(db, start, end, store_id)
    net = "l.amount_minor - l.discount_minor"
    sale = f"CASE WHEN {_SALE} THEN 1 ELSE 0 END"
    # Per (receipt, category) first: counting receipts is then a plain SUM, where
    # COUNT(DISTINCT sale_id) per category costs SQLite twice the time on a year of lines.
    with db.guard("report categories"), db.snapshot():
        rows = db.execute(
            "SELECT cat, "
            + ", ".join(_sum(c) for c in ("net", "disc", "is_sale", "n"))
            + " FROM (SELECT "
            "COALESCE(NULLIF(p.category, ''), NULLIF(p.department, ''), '') AS cat, "
            f"SUM(CASE WHEN {_SALE} THEN {net} ELSE -({net}) END) AS net, "
            f"SUM(CASE WHEN {_SALE} THEN l.discount_minor ELSE 0 END) AS disc, "
            f"MAX({sale}) AS is_sale, SUM({sale}) AS n "
            "FROM sales s JOIN sale_lines l ON l.sale_id = s.sale_id AND l.owner_id = s.owner_id "
            "LEFT JOIN products p ON p.product_id = l.product_id "
            f"{_RETURNS_JOIN} WHERE {where} "
            "GROUP BY s.sale_id, 1) AS per_receipt GROUP BY cat ORDER BY 2 DESC, 1",
            params,
        ).fetchall()
    return [tuple(r) for r in rows]


def segment_counts(
    storage: object, start: datetime, end: datetime, *, zone: str = "UTC"
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(opening, in-period) member counts: [(segment_id, name, members)] as of before `start`,
    and [(segment_id, name, day of `zone`, members)] recorded in the period, in time order."""
    db = _sql(storage)
    day = _day(db, "c.at", zone, start, end)
    with db.guard("report segment counts"), db.snapshot():
        opening = db.execute(
            "SELECT c.segment_id, g.name, c.members FROM segment_counts c "
            "LEFT JOIN segments g ON g.segment_id = c.segment_id "
            "WHERE c.at = (SELECT MAX(c2.at) FROM segment_counts c2 "
            "WHERE c2.segment_id = c.segment_id AND c2.at < ?) ORDER BY c.segment_id",
            (db.ts(start),),
        ).fetchall()
        rows = db.execute(
            f"SELECT c.segment_id, g.name, {day}, c.members FROM segment_counts c "
            "LEFT JOIN segments g ON g.segment_id = c.segment_id "
            "WHERE c.at >= ? AND c.at < ? ORDER BY c.at, c.segment_id",
            (db.ts(start), db.ts(end)),
        ).fetchall()
    return [tuple(r) for r in opening], [tuple(r) for r in rows]


def promotion_effect(
    storage: object,
    promotion_id: str,
    start: datetime,
    end: datetime,
    wallet: str = "bonus",
    *,
    zone: str = "UTC",
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]], list[str]]:
    """([(day, receipts touched, their revenue, discount given)], [(day, receipts, revenue)] of
    the stores where it touched one, [(day, kind, signed sum)] of its accruals and their
    reversals in `wallet`, those stores), days of `zone`, in one snapshot; UnknownObject naming
    `promotion_id` when neither published nor drafted.

    A sale is touched when a line carries a discount of the rule or the ledger holds an accrual
    of the rule from it. Per-rule discounts live only in the stored payload: the sales whose
    payload holds the rule's id are decoded (the byte search is a prefilter, not the test).
    """
    db = _sql(storage)
    day = _day(db, "s.closed_at", zone, start, end)
    ledger_day = _day(db, "created_at", zone, start, end)
    found = db.dialect.contains("s.payload")
    period = (db.ts(start), db.ts(end))
    with db.guard("report promotion effect"), db.snapshot():
        known = db.execute(
            "SELECT 1 FROM promotions WHERE promotion_id = ? "
            "UNION ALL SELECT 1 FROM promotion_drafts WHERE promotion_id = ?",
            (promotion_id, promotion_id),
        ).fetchone()
        if known is None:
            raise UnknownObject("promotion_id", f"unknown promotion {promotion_id!r}")
        accrued_from = {
            str(r[0])
            for r in db.execute(
                "SELECT DISTINCT source FROM ledger WHERE rule_id = ? AND kind = 'accrue' "
                "AND created_at >= ? AND created_at < ?",
                (promotion_id, *period),
            ).fetchall()
        }
        candidates = db.execute(
            f"SELECT s.sale_id, s.store_id, {day}, s.total_minor, "
            f"CASE WHEN {found} THEN s.payload END FROM sales s "
            f"{_RETURNS_JOIN} "
            f"WHERE s.closed_at >= ? AND s.closed_at < ? AND {_SALE} AND ({found} OR s.sale_id IN "
            "(SELECT source FROM ledger WHERE rule_id = ? AND kind = 'accrue' "
            "AND created_at >= ? AND created_at < ?))",
            (
                promotion_id.encode(),
                *period,
                promotion_id.encode(),
                promotion_id,
                *period,
            ),
        ).fetchall()
        touched: dict[str, list[int]] = {}
        stores: set[str] = set()
        for sale_id, store_id, sale_day, total, payload in candidates:
            discount = 0
            if payload is not None:
                sale = decode_sale(bytes(payload))
                discount = sum(
                    d.amount_minor
                    for line in sale.lines
                    for d in line.discounts
                    if d.rule_id == promotion_id
                )
            if discount or str(sale_id) in accrued_from:
                figures = touched.setdefault(str(sale_day), [0, 0, 0])
                figures[0] += 1
                figures[1] += int(total)
                figures[2] += discount
                stores.add(str(store_id))
        all_rows: list[tuple[Any, ...]] = []
        if stores:
            marks = ", ".join("?" * len(stores))
            all_rows = [
                tuple(r)
                for r in db.execute(
                    f"SELECT {day}, {_sum('1')}, {_sum('s.total_minor')} FROM sales s "
                    f"{_RETURNS_JOIN} "
                    f"WHERE s.closed_at >= ? AND s.closed_at < ? AND {_SALE} "
                    f"AND s.store_id IN ({marks}) GROUP BY 1 ORDER BY 1",
                    (*period, *sorted(stores)),
                ).fetchall()
            ]
        ledger = db.execute(
            f"SELECT {ledger_day}, kind, {_sum('amount')} FROM ledger WHERE rule_id = ? "
            "AND wallet = ? AND kind IN ('accrue', 'return_accrual') "
            "AND created_at >= ? AND created_at < ? GROUP BY 1, 2 ORDER BY 1, 2",
            (promotion_id, wallet, *period),
        ).fetchall()
    touched_rows = [(d, *figures) for d, figures in sorted(touched.items())]
    return touched_rows, all_rows, [tuple(r) for r in ledger], sorted(stores)


def _bounds(date_from: date, date_to: date, zone: str = "UTC") -> tuple[datetime, datetime]:
    """[local midnight starting date_from, local midnight ending date_to) of `zone`, in UTC."""
    tz = zone_of(zone)
    after = date_to + timedelta(days=1)
    start = datetime(date_from.year, date_from.month, date_from.day, tzinfo=tz)
    end = datetime(after.year, after.month, after.day, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def sales_report(
    storage: object,
    date_from: date,
    date_to: date,
    store_id: str | None = None,
    *,
    zone: str = "UTC",
) -> dict[str, Any]:
    """The sales report of the days [date_from, date_to] of `zone` (center.reporting.reports)."""
    start, end = _bounds(date_from, date_to, zone)
    days = sales_daily(storage, start, end, store_id, zone=zone)
    stores = sales_by_store(storage, start, end, store_id)
    return reports.sales_report(days, stores, date_from, date_to, store_id)


def loyalty_report(
    storage: object, date_from: date, date_to: date, wallet: str = "bonus", *, zone: str = "UTC"
) -> dict[str, Any]:
    """The weekly loyalty report of [date_from, date_to] (reports.loyalty_report)."""
    bounds = _bounds(date_from, date_to, zone)
    opening, rows, rules = ledger_daily(storage, *bounds, wallet, zone=zone)
    return reports.loyalty_report(opening, rows, date_from, date_to, wallet, rules)


def categories_report(
    storage: object,
    date_from: date,
    date_to: date,
    store_id: str | None = None,
    *,
    limit: int = 15,
    zone: str = "UTC",
) -> dict[str, Any]:
    """The top categories of [date_from, date_to] (center.reporting.reports.categories_report)."""
    rows = categories(storage, *_bounds(date_from, date_to, zone), store_id)
    return reports.categories_report(rows, date_from, date_to, limit=limit, store_id=store_id)


def segments_report(
    storage: object, date_from: date, date_to: date, *, zone: str = "UTC"
) -> dict[str, Any]:
    """Segment sizes per day of [date_from, date_to] (center.reporting.reports.segments_report)."""
    bounds = _bounds(date_from, date_to, zone)
    opening, rows = segment_counts(storage, *bounds, zone=zone)
    return reports.segments_report(opening, rows, date_from, date_to)


def promotion_report(
    storage: object,
    promotion_id: str,
    date_from: date,
    date_to: date,
    wallet: str = "bonus",
    *,
    zone: str = "UTC",
) -> dict[str, Any]:
    """The effect of one promotion over [date_from, date_to] (reports.promotion_report)."""
    bounds = _bounds(date_from, date_to, zone)
    touched, everything, ledger, stores = promotion_effect(
        storage, promotion_id, *bounds, wallet, zone=zone
    )
    return reports.promotion_report(
        promotion_id, touched, everything, ledger, stores, date_from, date_to, wallet
    )


def write_report(
    storage: object,
    date_from: date,
    date_to: date,
    out_dir: Path,
    *,
    progress: Callable[[str], None] = lambda _: None,
    zone: str = "UTC",
) -> Path:
    """Write report.html (KPIs, tables, the charts inline), report.json and one SVG per report
    into `out_dir`; return the HTML's path."""
    built: dict[str, dict[str, Any]] = {}
    steps = (
        ("sales", lambda: sales_report(storage, date_from, date_to, zone=zone)),
        ("loyalty", lambda: loyalty_report(storage, date_from, date_to, zone=zone)),
        ("categories", lambda: categories_report(storage, date_from, date_to, zone=zone)),
        ("segments", lambda: segments_report(storage, date_from, date_to, zone=zone)),
    )
    for number, (name, read) in enumerate(steps, 1):
        progress(f"[{number}/{len(steps) + 1}] reading {name} {date_from}..{date_to}")
        built[name] = read()
    progress(f"[{len(steps) + 1}/{len(steps) + 1}] drawing charts into {out_dir}")
    svgs = {
        "sales": reports.sales_svg(built["sales"]),
        "loyalty": reports.loyalty_svg(built["loyalty"]),
        "categories": reports.categories_svg(built["categories"]),
        "segments": reports.segments_svg(built["segments"]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, svg in svgs.items():
        (out_dir / f"{name}.svg").write_text(svg, encoding="utf-8")
    (out_dir / "report.json").write_text(
        json.dumps(built, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    page = out_dir / "report.html"
    page.write_text(
        reports.report_html(
            built["sales"], built["loyalty"], built["categories"], list(svgs.values())
        ),
        encoding="utf-8",
    )
    return page


def report_command(config: Config, date_from: str, date_to: str, out: str) -> int:
    """`loyalty-center report`: write the report files, progress on stderr, the path on stdout."""
    from center.storage import open_storage

    zone = config.reports.timezone
    try:
        today = datetime.now(zone_of(zone)).date()
        start, end = reports.parse_period(date_from, date_to, today)
    except MalformedRequest as exc:
        print(f"error: --{exc}", file=sys.stderr)
        return 2
    storage = open_storage(config.storage)
    try:
        page = write_report(
            storage,
            start,
            end,
            Path(out),
            progress=lambda line: print(line, file=sys.stderr),
            zone=zone,
        )
    finally:
        storage.close()
    print(page)
    return 0
