"""Head-office reports: figures (report dicts), charts (SVG) and the HTML page, in one face.

Pure and deterministic: no I/O, no clock, the same input gives the same bytes.
"""

from __future__ import annotations

from center.reporting.charts import (
    MAX_STORE_BARS,
    Chart,
    Series,
    bar_chart,
    categories_svg,
    line_chart,
    loyalty_svg,
    promotion_svg,
    sales_svg,
    segments_svg,
    svg_document,
)
from center.reporting.figures import (
    MAX_DAYS,
    NO_CATEGORY,
    PROMOTION_MAX_DAYS,
    categories_report,
    days_between,
    format_count,
    format_minor,
    loyalty_report,
    parse_period,
    promotion_report,
    sales_report,
    segments_report,
)
from center.reporting.page import report_html

__all__ = [
    "MAX_DAYS",
    "MAX_STORE_BARS",
    "NO_CATEGORY",
    "PROMOTION_MAX_DAYS",
    "Chart",
    "Series",
    "bar_chart",
    "categories_report",
    "categories_svg",
    "days_between",
    "format_count",
    "format_minor",
    "line_chart",
    "loyalty_report",
    "loyalty_svg",
    "parse_period",
    "promotion_report",
    "promotion_svg",
    "report_html",
    "sales_report",
    "sales_svg",
    "segments_report",
    "segments_svg",
    "svg_document",
]
