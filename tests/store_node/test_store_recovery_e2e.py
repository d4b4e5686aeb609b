"""A store node that loses store.db gets every acknowledged sale back from the registers'
journals, with real processes: register -> store node -> Center over HTTP."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from demo.baskets import load_baskets
from demo.chaos import ring_up
from demo.cluster import Cluster


def _until(what: str, check: Callable[[], Any], timeout_s: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except requests.RequestException as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.mark.timeout(240)
def test_sales_acknowledged_then_lost_with_store_db_reach_the_center_once(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path / "c", ["367"], 1)
    center, node, register = cluster.center, cluster.store_nodes["367"], cluster.registers["367-1"]
    store_db = tmp_path / "c" / "store-367" / "store.db"
    baskets = iter(load_baskets(["367"], 12))
    session = requests.Session()

    def sell(n: int) -> list[str]:
        return [
            ring_up(session, register.url, next(baskets), None, False, threading.Event())[0]
            for _ in range(n)
        ]

    def reconciliation() -> dict[str, Any]:
        answer = cluster.center_get("367", "/v1/reconciliation", {"store_id": "367"}).json()
        (row,) = answer["registers"] or [{"receipts": 0, "max_seq": 0, "gaps": []}]
        return dict(row)

    def node_health() -> dict[str, Any]:
        return dict(requests.get(node.url + "/health", timeout=5).json())

    with cluster:
        cluster.write_configs()
        cluster.run_tool(
            "loyalty-center", "import-dataset", "--config", str(center.config), "--stores", "367"
        )
        center_cli = str(Path(sys.executable).with_name("loyalty-center"))
        add_user = [center_cli, "add-user", "--config", str(center.config), "ops"]
        token = subprocess.run(
            [*add_user, "--role", "administrator"], check=True, stdout=subprocess.PIPE, text=True
        ).stdout.strip()
        cluster.enrol_all()
        for service in (center, node, register):
            cluster.start(service)

        def nodes_health() -> dict[str, Any]:
            answer = requests.get(
                center.url + "/v1/nodes/health",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            answer.raise_for_status()
            (store,) = [n for n in answer.json()["nodes"] if n["role"] == "store"]
            return dict(store)

        before = sell(3)
        _until("3 sales at the Center", lambda: reconciliation()["receipts"] == 3)

        # The Center is away: the store node acknowledges 5 sales it cannot forward yet.
        cluster.stop(center)
        lost = sell(5)
        _until(
            "the register's outbox acknowledged",
            lambda: requests.get(register.url + "/health", timeout=5).json()["queue_depth"] == 0,
        )
        assert node_health()["pending_to_center"] == 5
        # The disk goes: the node dies and comes back on an empty store.db; the register is
        # switched off meanwhile, so the recovery has to wait for its journal.
        cluster.kill(node)
        cluster.stop(register)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store_db}{suffix}").unlink(missing_ok=True)
        cluster.start(center)
        cluster.start(node)

        waiting = _until(
            "the node to have asked the Center",
            lambda: (h := node_health())["recovery"] and h["recovery"]["center_checked"] and h,
        )
        assert waiting["recovery"]["waiting_for"] == ["367-1"], waiting
        (alert,) = waiting["alerts"]
        assert alert.startswith("store_db_recovery: store.db was created at this start"), alert
        assert "waiting for 367-1 to report its journal" in alert
        assert waiting["db_id"]
        # The Center's view of its nodes shows the alert too (sent with the heartbeat).
        shown = _until("the alert at the Center", lambda: nodes_health()["alerts"])
        assert shown[0].startswith("store_db_recovery:"), shown
        assert reconciliation()["gaps"] == []  # the Center cannot know about the lost ones yet

        # The register comes back, reports its journal and re-sends seqs 4..8 only.
        cluster.start(register)
        after = sell(2)
        _until("the recovery to end", lambda: node_health()["recovery"] is None)
        row = _until(
            "10 sales at the Center",
            lambda: (r := reconciliation())["receipts"] == 10 and r,
        )
        assert (row["min_seq"], row["max_seq"], row["gaps"], row["chain_breaks"]) == (
            1,
            10,
            [],
            [],
        )
        healthy = node_health()
        assert healthy["alerts"] == [] and healthy["pending_to_center"] == 0, healthy
        _until("the alert to clear at the Center", lambda: nodes_health()["alerts"] == [])

    # Exactly once: 10 sales, 10 distinct seqs, none counted twice (receipts == max_seq).
    assert len(set(before + lost + after)) == 10
    store_log = (tmp_path / "c" / "store-367.log").read_text()
    assert "asking register 367-1 to re-send 5 acknowledged sales" in store_log, store_log[-3000:]
    assert "store.db recovery finished" in store_log
    register_log = (tmp_path / "c" / "pos-367-1.log").read_text()
    assert "re-sent 5 acknowledged sales the store node lost" in register_log
