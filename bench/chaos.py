"""Chaos harness: stores x registers x Center as real processes, kill -9 and network faults.

Prints ONE JSON object (the invariants, all 0 when the run passed, and the sync throughput);
exit 0 when every invariant holds, 1 otherwise.

Usage: .venv/bin/python bench/chaos.py [--seed 1] [--minutes 30] [--stores 367,406]
       [--registers 2] [--days 3] [--throughput-baskets 150] [--data DIR]
       [--clock-skew [SECONDS]] [--backend sqlite|postgresql] [--overspend-s 60]

--clock-skew: one register runs up to SECONDS (default 120) off the true time and its store
node as much the other way (their sum must stay under the 300 s signature window).
--backend postgresql: the Center stores in a throwaway PostgreSQL 15 cluster (initdb/pg_ctl).
--overspend-s: then the Center goes down and one card is spent at every register of every store
until each store's lease is spent (at most this long), registers and store nodes killed
meanwhile; `overspend_beyond_bound` must be 0. Every such receipt also qualifies for one
supplier campaign (budget 15.00): `budget_overspend_beyond_bound` (what the tills gave of it
beyond its budget) must be 0 too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo.chaos import ChaosOptions, run_chaos
from demo.errors import DemoError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="fixes baskets, kills and faults")
    parser.add_argument(
        "--minutes", type=float, default=0.0, help="replay (repeating baskets) this long; 0: once"
    )
    parser.add_argument("--stores", default="367,406", help="dataset store ids")
    parser.add_argument("--registers", type=int, default=2, help="registers per store")
    parser.add_argument("--days", type=int, default=3, help="days of baskets to replay")
    parser.add_argument(
        "--mean-event-s", type=float, default=1.5, help="mean seconds between chaos events"
    )
    parser.add_argument(
        "--throughput-baskets",
        type=int,
        default=150,
        help="offline backlog per register for the drain measurement (0: skip)",
    )
    parser.add_argument("--data", type=Path, default=None, help="keep every node's data here")
    parser.add_argument(
        "--clock-skew",
        type=float,
        nargs="?",
        const=120.0,
        default=0.0,
        metavar="SECONDS",
        help="skew a register's and its store node's clocks opposite ways by up to this (120)",
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the Center's storage (postgresql: a throwaway cluster)",
    )
    parser.add_argument(
        "--overspend-s",
        type=float,
        default=60.0,
        help="at most this long, the offline overspend scenario (0: skip)",
    )
    args = parser.parse_args(argv)
    # The CLIs the harness runs (enrol...) print to stdout: send theirs to stderr, keep ours JSON.
    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        report = _run(args)
    finally:
        os.dup2(stdout, 1)
        os.close(stdout)
    print(json.dumps(report, sort_keys=False), flush=True)
    return 0 if report.get("ok") else 1


def _run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        options = ChaosOptions(
            root=args.data or Path(tmp) / "chaos",
            seed=args.seed,
            stores=tuple(s.strip() for s in args.stores.split(",") if s.strip()),
            registers=args.registers,
            days=args.days,
            minutes=args.minutes,
            mean_event_s=args.mean_event_s,
            throughput_baskets=args.throughput_baskets,
            clock_skew_s=args.clock_skew,
            backend=args.backend,
            overspend_s=args.overspend_s,
        )
        try:
            return run_chaos(options).report
        except DemoError as exc:
            return {"seed": args.seed, "ok": False, "error": str(exc)}


if __name__ == "__main__":
    sys.exit(main())
