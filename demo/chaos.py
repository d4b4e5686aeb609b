"""The chaos harness: real processes, kill -9 and network faults at seeded moments, then proof.

S stores x R registers x one Center run as separate processes on loopback. Every hop goes
through a FaultProxy (register -> store node, store node -> Center). Real baskets are rung up
through the registers' local API while a seeded monkey SIGKILLs registers, store nodes and
the Center (and starts them again) and sets faults on the proxies. At the end every fault is
cleared, the harness waits until the Center holds every sale the registers journaled, and
checks the invariants (exactly once, totals to the cent, balances, hash chains, SQLite
integrity). A seed fixes the baskets, the schedule of kills and faults and their targets; the
interleaving with the processes' own timing is not (and need not be) reproducible.

Options: a register and its store node with skewed clocks (LOYALTY_CLOCK_SKEW_S, opposite
ways, so their difference is the sum; both must stay inside the ±300 s signature window),
and the Center on PostgreSQL (a throwaway cluster) instead of SQLite.
"""

from __future__ import annotations

import random
import re
import shutil
import sqlite3
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import cycle, islice, pairwise
from pathlib import Path
from typing import Any

import requests

from demo.baskets import Basket, load_baskets, to_receipt_line
from demo.cluster import Cluster, NodeSpec
from demo.errors import DemoError
from demo.faultproxy import FAULTS, FaultProxy
from demo.postgres import ThrowawayPostgres
from sync_protocol import SIGNATURE_WINDOW_S, Sale, chain_hash, decode_sale, sale_fingerprint

__all__ = ["CLOCK_SKEW_ENV", "ChaosOptions", "ChaosRun", "run_chaos"]

BONUS_SPEND_EVERY = 4
BONUS_SPEND_CAP = 500
CLOCK_SKEW_ENV = "LOYALTY_CLOCK_SKEW_S"  # read by `loyalty-pos serve` and `loyalty-store serve`
BACKENDS = ("sqlite", "postgresql")
_SOLD_AS = re.compile(r"confirmed as sale ([0-9a-f-]{36})")


