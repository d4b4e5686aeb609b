"""Reward-scheme effectiveness: the incremental revenue against matched customers, checked
against plain Python over the same sales and the Center's own ledger."""

from __future__ import annotations

import dataclasses
import random
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from center.analytics.charts import effect_svg
from center.analytics.effect import effect_report
from center.analytics.store import AnalyticsStore
from center.storage import Storage
from sync_protocol import Sale
from tests.center.center_factories import make_sale
from tests.center.test_center_analytics import CARDS, _feed, _master, analytics

__all__ = ["analytics"]

START, END = date(2024, 3, 1), date(2024, 4, 30)
RULE = "base-accrual-3"


def _history() -> tuple[list[Sale], list[Sale]]:
    """Every customer shops before; half of them join the scheme (an accrual) after, and those
    spend more."""
    rnd = random.Random(11)
    before, after = [], []
    seq = 0
    for i, card in enumerate(CARDS):
        joins = i % 2 == 0
        for period, target in ((date(2024, 1, 2), before), (START, after)):
            for _ in range(rnd.randint(1, 9)):
                seq += 1
                amount = rnd.randrange(100, 3000) + (600 if joins and target is after else 0)
                closed = datetime(period.year, period.month, period.day, 12, tzinfo=UTC)
                closed += timedelta(days=rnd.randrange(0, 55), minutes=seq)
                sale = make_sale(
                    seq,
                    card_no=card,
                    amounts=(amount,),
                    accrue=5 if joins and target is after else 0,
                )
                target.append(
                    dataclasses.replace(
                        sale, opened_at=closed - timedelta(minutes=1), closed_at=closed
                    )
                )
    return before, after


def test_incremental_revenue_against_matched_customers(
    storage: Storage, analytics: AnalyticsStore
) -> None:
    storage.feed.upsert_master(_master())
    before, after = _history()
    storage.sales.ingest(before, datetime(2024, 2, 28, tzinfo=UTC))
    storage.sales.ingest(after, datetime(2024, 4, 29, tzinfo=UTC))
    _feed(storage, analytics)
    report = effect_report(analytics, START, END, rule_id=RULE)

    db = storage.db  # type: ignore[attr-defined]
    joined = {
        str(r[0])
        for r in db.execute(
            "SELECT DISTINCT c.customer_id FROM ledger l JOIN cards c ON c.card_no = l.card_no "
            "WHERE l.rule_id = ? AND l.amount > 0",
            (RULE,),
        ).fetchall()
    }
    assert joined == {f"hh-{i}" for i in range(0, len(CARDS), 2)}
    pre_start = START - timedelta(days=(END - START).days + 1)
    pre: dict[str, list[int]] = defaultdict(list)
    post: dict[str, int] = defaultdict(int)
    for s in before + after:
        customer = f"hh-{CARDS.index(s.card_no)}"
        day = s.closed_at.date()
        if pre_start <= day < START:
            pre[customer].append(s.total_minor)
        elif START <= day <= END:
            post[customer] += s.total_minor
    revenues = {c: sum(v) for c, v in pre.items()}
    n = len(revenues)

    def stratum(c: str) -> str:
        k = len(pre[c])
        band = 1 if k == 1 else 2 if k < 4 else 3 if k < 8 else 4
        below = sum(1 for v in revenues.values() if v < revenues[c])
        return f"r{band}-m{1 + 5 * below // n}"

    cells: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"p": [], "c": []})
    for c in revenues:
        cells[stratum(c)]["p" if c in joined else "c"].append(post[c] - revenues[c])
    total = Fraction(0)
    want = {}
    for name, cell in cells.items():
        if cell["p"] and cell["c"]:
            change = sum(cell["p"]) - Fraction(len(cell["p"]) * sum(cell["c"]), len(cell["c"]))
            total += change
            want[name] = (len(cell["p"]), len(cell["c"]), round(change))
        else:
            want[name] = (len(cell["p"]), len(cell["c"]), None)
    got = {
        r["stratum"]: (r["participants"], r["controls"], r["incremental_minor"])
        for r in report["rows"]
    }
    assert got == want
    assert report["incremental_revenue_minor"] == round(total)
    assert report["participants"] == len(joined & set(revenues))
    assert report["matched_participants"] == sum(
        len(c["p"]) for c in cells.values() if c["p"] and c["c"]
    )
    chart = ET.fromstring(effect_svg(report))
    bars = chart.findall(".//{http://www.w3.org/2000/svg}rect[@class='bar']")
    assert len(bars) == sum(1 for v in want.values() if v[2] is not None) > 0
    # only those of another rule: nobody took part
    assert effect_report(analytics, START, END, rule_id="other")["participants"] == 0
