"""Reward-scheme effectiveness: the incremental revenue of a scheme's participants against
matched customers without it (difference in differences within strata), read from the
analytics store only (docs/ANALYTICS.md).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import date
from fractions import Fraction
from typing import Any

from center.analytics.customer_base import previous_period
from center.analytics.engines import sql_literal
from center.analytics.store import AnalyticsStore
from center.errors import MalformedRequest

__all__ = ["RECEIPT_BANDS", "effect_report", "stratum_of"]

RECEIPT_BANDS = (1, 2, 4, 8)
"""Lower bounds of the bands of receipts in the period before: 1, 2-3, 4-7, 8+."""
REVENUE_BANDS = 5
"""Quintiles of revenue in the period before (among every customer with a receipt in it)."""


def stratum_of(receipts: int, revenue_rank: int, customers: int) -> str:
    """The stratum of a customer: their band of receipts and quintile of revenue before
    (`revenue_rank` = customers with strictly less revenue, of `customers`)."""
    band = max(i for i, low in enumerate(RECEIPT_BANDS) if receipts >= low)
    quintile = 1 + REVENUE_BANDS * revenue_rank // customers
    return f"r{band + 1}-m{quintile}"


def effect_report(
    store: AnalyticsStore,
    start: date,
    end: date,
    store_id: str | None = None,
    *,
    rule_id: str,
) -> dict[str, Any]:
    """Participants (a movement of `rule_id` with a positive amount in the period) against the
    customers without one, both with a receipt in the period before (the same length): in each
    stratum of that period's receipts and revenue, the participants' change of revenue minus
    the controls' mean change, summed over the participants (rounded half to even once)."""
    if not rule_id:
        raise MalformedRequest("rule_id", "expected the rule id of a reward scheme")
    before_start, before_end = previous_period(start, end)
    where = f"is_return = 0 AND customer_id != '' AND day >= {sql_literal(before_start)}"
    where += f" AND day <= {sql_literal(end)}"
    if store_id:
        where += f" AND store_id = {sql_literal(store_id)}"
    after = sql_literal(start)
    found = store.rows(
        f"""
        SELECT customer_id, countIf(day < {after}) AS pre_receipts,
          sumIf(total_minor, day < {after}) AS pre_minor,
          sumIf(total_minor, day >= {after}) AS post_minor
        FROM {store.table("sales")} WHERE {where} GROUP BY customer_id
        HAVING pre_receipts > 0 ORDER BY customer_id"""
    )
    participants = {
        r["customer_id"]
        for r in store.rows(
            f"SELECT DISTINCT customer_id FROM {store.table('movements')} "
            f"WHERE rule_id = {sql_literal(rule_id)} AND amount > 0 AND customer_id != '' "
            f"AND created_at >= toDateTime64({after}, 3, 'UTC') "
            f"AND created_at < toDateTime64({sql_literal(end)} + 1, 3, 'UTC')"
        )
    }
    revenues = sorted(int(r["pre_minor"]) for r in found)
    n = len(found)
    cells: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: {"p": [], "c": []})
    for r in found:
        pre = int(r["pre_minor"])
        cell = stratum_of(int(r["pre_receipts"]), bisect.bisect_left(revenues, pre), n)
        group = "p" if r["customer_id"] in participants else "c"
        cells[cell][group].append((pre, int(r["post_minor"])))
    rows = []
    incremental = Fraction(0)
    matched = 0
    for cell in sorted(cells):
        p, c = cells[cell]["p"], cells[cell]["c"]
        row: dict[str, Any] = {
            "stratum": cell,
            "participants": len(p),
            "controls": len(c),
            "participants_pre_minor": sum(x for x, _ in p),
            "participants_post_minor": sum(y for _, y in p),
            "controls_pre_minor": sum(x for x, _ in c),
            "controls_post_minor": sum(y for _, y in c),
            "incremental_minor": None,
        }
        if p and c:
            change = Fraction(sum(y - x for x, y in p)) - Fraction(
                len(p) * sum(y - x for x, y in c), len(c)
            )
            row["incremental_minor"] = round(change)
            incremental += change
            matched += len(p)
        rows.append(row)
    scored = [r for r in found if r["customer_id"] in participants]
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "store_id": store_id,
        "rule_id": rule_id,
        "compare_from": before_start.isoformat(),
        "compare_to": before_end.isoformat(),
        "participants": len(scored),
        "matched_participants": matched,
        "incremental_revenue_minor": round(incremental),
        "columns": [
            "stratum",
            "participants",
            "controls",
            "participants_pre_minor",
            "participants_post_minor",
            "controls_pre_minor",
            "controls_post_minor",
            "incremental_minor",
        ],
        "rows": rows,
    }
