"""ABX results: a simulated campaign with a known effect is recovered within its interval, one
without effect reports none; CUPED narrows the interval when past spend predicts future spend."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta

from center.communications.abx import CustomerOutcome, compare, compare_groups
from center.storage import Storage
from sync_protocol import Sale
from tests.center.center_factories import make_sale
from tests.center.comms_factories import NOW, seed


def simulate(seed: int, effects: dict[str, float], per_group: int = 4000) -> list[CustomerOutcome]:
    """Customers whose spend after the campaign follows their spend before it, plus noise,
    plus the group's true effect (minor units per customer)."""
    rng = random.Random(seed)
    found = []
    for group, effect in effects.items():
        for _ in range(per_group):
            habit = rng.lognormvariate(8.0, 0.7)  # ~3 000 minor units a month
            pre = max(0, round(habit * rng.uniform(0.8, 1.2)))
            post = max(0.0, habit * rng.uniform(0.8, 1.2) + rng.gauss(0, 800) + effect)
            found.append(CustomerOutcome(group, round(post), pre, post > 2500))
    return found


def _split(outcomes: list[CustomerOutcome]) -> dict[str, list[CustomerOutcome]]:
    groups: dict[str, list[CustomerOutcome]] = {}
    for o in outcomes:
        groups.setdefault(o.group, []).append(o)
    return groups


def _theta_and_mean(outcomes: list[CustomerOutcome]) -> tuple[float, float]:
    xs = [o.pre_spend_minor for o in outcomes]
    ys = [o.revenue_minor for o in outcomes]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return cov / sum((x - mx) ** 2 for x in xs), mx


def test_a_known_effect_is_recovered_within_the_interval() -> None:
    outcomes = simulate(7, {"A": 300.0, "B": 0.0, "X": 0.0})
    groups = _split(outcomes)
    theta, pre_mean = _theta_and_mean(outcomes)
    a = compare(groups["A"], groups["X"], theta=theta, pre_mean=pre_mean)
    low, high = a["_ci"]
    assert low <= 300 <= high, (low, high)
    assert low > 0 and a["significant"]
    # Past spend explains most of the variance: CUPED's interval is much narrower.
    plain_low, plain_high = a["unadjusted_lift_ci_minor"]
    assert high - low < 0.6 * (plain_high - plain_low)
    assert a["variance_reduction"] > 0.5
    assert a["incremental_revenue_minor"] == round(a["_lift"] * 4000)
    reported = compare_groups(outcomes)
    assert set(reported) == {"A", "B"} and reported["A"]["significant"] is True
    assert "_ci" not in reported["A"]
    assert reported["A"]["conversion_lift"] > 0


def test_no_effect_reports_none() -> None:
    false_positives, covered = 0, 0
    for n in range(20):
        outcomes = simulate(100 + n, {"B": 0.0, "X": 0.0}, per_group=2000)
        groups = _split(outcomes)
        theta, pre_mean = _theta_and_mean(outcomes)
        b = compare(groups["B"], groups["X"], theta=theta, pre_mean=pre_mean)
        false_positives += bool(b["significant"])
        covered += b["_ci"][0] <= 0 <= b["_ci"][1]
    # A 95 % interval misses the true zero about once in twenty.
    assert false_positives <= 3 and covered >= 17, (false_positives, covered)


def test_too_few_customers_say_so() -> None:
    tiny = [CustomerOutcome("A", 100, 50, True), CustomerOutcome("X", 0, 50, False)]
    assert compare_groups(tiny)["A"]["enough_data"] is False
    assert compare_groups([CustomerOutcome("A", 1, 1, True)]) == {}, "no control group"


def test_outcomes_read_revenue_after_assignment_and_spend_before_it(storage: Storage) -> None:
    seed(storage)
    # Registers take digit card numbers: a second card per customer, 7001 for c1 ...
    storage.feed.upsert_master(
        {"cards": [{"card_no": f"700{n}", "customer_id": f"c{n}"} for n in range(1, 5)]}
    )
    storage.communications.assign(
        "abx-1", [("c1", "A", "s"), ("c2", "A", "s"), ("c3", "X", "s"), ("c4", "X", "s")], NOW
    )

    def sale(seq: int, card: str, amount: int, at: datetime) -> Sale:
        made = make_sale(seq, card_no=card, amounts=(amount,))
        return dataclasses.replace(made, opened_at=at - timedelta(minutes=1), closed_at=at)

    storage.sales.ingest(
        [
            sale(1, "7001", 1000, NOW - timedelta(days=10)),  # before: the covariate
            sale(2, "7003", 2000, NOW - timedelta(days=10)),
            sale(3, "7001", 500, NOW + timedelta(days=1)),  # after: the outcome
            sale(4, "7002", 700, NOW + timedelta(days=2)),
            sale(5, "7004", 999, NOW + timedelta(days=40)),  # after the 30-day window
            sale(6, "7004", 111, NOW - timedelta(days=200)),  # before the 90-day pre-period
        ],
        NOW + timedelta(days=41),
    )
    found = storage.communications.abx_outcomes("abx-1", NOW + timedelta(days=50))
    by_group = sorted((o.group, o.revenue_minor, o.pre_spend_minor, o.bought) for o in found)
    assert by_group == [
        ("A", 500, 1000, True),
        ("A", 700, 0, True),
        ("X", 0, 0, False),
        ("X", 0, 2000, False),
    ]
    assert storage.communications.abx_outcomes("nothing", NOW) == []