def log(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    """What to run: the seed decides baskets order, kills, faults and their moments."""

    root: Path
    seed: int = 1
    stores: tuple[str, ...] = ("367", "406")
    registers: int = 2
    days: int = 3
    minutes: float = 0.0  # > 0: keep replaying (the baskets again) until this much time passed
    mean_event_s: float = 1.5  # mean pause between two chaos events
    throughput_baskets: int = 0  # > 0: an offline backlog this big per register, then a drain
    sync_timeout_s: float = 120.0
    # > 0: one register runs this many seconds (or up to half less) off the true time, its store
    # node as much the other way; their sum must stay inside the signature window.
    clock_skew_s: float = 0.0
    backend: str = "sqlite"  # the Center's storage; "postgresql" starts a throwaway cluster

    def check(self) -> None:
        """Refuse options that cannot make a meaningful run, naming the option."""
        if self.backend not in BACKENDS:
            raise DemoError(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if not 0 <= 2 * self.clock_skew_s < SIGNATURE_WINDOW_S:
            raise DemoError(
                f"clock_skew_s: {self.clock_skew_s} s would put a register and its store node up "
                f"to {2 * self.clock_skew_s:.0f} s apart, outside the ±{SIGNATURE_WINDOW_S} s "
                "signature window: every signed request would be refused (StaleTimestamp)"
            )


@dataclass(slots=True)
class Acked:
    """Sales the registers answered for: the harness's reference of what must never be lost."""

    sale_ids: dict[str, str] = field(default_factory=dict)  # sale_id -> register_id
    total_minor: Counter[str] = field(default_factory=Counter)  # per register
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, register_id: str, sale_id: str, total_minor: int) -> None:
        with self.lock:
            if sale_id not in self.sale_ids:
                self.sale_ids[sale_id] = register_id
                self.total_minor[register_id] += total_minor


# -- replay that survives its register being killed -------------------------------------------


class _Restart(Exception):
    """Ring the basket up again on a new receipt."""


def _wait_up(base: str, stop: threading.Event, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if requests.get(base + "/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise DemoError(f"register {base} did not come back within {timeout_s:.0f} s")


def _json(response: requests.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 500:
        raise _Restart(f"{what}: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise DemoError(f"{what} answered {response.status_code}: {response.text[:300]}")
    result = response.json()
    assert isinstance(result, dict)
    return result


def ring_up(
    session: requests.Session,
    base: str,
    basket: Basket,
    card_no: str | None,
    spend: bool,
    stop: threading.Event,
) -> tuple[str, int]:
    """Ring one basket up until the register acknowledges a sale; (sale_id, total_minor).

    A kill before confirm restarts the basket on a new receipt; a kill during confirm retries
    the confirm on the same receipt, whose 409 then names the sale if it was committed.
    """
    last = ""
    for _ in range(30):
        receipt_id: str | None = None
        try:
            opened = _json(session.post(f"{base}/v1/receipts", json={}, timeout=10), "open")
            receipt_id = str(opened["receipt_id"])
            url = f"{base}/v1/receipts/{receipt_id}"
            lines = [to_receipt_line(line) for line in basket.lines]
            _json(session.post(f"{url}/lines", json={"lines": lines}, timeout=10), "lines")
            if card_no is not None:
                _json(session.post(f"{url}/card", json={"card_no": card_no}, timeout=10), "card")
            calc = _json(session.post(f"{url}/calculate", json={}, timeout=10), "calculate")
            total = int(calc["total_minor"])
            bonus = min(int(calc["bonus_payable_max"]), BONUS_SPEND_CAP) if spend else 0
            body = {
                "payments": [{"method": "card", "amount_minor": total - bonus}],
                "bonus_to_spend": bonus,
            }
        except (requests.RequestException, _Restart) as exc:
            last = f"{exc.__class__.__name__}: {exc}"
            _wait_up(base, stop)
            continue
        for _ in range(30):
            try:
                response = session.post(f"{url}/confirm", json=body, timeout=10)
            except requests.RequestException as exc:
                last = f"confirm: {exc.__class__.__name__}: {exc}"
                _wait_up(base, stop)
                continue
            last = f"confirm: HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code == 200:
                answer = response.json()
                return str(answer["sale_id"]), int(answer["total_minor"])
            sold = _SOLD_AS.search(response.text) if response.status_code == 409 else None
            if sold is not None:
                return sold.group(1), total
            if response.status_code in (400, 422) or "insufficient_balance" in response.text:
                # E.g. the bonus was spent meanwhile at this register, or is held by a receipt
                # open at another one (the store node reserves it): sell without it.
                spend = False
                try:
                    session.post(f"{url}/cancel", json={}, timeout=10)
                except requests.RequestException:
                    # Killed meanwhile: the receipt stays open there (its hold times out).
                    _wait_up(base, stop)
                break
            if response.status_code == 409:
                break  # cancelled meanwhile: a new receipt
            _wait_up(base, stop)
    raise DemoError(
        f"basket {basket.basket_id} could not be rung up at {base} in 30 attempts; last: {last}"
    )


@dataclass(slots=True)
class Replayer:
    """One thread per register, ringing up its baskets in order."""

    register_id: str
    base: str
    baskets: Sequence[Basket]
    cards: dict[str, str]
    acked: Acked
    stop: threading.Event
    until: float = 0.0  # monotonic; 0 = one pass over the baskets
    receipts: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        carded = 0
        try:
            with requests.Session() as session:
                session.trust_env = False
                while True:
                    for basket in self.baskets:
                        if self.stop.is_set():
                            return
                        card = self.cards.get(basket.household_id)
                        spend = False
                        if card is not None:
                            carded += 1
                            spend = carded % BONUS_SPEND_EVERY == 0
                        sale_id, total = ring_up(session, self.base, basket, card, spend, self.stop)
                        self.acked.add(self.register_id, sale_id, total)
                        self.receipts += 1
                        if self.until and time.monotonic() >= self.until:
                            return
                    if not self.until or not self.baskets:
                        return
        except BaseException as exc:
            self.error = exc


# -- the cluster with a proxy on every hop ------------------------------------------------------


class ChaosCluster(Cluster):
    """The demo cluster, each register -> store node and store node -> Center hop proxied."""

    def __init__(
        self,
        root: Path,
        stores: list[str],
        registers_per_store: int,
        seed: int,
        *,
        postgres_dsn: str = "",
    ) -> None:
        super().__init__(root, stores, registers_per_store, require_signatures=True)
        self.postgres_dsn = postgres_dsn
        self.clock_skew_s: dict[str, float] = {}
        rng = random.Random(seed)
        self.to_store = {
            s: FaultProxy(f"pos->store-{s}", n.port, seed=rng.randrange(2**32))
            for s, n in self.store_nodes.items()
        }
        self.to_center = {
            s: FaultProxy(f"store-{s}->center", self.center.port, seed=rng.randrange(2**32))
            for s in self.store_nodes
        }

    @property
    def proxies(self) -> list[FaultProxy]:
        return [*self.to_store.values(), *self.to_center.values()]

    def skew_clocks(self, seed: int, max_s: float) -> dict[str, float]:
        """Shift one register's clock by up to ±max_s and its store node's the other way."""
        if max_s <= 0:
            return {}
        rng = random.Random(seed)
        register_id = rng.choice(sorted(self.registers))
        sign = rng.choice((1, -1))
        register = self.registers[register_id]
        store = self.store_nodes[register_id.split("-")[0]]
        for node, skew in (
            (register, sign * rng.uniform(max_s / 2, max_s)),
            (store, -sign * rng.uniform(max_s / 2, max_s)),
        ):
            node.env[CLOCK_SKEW_ENV] = f"{skew:.3f}"
            self.clock_skew_s[node.name] = round(skew, 3)
        return dict(self.clock_skew_s)

    def write_configs(self) -> None:
        for proxy in self.proxies:
            proxy.start()
        super().write_configs()
        if self.postgres_dsn:
            self._rewrite(
                self.center,
                ('backend = "sqlite"', 'backend = "postgresql"'),
                ('dsn = ""', f'dsn = "{self.postgres_dsn}"'),
            )
        for store_id, node in self.store_nodes.items():
            # Short timeouts so that a blackholed Center costs seconds, not the default minutes.
            self._rewrite(
                node,
                (f'url = "{self.center.url}"', f'url = "{self.to_center[store_id].url}"'),
                ("timeout_s = 10.0", "timeout_s = 3.0"),
            )
        for register_id, node in self.registers.items():
            store_id = register_id.split("-")[0]
            self._rewrite(
                node,
                (
                    f'url = "{self.store_nodes[store_id].url}"',
                    f'url = "{self.to_store[store_id].url}"',
                ),
                ("timeout_s = 5.0", "timeout_s = 2.0"),
            )

    @staticmethod
    def _rewrite(node: NodeSpec, *changes: tuple[str, str]) -> None:
        text = node.config.read_text()
        for old, new in changes:
            # A hop that silently bypassed its proxy would make the whole run meaningless.
            if text.count(old) != 1:
                raise DemoError(f"{node.config}: expected one {old!r} to point at the proxy")
            text = text.replace(old, new)
        node.config.write_text(text)

    def ensure_running(self) -> None:
        """Start every process that is not running (after the monkey stopped)."""
        for node in [self.center, *self.store_nodes.values(), *self.registers.values()]:
            if node.process is None or node.process.poll() is not None:
                self.start(node)

    def stop_all(self) -> None:
        super().stop_all()
        for proxy in self.proxies:
            proxy.stop()


def dataset_card_number(household_id: str) -> str:
    """The card the demo dataset import gives a household: EAN-13 of "29" + the id in 10 digits."""
    body = f"29{int(household_id):010d}"
    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10) % 10
    return f"{body}{check}"


def household_cards(cluster: Cluster, baskets: Iterable[Basket]) -> dict[str, str]:
    """household id -> card number for the baskets' households that have a card at the Center.

    Stores hold only the cards in their scope (used there lately or looked up), so the master
    data no longer lists them all: each card is looked up online, as a register does when a
    card it does not hold is presented; the Center then adds it to that store's scope.
    """
    cards = cluster.household_cards()
    wanted = {(b.household_id, b.store_id) for b in baskets if b.household_id not in cards}

    def lookup(item: tuple[str, str]) -> tuple[str, str | None]:
        household_id, store_id = item
        if not household_id.isdigit():
            return household_id, None
        card_no = dataset_card_number(household_id)
        answer = cluster.center_get(store_id, f"/v1/cards/{card_no}/lookup", {"store_id": store_id})
        if answer.status_code == 404:
            return household_id, None
        answer.raise_for_status()
        return household_id, str(answer.json()["card_no"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        for household_id, card_no in pool.map(lookup, sorted(wanted)):
            if card_no is not None:
                cards[household_id] = card_no
    return cards


# -- the monkey --------------------------------------------------------------------------------


class Monkey(threading.Thread):
    """Seeded chaos on one axis: kill -9 then restart processes, or set faults on the hops.

    Two monkeys run at once (one per axis) so that restarts, which wait for /health, never
    hold back the network faults.
    """

    def __init__(self, cluster: ChaosCluster, seed: int, mean_event_s: float, axis: str) -> None:
        super().__init__(name=f"chaos-{axis}", daemon=True)
        if axis not in ("kill", "net"):
            raise DemoError(f"monkey axis {axis!r} is not kill or net")
        self.cluster = cluster
        self.axis = axis
        self.rng = random.Random(seed)
        self.mean_event_s = mean_event_s
        self.halt = threading.Event()
        self.events: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.wait(self.rng.expovariate(1 / self.mean_event_s)):
                if self.axis == "net":
                    self.fault()
                else:
                    self.kill()
        except BaseException as exc:
            self.error = exc

    def fault(self) -> None:
        rng = self.rng
        proxy = rng.choice(self.cluster.proxies)
        kind = rng.choice(FAULTS)
        duration = rng.uniform(0.5, 3.0)
        probability = rng.choice((1.0, 0.5))
        proxy.set_fault(kind, duration, probability=probability, delay_s=rng.uniform(0.1, 1.0))
        self.events[kind] += 1

    def kill(self) -> None:
        rng = self.rng
        role = rng.choices(("register", "store", "center"), weights=(5, 3, 2))[0]
        node: NodeSpec
        if role == "register":
            node = self.cluster.registers[rng.choice(sorted(self.cluster.registers))]
        elif role == "store":
            node = self.cluster.store_nodes[rng.choice(sorted(self.cluster.store_nodes))]
        else:
            node = self.cluster.center
        down_s = rng.uniform(0.0, 2.5)
        self.cluster.kill(node)
        self.events[role] += 1
        # When halted meanwhile, the harness restarts whatever is down itself.
        if not self.halt.wait(down_s):
            self.cluster.start(node)


# -- reading the databases at the end ------------------------------------------------------------


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def journal_sales(path: Path) -> list[Sale]:
    """Every sale a register journaled, in seq order."""
    conn = _ro(path)
    try:
        rows = conn.execute("SELECT payload FROM sales ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [decode_sale(bytes(r[0])) for r in rows]


def integrity(paths: Iterable[Path]) -> dict[str, str]:
    """PRAGMA integrity_check of every database: "folder/name" -> "ok" or the first problem."""
    out = {}
    for path in sorted(paths):
        name = f"{path.parent.name}/{path.name}"
        try:
            conn = sqlite3.connect(path, timeout=30)
            try:
                out[name] = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            out[name] = f"cannot check: {exc}"
    return out


def postgres_integrity(dsn: str) -> dict[str, str]:
    """amcheck of the Center's PostgreSQL: every B-tree index checked, with its heap.

    `bt_index_check(index, heapallindexed => true)` verifies the index structure and that every
    heap tuple is in the index, under an AccessShareLock (the Center may keep running).
    "index name" -> "ok" or the error amcheck raised.
    """
    import psycopg

    out: dict[str, str] = {}
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = pg.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE am.amname = 'btree' AND n.nspname = 'public' AND c.relkind = 'i' "
            "ORDER BY c.relname"
        ).fetchall()
        for (name,) in indexes:
            try:
                pg.execute("SELECT bt_index_check(%s::regclass, true)", (name,))
                out[f"postgresql/{name}"] = "ok"
            except psycopg.Error as exc:
                out[f"postgresql/{name}"] = f"amcheck: {str(exc).strip()}"
    return out


_CENTER_QUERIES = (
    "SELECT sale_id, register_id, seq, fingerprint FROM sales",
    "SELECT COUNT(*) FROM (SELECT register_id, seq FROM sales "
    "GROUP BY register_id, seq HAVING COUNT(*) > 1) AS d",
    "SELECT COUNT(*) FROM (SELECT source, wallet, kind, rule_id FROM ledger "
    "GROUP BY source, wallet, kind, rule_id HAVING COUNT(*) > 1) AS d",
    "SELECT card_no, SUM(amount) FROM ledger WHERE rule_id = 'welcome' GROUP BY card_no",
    "SELECT sale_id, received_at FROM sales",
)


def _when(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def clock_offsets(
    journals: dict[str, list[Sale]], store_dbs: dict[str, Path], center_received: dict[str, Any]
) -> dict[str, float]:
    """How far ahead of the Center each node's clock looked, from the times stamped on sales.

    A register: minus the smallest (Center received_at - closed_at); a store node: the smallest
    (its forwarded_at - Center received_at). Network and queueing delays only add to both
    differences, and the smallest of many sales is one that went straight through.
    """
    out: dict[str, float] = {}
    for register_id, sales in sorted(journals.items()):
        gaps = [
            (_when(center_received[s.sale_id]) - s.closed_at).total_seconds()
            for s in sales
            if s.sale_id in center_received
        ]
        if gaps:
            out[f"pos-{register_id}"] = round(-min(gaps), 1)
    for store_id, path in sorted(store_dbs.items()):
        conn = _ro(path)
        try:
            rows = conn.execute(
                "SELECT sale_id, forwarded_at FROM sales WHERE forwarded_at IS NOT NULL"
            ).fetchall()
        finally:
            conn.close()
        gaps = [
            (_when(at) - _when(center_received[i])).total_seconds()
            for i, at in rows
            if i in center_received
        ]
        if gaps:
            out[f"store-{store_id}"] = round(min(gaps), 1)
    return out


def center_queries(sqlite_path: Path, dsn: str) -> list[list[tuple[Any, ...]]]:
    """The rows of each of _CENTER_QUERIES, straight from the Center's database (either backend)."""
    if not dsn:
        conn = _ro(sqlite_path)
        try:
            return [conn.execute(q).fetchall() for q in _CENTER_QUERIES]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(dsn) as pg:
        return [pg.execute(q).fetchall() for q in _CENTER_QUERIES]


def _active(move: Any, now: datetime) -> bool:
    return (move.active_from is None or move.active_from <= now) and (
        move.expires_at is None or move.expires_at > now
    )


def reference_balances(sales: Iterable[Sale], now: datetime) -> dict[str, int]:
    """Per card sold to: the signed bonus movements of its sales that count at `now`."""
    out: dict[str, int] = defaultdict(int)
    for sale in sales:
        if sale.card_no is None:
            continue
        out[sale.card_no] += 0  # a card whose movements do not count yet is still checked
        for move in sale.loyalty:
            if move.wallet == "bonus" and _active(move, now):
                out[sale.card_no] += move.amount if move.kind == "accrue" else -move.amount
    return dict(out)


# -- the run -------------------------------------------------------------------------------------


@dataclass(slots=True)
class ChaosRun:
    """The outcome: `report` is the one JSON object printed; `ok` when every invariant holds."""

    report: dict[str, Any]
    ok: bool


def _center_figures(cluster: Cluster) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for store_id in cluster.stores:
        answer = cluster.center_get(store_id, "/v1/reconciliation", {"store_id": store_id})
        answer.raise_for_status()
        rows.update({str(r["register_id"]): r for r in answer.json()["registers"]})
    return rows


def _register_figures(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {
        register_id: requests.get(node.url + "/v1/sales/summary", timeout=10).json()
        for register_id, node in cluster.registers.items()
    }


def wait_synced(cluster: Cluster, timeout_s: float) -> float | None:
    """Seconds until the Center holds as many sales per register as the register; None: timeout."""
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        try:
            center = _center_figures(cluster)
            registers = _register_figures(cluster)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        if all(
            int(center.get(r, {}).get("receipts", 0)) == int(figures["receipts"])
            for r, figures in registers.items()
        ):
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def replicas_behind(cluster: Cluster, timeout_s: float = 30.0) -> dict[str, int]:
    """Nodes whose master data is not the Center's version once they had time to poll."""
    deadline = time.monotonic() + timeout_s
    while True:
        want = int(
            requests.get(cluster.center.url + "/health", timeout=10).json()["master_version"]
        )
        behind = {}
        for node in [*cluster.store_nodes.values(), *cluster.registers.values()]:
            try:
                have = int(requests.get(node.url + "/health", timeout=10).json()["master_version"])
            except requests.RequestException:
                have = -1
            if have != want:
                behind[node.name] = have
        if not behind or time.monotonic() > deadline:
            return behind
        time.sleep(0.2)


def _replay(
    cluster: ChaosCluster,
    queues: dict[str, list[Basket]],
    cards: dict[str, str],
    acked: Acked,
    until: float,
) -> list[Replayer]:
    stop = threading.Event()
    replayers = [
        Replayer(r, cluster.registers[r].url, queues.get(r, []), cards, acked, stop, until)
        for r in sorted(cluster.registers)
    ]
    threads = [
        threading.Thread(target=p.run, name=f"replay-{p.register_id}", daemon=True)
        for p in replayers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replayers


def _assign(baskets: Sequence[Basket], cluster: Cluster) -> dict[str, list[Basket]]:
    by_store = {
        s: sorted(r for r in cluster.registers if r.split("-")[0] == s) for s in cluster.stores
    }
    queues: dict[str, list[Basket]] = defaultdict(list)
    turn: Counter[str] = Counter()
    for basket in baskets:
        ids = by_store[basket.store_id]
        queues[ids[turn[basket.store_id] % len(ids)]].append(basket)
        turn[basket.store_id] += 1
    return queues


def measure_drain(
    cluster: ChaosCluster, baskets_per_register: int, cards: dict[str, str], acked: Acked
) -> dict[str, Any]:
    """Registers sell offline (their hop resets), then the backlog drains: sales/s to the Center."""
    for proxy in cluster.to_store.values():
        proxy.set_fault("reset", 10**6)
    pool = load_baskets(list(cluster.stores), 14)
    queues = _assign(pool, cluster)
    # The same baskets again where the dataset has fewer: each ring-up is a new sale anyway.
    backlog = {
        r: list(islice(cycle(queues[r]), baskets_per_register)) if queues.get(r) else []
        for r in cluster.registers
    }
    started = time.monotonic()
    replayers = _replay(cluster, backlog, cards, acked, 0.0)
    ring_s = time.monotonic() - started
    for p in replayers:
        if p.error is not None:
            raise DemoError(f"drain replay at {p.register_id} failed: {p.error}")
    sales = sum(p.receipts for p in replayers)
    for proxy in cluster.to_store.values():
        proxy.clear()
    drain_s = wait_synced(cluster, 300.0)
    if drain_s is None:
        raise DemoError("the offline backlog did not reach the Center within 300 s")
    return {
        "backlog_sales": sales,
        "offline_ring_up_sales_per_s": round(sales / ring_s, 1),
        "drain_s": round(drain_s, 2),
        "drain_sales_per_s": round(sales / drain_s, 1),
    }


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
        queues = _assign(baskets, cluster)
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
        replayers = _replay(cluster, queues, cards, acked, until)
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
        progress(f"{time.monotonic() - started:.1f} s: synced; checking replicas")
        behind = replicas_behind(cluster)
        progress(f"{time.monotonic() - started:.1f} s: replicas checked")
        # Balances are compared while the Center runs, at one `now` for both sides.
        checked_at = datetime.now(UTC)
        journals = {r: journal_sales(root / f"pos-{r}" / "journal.db") for r in cluster.registers}
        center_rows = _center_figures(cluster)
        store_rows: dict[str, dict[str, Any]] = {}
        for node in cluster.store_nodes.values():
            summary = requests.get(node.url + "/v1/sales/summary", timeout=10).json()
            store_rows.update({str(r["register_id"]): r for r in summary["registers"]})
        all_sales = [s for sales in journals.values() for s in sales]
        reference = reference_balances(all_sales, checked_at)
        center_balances: dict[str, int] = {}
        for card_no in sorted(reference):
            answer = cluster.center_get(cluster.stores[0], f"/v1/customers/{card_no}/balance")
            center_balances[card_no] = (
                int(answer.json()["wallets"].get("bonus", 0)) if answer.ok else -(10**12)
            )
        health = requests.get(cluster.center.url + "/health", timeout=10).json()
    # Every process is stopped: the databases can be read and checked whole.
    report = _verdict(
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
    report["replicas_not_converged"] = len(behind)
    if behind:
        report["replicas_not_converged_detail"] = behind
    ok = bool(report.pop("_ok")) and sync_s is not None and not behind
    report["ok"] = ok
    return ChaosRun(report=report, ok=ok)


def _verdict(
    options: ChaosOptions,
    cluster: ChaosCluster,
    acked: Acked,
    journals: dict[str, list[Sale]],
    center_rows: dict[str, dict[str, Any]],
    store_rows: dict[str, dict[str, Any]],
    reference: dict[str, int],
    center_balances: dict[str, int],
    health: dict[str, Any],
    dsn: str,
) -> dict[str, Any]:
    root = options.root.resolve()
    sales_rows, seq_rows, ledger_rows, welcome_rows, received_rows = center_queries(
        root / "center" / "center.db", dsn
    )
    center_sales = {str(r[0]): (str(r[1]), int(r[2]), str(r[3])) for r in sales_rows}
    seq_dupes, ledger_dupes = seq_rows[0][0], ledger_rows[0][0]
    welcome = {str(r[0]): int(r[1]) for r in welcome_rows}
    journaled = {s.sale_id: s for sales in journals.values() for s in sales}
    lost = [i for i in acked.sale_ids if i not in center_sales]
    lost_at_register = [i for i in acked.sale_ids if i not in journaled]
    phantom = [i for i in center_sales if i not in journaled]
    payload_mismatch = [
        i
        for i, s in journaled.items()
        if i in center_sales and center_sales[i][2] != sale_fingerprint(s)
    ]
    journal_gaps = 0
    chain_breaks_journal = 0
    for sales in journals.values():
        seqs = [s.seq for s in sales]
        journal_gaps += (max(seqs) - len(seqs)) if seqs else 0
        for before, after in pairwise(sales):
            if after.prev_hash != chain_hash(before):
                chain_breaks_journal += 1
        if sales and sales[0].prev_hash:
            chain_breaks_journal += 1
    center_gaps = sum(
        end - start + 1 for row in center_rows.values() for start, end in row.get("gaps", [])
    )
    center_breaks = sum(len(row.get("chain_breaks", [])) for row in center_rows.values())
    totals_mismatch = []
    for register_id, sales in journals.items():
        want = (len(sales), sum(s.total_minor for s in sales))
        center = center_rows.get(register_id, {})
        store = store_rows.get(register_id, {})
        got_center = (int(center.get("receipts", 0)), int(center.get("total_minor", 0)))
        got_store = (int(store.get("receipts", 0)), int(store.get("total_minor", 0)))
        if got_center != want or got_store != want:
            totals_mismatch.append(
                {
                    "register_id": register_id,
                    "journal": want,
                    "store": got_store,
                    "center": got_center,
                }
            )
    balance_mismatch = [
        {"card_no": c, "center": center_balances.get(c), "reference": welcome.get(c, 0) + v}
        for c, v in sorted(reference.items())
        if center_balances.get(c) != welcome.get(c, 0) + v
    ]
    dbs = integrity(root.rglob("*.db"))
    if dsn:
        dbs.update(postgres_integrity(dsn))
    checks = {
        "lost": len(lost),
        "lost_at_register": len(lost_at_register),
        "duplicated": int(seq_dupes) + int(ledger_dupes) + len(payload_mismatch),
        "phantom": len(phantom),
        "sequence_gaps": journal_gaps + center_gaps,
        "chain_breaks": chain_breaks_journal + center_breaks,
        "quarantined_at_center": int(health.get("quarantined", 0)),
        "totals_mismatch": len(totals_mismatch),
        "balance_mismatch": len(balance_mismatch),
        "integrity_not_ok": sum(1 for v in dbs.values() if v != "ok"),
    }
    journal_total = sum(s.total_minor for s in journaled.values())
    center_total = sum(int(r.get("total_minor", 0)) for r in center_rows.values())
    report: dict[str, Any] = {
        "seed": options.seed,
        "stores": len(cluster.store_nodes),
        "registers": len(cluster.registers),
        "acked_sales": len(acked.sale_ids),
        "journaled_sales": len(journaled),
        "center_sales": len(center_sales),
        **checks,
        "register_total_minor": journal_total,
        "center_total_minor": center_total,
        "acked_total_minor": sum(acked.total_minor.values()),
        "cards_checked": len(reference),
        "databases_checked": len(dbs),
        "integrity": "ok" if checks["integrity_not_ok"] == 0 else dbs,
        "clock_ahead_seen_s": clock_offsets(
            journals,
            {s: root / f"store-{s}" / "store.db" for s in cluster.store_nodes},
            dict(received_rows),
        ),
    }
    if totals_mismatch:
        report["totals_mismatch_detail"] = totals_mismatch[:5]
    if balance_mismatch:
        report["balance_mismatch_detail"] = balance_mismatch[:5]
    if lost:
        report["lost_detail"] = lost[:5]
    report["_ok"] = all(v == 0 for v in checks.values()) and journal_total == center_total
    return report
