"""Waiting for the Center to hold every sale and every replica to reach its master version."""

from __future__ import annotations

import time
from typing import Any

import requests

from demo.cluster import Cluster


def center_figures(cluster: Cluster) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for store_id in cluster.stores:
        answer = cluster.center_get(store_id, "/v1/reconciliation", {"store_id": store_id})
        answer.raise_for_status()
        rows.update({str(r["register_id"]): r for r in answer.json()["registers"]})
    return rows


def register_figures(cluster: Cluster) -> dict[str, dict[str, Any]]:
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
            center = center_figures(cluster)
            registers = register_figures(cluster)
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
