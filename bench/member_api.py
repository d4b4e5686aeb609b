"""Benchmark of the member API over HTTP on PostgreSQL: balance, history and offers latency with
many customers, and sign-in codes per second.

1. set-up (not timed): a throwaway PostgreSQL cluster, a migrated Center, `--customers`
   customers (default 20 000; the issue's goal is 1 000 000) each with an electronic card, one
   accrual and one spend in the ledger and a personal offer, loaded by bulk inserts and the
   ledger's own writer; the Center app served on a local port;
2. sign-in: `--members` of those customers ask for a code and answer it over HTTP
   (`/v1/member/auth/code`, `/v1/member/auth/verify`, the code read from the outbox as the
   sender would send it): codes per second and sign-ins per second;
3. reads: one untimed call per member (the cold pass, its p95 reported as `cold_p95_ms`), then
   `--requests` calls of each of balance, history and offers, `--concurrency` at a time,
   spread over the signed-in members: p50 / p95 in milliseconds.
The per-IP rate limits are lifted for the run (every request comes from 127.0.0.1).
Progress goes to stderr; one JSON object to stdout.

Usage: .venv/bin/python bench/member_api.py [--customers 20000] [--members 200] [--requests 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from center.config import load_config
from center.ledger.model import LedgerEntry
from center.members import MemberPolicy
from center.storage.owners import register_cards
from center.storage.postgres import PostgresStorage
from center.web.app import create_app
from demo.postgres import PostgresNotInstalled, ThrowawayPostgres

NOW = datetime.now(UTC).replace(microsecond=0)
PG_SETTINGS = {"shared_buffers": "256MB", "maintenance_work_mem": "256MB", "max_wal_size": "4GB"}


def _log(text: str) -> None:
    print(f"[member_api] {text}", file=sys.stderr, flush=True)


def _card(n: int) -> str:
    return f"29{n:010d}"


def load_customers(storage: PostgresStorage, count: int) -> None:
    """`count` customers with a card, an accrual, a spend and an offer each."""
    db = storage.db
    at = db.ts(NOW - timedelta(days=30))
    chunk = 20_000
    for start in range(0, count, chunk):
        ids = range(start, min(count, start + chunk))
        with db.guard("bench load"), db.transaction():
            db.bulk_insert(
                "customers",
                ("customer_id", "attributes", "version"),
                [(f"c{n}", json.dumps({"email": f"c{n}@bench.example"}), 1) for n in ids],
            )
            db.bulk_insert(
                "customer_index",
                ("customer_id", "last_name", "first_name", "middle_name", "phone_rev", "email"),
                [(f"c{n}", "", "", "", "", f"c{n}@bench.example") for n in ids],
            )
            db.bulk_insert(
                "cards",
                ("card_no", "customer_id", "status", "version", "card_type", "block_reason",
                 "issued_at"),
                [(_card(n), f"c{n}", "active", 1, "electronic", "", at) for n in ids],
            )  # fmt: skip
            register_cards(db, [(_card(n), f"c{n}") for n in ids])
            db.bulk_insert(
                "personal_offers",
                ("customer_id", "offer_id", "product_id", "percent", "valid_from", "valid_to",
                 "source", "updated_by", "updated_at"),
                [(f"c{n}", "o1", "1000", "10", None, db.ts(NOW + timedelta(days=30)), "manual",
                  "bench", at) for n in ids],
            )  # fmt: skip
        entries = []
        for n in ids:
            entries.append(
                LedgerEntry(
                    _card(n), "bonus", "accrue", 500, "base", f"s{n}", NOW - timedelta(days=20),
                    expires_at=NOW + timedelta(days=10),
                )
            )  # fmt: skip
            entries.append(
                LedgerEntry(_card(n), "bonus", "spend", 100, "", f"t{n}", NOW - timedelta(days=5))
            )
        storage.ledger.add_ledger_entries(entries)
        _log(f"loaded {min(count, start + chunk)} / {count} customers")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def _worker(
    http: aiohttp.ClientSession, url: str, tokens: list[str], queue: list[int], out: list[float]
) -> None:
    """Take request numbers off `queue` until it is empty; each latency (ms) into `out`."""
    while queue:
        i = queue.pop()
        t0 = time.perf_counter()
        resp = await http.get(url, headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"})
        await resp.read()
        assert resp.status == 200, resp.status
        out.append((time.perf_counter() - t0) * 1000)


async def run(base: str, storage: PostgresStorage, args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(7)
    picked = rng.sample(range(args.customers), min(args.members, args.customers))
    tokens: list[str] = []
    async with aiohttp.ClientSession() as http:
        challenges = []
        began = time.perf_counter()
        for n in picked:
            resp = await http.post(
                f"{base}/v1/member/auth/code", json={"email": f"c{n}@bench.example"}
            )
            assert resp.status == 202, await resp.text()
            challenges.append((await resp.json())["challenge_id"])
        code_s = time.perf_counter() - began
        codes = {}
        for challenge_id in challenges:
            row = storage.db.execute(
                "SELECT body FROM comm_messages WHERE idempotency_key = ?",
                (f"member-code:{challenge_id}",),
            ).fetchone()
            found = re.search(r"\b(\d{6})\b", row[0])
            assert found
            codes[challenge_id] = found.group(1)
        began = time.perf_counter()
        for challenge_id in challenges:
            resp = await http.post(
                f"{base}/v1/member/auth/verify",
                json={"challenge_id": challenge_id, "code": codes[challenge_id]},
            )
            assert resp.status == 200, await resp.text()
            tokens.append((await resp.json())["access_token"])
        verify_s = time.perf_counter() - began
        _log(f"{len(tokens)} members signed in")

        results: dict[str, dict[str, float]] = {}
        for name, path in (
            ("balance", "/v1/member/balances"),
            ("history", "/v1/member/history"),
            ("offers", "/v1/member/offers"),
        ):
            # One untimed call per member first: the figures are of warm caches, as a
            # serving Center's are; the first, cold pass is reported apart.
            cold: list[float] = []
            await asyncio.gather(
                *(_worker(http, base + path, tokens, list(range(len(tokens))), cold)
                  for _ in range(1))
            )  # fmt: skip
            latencies: list[float] = []
            queue = list(range(args.requests))
            began = time.perf_counter()
            await asyncio.gather(
                *(
                    _worker(http, base + path, tokens, queue, latencies)
                    for _ in range(args.concurrency)
                )
            )
            elapsed = time.perf_counter() - began
            results[name] = {
                "p50_ms": pct(latencies, 0.5),
                "p95_ms": pct(latencies, 0.95),
                "mean_ms": round(statistics.fmean(latencies), 2),
                "per_s": round(len(latencies) / elapsed, 1),
                "cold_p95_ms": pct(cold, 0.95),
            }
            _log(f"{name}: {results[name]}")
    return {
        **results,
        "sign_in": {
            "codes_per_s": round(len(challenges) / code_s, 1),
            "verifies_per_s": round(len(tokens) / verify_s, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    pg = ThrowawayPostgres(prefix="member-bench-pg-", settings=PG_SETTINGS)
    try:
        pg.start()
    except PostgresNotInstalled as exc:
        raise SystemExit(f"bench/member_api.py: {exc}") from exc
    with pg:
        storage = PostgresStorage(pg.dsn("postgres"))
        storage.migrate()
        began = time.perf_counter()
        load_customers(storage, args.customers)
        with storage.db.guard("analyze"):
            storage.db.execute("ANALYZE")
        load_s = time.perf_counter() - began
        storage.members.policy = MemberPolicy(failures_per_ip=10**9, codes_per_ip=10**9)
        folder = Path(tempfile.mkdtemp(prefix="member-bench-"))
        config_path = folder / "center.toml"
        config_path.write_text(
            '[center]\nnode_id = "bench"\nlisten_host = "127.0.0.1"\nlisten_port = 0\n'
            f'data_dir = "{folder}"\n\n[storage]\nbackend = "postgresql"\n'
            f'dsn = "{pg.dsn("postgres")}"\n'
        )
        config = load_config(config_path)

        async def serve() -> dict[str, object]:
            runner = web.AppRunner(create_app(config, storage))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            try:
                return await run(f"http://127.0.0.1:{port}", storage, args)
            finally:
                await runner.cleanup()

        found = asyncio.run(serve())
        storage.close()
    print(
        json.dumps(
            {
                "backend": "postgresql",
                "customers": args.customers,
                "members_signed_in": args.members,
                "requests_per_endpoint": args.requests,
                "concurrency": args.concurrency,
                "load_s": round(load_s, 1),
                "load_average_before": round(load_before, 2),
                **found,
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
