"""How every sender retries a peer: one backoff rule and one log-once policy for failures."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping

__all__ = ["Backoff", "FailureLog", "backoff_delay"]

# 2.0**n overflows a float past n=1023; long before that every sane cap is reached.
_MAX_DOUBLINGS = 1000


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Equal jitter: for 0-based attempt n, step = min(cap_s, base_s * 2**n), the delay is
    uniform in [step / 2, step] (a cap below the base draws every delay at the cap)."""
    # Equal rather than full jitter: the half-step floor means a failing peer is never retried
    # at once (a register's loop would otherwise spin on a dead store node), while the random
    # half still spreads the senders that failed together.
    if attempt < 0:
        raise ValueError(f"attempt: {attempt} must be >= 0")
    if not (base_s > 0 and cap_s > 0 and math.isfinite(base_s) and math.isfinite(cap_s)):
        raise ValueError(f"base_s={base_s}, cap_s={cap_s}: both must be finite and > 0")
    step = cap_s if attempt >= _MAX_DOUBLINGS else min(cap_s, base_s * 2.0**attempt)
    return rng.uniform(step / 2, step)


class Backoff:
    """Gate on a monotonic clock: after failures in a row, refuse attempts until the
    `backoff_delay` of the latest one has passed; a success resets it."""

    def __init__(
        self,
        *,
        base_s: float,
        cap_s: float,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        backoff_delay(0, base_s=base_s, cap_s=cap_s, rng=random.Random(0))  # fail at setup
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._not_before = -math.inf

    def ready(self) -> bool:
        """True when the next attempt may be made now."""
        return self._monotonic() >= self._not_before

    def failed(self) -> float:
        """Record a failure; return the delay chosen before the next attempt."""
        delay = backoff_delay(self.failures, base_s=self.base_s, cap_s=self.cap_s, rng=self._rng)
        self.failures += 1
        self._not_before = self._monotonic() + delay
        return delay

    def succeeded(self) -> None:
        """Record a success: the next failure starts again from the base delay."""
        self.failures = 0
        self._not_before = -math.inf


class FailureLog:
    """Log-once policy for one repeating failure: WARNING the first time, DEBUG while it
    repeats, one INFO when it recovers; every line names who failed (store, register ids)."""

    def __init__(self, logger: logging.Logger, what: str, *, ids: Mapping[str, str]) -> None:
        if not ids:
            raise ValueError(f"{what!r}: ids must name the store and/or register that failed")
        self.what = what
        self.who = ", ".join(f"{kind} {value}" for kind, value in ids.items())
        self.failing = False
        self._logger = logger

    def failed(self, message: str) -> None:
        """Log one failure: at WARNING unless the previous attempt failed too."""
        level = logging.DEBUG if self.failing else logging.WARNING
        self._logger.log(level, "%s: %s failed: %s", self.who, self.what, message)
        self.failing = True

    def recovered(self, note: str = "") -> None:
        """Log the recovery at INFO once, if it was failing; `note` says how things stand."""
        if self.failing:
            if note:
                self._logger.info("%s: %s recovered (%s)", self.who, self.what, note)
            else:
                self._logger.info("%s: %s recovered", self.who, self.what)
        self.failing = False
