"""The analytics store's tables (ClickHouse SQL) and the status it reports.

Every fact table is a ReplacingMergeTree keyed by the Center's own id (sale id, sale id + line
number, ledger entry id, customer id, card number), so feeding a row twice leaves one row;
reports read them with FINAL. `daily_sales` is an aggregate the feeder recomputes for every day
a fed batch touches, so a late or re-sent sale re-aggregates its day.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ADDED_COLUMNS", "TABLES", "AnalyticsStatus", "table_ddl"]

_ENGINE = "ReplacingMergeTree(version)"

TABLES: dict[str, tuple[str, str, str]] = {
    # name: (columns, ORDER BY, PARTITION BY or "")
    "sales": (
        """sale_id String, store_id String, register_id String, card_no String,
        customer_id String, closed_at DateTime64(3, 'UTC'), day Date,
        received_at DateTime64(3, 'UTC'), subtotal_minor Int64, discount_minor Int64,
        total_minor Int64, line_count UInt32, items_milli Int64, is_return UInt8,
        fed_at DateTime64(3, 'UTC'), version UInt64""",
        "sale_id",
        "toYYYYMM(day)",
    ),
    "sale_lines": (
        """sale_id String, line_no UInt32, store_id String, customer_id String, day Date,
        product_id String, category String, department String, qty_milli Int64,
        amount_minor Int64, discount_minor Int64, is_return UInt8, version UInt64,
        brand String DEFAULT '', unit_cost_minor Nullable(Int64)""",
        "(sale_id, line_no)",
        "toYYYYMM(day)",
    ),
    "movements": (
        """entry_id UInt64, card_no String, customer_id String, wallet String, kind String,
        amount Int64, rule_id String, source String, active_from Nullable(DateTime64(3, 'UTC')),
        expires_at Nullable(DateTime64(3, 'UTC')), created_at DateTime64(3, 'UTC'),
        version UInt64""",
        "entry_id",
        "",
    ),
    "customers": (
        "customer_id String, attributes String, version UInt64",
        "customer_id",
        "",
    ),
    "cards": (
        "card_no String, customer_id String, status String, card_type String, version UInt64",
        "card_no",
        "",
    ),
    "daily_sales": (
        """day Date, store_id String, receipts UInt64, revenue_minor Int64,
        customers UInt64, items_milli Int64, version UInt64""",
        "(day, store_id)",
        "",
    ),
    "feed_state": (
        "name String, value String, updated_at DateTime64(3, 'UTC'), version UInt64",
        "name",
        "",
    ),
}
"""Every table of the analytics store."""


ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sale_lines", "brand String DEFAULT ''"),
    ("sale_lines", "unit_cost_minor Nullable(Int64)"),
)
"""Columns added after a table's first release (a store made before gets them empty: lines fed
earlier have no brand and no cost until `analytics rebuild`)."""


def table_ddl(database: str, name: str) -> str:
    """CREATE TABLE IF NOT EXISTS of one table on one node (docs/ANALYTICS.md has the cluster
    form: ReplicatedReplacingMergeTree under a Distributed table)."""
    columns, order, partition = TABLES[name]
    parts = f" PARTITION BY {partition}" if partition else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{name} ({columns}) "
        f"ENGINE = {_ENGINE}{parts} ORDER BY {order}"
    )


@dataclass(frozen=True, slots=True)
class AnalyticsStatus:
    """How far the analytics store has been fed."""

    engine: str
    sales_watermark: str
    """received_at of the newest sale fed (ISO UTC), "" before the first."""
    ledger_watermark: int
    """entry_id of the newest ledger movement fed."""
    fed_at: str
    """When the feeder last stored rows (ISO UTC), "" before the first."""
    lag_s: float | None
    """Seconds between the received_at of the newest sale the Center holds and of the newest
    one fed (0 when caught up); None before the first feed or when the Center holds none."""
    pending_sales: int
    rows: dict[str, int]
