"""Reports on the customer base and the money it brings: cards, RFM movement between two
periods, churn by RFM segment, margin where the cost is known (docs/ANALYTICS.md).

Read from the analytics store only, with the same conventions as `queries`: a period of days
[start, end] in the chain's zone, an optional store and RFM segment; returns are not receipts.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from center.analytics.engines import sql_literal
from center.analytics.queries import (
    CATEGORY_SQL,
    RFM_SEGMENTS,
    check_segment,
    rfm_scored_sql,
    segment_filter,
)
from center.analytics.store import AnalyticsStore
from center.errors import MalformedRequest

__all__ = [
    "CHURN_DAYS",
    "MARGIN_LEVELS",
    "NO_SEGMENT",
    "cards_report",
    "churn_report",
    "margin_report",
    "previous_period",
    "rfm_movement_report",
]

NO_SEGMENT = "none"
"""The segment of a customer with no receipt in one of the two periods."""
CHURN_DAYS = 56
"""A customer of the 8 weeks before the snapshot churns with no receipt in the 8 after."""
MARGIN_LEVELS = ("category", "product", "brand")


def _head(start: date, end: date, store_id: str | None, segment: str | None) -> dict[str, Any]:
    head = {"from": start.isoformat(), "to": end.isoformat(), "store_id": store_id}
    return {**head, "segment": segment} if segment else head


def _sales_where(start: date, end: date, store_id: str | None) -> str:
    where = f"is_return = 0 AND day >= {sql_literal(start)} AND day <= {sql_literal(end)}"
    if store_id:
        where += f" AND store_id = {sql_literal(store_id)}"
    return where


def cards_report(
    store: AnalyticsStore,
    start: date,
    end: date,
    store_id: str | None = None,
    *,
    segment: str | None = None,
) -> dict[str, Any]:
    """Cards by type (physical / electronic) and status (active, blocked, ...): how many, of how
    many customers, how many were used in the period (in the store) and their receipts and
    revenue. With an RFM `segment`: the cards of its customers."""
    used = (
        f"SELECT card_no, count() AS receipts, sum(total_minor) AS revenue_minor "
        f"FROM {store.table('sales')} WHERE {_sales_where(start, end, store_id)} "
        "AND card_no != '' GROUP BY card_no"
    )
    cards = (
        f"SELECT card_no, customer_id, status, if(card_type = '', 'physical', card_type) AS kind "
        f"FROM {store.table('cards')} WHERE 1 = 1"
        + segment_filter(store, start, end, store_id, segment)
    )
    found = store.rows(
        f"""
        SELECT c.kind AS card_type, c.status AS status, count() AS cards,
          uniqExactIf(c.customer_id, c.customer_id != '') AS customers,
          countIf(u.receipts > 0) AS used, sum(u.receipts) AS receipts,
          sum(u.revenue_minor) AS revenue_minor
        FROM ({cards}) AS c LEFT JOIN ({used}) AS u ON u.card_no = c.card_no
        GROUP BY card_type, status ORDER BY card_type, status"""
    )
    columns = ["card_type", "status", "cards", "customers", "used", "receipts", "revenue_minor"]
    rows = [
        {c: (r[c] if c in ("card_type", "status") else int(r[c])) for c in columns} for r in found
    ]
    return {
        **_head(start, end, store_id, segment),
        "cards": sum(r["cards"] for r in rows),
        "used": sum(r["used"] for r in rows),
        "columns": columns,
        "rows": rows,
    }


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The period of the same length that ends the day before `start`."""
    days = (end - start).days + 1
    return start - timedelta(days=days), start - timedelta(days=1)


def _segments_of(
    store: AnalyticsStore, start: date, end: date, store_id: str | None
) -> dict[str, str]:
    scored = rfm_scored_sql(store, start, end, store_id)
    found = store.rows(f"SELECT customer_id, segment FROM ({scored})")
    return {r["customer_id"]: r["segment"] for r in found}


def rfm_movement_report(
    store: AnalyticsStore,
    start: date,
    end: date,
    store_id: str | None = None,
    *,
    previous: tuple[date, date] | None = None,
) -> dict[str, Any]:
    """How customers moved between RFM segments from the `previous` period (default: the same
    length just before) to this one; a customer absent from one period is in segment "none"."""
    before_start, before_end = previous or previous_period(start, end)
    if before_end >= start:
        raise MalformedRequest("compare_to", "the compared period must end before `from`")
    before = _segments_of(store, before_start, before_end, store_id)
    after = _segments_of(store, start, end, store_id)
    flows: dict[tuple[str, str], int] = {}
    for customer in before.keys() | after.keys():
        key = (before.get(customer, NO_SEGMENT), after.get(customer, NO_SEGMENT))
        flows[key] = flows.get(key, 0) + 1
    order = {name: i for i, name in enumerate((*RFM_SEGMENTS, NO_SEGMENT))}
    rows = [
        {"from_segment": a, "to_segment": b, "customers": n}
        for (a, b), n in sorted(flows.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]]))
    ]
    return {
        **_head(start, end, store_id, None),
        "compare_from": before_start.isoformat(),
        "compare_to": before_end.isoformat(),
        "stayed": sum(n for (a, b), n in flows.items() if a == b),
        "columns": ["from_segment", "to_segment", "customers"],
        "rows": rows,
    }


