"""Clock skew: inside the signature window sales sync; beyond it they are refused, loudly."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import requests

from demo.baskets import load_baskets
from demo.chaos import CLOCK_SKEW_ENV, ChaosOptions, ring_up, wait_synced
from demo.cluster import Cluster
from demo.errors import DemoError
from pos_agent.cli import main as pos_main
from store_node.cli import main as store_main


def test_a_skew_that_would_break_the_signature_window_is_refused_up_front(tmp_path: Path) -> None:
    ChaosOptions(root=tmp_path, clock_skew_s=120).check()
    with pytest.raises(DemoError, match=r"clock_skew_s: 160.*±300 s signature window"):
        ChaosOptions(root=tmp_path, clock_skew_s=160).check()
    with pytest.raises(DemoError, match="backend: 'mysql'"):
        ChaosOptions(root=tmp_path, backend="mysql").check()


@pytest.mark.parametrize("raw", ["soon", "90000", "nan"])
def test_services_refuse_a_bad_skew_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raw: str,
) -> None:
    cluster = Cluster(tmp_path, ["367"], 1)
    cluster.write_configs()
    monkeypatch.setenv(CLOCK_SKEW_ENV, raw)
    for main, config in (
        (pos_main, cluster.registers["367-1"].config),
        (store_main, cluster.store_nodes["367"].config),
    ):
        assert main(["serve", "--config", str(config)]) == 2
        assert f"{CLOCK_SKEW_ENV}: {raw!r}" in capsys.readouterr().err


def _health(cluster: Cluster) -> dict[str, object]:
    answer = requests.get(cluster.registers["367-1"].url + "/health", timeout=5).json()
    assert isinstance(answer, dict)
    return answer


@pytest.mark.timeout(120)
def test_a_register_ten_minutes_ahead_is_refused_and_syncs_once_its_clock_is_fixed(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path / "c", ["367"], 1, require_signatures=True)
    register = cluster.registers["367-1"]
    with cluster:
        cluster.write_configs()
        cluster.run_tool(
            "loyalty-center",
            "import-dataset",
            "--config",
            str(cluster.center.config),
            "--stores",
            "367",
        )
        cluster.enrol_all()
        register.env[CLOCK_SKEW_ENV] = "600"
        for node in (cluster.center, cluster.store_nodes["367"], register):
            cluster.start(node)
        basket = load_baskets(["367"], 1)[0]
        sale_id, _ = ring_up(
            requests.Session(), register.url, basket, None, False, threading.Event()
        )

        deadline = time.monotonic() + 30
        while "clock" not in str(_health(cluster)["last_error"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        health = _health(cluster)
        error = str(health["last_error"]).replace("\\'", "'")
        # The store node names the problem: the register's timestamp is 600 s off its clock.
        # (the receiver's clock minus the timestamp: the register is ahead)
        assert re.search(r"is -(599|600) s from the store node's clock", error), health
        assert "check the register's clock" in error, health
        assert health["queue_depth"] == 1, health
        assert health["master_version"] == 0, health  # its master data requests are refused too
        assert wait_synced(cluster, 1.0) is None  # nothing reached the Center

        cluster.stop(register)
        register.env.pop(CLOCK_SKEW_ENV)
        cluster.start(register)
        assert wait_synced(cluster, 30.0) is not None
        summary = cluster.center_get("367", "/v1/reconciliation", {"store_id": "367"}).json()
        assert [r["receipts"] for r in summary["registers"]] == [1], summary
        assert _health(cluster)["queue_depth"] == 0
        assert sale_id
