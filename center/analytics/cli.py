"""`loyalty-center analytics feed|rebuild|status`: the feeder run by hand, with a progress line."""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from center.analytics.feeder import Batch, Cursor, FeedResult, feed, read_batch, status
from center.analytics.store import AnalyticsStore, open_analytics

if TYPE_CHECKING:
    from center.config import Config

__all__ = ["analytics_command", "feed_from"]


def feed_from(
    storage: Any,
    store: AnalyticsStore,
    zone: str,
    *,
    limit: int = 20000,
    progress: bool = False,
    db_executor: ThreadPoolExecutor | None = None,
) -> FeedResult:
    """Feed the store until caught up; reads run on `db_executor` when given (the app's
    database thread), else here."""
    started = time.monotonic()

    def read(cursor: Cursor, already: Any, lookback: bool) -> Batch:
        def run() -> Batch:
            return read_batch(
                storage, cursor, zone=zone, limit=limit, already=already, lookback=lookback
            )

        return run() if db_executor is None else db_executor.submit(run).result()

    def show(done: FeedResult) -> None:
        elapsed = time.monotonic() - started
        print(
            f"\rfed {done.sales} sales, {done.lines} lines, {done.movements} movements, "
            f"{done.customers} customers in {elapsed:.1f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    result = feed(read, store, lambda: datetime.now(UTC), progress=show if progress else None)
    if progress:
        print(file=sys.stderr)
    return result


def analytics_command(config: Config, action: str) -> int:
    """feed (what is new), rebuild (empty the store, feed from scratch) or status (JSON)."""
    from center.storage import open_storage

    storage = open_storage(config.storage)
    store = open_analytics(config.analytics)
    try:
        if action == "rebuild":
            store.truncate()
        if action in ("feed", "rebuild"):
            done = feed_from(storage, store, config.reports.timezone, progress=True)
            print(json.dumps(asdict(done)))
            return 0
        print(json.dumps(asdict(status(storage, store, config.analytics.engine)), indent=2))
        return 0
    finally:
        store.close()
        storage.close()
