"""SVG charts of the analytics reports, drawn with the head-office reports' chart primitives."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from center.reporting.reports import Series, bar_chart, format_minor, line_chart, svg_document

__all__ = ["ANALYTICS_SVG"]

_MAX_BARS = 30


def _period(report: Mapping[str, Any]) -> str:
    where = f", store {report['store_id']}" if report.get("store_id") else ""
    return f"{report['from']} to {report['to']}{where}"


def receipt_sizes_svg(report: Mapping[str, Any]) -> str:
    """Receipts per total band, then per line count."""
    bands = [
        (
            f"{format_minor(r['from_minor'])}+"
            if r["to_minor"] is None
            else f"{format_minor(r['from_minor'])}–{format_minor(r['to_minor'])}",
            r["receipts"],
        )
        for r in report["rows"]
    ]
    lines = [(f"{r['lines']} lines", r["receipts"]) for r in report["by_lines"][:_MAX_BARS]]
    return svg_document(
        bar_chart(
            f"Receipts by total, {_period(report)}",
            [b[0] for b in bands],
            [b[1] for b in bands],
            unit="receipts",
        ),
        bar_chart("Receipts by lines", [x[0] for x in lines], [x[1] for x in lines]),
    )


def rfm_svg(report: Mapping[str, Any]) -> str:
    """Customers per RFM segment."""
    rows = report["rows"]
    return svg_document(
        bar_chart(
            f"RFM segments, {_period(report)}",
            [r["segment"].replace("_", " ") for r in rows],
            [r["customers"] for r in rows],
            unit="customers",
        )
    )


def cohorts_svg(report: Mapping[str, Any]) -> str:
    """One retention line per cohort (per mille of the cohort, month 0 = 1000)."""
    months = [f"m{m}" for m in range(report["months"])]
    series = [
        Series(
            r["cohort"][:7],
            tuple(n * 1000 // r["customers"] if r["customers"] else 0 for n in r["retained"]),
        )
        for r in report["rows"][-8:]
    ]
    return svg_document(
        line_chart(f"Cohort retention, {_period(report)}", months, series, unit="‰ of cohort")
    )


def abc_svg(report: Mapping[str, Any]) -> str:
    """The top items' revenue, each labelled with its class."""
    rows = report["rows"][:_MAX_BARS]
    return svg_document(
        bar_chart(
            f"ABC of {report['level']}s, {_period(report)}",
            [f"{r['class']} {r['item']}" for r in rows],
            [r["revenue_minor"] for r in rows],
            money=True,
        )
    )


def associations_svg(report: Mapping[str, Any]) -> str:
    """The strongest pairs' lift (×1000)."""
    rows = report["rows"][:_MAX_BARS]
    return svg_document(
        bar_chart(
            f"Basket associations (lift × 1000), {_period(report)}",
            [f"{r['antecedent']} → {r['consequent']}" for r in rows],
            [round(r["lift"] * 1000) for r in rows],
        )
    )


def lifecycle_svg(report: Mapping[str, Any]) -> str:
    """One line per lifecycle stage over the months."""
    rows = report["rows"]
    stages = [c for c in report["columns"] if c != "month"]
    series = [Series(stage, tuple(r[stage] for r in rows)) for stage in stages]
    return svg_document(
        line_chart(
            f"Customers by lifecycle stage, {_period(report)}",
            [r["month"] for r in rows],
            series,
            unit="customers",
        )
    )


def balances_svg(report: Mapping[str, Any]) -> str:
    """Balance and pending at each week's end; credited, debited and burnt per week."""
    rows = report["rows"]
    weeks = [r["week"][5:] for r in rows]

    def series(*names: str) -> list[Series]:
        return [Series(n, tuple(r[n] for r in rows)) for n in names]

    title = f"{report['wallet']} wallet, {_period(report)}"
    return svg_document(
        line_chart(f"Balance at week end, {title}", weeks, series("balance", "pending")),
        line_chart("Per week", weeks, series("credited", "debited", "burnt")),
    )


def cards_svg(report: Mapping[str, Any]) -> str:
    """Cards per type and status, and how many of them were used in the period."""
    rows = report["rows"]
    labels = [f"{r['card_type']} {r['status']}" for r in rows]
    return svg_document(
        bar_chart(f"Cards, {_period(report)}", labels, [r["cards"] for r in rows], unit="cards"),
        bar_chart("Used in the period", labels, [r["used"] for r in rows], unit="cards"),
    )


def rfm_movement_svg(report: Mapping[str, Any]) -> str:
    """The largest flows between segments."""
    rows = sorted(report["rows"], key=lambda r: -r["customers"])[:_MAX_BARS]
    return svg_document(
        bar_chart(
            f"RFM movement from {report['compare_from']}..{report['compare_to']} "
            f"to {_period(report)}",
            [f"{r['from_segment']} → {r['to_segment']}" for r in rows],
            [r["customers"] for r in rows],
            unit="customers",
        )
    )


def churn_svg(report: Mapping[str, Any]) -> str:
    """Churn rate (per mille) per RFM segment."""
    rows = report["rows"]
    return svg_document(
        bar_chart(
            f"Churn by segment at {report['snapshot']}, {_period(report)}",
            [r["segment"].replace("_", " ") for r in rows],
            [round(r["churn_pct"] * 10) for r in rows],
            unit="‰ churned",
        ),
        bar_chart(
            "Customers per segment",
            [r["segment"].replace("_", " ") for r in rows],
            [r["customers"] for r in rows],
            unit="customers",
        ),
    )


def margin_svg(report: Mapping[str, Any]) -> str:
    """The items with the largest margin."""
    rows = report["rows"][:_MAX_BARS]
    return svg_document(
        bar_chart(
            f"Margin by {report['level']}, {_period(report)}",
            [r["item"] for r in rows],
            [r["margin_minor"] for r in rows],
            money=True,
        )
    )


def effect_svg(report: Mapping[str, Any]) -> str:
    """Incremental revenue per stratum (strata with participants and controls)."""
    rows = [r for r in report["rows"] if r["incremental_minor"] is not None]
    return svg_document(
        bar_chart(
            f"Incremental revenue of {report['rule_id']}, {_period(report)}",
            [f"{r['stratum']} ({r['participants']}/{r['controls']})" for r in rows],
            [r["incremental_minor"] for r in rows],
            money=True,
        )
    )


ANALYTICS_SVG: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "receipt-sizes": receipt_sizes_svg,
    "rfm": rfm_svg,
    "cohorts": cohorts_svg,
    "abc": abc_svg,
    "associations": associations_svg,
    "lifecycle": lifecycle_svg,
    "balances": balances_svg,
    "cards": cards_svg,
    "rfm-movement": rfm_movement_svg,
    "churn": churn_svg,
    "margin": margin_svg,
    "effect": effect_svg,
}
"""Report name -> its chart."""
