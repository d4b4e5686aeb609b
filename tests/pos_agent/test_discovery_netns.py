"""Zeroconf for real: a register finds its store node over mDNS across two network namespaces.

Two namespaces joined by a veth pair stand for the store server and the register on the shop
LAN: `loyalty-store serve` advertises on its side, `loyalty-pos serve` (store_node.url empty)
browses on the other. Discovery is only a hint the register then uses (and health-checks with
its heartbeats); a store node killed and started again on another port is found again.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from demo.cluster import Cluster, free_port

STORE_IP, REGISTER_IP = "10.231.7.1", "10.231.7.2"
REDISCOVERY_LIMIT_S = 10.0
_names = itertools.count(1)

# Runs inside the register's namespace (the test's own namespace cannot reach it): prints the
# register's /health store_url and when each store node URL last heard from which register.
POLLER = """
import json, sys, time, requests
register, stores = sys.argv[1], sys.argv[2:]
last = None
while True:
    seen = {"store_url": None, "sees": {}}
    try:
        seen["store_url"] = requests.get(register + "/health", timeout=1).json()["store_url"]
    except Exception:
        pass
    for store in stores:
        try:
            health = requests.get(store + "/health", timeout=1).json()
            seen["sees"][store] = {r["register_id"]: r["last_seen_at"] for r in health["registers"]}
        except Exception:
            pass
    if seen != last:
        print(json.dumps(seen), flush=True)
        last = seen
    time.sleep(0.1)
"""


@dataclass(frozen=True)
class NetnsPair:
    """Two namespaces and the veth between them: `store` has STORE_IP, `register` REGISTER_IP."""

    store: str
    register: str

    def exec(self, ns: str, *command: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *command]


def _ip(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ip", *args], capture_output=True, timeout=30, check=False)


@pytest.fixture
def netns_pair() -> Iterator[NetnsPair]:
    """Fresh namespaces with unique names, always deleted (which removes the veth too)."""
    tag = f"{os.getpid() % 100000}{next(_names)}"
    pair = NetnsPair(store=f"lzstore{tag}", register=f"lzpos{tag}")
    if shutil.which("ip") is None or _ip("netns", "add", pair.store).returncode != 0:
        message = "network namespaces are unavailable (needs root and iproute2's `ip netns`)"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    try:
        veth_store, veth_register = f"lzvs{tag}", f"lzvp{tag}"
        for step in (
            ("netns", "add", pair.register),
            ("link", "add", veth_store, "type", "veth", "peer", "name", veth_register),
            ("link", "set", veth_store, "netns", pair.store),
            ("link", "set", veth_register, "netns", pair.register),
            ("-n", pair.store, "addr", "add", f"{STORE_IP}/24", "dev", veth_store),
            ("-n", pair.register, "addr", "add", f"{REGISTER_IP}/24", "dev", veth_register),
            ("-n", pair.store, "link", "set", veth_store, "up"),
            ("-n", pair.register, "link", "set", veth_register, "up"),
            ("-n", pair.store, "link", "set", "lo", "up"),
            ("-n", pair.register, "link", "set", "lo", "up"),
        ):
            done = _ip(*step)
            assert done.returncode == 0, (step, done.stderr.decode())
        yield pair
    finally:
        for ns in (pair.register, pair.store):
            _ip("netns", "del", ns)
        _ip("link", "del", f"lzvs{tag}")  # only if it never left this namespace


def _configs(root: Path) -> tuple[Path, Path]:
    """The demo's configs for one store node and one register, put on the two namespaces."""
    cluster = Cluster(root, ["367"], 1, zeroconf=True)
    cluster.write_configs()
    store, register = cluster.store_nodes["367"].config, cluster.registers["367-1"].config
    text = store.read_text()
    for old, new in (
        ('listen_host = "127.0.0.1"', f'listen_host = "{STORE_IP}"'),
        # No Center in this test and nothing enrolled: the register's heartbeats go unsigned.
        ("require_signatures = true", "require_signatures = false"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    store.write_text(text)
    assert 'url = ""' in register.read_text()  # empty: discover over zeroconf
    return store, register


def _set_port(config: Path, port: int) -> None:
    lines = [
        f"listen_port = {port}" if line.startswith("listen_port =") else line
        for line in config.read_text().splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")


class Poller:
    """The POLLER script in the register's namespace; its lines arrive on a queue."""

    def __init__(self, pair: NetnsPair, register_url: str, *store_urls: str) -> None:
        self.process = subprocess.Popen(
            pair.exec(pair.register, sys.executable, "-c", POLLER, register_url, *store_urls),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.last: dict[str, Any] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def until(self, want: Callable[[dict[str, Any]], bool], what: str, timeout_s: float) -> None:
        """Wait until the latest line satisfies `want`."""
        deadline = time.monotonic() + timeout_s
        while not (self.last and want(self.last)):
            try:
                self.last = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"not seen within {timeout_s} s: {what}; last: {self.last}"
                ) from None

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _serve(
    pair: NetnsPair, ns: str, command: str, config: Path, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            pair.exec(
                ns, str(Path(sys.executable).with_name(command)), "serve", "--config", str(config)
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.mark.timeout(120)
def test_a_register_finds_its_store_node_across_namespaces_and_again_after_a_restart(
    tmp_path: Path, netns_pair: NetnsPair
) -> None:
    store_config, register_config = _configs(tmp_path)
    first_port, second_port = free_port(), free_port()
    while second_port == first_port:
        second_port = free_port()
    _set_port(store_config, first_port)
    register_port = int(
        next(
            line.split("=")[1]
            for line in register_config.read_text().splitlines()
            if line.startswith("listen_port =")
        )
    )
    processes: list[subprocess.Popen[bytes]] = []
    poller: Poller | None = None
    try:
        store = _serve(
            netns_pair, netns_pair.store, "loyalty-store", store_config, tmp_path / "store.log"
        )
        processes.append(store)
        register = _serve(
            netns_pair, netns_pair.register, "loyalty-pos", register_config, tmp_path / "pos.log"
        )
        processes.append(register)
        first_url = f"http://{STORE_IP}:{first_port}"
        second_url = f"http://{STORE_IP}:{second_port}"
        poller = Poller(netns_pair, f"http://127.0.0.1:{register_port}", first_url, second_url)
        # Found over mDNS on the veth, and used: the store node saw the register's heartbeat.
        poller.until(
            lambda s: s["store_url"] == first_url and "367-1" in s["sees"].get(first_url, {}),
            f"register uses {first_url} and that node heard from it",
            30.0,
        )

        # kill -9: no goodbye packet, the old record stays in the register's cache.
        store.send_signal(signal.SIGKILL)
        store.wait()
        _set_port(store_config, second_port)
        restarted, restarted_at = time.monotonic(), datetime.now(UTC)
        processes.append(
            _serve(
                netns_pair, netns_pair.store, "loyalty-store", store_config, tmp_path / "store.log"
            )
        )
        poller.until(
            lambda s: s["store_url"] == second_url,
            f"register uses {second_url}",
            REDISCOVERY_LIMIT_S,
        )
        found_after_s = time.monotonic() - restarted
        assert found_after_s < REDISCOVERY_LIMIT_S

        def heard_since_restart(seen: dict[str, Any]) -> bool:
            at = seen["sees"].get(second_url, {}).get("367-1")
            return at is not None and datetime.fromisoformat(at) > restarted_at

        # The hint was followed: the restarted node hears the register's heartbeat again.
        poller.until(heard_since_restart, f"{second_url} hears from 367-1", 10.0)
    finally:
        if poller is not None:
            poller.stop()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
