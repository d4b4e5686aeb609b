"""The analytics store: fed from the Center's database exactly once on both backends, and every
report's figures checked against plain Python over the same sales."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest

from center.analytics import queries
from center.analytics.engines import ChdbEngine
from center.analytics.feeder import Cursor, feed, read_batch, status
from center.analytics.store import AnalyticsStore
from center.cli import main
from center.config import effective_config, load_config
from center.errors import ConfigError
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from sync_protocol import Sale
from tests.center.center_factories import make_sale, master_tables, write_config

D0 = datetime(2024, 1, 3, 10, 0, tzinfo=UTC)
CARDS = [f"29000000001{i:02d}" for i in range(12)]
DEPTS = {"1000": "DAIRY", "1001": "PASTRY", "1002": "PRODUCE", "1003": "MEAT"}


def _master() -> dict[str, list[dict[str, Any]]]:
    tables = master_tables()
    tables["products"] = [
        {"product_id": p, "name": p, "department": d, "price_minor": 100} for p, d in DEPTS.items()
    ]
    tables["customers"] = [{"customer_id": f"hh-{i}"} for i in range(len(CARDS))]
    tables["cards"] = [{"card_no": c, "customer_id": f"hh-{i}"} for i, c in enumerate(CARDS)]
    return tables


def _sales(n: int, seed: int = 7) -> list[Sale]:
    """n sales over ~4 months in two stores, most with a card, 1..4 lines each."""
    rnd = random.Random(seed)
    out = []
    for seq in range(1, n + 1):
        store = rnd.choice(("367", "406"))
        amounts = tuple(rnd.randrange(50, 2500) for _ in range(rnd.randint(1, 4)))
        sale = make_sale(
            seq,
            register_id=f"{store}-1",
            store_id=store,
            card_no=rnd.choice(CARDS) if rnd.random() < 0.8 else None,
            amounts=amounts,
            discount=rnd.choice((0, 0, 10)) if amounts[0] > 10 else 0,
        )
        closed = D0 + timedelta(days=rnd.randrange(0, 120), minutes=seq)
        out.append(
            dataclasses.replace(sale, opened_at=closed - timedelta(minutes=1), closed_at=closed)
        )
    return out


@pytest.fixture
def analytics(tmp_path: Path) -> Any:
    store = AnalyticsStore(ChdbEngine(tmp_path / "analytics", "t_analytics"))
    store.migrate()
    yield store
    store.close()


def _feed(storage: Storage, store: AnalyticsStore, limit: int = 5000) -> Any:
    return feed(
        lambda cursor, already, back: read_batch(
            storage, cursor, limit=limit, already=already, lookback=back
        ),
        store,
        lambda: datetime.now(UTC),
    )


def _customer(sale: Sale) -> str:
    return f"hh-{CARDS.index(sale.card_no)}" if sale.card_no else ""


def _day(sale: Sale) -> date:
    return sale.closed_at.astimezone(UTC).date()


def test_feeds_each_sale_once_and_reaggregates_a_late_day(
    storage: Storage, analytics: AnalyticsStore
) -> None:
    storage.feed.upsert_master(_master())
    sales = _sales(60)
    storage.sales.ingest(sales[:40], D0)
    done = _feed(storage, analytics, limit=7)  # several passes
    assert done.sales == 40
    assert _feed(storage, analytics).sales == 0  # the look-back re-reads, but stores nothing
    # A late sale for an old day arrives: its day is re-aggregated.
    late = dataclasses.replace(
        sales[40], closed_at=sales[0].closed_at, opened_at=sales[0].opened_at
    )
    storage.sales.ingest([late, *sales[41:]], D0 + timedelta(seconds=1))
    storage.sales.ingest(sales[:3], D0 + timedelta(seconds=2))  # re-sent: already held
    assert _feed(storage, analytics).sales == 20
    held = [*sales[:40], late, *sales[41:]]
    counts = analytics.counts()
    assert counts["sales"] == 60
    assert counts["sale_lines"] == sum(len(s.lines) for s in held)
    raw = analytics.rows(f"SELECT count() AS n FROM {analytics.db}.sales")[0]["n"]
    assert int(raw) == 60, "no duplicate rows even before merges"
    daily = {
        (r["day"], r["store_id"]): (int(r["receipts"]), int(r["revenue_minor"]))
        for r in analytics.rows(
            f"SELECT toString(day) AS day, store_id, receipts, revenue_minor "
            f"FROM {analytics.table('daily_sales')}"
        )
    }
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for s in held:
        cell = expected[(_day(s).isoformat(), s.store_id)]
        cell[0] += 1
        cell[1] += s.total_minor
    assert daily == {k: tuple(v) for k, v in expected.items()}
    st = status(storage, analytics, "chdb")
    assert st.pending_sales == 0 and st.lag_s == 0.0 and st.rows["sales"] == 60
    assert Cursor.from_state(analytics.state()).sales_at


def test_reports_match_plain_python(storage: Storage, analytics: AnalyticsStore) -> None:
    storage.feed.upsert_master(_master())
    sales = _sales(150)
    storage.sales.ingest(sales, D0)
    _feed(storage, analytics)
    start, end = date(2024, 1, 1), date(2024, 4, 30)
    in_period = [s for s in sales if start <= _day(s) <= end]

    # Receipt sizes
    sizes = queries.receipt_sizes_report(analytics, start, end, bin_minor=1000)
    bands = Counter(min(s.total_minor // 1000, queries.MAX_BINS - 1) for s in in_period)
    assert {r["from_minor"] // 1000: r["receipts"] for r in sizes["rows"]} == dict(bands)
    assert sizes["receipts"] == len(in_period)
    assert sizes["average_minor"] == sum(s.total_minor for s in in_period) // len(in_period)
    assert {r["lines"]: r["receipts"] for r in sizes["by_lines"]} == dict(
        Counter(len(s.lines) for s in in_period)
    )
    only = queries.receipt_sizes_report(analytics, start, end, "406")
    assert only["receipts"] == sum(1 for s in in_period if s.store_id == "406")

    # RFM
    per: dict[str, list[Sale]] = defaultdict(list)
    for s in in_period:
        if s.card_no:
            per[_customer(s)].append(s)
    rec = {c: (end - max(_day(s) for s in ss)).days for c, ss in per.items()}
    frq = {c: len(ss) for c, ss in per.items()}
    mon = {c: sum(s.total_minor for s in ss) for c, ss in per.items()}
    n = len(per)

    def score(values: dict[str, int], better_low: bool) -> dict[str, int]:
        worse = (lambda a, b: b > a) if better_low else (lambda a, b: b < a)
        return {
            c: 1 + 5 * sum(1 for o in values.values() if worse(v, o)) // n
            for c, v in values.items()
        }

    r, f = score(rec, True), score(frq, False)

    def name(c: str) -> str:
        if r[c] >= 4 and f[c] >= 4:
            return "champions"
        if r[c] <= 2 and f[c] >= 3:
            return "at_risk"
        if f[c] >= 3:
            return "loyal"
        return "new" if r[c] >= 4 else "hibernating" if r[c] <= 2 else "needs_attention"

    rfm = queries.rfm_report(analytics, start, end)
    got = {
        row["segment"]: (row["customers"], row["revenue_minor"])
        for row in rfm["rows"]
        if row["customers"]
    }
    want: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for c in per:
        want[name(c)][0] += 1
        want[name(c)][1] += mon[c]
    assert got == {k: tuple(v) for k, v in want.items()}
    assert rfm["customers"] == n

    # Cohorts
    first: dict[str, date] = {}
    active: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for s in sales:
        if s.card_no and _day(s) <= end:
            c = _customer(s)
            first[c] = min(first.get(c, _day(s)), _day(s))
            active[c].add((_day(s).year, _day(s).month))
    expected_rows: dict[str, list[int]] = {}
    for c, d in first.items():
        cohort = date(d.year, d.month, 1)
        if cohort < date(start.year, start.month, 1):
            continue
        row = expected_rows.setdefault(cohort.isoformat(), [0] * 12)
        for y, m in active[c]:
            row[(y - d.year) * 12 + m - d.month] += 1
    cohorts = queries.cohorts_report(analytics, start, end)
    assert {r["cohort"]: r["retained"] for r in cohorts["rows"]} == {
        k: v[: cohorts["months"]] for k, v in expected_rows.items()
    }

    # Lifecycle stages per month
    months_of: dict[str, set[int]] = defaultdict(set)
    for s in sales:
        if s.card_no and _day(s) <= end:
            months_of[_customer(s)].add(_day(s).year * 12 + _day(s).month - 1)
    lifecycle = queries.lifecycle_report(analytics, start, end)
    for row in lifecycle["rows"]:
        y, mo = map(int, row["month"].split("-"))
        m = y * 12 + mo - 1
        want_stages = Counter()
        for ms in months_of.values():
            if min(ms) > m:
                continue
            before = [x for x in ms if x < m]
            if min(ms) == m:
                want_stages["new"] += 1
            elif m in ms:
                want_stages["active" if m - max(before) <= 3 else "returned"] += 1
            else:
                want_stages["sleeping" if m - max(before) < 3 else "churned"] += 1
        assert {k: row[k] for k in queries.LIFECYCLE_STAGES if row[k]} == dict(want_stages)
    assert sum(lifecycle["rows"][-1][k] for k in queries.LIFECYCLE_STAGES) == len(months_of)

    # ABC of categories and products
    for level in ("category", "product"):
        revenue: Counter[str] = Counter()
        for s in in_period:
            for line in s.lines:
                key = line.product_id if level == "product" else DEPTS[line.product_id]
                revenue[key] += line.amount_minor - sum(d.amount_minor for d in line.discounts)
        total, before, grades = sum(revenue.values()), 0, {}
        for key, value in sorted(revenue.items(), key=lambda kv: (-kv[1], kv[0])):
            grades[key] = "A" if before < 0.8 * total else "B" if before < 0.95 * total else "C"
            before += value
        abc = queries.abc_report(analytics, start, end, level=level)
        assert {r["item"]: (r["class"], r["revenue_minor"]) for r in abc["rows"]} == {
            k: (grades[k], revenue[k]) for k in revenue
        }

    # Associations of categories
    baskets = [{DEPTS[line.product_id] for line in s.lines} for s in in_period]
    single = Counter(i for b in baskets for i in b)
    pair = Counter(p for b in baskets for p in permutations(sorted(b), 2))
    assoc = queries.associations_report(analytics, start, end, min_receipts=1, limit=100)
    assert assoc["receipts"] == len(baskets)
    for row in assoc["rows"]:
        both = pair[(row["antecedent"], row["consequent"])]
        assert row["receipts"] == both
        assert row["support"] == pytest.approx(both / len(baskets), abs=1e-6)
        assert row["confidence"] == pytest.approx(both / single[row["antecedent"]], abs=1e-6)
        lift = both / single[row["antecedent"]] / (single[row["consequent"]] / len(baskets))
        assert row["lift"] == pytest.approx(lift, abs=1e-5)
    assert len(assoc["rows"]) == len(pair)
    assert queries.report_csv(abc).splitlines()[0] == ",".join(abc["columns"])


def test_config_places_the_store_beside_the_database_and_checks_the_switch(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path))
    assert config.analytics.engine == "chdb"
    assert config.analytics.path == config.storage.sqlite_path.parent / "analytics"
    bad = '\n[analytics]\nengine = "duckdb"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, extra=bad))
    assert "analytics.engine" in str(caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, extra='\n[analytics]\nengine = "clickhouse"\n'))
    assert "analytics.url" in str(caught.value.problems)
    server = '\n[analytics]\nengine = "clickhouse"\nurl = "http://u:secret@ch:8123"\n'
    shown = effective_config(load_config(write_config(tmp_path, extra=server)))["analytics"]
    assert shown["engine"] == "clickhouse" and "secret" not in shown["url"]


def test_rebuild_command_refeeds_from_scratch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    config = load_config(path)
    storage = SqliteStorage(config.storage.sqlite_path)
    storage.migrate()
    storage.feed.upsert_master(_master())
    storage.sales.ingest(_sales(30), D0)
    storage.close()
    assert main(["analytics", "feed", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["sales"] == 30
    assert main(["analytics", "feed", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["sales"] == 0
    assert main(["analytics", "rebuild", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["sales"] == 30 and "fed 30 sales" in captured.err
    assert main(["analytics", "status", "--config", str(path)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["rows"]["sales"] == 30 and found["pending_sales"] == 0


def test_balances_by_week_match_the_ledger(storage: Storage, analytics: AnalyticsStore) -> None:
    storage.feed.upsert_master(_master())
    rnd = random.Random(3)
    sales = []
    for seq in range(1, 60):
        closed = D0 + timedelta(days=rnd.randrange(0, 40), hours=rnd.randrange(0, 24))
        sale = make_sale(
            seq,
            card_no=rnd.choice(CARDS),
            amounts=(rnd.randrange(100, 900),),
            accrue=rnd.randrange(1, 60),
            spend=rnd.choice((0, 0, 5)),
            active_from=closed + timedelta(days=rnd.choice((0, 3, 10))),
            expires_at=closed + timedelta(days=rnd.choice((7, 20, 90))),
        )
        sales.append(
            dataclasses.replace(sale, opened_at=closed - timedelta(minutes=1), closed_at=closed)
        )
    storage.sales.ingest(sales, D0)
    storage.ledger.expire_lots(D0 + timedelta(days=45))
    _feed(storage, analytics)
    db = storage.db  # type: ignore[attr-defined]
    moves = [
        (int(amount), kind, db.dt(created), None if active is None else db.dt(active))
        for amount, kind, created, active in db.execute(
            "SELECT amount, kind, created_at, active_from FROM ledger WHERE wallet = 'bonus'"
        ).fetchall()
    ]
    assert any(kind == "expire" for _, kind, _, _ in moves)
    start, end = date(2024, 1, 3), date(2024, 2, 20)
    report = queries.balances_report(analytics, start, end)
    assert report["rows"][0]["week"] == "2024-01-01"
    for row in report["rows"]:
        s = datetime.fromisoformat(row["week"]).replace(tzinfo=UTC)
        e = s + timedelta(days=7)
        week = [m for m in moves if s <= m[2] < e]
        assert row["credited"] == sum(a for a, _, _, _ in week if a > 0)
        assert row["debited"] == -sum(a for a, k, _, _ in week if a < 0 and k != "expire")
        assert row["burnt"] == -sum(a for a, k, _, _ in week if k == "expire")
        before = [m for m in moves if m[2] < e]
        assert row["pending"] == sum(a for a, _, _, act in before if act is not None and act >= e)
        assert row["balance"] == sum(a for a, _, _, act in before if act is None or act < e)
    assert sum(r["burnt"] for r in report["rows"]) > 0
