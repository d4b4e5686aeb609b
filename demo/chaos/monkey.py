"""The chaos monkey: seeded kill -9 of the processes and faults on the hops."""

from __future__ import annotations

import random
import threading
from collections import Counter

from demo.chaos.cluster import ChaosCluster
from demo.cluster import NodeSpec
from demo.errors import DemoError
from demo.faultproxy import FAULTS


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
