"""Benchmark of the console's pages on PostgreSQL: server time p50 / p95 of the main pages and
of the call-center search, with N customers and M receipts loaded with COPY.

Starts a throwaway PostgreSQL cluster (as bench/center_ingest.py does), loads N customers (the
same Zipf-ish generator, cards, search keys) and M receipts (about 10 lines each, 60 % with a
card of those customers, their ledger and lots) with binary COPY, signs an administrator in
through the sign-in form of a Center app served in this process, then asks each page R times.
The server time of a request is measured by a middleware wrapped around the Center's own
(authentication, session, CSRF, the handler, rendering): what a person's browser waits for
minus the network.

The issue's goal is 1 M customers and 2 M receipts at p95 <= 200 ms each; the defaults are small
enough to run in a couple of minutes on a shared machine. Progress to stderr; JSON to stdout.

Usage: .venv/bin/python bench/console.py [--customers 20000] [--receipts 40000]
       [--requests 50] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import center_ingest as ingest_bench
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from center.access.people import add_person
from center.config import load_config
from center.storage.postgres import PostgresStorage
from center.web.app import create_app
from demo.postgres import PostgresNotInstalled, ThrowawayPostgres

PASSWORD = "bench console password"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def load(dsn: str, customers_n: int, receipts_n: int, rng: random.Random) -> dict[str, Any]:
    """Customers and receipts with COPY; their ids for the pages to ask."""
    started = time.perf_counter()
    customers = ingest_bench.make_customers(customers_n, rng)
    owners = {card: cid for cid, _, card in customers}
    # Receipts of a tenth of the customers' cards, as a chain's regulars: each has a history.
    regulars = [card for _, _, card in customers[: max(100, customers_n // 10)]]
    sales = ingest_bench.make_sales(receipts_n, rng, regulars)
    _log(f"generated {customers_n} customers, {receipts_n} receipts")
    copied = ingest_bench.bench_copy(dsn, sales, owners)  # migrates, then COPY
    storage = PostgresStorage(dsn)
    try:
        with storage.db.transaction():
            ingest_bench.load_customers(storage, customers)
        for table in ("customers", "customer_index", "cards", "sales", "sale_lines", "ledger"):
            storage.db.execute(f"VACUUM ANALYZE {table}")
        add_person(storage, "bench-admin", "administrator", PASSWORD, "bench", datetime.now(UTC))
    finally:
        storage.close()
    load_s = time.perf_counter() - started
    _log(f"loaded in {load_s:.1f}s (receipts COPY {copied['seconds']:.1f}s)")
    queries = ingest_bench.make_queries(rng, customers, 400)
    with_history = [cid for cid, _, card in customers[: len(regulars)]]
    return {"load_s": load_s, "queries": queries, "customers": with_history}


def _timer(times: list[float]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def timed(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            times.append((time.perf_counter() - started) * 1000)

    return timed


async def measure(
    dsn: str, data: dict[str, Any], requests_n: int, rng: random.Random
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-console-"))
    (folder / "center.toml").write_text(
        "[center]\n"
        'listen_host = "127.0.0.1"\n'
        'data_dir = "data"\n\n'
        "[storage]\n"
        'backend = "postgresql"\n'
        f'dsn = "{dsn}"\n\n'
        "[security]\nrequire_signatures = false\n\n"
        # No background job competes with the pages for the database.
        "[analytics]\nfeed_interval_s = 0\n\n[models]\nretrain_every_s = 0\n"
    )
    times: list[float] = []
    app = create_app(load_config(folder / "center.toml"))
    app.middlewares.insert(0, _timer(times))
    headers = {"Accept": "text/html", "Accept-Language": "ru"}
    async with TestClient(TestServer(app), headers=headers) as client:
        page = await client.get("/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token, "no sign-in form"
        form = {"csrf_token": token.group(1), "username": "bench-admin", "password": PASSWORD}
        signed = await client.post("/sign-in", data=form, allow_redirects=False)
        assert signed.status == 303, await signed.text()
        cursor_page = await client.get("/console/audit")
        older = re.search(r'id="audit-older" href="([^"]+)"', await cursor_page.text())
        pages: dict[str, Callable[[], str]] = {
            "home": lambda: "/console",
            "search": lambda: "/console/customers?q=" + rng.choice(data["queries"])[1],
            "customer": lambda: "/console/customers/" + rng.choice(data["customers"]),
            "reports": lambda: "/console/reports",
            "nodes": lambda: "/console/nodes",
            "users": lambda: "/console/users",
            "audit": lambda: "/console/audit",
            "audit_older": lambda: (
                older.group(1).replace("&amp;", "&") if older else "/console/audit"
            ),
            "promotions": lambda: "/console/promotions",
        }
        found: dict[str, Any] = {}
        for name, path_of in pages.items():
            partial = {"HX-Request": "true", "HX-Target": "results"} if name == "search" else {}
            for _ in range(3):  # warm the caches, as a running Center's are
                await (await client.get(path_of(), headers=partial)).read()
            times.clear()
            statuses: set[int] = set()
            for _ in range(requests_n):
                response = await client.get(path_of(), headers=partial)
                await response.read()
                statuses.add(response.status)
            found[name] = {
                "p50_ms": round(_pct(times, 50), 1),
                "p95_ms": round(_pct(times, 95), 1),
                "max_ms": round(max(times), 1),
                "statuses": sorted(statuses),
            }
            _log(f"{name}: p50 {found[name]['p50_ms']} ms, p95 {found[name]['p95_ms']} ms")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--receipts", type=int, default=40_000)
    parser.add_argument("--requests", type=int, default=50, help="requests per page (default 50)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    load_before = os.getloadavg()[0]
    pg = ThrowawayPostgres(prefix="console-bench-pg-", settings=ingest_bench.PG_SETTINGS)
    try:
        pg.start()
    except PostgresNotInstalled as exc:
        raise SystemExit(f"bench/console.py: {exc}") from exc
    with pg:
        dsn = ingest_bench._database(pg, "bench_console")
        data = load(dsn, args.customers, args.receipts, rng)
        pages = asyncio.run(measure(dsn, data, args.requests, rng))
    worst = max(p["p95_ms"] for p in pages.values())
    print(
        json.dumps(
            {
                "cpus": os.cpu_count(),
                "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "customers": args.customers,
                "receipts": args.receipts,
                "requests_per_page": args.requests,
                "load_s": round(data["load_s"], 1),
                "pages": pages,
                "worst_p95_ms": worst,
                "goal": "p95 <= 200 ms at 1 M customers / 2 M receipts",
                "goal_met_at_this_size": worst <= 200,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
