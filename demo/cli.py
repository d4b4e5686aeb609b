"""`loyalty-demo`: a real year of receipts through registers, store nodes and the Center."""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from demo.baskets import load_baskets
from demo.chaos import household_cards, journal_sales
from demo.cluster import Cluster
from demo.errors import DemoError
from demo.messaging import messages_line
from demo.reconcile import Row, check_balances, collect_rows, format_table, verdict
from demo.replay import Progress, RegisterTally, assign_registers, replay_register
from demo.serve import SEND_EVERY_S, PortalDemo


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="loyalty-demo",
        description=(
            "Start a Center, store nodes and registers as separate processes on loopback, "
            "replay real Complete Journey baskets through the registers' local API, wait for "
            "sync and reconcile every register at register, store node and Center."
        ),
    )
    parser.add_argument(
        "--days",
        type=int,
        default=14,
        help="days of receipts to replay (default 14; 365 = the whole year)",
    )
    parser.add_argument(
        "--stores", default="367,406", help="dataset store ids (default: the two busiest, 367,406)"
    )
    parser.add_argument(
        "--discovery",
        choices=["zeroconf", "url"],
        default="url",
        help=(
            "how registers find their store node: a configured URL (default) or mDNS; "
            "registers browse mDNS on every interface, so zeroconf is opt-in off a lab LAN"
        ),
    )
    parser.add_argument("--registers", type=int, default=2, help="registers per store (default 2)")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(".demo-data"),
        help="folder for every node's data (wiped first)",
    )
    parser.add_argument(
        "--no-chaos", action="store_true", help="do not kill a store node and the Center mid-replay"
    )
    parser.add_argument(
        "--sync-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the Center to catch up",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help=(
            "after reconciling, keep the cluster running and print the console's and each "
            "store admin page's address with a login for every role, the customer portal's "
            "address with a demo customer's sign-in and the sign-in codes the Center sends; "
            "Ctrl-C stops it"
        ),
    )
    args = parser.parse_args(argv)
    if args.days < 1 or args.days > 366:
        parser.error(f"--days must be between 1 and 366, got {args.days}")
    if args.registers < 1 or args.registers > 16:
        parser.error(f"--registers must be between 1 and 16, got {args.registers}")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Chaos(threading.Thread):
    """Kills processes mid-replay as a power cut would, and starts them again.

    A third of the way through, the first store's node and the Center die and stay down
    while that store's registers sell on; at two thirds a register dies between receipts.
    """

    def __init__(
        self,
        cluster: Cluster,
        store_id: str,
        locks: dict[str, threading.Lock],
        progress: Progress,
        replay_done: threading.Event,
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.cluster = cluster
        self.store_id = store_id
        self.locks = locks
        self.progress = progress
        self.replay_done = replay_done
        self.error: BaseException | None = None

    def _wait_for(self, share: float) -> None:
        while not self.replay_done.is_set() and self.progress.done < share * self.progress.total:
            time.sleep(0.01)

    def run(self) -> None:
        try:
            self._wait_for(1 / 3)
            victim = self.cluster.store_nodes[self.store_id]
            log(f"chaos: SIGKILL {victim.name} and the Center; registers keep selling")
            self.cluster.kill(victim)
            self.cluster.kill(self.cluster.center)
            self._wait_for(0.55)
            self.cluster.start(self.cluster.center)
            self.cluster.start(victim)
            log(f"chaos: {victim.name} and the Center restarted")
            self._wait_for(2 / 3)
            register_id = f"{self.store_id}-1"
            with self.locks[register_id]:
                log(f"chaos: SIGKILL register {register_id} between two receipts")
                self.cluster.kill(self.cluster.registers[register_id])
                self.cluster.start(self.cluster.registers[register_id])
                log(f"chaos: register {register_id} restarted")
        except BaseException as exc:
            self.error = exc


def recompute(cluster: Cluster, since: datetime) -> list[Any]:
    """The Center re-prices every stored sale with the same engine; returns the differing ones."""
    days = (since.date().isoformat(), datetime.now(UTC).date().isoformat())
    report = cluster.run_tool_json(
        "loyalty-center",
        "recompute",
        "--config",
        str(cluster.center.config),
        "--from",
        days[0],
        "--to",
        days[1],
    )
    differing = list(report.get("differing", []))
    print(f"RECOMPUTED sales={report.get('recomputed')} differing={len(differing)}", flush=True)
    return differing


def review_cases(cluster: Cluster) -> list[Any]:
    """The Center's review queue (sales it did not book as claimed): empty for honest registers."""
    token = cluster.staff_token("demo-reviewer", "loyalty_manager")
    found = requests.get(
        cluster.center.url + "/v1/review/cases",
        params={"limit": "1000"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ).json()
    cases = list(found.get("cases", []))
    print(f"REVIEWED cases={len(cases)}", flush=True)
    return cases


def analytics_line(cluster: Cluster, since: datetime, timeout_s: float = 90.0) -> str:
    """Wait until the Center's analytics feeder has caught up, then one line with figures read
    from the analytics store: receipts and average receipt, RFM champions, the lag."""
    token = cluster.staff_token("demo-analyst", "data_analyst")
    headers = {"Authorization": f"Bearer {token}"}
    waited = time.monotonic()
    found: dict[str, Any] = {}
    while time.monotonic() - waited < timeout_s:
        found = requests.get(
            cluster.center.url + "/v1/analytics/status", headers=headers, timeout=60
        ).json()
        if found.get("pending_sales") == 0 and found.get("sales_watermark"):
            break
        time.sleep(0.5)
    else:
        return f"ANALYTICS not caught up after {timeout_s:.0f} s: {json.dumps(found)[:300]}"
    caught_up_s = time.monotonic() - waited
    period = {"from": since.date().isoformat(), "to": datetime.now(UTC).date().isoformat()}
    sizes = requests.get(
        cluster.center.url + "/v1/analytics/receipt-sizes",
        params=period,
        headers=headers,
        timeout=60,
    ).json()
    rfm = requests.get(
        cluster.center.url + "/v1/analytics/rfm", params=period, headers=headers, timeout=60
    ).json()
    champions = next(
        (r["customers"] for r in rfm.get("rows", []) if r["segment"] == "champions"), 0
    )
    return (
        f"ANALYTICS sales={found['rows'].get('sales')} receipts={sizes.get('receipts')} "
        f"average_receipt_minor={sizes.get('average_minor')} customers={rfm.get('customers')} "
        f"champions={champions} caught_up_in_s={caught_up_s:.1f}"
    )


def model_lines(cluster: Cluster) -> list[str]:
    """Train the Center's models on the demo's sales (from its analytics store) and publish
    the offers; one line per model with its metric or why it was skipped."""
    token = cluster.staff_token("demo-marketer", "marketer")
    response = requests.post(
        cluster.center.url + "/v1/models/train",
        json={"percent": 10, "per_customer": 3},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    if response.status_code != 200:
        return [f"MODELS failed: {response.status_code} {response.text[:300]}"]
    done = response.json()
    lines = []
    for kind, version in sorted(done["versions"].items()):
        metrics = done["metrics"][kind]
        shown = {
            key: value
            for key, value in metrics.items()
            if key in ("strategy", "customers", "holdout", "skipped", "churn_rate", "train_s")
        }
        lines.append(f"MODEL {kind} v{version} {json.dumps(shown, sort_keys=True)}")
    lines.append(
        f"MODELS offers_published={done['offers_published']} churn_scored={done['churn_scored']}"
    )
    return lines


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    run_started_at = datetime.now(UTC)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    root = args.data.resolve()
    if root.exists():
        shutil.rmtree(root)
    cluster = Cluster(
        root,
        stores,
        args.registers,
        zeroconf=args.discovery == "zeroconf",
        require_signatures=True,
    )
    cluster.write_configs()

    log(f"loading {args.days} days of baskets for stores {', '.join(stores)} ...")
    baskets = load_baskets(stores, args.days)
    if not baskets:
        raise DemoError(f"no baskets for stores {stores} in the first {args.days} days")
    log(f"{len(baskets)} baskets, {sum(len(b.lines) for b in baskets)} lines")

    with cluster:
        log("importing the whole catalogue, every household and every store into the Center ...")
        cluster.run_tool(
            "loyalty-center",
            "import-dataset",
            "--config",
            str(cluster.center.config),
        )
        cluster.enrol_all()
        cluster.start(cluster.center)
        for node in cluster.store_nodes.values():
            cluster.start(node)
        for node in cluster.registers.values():
            cluster.start(node)
        log(
            f"started 1 Center, {len(cluster.store_nodes)} store nodes, "
            f"{len(cluster.registers)} registers"
        )
        # Registers sell with whatever they have; the demo waits so prices use promotions.
        pending = cluster.wait_for_master()
        if pending:
            log(f"warning: registers {pending} still have no master data; selling anyway")
        # Stores hold only the cards in their scope: the others are looked up online first.
        cards = household_cards(cluster, baskets)

        by_store = {s: [r for r in cluster.registers if r.split("-")[0] == s] for s in stores}
        queues = assign_registers(baskets, by_store)
        tallies = {r: RegisterTally() for r in cluster.registers}
        progress = Progress(len(baskets))
        errors: list[BaseException] = []
        locks = {r: threading.Lock() for r in cluster.registers}
        threads = [
            threading.Thread(
                target=replay_register,
                args=(
                    cluster.registers[r].url,
                    queues.get(r, []),
                    cards,
                    tallies[r],
                    progress,
                    errors,
                    locks[r],
                ),
                name=f"replay-{r}",
                daemon=True,
            )
            for r in cluster.registers
        ]
        replay_started = time.monotonic()
        for thread in threads:
            thread.start()
        replay_done = threading.Event()
        chaos = Chaos(cluster, stores[0], locks, progress, replay_done)
        if not args.no_chaos:
            chaos.start()
        last_log = 0.0
        while any(t.is_alive() for t in threads):
            time.sleep(0.05)
            elapsed = time.monotonic() - replay_started
            if elapsed - last_log >= 2.0:
                last_log = elapsed
                log(
                    f"replay: {progress.done}/{progress.total} receipts, {progress.lines} lines, "
                    f"{progress.done / max(elapsed, 1e-9):.0f} receipts/s"
                )
        for thread in threads:
            thread.join()
        replay_s = time.monotonic() - replay_started
        replay_done.set()
        if chaos.is_alive() or not args.no_chaos:
            chaos.join()
        if chaos.error is not None:
            raise DemoError(f"chaos step failed: {chaos.error}") from chaos.error
        if errors:
            raise DemoError(f"replay failed: {errors[0]}") from errors[0]
        log(
            f"replayed {progress.done} receipts in {replay_s:.1f} s "
            f"({progress.done / replay_s:.1f} receipts/s)"
        )

        discounts = sum(t.discount_minor for t in tallies.values())
        spent = sum(t.bonus_spent for t in tallies.values())
        weighed = sum(t.weighed_lines for t in tallies.values())
        issued = sum(t.coupons_issued for t in tallies.values())
        redeemed = sum(t.coupons_redeemed for t in tallies.values())
        log(
            f"loyalty: discounts_minor={discounts} bonus_spent={spent} weighed_lines={weighed} "
            f"coupons_issued={issued} coupons_redeemed={redeemed}"
        )
        log("waiting for every sale to reach the Center ...")
        rows = wait_for_sync(cluster, tallies, args.sync_timeout)
        print(format_table(rows))
        ok, line = verdict(rows)
        differing = recompute(cluster, run_started_at)
        cases = review_cases(cluster)
        try:
            print(analytics_line(cluster, run_started_at), flush=True)
        except (requests.RequestException, KeyError, ValueError, DemoError) as exc:
            print(f"ANALYTICS failed: {exc}", flush=True)
        try:
            print("\n".join(model_lines(cluster)), flush=True)
        except (requests.RequestException, KeyError, ValueError) as exc:
            print(f"MODELS failed: {exc}", flush=True)
        try:
            print(messages_line(cluster, [f"hh-{h}" for h in cards]), flush=True)
        except (requests.RequestException, KeyError, ValueError, DemoError) as exc:
            print(f"MESSAGES failed: {exc}", flush=True)
        journals = {r: journal_sales(root / f"pos-{r}" / "journal.db") for r in cluster.registers}
        balances = check_balances(cluster, journals, datetime.now(UTC))
        print(balances.line, flush=True)
        if ok and balances.mismatched:
            ok = False
            line = (
                f"NOT RECONCILED receipts={sum(t.receipts for t in tallies.values())} "
                f"first_mismatch=balance {json.dumps(balances.mismatched[0])}"
            )
        if ok and differing:
            ok = False
            line = (
                f"NOT RECONCILED receipts={sum(t.receipts for t in tallies.values())} "
                f"first_mismatch=center recompute differs on {len(differing)} sales: "
                f"{json.dumps(differing[0])[:300]}"
            )
        if ok and cases:
            ok = False
            line = (
                f"NOT RECONCILED receipts={sum(t.receipts for t in tallies.values())} "
                f"first_mismatch=the Center doubted {len(cases)} sales: "
                f"{json.dumps(cases[0])[:300]}"
            )
        total = time.monotonic() - started
        log(f"demo wall time {total:.1f} s; replay {progress.done / replay_s:.1f} receipts/s")
        summary = {
            "days": args.days,
            "stores": stores,
            "registers": len(cluster.registers),
            "receipts": progress.done,
            "lines": progress.lines,
            "replay_s": round(replay_s, 2),
            "receipts_per_s": round(progress.done / replay_s, 1),
            "lines_per_s": round(progress.lines / replay_s, 1),
            "wall_s": round(total, 2),
            "reconciled": ok,
            "balances_checked": balances.cards,
            "balances_mismatched": len(balances.mismatched),
            "chaos": not args.no_chaos,
        }
        (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(line, flush=True)
        if args.serve:
            busiest = Counter(b.household_id for b in baskets if b.household_id in cards)
            serve(cluster, [household for household, _ in busiest.most_common(1)])
        return 0 if ok else 1


SERVE_ROLES = (
    ("admin", "administrator"),
    ("marketer", "marketer"),
    ("manager", "loyalty_manager"),
    ("analyst", "data_analyst"),
    ("operator", "call_center"),
    ("sales", "sales_director"),
    ("director", "marketing_director"),
)
"""The people `--serve` creates: (user name, role)."""


def serve(
    cluster: Cluster, households: Sequence[str] = (), stop: threading.Event | None = None
) -> None:
    """Create a person for every role and each store's admin (one fresh password), give the
    first of `households` the portal's demo sign-in, print where to sign in, and keep the
    cluster running (delivering the portal's sign-in codes) until Ctrl-C (SIGINT), SIGTERM or
    `stop`."""
    password = "demo-" + secrets.token_urlsafe(9)
    center_config = str(cluster.center.config)
    jobs = [
        ("loyalty-center", "add-person", name, "--role", role, "--config", center_config)
        for name, role in SERVE_ROLES
    ] + [
        ("loyalty-store", "set-admin", "--config", str(node.config), f"admin-{store_id}")
        for store_id, node in cluster.store_nodes.items()
    ]
    # One argon2 hash per process: in parallel, the logins are ready in a few seconds.
    with ThreadPoolExecutor(max_workers=4) as pool:
        started = [pool.submit(cluster.run_tool_input, *job, stdin=password + "\n") for job in jobs]
        for done in started:
            done.result()
    lines = [f"CONSOLE {cluster.center.url}/"]
    lines += [f"LOGIN {name} {password} ({role})" for name, role in SERVE_ROLES]
    lines += [
        f"STORE {store_id} {node.url}/ LOGIN admin-{store_id} {password}"
        for store_id, node in cluster.store_nodes.items()
    ]
    portal = PortalDemo(cluster, households) if households else None
    if portal is not None:
        lines += portal.lines()
    lines.append("SERVING: Ctrl-C stops every process")
    print("\n".join(lines), flush=True)
    stop = stop or threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(SEND_EVERY_S if portal is not None else 0.5):
            if portal is not None:
                portal.poll()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if portal is not None:
            portal.stop()
    log("stopping the cluster ...")


def wait_for_sync(
    cluster: Cluster, tallies: dict[str, RegisterTally], timeout_s: float
) -> list[Row]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = collect_rows(cluster, tallies)
        if all(
            r.center_receipts == r.tally.receipts and r.store_receipts == r.tally.receipts
            for r in rows
        ):
            return rows
        if time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except DemoError as exc:
        log(f"demo failed: {exc}")
        print(f"NOT RECONCILED error={exc}", flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
