"""The throughput measure: an offline backlog per register, then how fast it drains."""

from __future__ import annotations

import time
from itertools import cycle, islice
from typing import Any

from demo.baskets import load_baskets
from demo.chaos.cluster import ChaosCluster
from demo.chaos.convergence import wait_synced
from demo.chaos.replayer import Acked, assign, replay
from demo.errors import DemoError


def measure_drain(
    cluster: ChaosCluster, baskets_per_register: int, cards: dict[str, str], acked: Acked
) -> dict[str, Any]:
    """Registers sell offline (their hop resets), then the backlog drains: sales/s to the Center."""
    for proxy in cluster.to_store.values():
        proxy.set_fault("reset", 10**6)
    pool = load_baskets(list(cluster.stores), 14)
    queues = assign(pool, cluster)
    # The same baskets again where the dataset has fewer: each ring-up is a new sale anyway.
    backlog = {
        r: list(islice(cycle(queues[r]), baskets_per_register)) if queues.get(r) else []
        for r in cluster.registers
    }
    started = time.monotonic()
    replayers = replay(cluster, backlog, cards, acked, 0.0)
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
