"""ABX results, pure: each variant against the control group X, conversion and revenue per
customer with 95 % confidence intervals, the revenue variance reduced with CUPED.

CUPED (Deng, Xu, Kohavi, Walker 2013): with each customer's spend before the campaign X and after
it Y, theta = cov(X, Y) / var(X) over every group together, and the adjusted outcome
Y - theta * (X - mean X) has the same expected difference between groups (assignment is random,
so X is balanced) but a smaller variance when the two spends correlate. The interval of a
difference of means is Welch's normal approximation: d +/- 1.96 * sqrt(s1^2/n1 + s2^2/n2).

Figures are statistics, not ledger money: means and bounds are rounded to whole minor units only
when reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Z95", "CustomerOutcome", "compare", "compare_groups"]

Z95 = 1.959963984540054
"""The two-sided 95 % quantile of the normal distribution."""


@dataclass(frozen=True, slots=True)
class CustomerOutcome:
    """One assigned customer: group, revenue after assignment (window), spend before it."""

    group: str
    revenue_minor: int
    pre_spend_minor: int
    bought: bool


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var


def _theta(outcomes: Sequence[CustomerOutcome]) -> float:
    xs = [float(o.pre_spend_minor) for o in outcomes]
    ys = [float(o.revenue_minor) for o in outcomes]
    mx, vx = _mean_var(xs)
    if vx == 0:
        return 0.0
    my = math.fsum(ys) / len(ys)
    cov = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (len(xs) - 1)
    return cov / vx


def _interval(treated: Sequence[float], control: Sequence[float]) -> dict[str, float]:
    mt, vt = _mean_var(treated)
    mc, vc = _mean_var(control)
    diff = mt - mc
    se = math.sqrt(vt / len(treated) + vc / len(control))
    return {"diff": diff, "low": diff - Z95 * se, "high": diff + Z95 * se, "se": se}


def compare(
    treated: Sequence[CustomerOutcome],
    control: Sequence[CustomerOutcome],
    *,
    theta: float,
    pre_mean: float,
) -> dict[str, Any]:
    """One variant against the control: conversion and revenue per customer (plain and CUPED),
    each difference with its 95 % interval; `significant` when the CUPED interval excludes 0."""
    if len(treated) < 2 or len(control) < 2:
        return {"customers": len(treated), "control": len(control), "enough_data": False}

    def adjusted(group: Sequence[CustomerOutcome]) -> list[float]:
        return [o.revenue_minor - theta * (o.pre_spend_minor - pre_mean) for o in group]

    conversion = _interval(
        [1.0 if o.bought else 0.0 for o in treated], [1.0 if o.bought else 0.0 for o in control]
    )
    plain = _interval(
        [float(o.revenue_minor) for o in treated], [float(o.revenue_minor) for o in control]
    )
    cuped = _interval(adjusted(treated), adjusted(control))
    return {
        "customers": len(treated),
        "control": len(control),
        "enough_data": True,
        "conversion": sum(o.bought for o in treated) / len(treated),
        "control_conversion": sum(o.bought for o in control) / len(control),
        "conversion_lift": round(conversion["diff"], 6),
        "conversion_lift_ci": [round(conversion["low"], 6), round(conversion["high"], 6)],
        "revenue_per_customer_minor": round(
            math.fsum(o.revenue_minor for o in treated) / len(treated)
        ),
        "control_revenue_per_customer_minor": round(
            math.fsum(o.revenue_minor for o in control) / len(control)
        ),
        "lift_per_customer_minor": round(cuped["diff"]),
        "lift_per_customer_ci_minor": [math.floor(cuped["low"]), math.ceil(cuped["high"])],
        "unadjusted_lift_ci_minor": [math.floor(plain["low"]), math.ceil(plain["high"])],
        "incremental_revenue_minor": round(cuped["diff"] * len(treated)),
        "incremental_revenue_ci_minor": [
            math.floor(cuped["low"] * len(treated)),
            math.ceil(cuped["high"] * len(treated)),
        ],
        "variance_reduction": round(1 - (cuped["se"] / plain["se"]) ** 2, 4)
        if plain["se"]
        else 0.0,
        "significant": cuped["low"] > 0 or cuped["high"] < 0,
        # unrounded, for tests and charts
        "_lift": cuped["diff"],
        "_ci": (cuped["low"], cuped["high"]),
    }


def compare_groups(
    outcomes: Iterable[CustomerOutcome], control: str = "X"
) -> dict[str, dict[str, Any]]:
    """Every group other than `control` against it, with one CUPED theta over all groups."""
    found = list(outcomes)
    by_group: dict[str, list[CustomerOutcome]] = {}
    for o in found:
        by_group.setdefault(o.group, []).append(o)
    if control not in by_group or not found:
        return {}
    theta = _theta(found)
    pre_mean = math.fsum(o.pre_spend_minor for o in found) / len(found)
    results: dict[str, dict[str, Any]] = {}
    for group, members in sorted(by_group.items()):
        if group == control:
            continue
        found_result = compare(members, by_group[control], theta=theta, pre_mean=pre_mean)
        results[group] = {k: v for k, v in found_result.items() if not k.startswith("_")}
        results[group]["theta"] = round(theta, 6)
    return results
