"""The whole scenario: start the cluster, replay under chaos, wait, read back, judge."""

from __future__ import annotations

import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from demo.baskets import load_baskets
from demo.chaos.cards import household_cards
from demo.chaos.cluster import ChaosCluster
from demo.chaos.convergence import center_figures, replicas_behind, wait_synced
from demo.chaos.drain import measure_drain
from demo.chaos.monkey import Monkey
from demo.chaos.options import ChaosOptions
from demo.chaos.overspend import Overspend, offline_overspend, overspend_report
from demo.chaos.readback import journal_sales
from demo.chaos.replayer import Acked, assign, replay
from demo.chaos.verdict import reference_balances, verdict
from demo.errors import DemoError
from demo.postgres import ThrowawayPostgres


def log(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


@dataclass(slots=True)
class ChaosRun:
    """The outcome: `report` is the one JSON object printed; `ok` when every invariant holds."""

    report: dict[str, Any]
    ok: bool


def run_chaos(options: ChaosOptions, progress: Callable[[str], None] = log) -> ChaosRun:
    """Run the whole scenario and check every invariant."""
    options.check()
    with ExitStack() as stack:
        dsn = ""
        if options.backend == "postgresql":
            # The Center reaches it over the Unix socket only: no TCP port to collide on.
            settings = {"listen_addresses": "''"}
            pg = ThrowawayPostgres(prefix="chaos-pg-", settings=settings)
            dsn = stack.enter_context(pg).dsn()
        return _run_chaos(options, progress, dsn)
    raise AssertionError("unreachable")  # mypy: ExitStack may swallow exceptions


def _run_chaos(options: ChaosOptions, progress: Callable[[str], None], dsn: str) -> ChaosRun:
    started = time.monotonic()
    rng = random.Random(options.seed)
    root = options.root.resolve()
    if root.exists():
        shutil.rmtree(root)
    cluster = ChaosCluster(
        root, list(options.stores), options.registers, rng.randrange(2**32), postgres_dsn=dsn
    )
    # Its own generator, so that a run with skew keeps the seed's baskets, kills and faults.
    skews = cluster.skew_clocks(options.seed * 7919 + 1, options.clock_skew_s)
    baskets = load_baskets(list(options.stores), options.days)
    if not baskets:
        raise DemoError(f"no baskets for stores {options.stores} in {options.days} days")
    with cluster:
        cluster.write_configs()
        cluster.run_tool(
            "loyalty-center",
            "import-dataset",
            "--config",
            str(cluster.center.config),
            "--stores",
            ",".join(options.stores),
        )
        progress(f"{time.monotonic() - started:.1f} s: imported; enrolling")
        cluster.enrol_all()
        progress(f"{time.monotonic() - started:.1f} s: enrolled; starting")
        for node in [cluster.center, *cluster.store_nodes.values(), *cluster.registers.values()]:
            cluster.start(node)
        cluster.wait_for_master()
        progress(f"{time.monotonic() - started:.1f} s: every register has master data")
        cards = household_cards(
            cluster,
            [
                *baskets,
                *(load_baskets(list(options.stores), 14) if options.throughput_baskets else []),
            ],
        )
        queues = assign(baskets, cluster)
        acked = Acked()
        monkeys = [
            Monkey(cluster, rng.randrange(2**32), options.mean_event_s, axis)
            for axis in ("kill", "net")
        ]
        progress(
            f"seed {options.seed}: {len(baskets)} baskets over {len(cluster.registers)} registers"
            f" of {len(cluster.stores)} stores; monkey every ~{options.mean_event_s} s; Center on"
            f" {options.backend}; clocks skewed {skews or 'nowhere'}"
        )
        replay_started = time.monotonic()
        for monkey in monkeys:
            monkey.start()
        until = replay_started + options.minutes * 60 if options.minutes > 0 else 0.0
        replayers = replay(cluster, queues, cards, acked, until)
        for monkey in monkeys:
            monkey.halt.set()
        for monkey in monkeys:
            monkey.join()
        replay_s = time.monotonic() - replay_started
        for monkey in monkeys:
            if monkey.error is not None:
                raise DemoError(f"chaos monkey failed: {monkey.error}") from monkey.error
        kills, faults = monkeys[0].events, monkeys[1].events
        for p in replayers:
            if p.error is not None:
                raise DemoError(f"replay at {p.register_id} failed: {p.error}") from p.error
        for proxy in cluster.proxies:
            proxy.clear()
        cluster.ensure_running()
        progress(
            f"replayed {len(acked.sale_ids)} sales in {replay_s:.1f} s with kills "
            f"{dict(kills)} and faults {dict(faults)}; waiting for the Center"
        )
        sync_s = wait_synced(cluster, options.sync_timeout_s)
        end_to_end_s = time.monotonic() - replay_started
        chaos_sales = len(acked.sale_ids)
        drain = (
            measure_drain(cluster, options.throughput_baskets, cards, acked)
            if options.throughput_baskets > 0 and sync_s is not None
            else None
        )
        overspend: Overspend | None = None
        if options.overspend_s > 0 and sync_s is not None:
            overspend = offline_overspend(
                cluster,
                baskets,
                cards.values(),
                acked,
                rng.randrange(2**32),
                spend_s=options.overspend_s,
                progress=progress,
            )
            if wait_synced(cluster, options.sync_timeout_s) is None:
                sync_s = None
        progress(f"{time.monotonic() - started:.1f} s: synced; checking replicas")
        behind = replicas_behind(cluster)
        progress(f"{time.monotonic() - started:.1f} s: replicas checked")
        # Balances are compared while the Center runs, at one `now` for both sides.
        checked_at = datetime.now(UTC)
        journals = {r: journal_sales(root / f"pos-{r}" / "journal.db") for r in cluster.registers}
        center_rows = center_figures(cluster)
        store_rows: dict[str, dict[str, Any]] = {}
        for node in cluster.store_nodes.values():
            summary = requests.get(node.url + "/v1/sales/summary", timeout=10).json()
            store_rows.update({str(r["register_id"]): r for r in summary["registers"]})
        all_sales = [s for sales in journals.values() for s in sales]
        reference = reference_balances(all_sales, checked_at)
        overspent: dict[str, Any] = {}
        if overspend is not None:
            overspent = overspend_report(overspend, journals, cluster)
            # Its balance was set by an adjustment, which a reference from sales cannot know.
            reference.pop(overspend.card_no, None)
        center_balances: dict[str, int] = {}
        for card_no in sorted(reference):
            answer = cluster.center_get(cluster.stores[0], f"/v1/customers/{card_no}/balance")
            center_balances[card_no] = (
                int(answer.json()["wallets"].get("bonus", 0)) if answer.ok else -(10**12)
            )
        health = requests.get(cluster.center.url + "/health", timeout=10).json()
    # Every process is stopped: the databases can be read and checked whole.
    report = verdict(
        options,
        cluster,
        acked,
        journals,
        center_rows,
        store_rows,
        reference,
        center_balances,
        health,
        dsn,
    )
    report.update(
        {
            "backend": options.backend,
            "clock_skew_s": skews,
            "kills": dict(kills),
            "faults_set": dict(faults),
            "faults_applied": dict(sum((p.applied for p in cluster.proxies), Counter())),
            "replay_s": round(replay_s, 2),
            "sync_after_replay_s": None if sync_s is None else round(sync_s, 2),
            "sync_sales_per_s_end_to_end": round(chaos_sales / end_to_end_s, 1),
            "drain": drain,
            "wall_s": round(time.monotonic() - started, 1),
        }
    )
    report.update(overspent)
    report["replicas_not_converged"] = len(behind)
    if behind:
        report["replicas_not_converged_detail"] = behind
    ok = bool(report.pop("_ok")) and sync_s is not None and not behind
    ok = ok and not overspent.get("overspend_beyond_bound", 0)
    ok = ok and not overspent.get("budget_overspend_beyond_bound", 0)
    report["ok"] = ok
    return ChaosRun(report=report, ok=ok)
