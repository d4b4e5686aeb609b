"""Real processes on loopback: one Center, store nodes and registers, each with its own config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from demo.errors import DemoError


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class NodeSpec:
    """One service process of the demo: its command, config and where it listens."""

    name: str
    command: str
    config: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict)  # extra environment, e.g. clock skew

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _bin(command: str) -> str:
    # The console scripts live next to the interpreter running the demo (the project's venv).
    candidate = Path(sys.executable).with_name(command)
    return str(candidate) if candidate.exists() else command


class Cluster(AbstractContextManager["Cluster"]):
    """Owns every demo process: writes configs, starts, waits, kills and stops them."""

    def __init__(
        self,
        root: Path,
        stores: list[str],
        registers_per_store: int,
        *,
        zeroconf: bool = False,
        require_signatures: bool = False,
    ) -> None:
        self.root = root
        self.zeroconf = zeroconf
        # Store nodes always enrol and sign; requiring it also refuses the demo's own unsigned
        # reads of the Center, so only callers that sign them (center_get) turn it on.
        self.require_signatures = require_signatures
        self.stores = stores
        self.center = NodeSpec("center", "loyalty-center", root / "center.toml", free_port())
        self.store_nodes: dict[str, NodeSpec] = {}
        self.registers: dict[str, NodeSpec] = {}
        for store_id in stores:
            self.store_nodes[store_id] = NodeSpec(
                f"store-{store_id}", "loyalty-store", root / f"store-{store_id}.toml", free_port()
            )
            for n in range(1, registers_per_store + 1):
                register_id = f"{store_id}-{n}"
                self.registers[register_id] = NodeSpec(
                    f"pos-{register_id}",
                    "loyalty-pos",
                    root / f"pos-{register_id}.toml",
                    free_port(),
                )

    def write_configs(self) -> None:
        """Write one TOML file per service, every data folder under the demo root."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.center.config.write_text(
            "[center]\n"
            'node_id = "center"\n'
            'listen_host = "127.0.0.1"\n'
            f"listen_port = {self.center.port}\n"
            'data_dir = "center"\n\n'
            "[storage]\n"
            'backend = "sqlite"\n'
            'sqlite_path = "center.db"\n'
            'dsn = ""\n\n'
            "[security]\n"
            f"require_signatures = {'true' if self.require_signatures else 'false'}\n\n"
            # The Center feeds its analytics store (chDB under center/analytics) every 5 s.
            "[analytics]\n"
            "feed_interval_s = 5\n"
        )
        for store_id, node in self.store_nodes.items():
            node.config.write_text(
                "[store]\n"
                f'store_id = "{store_id}"\n'
                f'node_id = "store-{store_id}"\n'
                'listen_host = "127.0.0.1"\n'
                f"listen_port = {node.port}\n"
                f'data_dir = "store-{store_id}"\n'
                f"advertise = {'true' if self.zeroconf else 'false'}\n\n"
                "[center]\n"
                f'url = "{self.center.url}"\n'
                "batch_size = 500\n"
                "interval_s = 0.5\n"
                "backoff_initial_s = 0.2\n"
                "backoff_max_s = 2.0\n"
                "timeout_s = 10.0\n"
                "master_poll_s = 1.0\n\n"
                "[security]\n"
                "require_signatures = true\n"
            )
        for register_id, node in self.registers.items():
            store_id = register_id.split("-")[0]
            node.config.write_text(
                "[register]\n"
                f'register_id = "{register_id}"\n'
                f'store_id = "{store_id}"\n'
                'listen_host = "127.0.0.1"\n'
                f"listen_port = {node.port}\n"
                f'data_dir = "pos-{register_id}"\n\n'
                "[store_node]\n"
                # Empty: find the store node over mDNS (_loyalty-store._tcp, TXT store_id).
                f'url = "{"" if self.zeroconf else self.store_nodes[store_id].url}"\n'
                "upload_interval_s = 0.5\n"
                "batch_size = 200\n"
                "timeout_s = 5.0\n"
                "master_poll_s = 1.0\n"
                "backoff_max_s = 2.0\n\n"
                # Real ESC/POS bytes and display frames, written to files instead of devices.
                "[printer]\n"
                f'uri = "file://{self.root}/pos-{register_id}/printer.bin"\n'
                'profile = "TM-T20II"\n'
                'code_page = "CP866"\n'
                "columns = 48\n"
                'language = "ru"\n\n'
                "[display]\n"
                f'uri = "file://{self.root}/pos-{register_id}/display.bin"\n'
                'protocol = "epson"\n'
                'code_page = "CP866"\n'
                "code_table = 17\n"
            )

    def run_tool(self, command: str, *args: str) -> None:
        """Run a one-shot console command, streaming its progress to our stderr."""
        done = subprocess.run([_bin(command), *args], check=False)
        if done.returncode != 0:
            raise DemoError(f"{command} {' '.join(args)} failed with exit {done.returncode}")

    def run_tool_input(self, command: str, *args: str, stdin: str) -> str:
        """Run a one-shot console command that reads a secret from stdin; its stdout."""
        done = subprocess.run(
            [_bin(command), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise DemoError(f"{command} {' '.join(args[:1])} failed: {done.stderr.strip()[:300]}")
        return done.stdout

    def enrol_all(self) -> None:
        """Enrol every store node and register for real, through the CLIs, as an operator would.

        A token from `loyalty-center enrol-store` is redeemed by `loyalty-store enrol`, then one
        from `loyalty-store enrol-register` by `loyalty-pos enrol`; the services needed to
        redeem them are started for it and stopped again.
        """
        started = [
            node
            for node in (self.center, *self.store_nodes.values())
            if node.process is None or node.process.poll() is not None
        ]
        if self.center in started:
            self.start(self.center)
        try:
            for store_id, node in self.store_nodes.items():
                token = self._token(
                    "loyalty-center", "enrol-store", self.center.config, "--store-id", store_id
                )
                self.run_tool(
                    "loyalty-store", "enrol", "--config", str(node.config), "--token", token
                )
            for node in self.store_nodes.values():
                if node in started:
                    self.start(node)
            for register_id, pos in self.registers.items():
                store = self.store_nodes[register_id.split("-")[0]]
                token = self._token(
                    "loyalty-store", "enrol-register", store.config, "--register-id", register_id
                )
                self.run_tool(
                    "loyalty-pos",
                    "enrol",
                    "--config",
                    str(pos.config),
                    "--token",
                    token,
                    "--store-url",
                    store.url,
                )
        finally:
            for node in reversed(started):
                self.stop(node)

    def _token(self, command: str, subcommand: str, config: Path, *args: str) -> str:
        done = subprocess.run(
            [_bin(command), subcommand, "--config", str(config), *args],
            check=False,
            stdout=subprocess.PIPE,
        )
        token = done.stdout.decode().strip()
        if done.returncode != 0 or not token:
            raise DemoError(f"{command} {subcommand} {' '.join(args)} failed")
        return token

    def staff_token(self, username: str, role: str) -> str:
        """A new Center user's bearer token (`loyalty-center add-user`)."""
        return self._token(
            "loyalty-center", "add-user", self.center.config, username, "--role", role
        )

    def credentials(self, store_id: str) -> dict[str, str]:
        """The node id and secret a store node received at enrolment."""
        path = self.root / f"store-{store_id}" / "credentials.json"
        return dict(json.loads(path.read_text()))

    def center_get(
        self, as_store: str, path: str, params: dict[str, str] | None = None
    ) -> requests.Response:
        """GET from the Center signed as the store node of `as_store` (as that node would)."""
        from sync_protocol import canonical_query, sign_headers

        params = params or {}
        node = self.credentials(as_store)
        headers = sign_headers(
            node["node_id"],
            node["secret"],
            method="GET",
            path=path,
            query=canonical_query(params),
            body=b"",
            now_s=time.time(),
        )
        return requests.get(self.center.url + path, params=params, headers=headers, timeout=30)

    def run_tool_json(self, command: str, *args: str) -> Any:
        """Run a one-shot console command that prints one JSON object; progress goes to stderr."""
        done = subprocess.run([_bin(command), *args], check=False, stdout=subprocess.PIPE)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise DemoError(
                f"{command} {' '.join(args)} (exit {done.returncode}) printed no JSON: "
                f"{done.stdout[:300]!r}"
            ) from exc

    def start(self, node: NodeSpec) -> None:
        """Start one service and wait until its /health answers."""
        log = (self.root / f"{node.name}.log").open("ab")
        node.process = subprocess.Popen(
            [_bin(node.command), "serve", "--config", str(node.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **node.env},
        )
        log.close()
        self.wait_healthy(node)

    def wait_healthy(self, node: NodeSpec, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                raise DemoError(
                    f"{node.name} exited with {node.process.returncode}; "
                    f"see {self.root / (node.name + '.log')}"
                )
            try:
                if requests.get(node.url + "/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise DemoError(f"{node.name} did not answer /health within {timeout_s:.0f} s")

    def household_cards(self) -> dict[str, str]:
        """household id -> card number, as the Center published them to each demo store."""
        from sync_protocol import Limits, MasterSnapshot, decode

        cards: dict[str, str] = {}
        for store_id in self.stores:
            # Signed as that store's node: the Center answers master data only to its own store.
            response = self.center_get(store_id, "/v1/master", {"store_id": store_id, "since": "0"})
            response.raise_for_status()
            snapshot = decode(
                response.content, expect=MasterSnapshot, limits=Limits(max_bytes=64 * 1024 * 1024)
            ).message
            assert isinstance(snapshot, MasterSnapshot)
            for row in snapshot.tables.get("cards", ()):
                customer = str(row.get("customer_id", ""))
                if customer.startswith("hh-"):
                    cards[customer[3:]] = str(row["card_no"])
        return cards

    def wait_for_master(self, timeout_s: float = 60.0) -> list[str]:
        """Wait until every register holds master data; returns those that still have none."""
        deadline = time.monotonic() + timeout_s
        pending = set(self.registers)
        while pending and time.monotonic() < deadline:
            for register_id in sorted(pending):
                health = requests.get(self.registers[register_id].url + "/health", timeout=5)
                if int(health.json().get("master_version") or 0) > 0:
                    pending.discard(register_id)
            time.sleep(0.2)
        return sorted(pending)

    def kill(self, node: NodeSpec) -> None:
        """SIGKILL, as a power cut would: no clean shutdown."""
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()

    def stop(self, node: NodeSpec) -> None:
        """SIGTERM one service and wait for it to exit."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()

    def stop_all(self) -> None:
        nodes = [*self.registers.values(), *self.store_nodes.values(), self.center]
        for node in nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
