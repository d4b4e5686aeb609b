"""The analytics reports: ClickHouse SQL over the analytics store only (docs/ANALYTICS.md).

Each report takes the store, a period of calendar days [start, end] (the chain's zone, as fed)
and an optional store id, and returns a dict with `columns` and `rows` (what the CSV export
writes) plus the report's own summary figures. Returns are not receipts: every report reads
the sales and lines with is_return = 0.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from center.analytics.engines import sql_literal
from center.analytics.store import AnalyticsStore
from center.errors import MalformedRequest

__all__ = [
    "ABC_LEVELS",
    "LIFECYCLE_STAGES",
    "REPORTS",
    "RFM_SEGMENTS",
    "abc_report",
    "associations_report",
    "balances_report",
    "cohorts_report",
    "lifecycle_report",
    "receipt_sizes_report",
    "report_csv",
    "report_table",
    "rfm_report",
]

MAX_BINS = 40
CATEGORY_SQL = "if(category != '', category, if(department != '', department, '(none)'))"
"""A line's category: the product's category, else its department."""
ABC_LEVELS = ("category", "product", "brand", "customer")
RFM_SEGMENTS = ("champions", "at_risk", "loyal", "new", "hibernating", "needs_attention")
"""In the order they are tried (docs/ANALYTICS.md): the first whose rule holds names it."""


def _where(start: date, end: date, store_id: str | None) -> str:
    where = f"is_return = 0 AND day >= {sql_literal(start)} AND day <= {sql_literal(end)}"
    if store_id:
        where += f" AND store_id = {sql_literal(store_id)}"
    return where


def _head(
    start: date, end: date, store_id: str | None, segment: str | None = None
) -> dict[str, Any]:
    head = {"from": start.isoformat(), "to": end.isoformat(), "store_id": store_id}
    return {**head, "segment": segment} if segment else head


def receipt_sizes_report(
    store: AnalyticsStore,
    start: date,
    end: date,
    store_id: str | None = None,
    *,
    bin_minor: int = 500,
    segment: str | None = None,
) -> dict[str, Any]:
    """Receipts per total band of `bin_minor` (the last band open-ended) and per line count
    (of the customers of an RFM `segment` when given)."""
    if not 1 <= bin_minor <= 10**9:
        raise MalformedRequest("bin_minor", f"expected 1..1000000000, got {bin_minor}")
    where = _where(start, end, store_id) + segment_filter(store, start, end, store_id, segment)
    sales = store.table("sales")
    bands = store.rows(
        f"SELECT least(intDiv(greatest(total_minor, 0), {bin_minor}), {MAX_BINS - 1}) AS band, "
        f"count() AS receipts, sum(total_minor) AS revenue_minor FROM {sales} WHERE {where} "
        "GROUP BY band ORDER BY band"
    )
    by_lines = store.rows(
        f"SELECT line_count AS lines, count() AS receipts FROM {sales} WHERE {where} "
        "GROUP BY lines ORDER BY lines"
    )
    total = store.rows(
        f"SELECT count() AS receipts, sum(total_minor) AS revenue_minor FROM {sales} WHERE {where}"
    )[0]
    receipts = int(total["receipts"])
    rows = [
        {
            "from_minor": int(b["band"]) * bin_minor,
            "to_minor": None
            if int(b["band"]) == MAX_BINS - 1
            else (int(b["band"]) + 1) * bin_minor,
            "receipts": int(b["receipts"]),
            "revenue_minor": int(b["revenue_minor"]),
        }
        for b in bands
    ]
    return {
        **_head(start, end, store_id, segment),
        "bin_minor": bin_minor,
        "receipts": receipts,
        "average_minor": int(total["revenue_minor"]) // receipts if receipts else 0,
        "by_lines": [{"lines": int(r["lines"]), "receipts": int(r["receipts"])} for r in by_lines],
        "columns": ["from_minor", "to_minor", "receipts", "revenue_minor"],
        "rows": rows,
    }


RFM_SEGMENT_SQL = (
    "multiIf(r >= 4 AND f >= 4, 'champions', r <= 2 AND f >= 3, 'at_risk', f >= 3, 'loyal', "
    "r >= 4, 'new', r <= 2, 'hibernating', 'needs_attention')"
)
"""The segment of an RFM-scored row (docs/ANALYTICS.md), the first rule that holds."""


def rfm_scored_sql(store: AnalyticsStore, start: date, end: date, store_id: str | None) -> str:
    """A SELECT of customer_id, recency, frequency, monetary, r, f, m and segment over the
    customers with a receipt in the period."""
    where = _where(start, end, store_id) + " AND customer_id != ''"
    return f"""
        SELECT *, {RFM_SEGMENT_SQL} AS segment FROM (
        SELECT customer_id, recency, frequency, monetary,
          1 + intDiv(5 * (rank() OVER (ORDER BY recency DESC) - 1), n) AS r,
          1 + intDiv(5 * (rank() OVER (ORDER BY frequency) - 1), n) AS f,
          1 + intDiv(5 * (rank() OVER (ORDER BY monetary) - 1), n) AS m
        FROM (
          SELECT customer_id, dateDiff('day', max(day), {sql_literal(end)}) AS recency,
            count() AS frequency, sum(total_minor) AS monetary, count() OVER () AS n
          FROM {store.table("sales")} WHERE {where} GROUP BY customer_id
        ))"""


def check_segment(segment: str | None) -> str | None:
    """`segment` when it names an RFM segment (or is empty: None); MalformedRequest otherwise."""
    if not segment:
        return None
    if segment not in RFM_SEGMENTS:
        raise MalformedRequest(
            "segment", f"expected one of {', '.join(RFM_SEGMENTS)}, got {segment[:40]!r}"
        )
    return segment


def segment_filter(
    store: AnalyticsStore, start: date, end: date, store_id: str | None, segment: str | None
) -> str:
    """ " AND customer_id IN (the customers of `segment` over the period)", or "" without one."""
    if not check_segment(segment):
        return ""
    scored = rfm_scored_sql(store, start, end, store_id)
    return (
        f" AND customer_id IN (SELECT customer_id FROM ({scored}) "
        f"WHERE segment = {sql_literal(segment)})"
    )


def rfm_report(
    store: AnalyticsStore, start: date, end: date, store_id: str | None = None
) -> dict[str, Any]:
    """Customers with a receipt in the period scored 1..5 on recency, frequency and money
    (1 + 5 × share of customers strictly worse), grouped into named segments and R×F cells."""
    scored = rfm_scored_sql(store, start, end, store_id)
    cells = store.rows(
        f"SELECT r, f, any(segment) AS segment, count() AS customers, "
        f"sum(monetary) AS revenue_minor, "
        f"sum(frequency) AS receipts FROM ({scored}) GROUP BY r, f ORDER BY r, f"
    )
    segments: dict[str, dict[str, int]] = {
        name: {"customers": 0, "receipts": 0, "revenue_minor": 0} for name in RFM_SEGMENTS
    }
    for cell in cells:
        into = segments[cell["segment"]]
        for key in into:
            into[key] += int(cell[key])
    rows = [{"segment": name, **figures} for name, figures in segments.items()]
    return {
        **_head(start, end, store_id),
        "customers": sum(s["customers"] for s in segments.values()),
        "cells": [
            {
                "r": int(c["r"]),
                "f": int(c["f"]),
                "segment": c["segment"],
                "customers": int(c["customers"]),
            }
            for c in cells
        ],
        "columns": ["segment", "customers", "receipts", "revenue_minor"],
        "rows": rows,
    }


def cohorts_report(
    store: AnalyticsStore,
    start: date,
    end: date,
    store_id: str | None = None,
    *,
    segment: str | None = None,
) -> dict[str, Any]:
    """Customers by the month of their first receipt (in [start, end]) and the share of them
    with a receipt in each later month up to `end` (of an RFM `segment` of the period)."""
    base = f"is_return = 0 AND customer_id != '' AND day <= {sql_literal(end)}"
    if store_id:
        base += f" AND store_id = {sql_literal(store_id)}"
    base += segment_filter(store, start, end, store_id, segment)
    sales = store.table("sales")
    found = store.rows(
        f"""
        SELECT toString(f.cohort) AS cohort, dateDiff('month', f.cohort, a.month) AS m,
          count() AS customers
        FROM (SELECT customer_id, toStartOfMonth(min(day)) AS cohort FROM {sales}
              WHERE {base} GROUP BY customer_id) AS f
        INNER JOIN (SELECT DISTINCT customer_id, toStartOfMonth(day) AS month FROM {sales}
              WHERE {base}) AS a ON a.customer_id = f.customer_id
        WHERE f.cohort >= toStartOfMonth({sql_literal(start)})
        GROUP BY cohort, m ORDER BY cohort, m"""
    )
    cohorts: dict[str, dict[int, int]] = {}
    for row in found:
        cohorts.setdefault(row["cohort"], {})[int(row["m"])] = int(row["customers"])
    width = max((max(months) for months in cohorts.values()), default=-1) + 1
    rows = []
    for cohort, months in sorted(cohorts.items()):
        size = months.get(0, 0)
        retained = [months.get(m, 0) for m in range(width)]
        rows.append(
            {
                "cohort": cohort,
                "customers": size,
                "retained": retained,
                "retention_pct": [round(100 * n / size, 1) if size else 0.0 for n in retained],
            }
        )
    return {
        **_head(start, end, store_id, segment),
        "months": width,
        "columns": ["cohort", "customers", *(f"m{m}" for m in range(width))],
        "rows": rows,
    }


def abc_report(
    store: AnalyticsStore,
    start: date,
    end: date,
    store_id: str | None = None,
    *,
    level: str = "category",
    limit: int = 0,
    segment: str | None = None,
) -> dict[str, Any]:
    """Categories, products, brands or customers by revenue (line amount less its discounts),
    descending: class A while the revenue before an item is under 80 % of the total, B under
    95 %, C the rest. Customers: lines without a customer are left out."""
    if level not in ABC_LEVELS:
        raise MalformedRequest("level", f"expected one of {', '.join(ABC_LEVELS)}, got {level!r}")
    key = {
        "product": "product_id",
        "brand": "if(brand != '', brand, '(none)')",
        "customer": "customer_id",
    }.get(level, CATEGORY_SQL)
    where = _where(start, end, store_id) + segment_filter(store, start, end, store_id, segment)
    if level == "customer":
        where += " AND customer_id != ''"
    found = store.rows(
        f"SELECT {key} AS item, sum(amount_minor - discount_minor) AS revenue_minor, "
        f"sum(qty_milli) AS qty_milli, uniqExact(sale_id) AS receipts "
        f"FROM {store.table('sale_lines')} WHERE {where} "
        "GROUP BY item ORDER BY revenue_minor DESC, item"
    )
    total = sum(int(r["revenue_minor"]) for r in found)
    before = 0
    rows: list[dict[str, Any]] = []
    classes = {"A": 0, "B": 0, "C": 0}
    for r in found:
        revenue = int(r["revenue_minor"])
        grade = "A" if before * 100 < 80 * total else "B" if before * 100 < 95 * total else "C"
        classes[grade] += 1
        before += revenue
        rows.append(
            {
                "item": r["item"],
                "class": grade,
                "revenue_minor": revenue,
                "cumulative_minor": before,
                "qty_milli": int(r["qty_milli"]),
                "receipts": int(r["receipts"]),
            }
        )
    return {
        **_head(start, end, store_id, segment),
        "level": level,
        "revenue_minor": total,
        "classes": classes,
        "columns": ["item", "class", "revenue_minor", "cumulative_minor", "qty_milli", "receipts"],
        "rows": rows[:limit] if limit else rows,
    }


def associations_report(
    store: AnalyticsStore,
    start: date,
    end: date,
    store_id: str | None = None,
    *,
    min_receipts: int | None = None,
    limit: int = 50,
    segment: str | None = None,
) -> dict[str, Any]:
    """Category pairs bought in the same receipt: support (share of receipts with both),
    confidence (of those with the first, the share with the second) and lift (confidence over
    the second's support); pairs in at least `min_receipts` receipts (default: 2, or 0.1 % of
    the receipts when more), by lift. With an RFM `segment`: the receipts of its customers."""
    where = _where(start, end, store_id) + segment_filter(store, start, end, store_id, segment)
    baskets = (
        f"SELECT sale_id, groupUniqArray({CATEGORY_SQL}) AS items "
        f"FROM {store.table('sale_lines')} WHERE {where} GROUP BY sale_id"
    )
    total = int(store.rows(f"SELECT count() AS n FROM ({baskets})")[0]["n"])
    if min_receipts is None:
        min_receipts = max(2, -(-total // 1000))
    singles = {
        r["item"]: int(r["n"])
        for r in store.rows(
            f"SELECT arrayJoin(items) AS item, count() AS n FROM ({baskets}) GROUP BY item"
        )
    }
    # Each unordered pair once (a < b), then both directions: half the pairs to count.
    pairs = store.rows(
        f"""
        SELECT p.1 AS a, p.2 AS b, count() AS n FROM (
          SELECT arrayJoin(arrayFlatten(arrayMap(x -> arrayMap(y -> (x, y),
            arrayFilter(y -> y > x, items)), items))) AS p FROM ({baskets}))
        GROUP BY a, b HAVING n >= {int(min_receipts)}"""
    )
    rows = []
    for p in pairs:
        both = int(p["n"])
        for first, second in ((p["a"], p["b"]), (p["b"], p["a"])):
            confidence = both / singles[first]
            rows.append(
                {
                    "antecedent": first,
                    "consequent": second,
                    "receipts": both,
                    "support": round(both / total, 6),
                    "confidence": round(confidence, 6),
                    "lift": round(confidence / (singles[second] / total), 6),
                }
            )
    rows.sort(key=lambda r: (-r["lift"], -r["receipts"], r["antecedent"], r["consequent"]))
    return {
        **_head(start, end, store_id, segment),
        "receipts": total,
        "min_receipts": min_receipts,
        "columns": ["antecedent", "consequent", "receipts", "support", "confidence", "lift"],
        "rows": rows[:limit],
    }


LIFECYCLE_STAGES = ("new", "active", "returned", "sleeping", "churned")
CHURN_MONTHS = 3
"""A customer with no receipt in this many months is churned (before: sleeping)."""


def lifecycle_report(
    store: AnalyticsStore,
    start: date,
    end: date,
    store_id: str | None = None,
    *,
    segment: str | None = None,
) -> dict[str, Any]:
    """Customers per lifecycle stage in each month of the period (docs/ANALYTICS.md): new (first
    receipt this month), active (a receipt this month and in one of the 3 before), returned (a
    receipt this month, none in the 3 before), sleeping (none this month, the last 1..2 months
    before), churned (the last 3 or more months before). With an RFM `segment` of the period:
    its customers only."""
    base = f"is_return = 0 AND customer_id != '' AND day <= {sql_literal(end)}"
    if store_id:
        base += f" AND store_id = {sql_literal(store_id)}"
    base += segment_filter(store, start, end, store_id, segment)
    lo = start.year * 12 + start.month - 1
    hi = end.year * 12 + end.month - 1
    found = store.rows(
        f"""
        SELECT m, multiIf(first = m, 'new',
            here AND m - prev <= {CHURN_MONTHS}, 'active', here, 'returned',
            m - prev < {CHURN_MONTHS}, 'sleeping', 'churned') AS stage, count() AS customers
        FROM (
          SELECT arrayJoin(range({lo}, {hi + 1})) AS m, arrayMin(months) AS first,
            has(months, m) AS here, arrayMax(arrayFilter(x -> x < m, months)) AS prev
          FROM (SELECT customer_id, groupUniqArray(toYear(day) * 12 + toMonth(day) - 1) AS months
                FROM {store.table("sales")} WHERE {base} GROUP BY customer_id)
        ) WHERE first <= m GROUP BY m, stage ORDER BY m, stage"""
    )
    months: dict[int, dict[str, int]] = {
        m: dict.fromkeys(LIFECYCLE_STAGES, 0) for m in range(lo, hi + 1)
    }
    for row in found:
        months[int(row["m"])][row["stage"]] = int(row["customers"])
    rows = [{"month": f"{m // 12:04d}-{m % 12 + 1:02d}", **stages} for m, stages in months.items()]
    return {
        **_head(start, end, store_id, segment),
        "columns": ["month", *LIFECYCLE_STAGES],
        "rows": rows,
    }


def balances_report(
    store: AnalyticsStore, start: date, end: date, wallet: str = "bonus"
) -> dict[str, Any]:
    """Chain-wide ledger by week (Monday to Monday, UTC) of one wallet: credited and debited
    in the week, burnt (expiry movements) in it, and at the week's end the available balance
    (every movement before it, less accruals not yet active) and the pending accruals."""
    first = start - timedelta(days=start.weekday())
    weeks = [first + timedelta(weeks=i) for i in range((end - first).days // 7 + 1)]
    listed = ", ".join(sql_literal(w) for w in weeks)
    found = store.rows(
        f"""
        SELECT toString(w) AS week,
          sumIf(amount, created_at < e AND (active_from IS NULL OR active_from < e)) AS balance,
          sumIf(amount, created_at < e AND active_from >= e) AS pending,
          sumIf(amount, amount > 0 AND created_at >= s AND created_at < e) AS credited,
          -sumIf(amount, amount < 0 AND kind != 'expire' AND created_at >= s AND created_at < e)
            AS debited,
          -sumIf(amount, kind = 'expire' AND created_at >= s AND created_at < e) AS burnt
        FROM (SELECT amount, kind, created_at, active_from, w,
                toDateTime64(w, 3, 'UTC') AS s, toDateTime64(w + 7, 3, 'UTC') AS e
              FROM {store.table("movements")} ARRAY JOIN [{listed}] AS w
              WHERE wallet = {sql_literal(wallet)})
        GROUP BY w ORDER BY w"""
    )
    by_week = {r["week"]: r for r in found}
    columns = ["week", "credited", "debited", "burnt", "balance", "pending"]
    rows = []
    for w in weeks:
        r = by_week.get(w.isoformat(), {})
        rows.append({"week": w.isoformat(), **{c: int(r.get(c, 0)) for c in columns[1:]}})
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "store_id": None,
        "wallet": wallet,
        "columns": columns,
        "rows": rows,
    }


REPORTS = (
    "receipt-sizes", "rfm", "cohorts", "abc", "associations", "lifecycle", "balances", "cards",
    "rfm-movement", "churn", "margin", "effect",
)  # fmt: skip
"""The analytics reports served under /v1/analytics/<name>."""


def report_table(report: Mapping[str, Any]) -> list[list[Any]]:
    """The report's rows as lists under its `columns` (list values spread over their columns,
    None as "")."""
    table: list[list[Any]] = []
    for row in report["rows"]:
        if "retained" in row:
            table.append([row["cohort"], row["customers"], *row["retained"]])
            continue
        table.append(["" if row.get(c) is None else row[c] for c in report["columns"]])
    return table


def report_csv(report: Mapping[str, Any]) -> str:
    """The report's rows as CSV under its `columns`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(report["columns"]))
    writer.writerows(report_table(report))
    return out.getvalue()