def churn_report(
    store: AnalyticsStore, start: date, end: date, store_id: str | None = None
) -> dict[str, Any]:
    """Churn by RFM segment at the snapshot `end` - 55 days: the customers with a receipt in
    the 8 weeks before it, their segment over [start, snapshot), and the share of them with no
    receipt from the snapshot to `end` (8 weeks)."""
    snapshot = end - timedelta(days=CHURN_DAYS - 1)
    window_start = snapshot - timedelta(days=CHURN_DAYS)
    if window_start < start:
        raise MalformedRequest(
            "from", f"churn needs 16 weeks: from {window_start.isoformat()} or earlier"
        )
    scored = rfm_scored_sql(store, start, snapshot - timedelta(days=1), store_id)
    base = "is_return = 0 AND customer_id != ''"
    if store_id:
        base += f" AND store_id = {sql_literal(store_id)}"
    sales = store.table("sales")
    found = store.rows(
        f"""
        SELECT p.segment AS segment, count() AS customers,
          countIf(a.customer_id = '') AS churned
        FROM (SELECT customer_id, segment, recency FROM ({scored})
              WHERE recency < {CHURN_DAYS}) AS p
        LEFT JOIN (SELECT DISTINCT customer_id FROM {sales} WHERE {base}
              AND day >= {sql_literal(snapshot)} AND day <= {sql_literal(end)}) AS a
          ON a.customer_id = p.customer_id
        GROUP BY segment"""
    )
    by = {r["segment"]: r for r in found}
    rows: list[dict[str, Any]] = []
    for name in RFM_SEGMENTS:
        r = by.get(name)
        customers = int(r["customers"]) if r else 0
        churned = int(r["churned"]) if r else 0
        rows.append(
            {
                "segment": name,
                "customers": customers,
                "churned": churned,
                "churn_pct": round(100 * churned / customers, 2) if customers else 0.0,
            }
        )
    customers = sum(r["customers"] for r in rows)
    churned = sum(r["churned"] for r in rows)
    return {
        **_head(start, end, store_id, None),
        "snapshot": snapshot.isoformat(),
        "customers": customers,
        "churned": churned,
        "churn_pct": round(100 * churned / customers, 2) if customers else 0.0,
        "columns": ["segment", "customers", "churned", "churn_pct"],
        "rows": rows,
    }


def margin_report(
    store: AnalyticsStore,
    start: date,
    end: date,
    store_id: str | None = None,
    *,
    level: str = "category",
    segment: str | None = None,
    limit: int = 0,
) -> dict[str, Any]:
    """Revenue (line amount less discounts) and margin by category, product or brand, where the
    product's cost is known: a line's cost is its unit cost × quantity, half a minor unit up;
    `coverage_pct` is the share of the revenue whose cost is known."""
    if level not in MARGIN_LEVELS:
        raise MalformedRequest(
            "level", f"expected one of {', '.join(MARGIN_LEVELS)}, got {level[:40]!r}"
        )
    check_segment(segment)
    key = {"product": "product_id", "brand": "if(brand != '', brand, '(none)')"}.get(
        level, CATEGORY_SQL
    )
    where = _sales_where(start, end, store_id) + segment_filter(
        store, start, end, store_id, segment
    )
    found = store.rows(
        f"""
        SELECT {key} AS item, sum(amount_minor - discount_minor) AS revenue_minor,
          sumIf(amount_minor - discount_minor, unit_cost_minor IS NOT NULL) AS costed_minor,
          sumIf(intDiv(assumeNotNull(unit_cost_minor) * qty_milli + 500, 1000),
                unit_cost_minor IS NOT NULL) AS cost_minor
        FROM {store.table("sale_lines")} WHERE {where}
        GROUP BY item ORDER BY costed_minor - cost_minor DESC, item"""
    )
    rows = []
    for r in found:
        revenue, costed, cost = (
            int(r["revenue_minor"]),
            int(r["costed_minor"]),
            int(r["cost_minor"]),
        )
        rows.append(
            {
                "item": r["item"],
                "revenue_minor": revenue,
                "costed_revenue_minor": costed,
                "cost_minor": cost,
                "margin_minor": costed - cost,
                "margin_pct": round(100 * (costed - cost) / costed, 2) if costed else None,
                "coverage_pct": round(100 * costed / revenue, 2) if revenue else 0.0,
            }
        )
    revenue = sum(r["revenue_minor"] for r in rows)
    costed = sum(r["costed_revenue_minor"] for r in rows)
    margin = sum(r["margin_minor"] for r in rows)
    return {
        **_head(start, end, store_id, segment),
        "level": level,
        "revenue_minor": revenue,
        "costed_revenue_minor": costed,
        "margin_minor": margin,
        "margin_pct": round(100 * margin / costed, 2) if costed else None,
        "columns": [
            "item",
            "revenue_minor",
            "costed_revenue_minor",
            "cost_minor",
            "margin_minor",
            "margin_pct",
            "coverage_pct",
        ],
        "rows": rows[:limit] if limit else rows,
    }
