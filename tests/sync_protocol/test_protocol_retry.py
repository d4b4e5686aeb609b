"""The senders' shared retry rules: equal-jitter capped backoff and the log-once policy."""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import Backoff, FailureLog, backoff_delay


class TopRandom(random.Random):
    """Always draws the top of the range, so the step itself can be observed."""

    def uniform(self, a: float, b: float) -> float:
        return b


class BottomRandom(random.Random):
    """Always draws the bottom of the range, so the floor can be observed."""

    def uniform(self, a: float, b: float) -> float:
        return a


# -- the rule --------------------------------------------------------------------------------


@given(
    attempt=st.integers(min_value=0, max_value=5000),
    base=st.floats(min_value=0.001, max_value=100.0),
    cap=st.floats(min_value=0.001, max_value=10_000.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_is_within_half_and_all_of_the_capped_step(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    step = min(cap, base * 2.0 ** min(attempt, 1000))
    delay = backoff_delay(attempt, base_s=base, cap_s=cap, rng=random.Random(seed))
    assert step / 2 <= delay <= step


@given(attempt=st.integers(min_value=0, max_value=40))
def test_step_doubles_until_the_cap_and_the_floor_is_half_of_it(attempt: int) -> None:
    step = backoff_delay(attempt, base_s=0.5, cap_s=60.0, rng=TopRandom())
    assert step == min(60.0, 0.5 * 2**attempt)
    assert backoff_delay(attempt + 1, base_s=0.5, cap_s=60.0, rng=TopRandom()) == min(
        60.0, 2 * step
    )
    assert backoff_delay(attempt, base_s=0.5, cap_s=60.0, rng=BottomRandom()) == step / 2


def test_a_cap_below_the_base_draws_at_the_cap() -> None:
    # A register's upload interval may exceed its backoff cap (pos_agent config allows it).
    assert backoff_delay(0, base_s=30.0, cap_s=0.2, rng=TopRandom()) == 0.2
    assert backoff_delay(5, base_s=30.0, cap_s=0.2, rng=BottomRandom()) == 0.1


def test_delay_is_jittered_and_reproducible() -> None:
    draws = [backoff_delay(6, base_s=1.0, cap_s=60.0, rng=random.Random(7)) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same delay
    spread = {backoff_delay(6, base_s=1.0, cap_s=60.0, rng=random.Random(s)) for s in range(50)}
    assert len(spread) == 50 and min(spread) < 40 < max(spread)  # equal jitter over [30, 60]
    assert min(spread) >= 30


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(-1, base_s=1.0, cap_s=2.0, rng=random.Random())
    for base, cap in ((0.0, 2.0), (1.0, 0.0), (-1.0, 2.0), (1.0, float("inf"))):
        with pytest.raises(ValueError, match="base_s"):
            backoff_delay(0, base_s=base, cap_s=cap, rng=random.Random())
    with pytest.raises(ValueError, match="cap_s"):
        Backoff(base_s=1.0, cap_s=float("nan"))


# -- the gate --------------------------------------------------------------------------------


def test_gate_waits_on_the_injected_monotonic_clock() -> None:
    now = [100.0]
    gate = Backoff(base_s=1.0, cap_s=8.0, rng=TopRandom(), monotonic=lambda: now[0])
    assert gate.ready()
    assert gate.failed() == 1.0
    assert not gate.ready()
    now[0] += 1.0
    assert gate.ready()
    assert gate.failed() == 2.0  # the second failure in a row waits longer
    assert gate.failed() == 4.0
    now[0] += 3.9
    assert not gate.ready()
    gate.succeeded()
    assert gate.ready() and gate.failures == 0
    assert gate.failed() == 1.0


@given(seed=st.integers(min_value=0, max_value=2**32), failures=st.integers(1, 12))
def test_gate_delays_follow_the_rule(seed: int, failures: int) -> None:
    gate = Backoff(base_s=0.5, cap_s=20.0, rng=random.Random(seed), monotonic=lambda: 0.0)
    same = random.Random(seed)
    for n in range(failures):
        assert gate.failed() == backoff_delay(n, base_s=0.5, cap_s=20.0, rng=same)
    assert gate.failures == failures


# -- the log-once policy ---------------------------------------------------------------------


def test_failure_logs_once_at_warning_then_debug_then_one_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.failurelog")
    failures = FailureLog(logger, "sending sales", ids={"store": "367", "register": "367-1"})
    with caplog.at_level(logging.DEBUG, logger="test.failurelog"):
        failures.recovered()  # nothing failed: nothing to say
        failures.failed("HTTP 500")
        failures.failed("HTTP 500")
        failures.failed("refused")
        failures.recovered("3 sales queued")
        failures.recovered()
        failures.failed("timeout")
        failures.recovered()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "store 367, register 367-1: sending sales failed: HTTP 500"),
        ("DEBUG", "store 367, register 367-1: sending sales failed: HTTP 500"),
        ("DEBUG", "store 367, register 367-1: sending sales failed: refused"),
        ("INFO", "store 367, register 367-1: sending sales recovered (3 sales queued)"),
        ("WARNING", "store 367, register 367-1: sending sales failed: timeout"),
        ("INFO", "store 367, register 367-1: sending sales recovered"),
    ]
    assert all(r.name == "test.failurelog" for r in caplog.records)


def test_failure_log_must_name_who_failed() -> None:
    with pytest.raises(ValueError, match="ids"):
        FailureLog(logging.getLogger("test.failurelog"), "sending sales", ids={})
