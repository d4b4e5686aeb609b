"""What a chaos run runs: the options and their check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from demo.errors import DemoError
from sync_protocol import SIGNATURE_WINDOW_S

BACKENDS = ("sqlite", "postgresql")


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
    # > 0: then the offline overspend scenario (demo/chaos/overspend.py) for this many seconds
    overspend_s: float = 0.0

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
