"""The report as one HTML page: key figures, tables and the SVG charts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from center.reporting.charts import escaped, store_label
from center.reporting.figures import format_count, format_minor

__all__ = ["report_html"]

# -- HTML ---------------------------------------------------------------------------------------


def _kpi_rows(sales: Mapping[str, Any], loyalty: Mapping[str, Any]) -> list[tuple[str, str]]:
    total = sales["total"]
    flows = loyalty["total"]
    share = Decimal(total["card_share"]) * 100
    return [
        ("Receipts", format_count(total["receipts"])),
        ("Revenue", format_minor(total["revenue_minor"])),
        ("Discounts", format_minor(total["discount_minor"])),
        ("Average receipt", format_minor(total["average_receipt_minor"])),
        ("Receipts with a card", f"{format_count(total['card_receipts'])} ({share:.1f} %)"),
        ("Returns", f"{format_count(total['returns'])} ({format_minor(total['refund_minor'])})"),
        ("Net revenue", format_minor(total["net_revenue_minor"])),
        (f"Points accrued ({loyalty['wallet']})", format_count(flows["accrued"])),
        ("Points spent", format_count(flows["spent"])),
        ("Points expired", format_count(flows["expired"])),
        (
            "Points adjusted / returned / other",
            " / ".join(format_count(flows[k]) for k in ("adjusted", "returned", "other")),
        ),
        ("Outstanding points at the start", format_count(loyalty["opening_liability"])),
        ("Outstanding points at the end", format_count(loyalty["closing_liability"])),
    ]


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> str:
    cells = "".join(f"<th>{escaped(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escaped(v)}</td>' if i >= numeric_from else f"<td>{escaped(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def report_html(
    sales: Mapping[str, Any],
    loyalty: Mapping[str, Any],
    categories: Mapping[str, Any],
    svgs: Sequence[str],
) -> str:
    """One self-contained page: the KPI table, sales per store, then the charts inline."""
    stores = _table(
        ("store", "receipts", "revenue", "average receipt", "card share", "discounts"),
        (
            (
                store_label(s),
                format_count(s["receipts"]),
                format_minor(s["revenue_minor"]),
                format_minor(s["average_receipt_minor"]),
                f"{Decimal(s['card_share']) * 100:.1f} %",
                format_minor(s["discount_minor"]),
            )
            for s in sales["stores"]
        ),
    )
    cats = _table(
        ("category", "revenue", "discounts", "receipts"),
        (
            (
                c["category"],
                format_minor(c["revenue_minor"]),
                format_minor(c["discount_minor"]),
                format_count(c["receipts"]),
            )
            for c in categories["categories"]
        ),
    )
    charts = "".join(f'<div class="chart">{svg}</div>' for svg in svgs)
    title = f"Loyalty report {sales['from']} to {sales['to']}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escaped(title)}</title><style>"
        "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0 24px}"
        "th,td{border:1px solid #ddd;padding:4px 10px}th{background:#f3f3f3;text-align:left}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums}.chart{margin:12px 0}"
        f"</style></head><body><h1>{escaped(title)}</h1>"
        "<p>Amounts in currency units; days are UTC days, weeks start on Monday.</p>"
        f"<h2>Key figures</h2>{_table(('figure', 'value'), _kpi_rows(sales, loyalty))}"
        f"<h2>Stores</h2>{stores}<h2>Top categories</h2>{cats}<h2>Charts</h2>{charts}"
        "</body></html>\n"
    )
