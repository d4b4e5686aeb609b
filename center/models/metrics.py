"""Ranking and classification metrics, averaged the way the evaluation states them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "bootstrap_ci",
    "hit_rate_at_k",
    "pr_auc",
    "precision_at_k",
    "roc_auc",
]


def precision_at_k(
    offers: Mapping[int, Sequence[int]], truth: Mapping[int, set[int]], k: int = 10
) -> float:
    """Mean over the households of `truth` of |top-k offers ∩ truth| / k (a household with no
    offers counts 0)."""
    if not truth:
        return 0.0
    total = 0.0
    for household, bought in truth.items():
        top = list(offers.get(household, ()))[:k]
        total += sum(1 for p in top if p in bought) / k
    return total / len(truth)


def hit_rate_at_k(
    offers: Mapping[int, Sequence[int]], truth: Mapping[int, set[int]], k: int = 10
) -> float:
    """Share of the households of `truth` with at least one of their top-k offers in it (a
    household whose truth is empty counts as a miss)."""
    if not truth:
        return 0.0
    hits = sum(
        1 for h, bought in truth.items() if any(p in bought for p in list(offers.get(h, ()))[:k])
    )
    return hits / len(truth)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision)."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    rounds: int = 500,
    seed: int = 7,
) -> tuple[float, float]:
    """95 % percentile interval of `metric` over resamples of the rows with replacement."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    values = []
    for _ in range(rounds):
        pick = rng.integers(0, n, n)
        if labels[pick].min() == labels[pick].max():
            continue
        values.append(metric(labels[pick], scores[pick]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
