"""The demo cluster with a fault-injecting proxy on every hop, and clocks that may be skewed."""

from __future__ import annotations

import random
from pathlib import Path

from demo.cluster import Cluster, NodeSpec
from demo.errors import DemoError
from demo.faultproxy import FaultProxy

CLOCK_SKEW_ENV = "LOYALTY_CLOCK_SKEW_S"  # read by `loyalty-pos serve` and `loyalty-store serve`


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

    def wait_healthy(self, node: NodeSpec, timeout_s: float = 120.0) -> None:
        # A process restarted by the monkey on a loaded machine (2 cores, many runs) can take
        # longer than the demo's 30 s to import and answer: that is not a fault of the system.
        super().wait_healthy(node, timeout_s)

    def ensure_running(self) -> None:
        """Start every process that is not running (after the monkey stopped)."""
        for node in [self.center, *self.store_nodes.values(), *self.registers.values()]:
            if node.process is None or node.process.poll() is not None:
                self.start(node)

    def stop_all(self) -> None:
        super().stop_all()
        for proxy in self.proxies:
            proxy.stop()
