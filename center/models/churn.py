"""Churn: will a household that shopped in the last 8 weeks make no visit in the next 8?

Snapshots at a week W: the population is every household with a basket (any line, fuel-only
visits included) in weeks W-8 .. W-1; the label is 1 when it has no basket in W .. W+7. The
model learns on snapshots whose label windows end before the snapshot it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from center.models.repeat import cutoff_day

__all__ = [
    "FEATURES",
    "RFM_FEATURES",
    "ChurnModel",
    "churn_snapshot",
    "rfm_logistic",
    "rfm_scores",
    "training_weeks",
]

LOOKBACK = 8
HORIZON = 8

RFM_FEATURES = ["recency_days", "baskets_8w", "value_8w", "mean_basket_value", "mean_basket_lines"]
FEATURES = [
    *RFM_FEATURES,
    "baskets_2w",
    "baskets_4w",
    "baskets_all",
    "weeks_active_8w",
    "weeks_active_all",
    "tenure_days",
    "mean_gap_days",
    "max_gap_days",
    "recency_over_gap",
    "value_all",
    "trend_4w",
    "discount_share",
    "fuel_share",
    "last_basket_value",
    "stores",
    "recency_over_max_gap",
    "quiet_8w",
    "quiet_all",
    "first_week",
]


def training_weeks(week: int, *, earliest: int = LOOKBACK + 2, step: int = 1) -> list[int]:
    """Snapshots whose label window W .. W+7 ends before `week`."""
    return list(range(earliest, week - HORIZON + 1, step))


def churn_snapshot(lines: pd.DataFrame, week: int) -> pd.DataFrame:
    """One row per household with a basket in the 8 weeks before `week`: FEATURES, and `label`
    (1 = no basket in the next 8 weeks; NaN when the data ends before the window does)."""
    now = cutoff_day(lines, week)
    past = lines[lines["week"] < week]
    baskets = past.groupby("basket", sort=False).agg(
        household=("household", "first"),
        day=("day", "min"),
        week=("week", "min"),
        value=("value_minor", "sum"),
        lines=("product", "size"),
        store=("store", "first"),
        discount=("discount_minor", "sum"),
        fuel=("fuel", "max"),
    )
    recent = baskets[baskets["week"] >= week - LOOKBACK]
    population = np.sort(recent["household"].unique())
    baskets = baskets[baskets["household"].isin(population)].sort_values(["household", "day"])
    age = now - baskets["day"]
    baskets["w2"] = age <= 14
    baskets["w4"] = age <= 28
    baskets["w4_8"] = (age > 28) & (age <= 56)
    baskets["w8"] = baskets["week"] >= week - LOOKBACK
    baskets["value8"] = baskets["value"].where(baskets["w8"], 0)
    baskets["gap"] = baskets.groupby("household")["day"].diff()
    g = baskets.groupby("household")
    frame = pd.DataFrame(index=pd.Index(population, name="household"))
    frame["recency_days"] = now - g["day"].max()
    frame["baskets_8w"] = g["w8"].sum()
    frame["value_8w"] = g["value8"].sum()
    frame["mean_basket_value"] = g["value"].mean()
    frame["mean_basket_lines"] = g["lines"].mean()
    frame["baskets_2w"] = g["w2"].sum()
    frame["baskets_4w"] = g["w4"].sum()
    frame["baskets_all"] = g.size()
    frame["weeks_active_8w"] = baskets[baskets["w8"]].groupby("household")["week"].nunique()
    frame["weeks_active_all"] = g["week"].nunique()
    frame["tenure_days"] = now - g["day"].min()
    frame["mean_gap_days"] = g["gap"].mean()
    frame["max_gap_days"] = g["gap"].max()
    frame["recency_over_gap"] = frame["recency_days"] / frame["mean_gap_days"].clip(lower=1)
    frame["value_all"] = g["value"].sum()
    frame["trend_4w"] = g["w4"].sum() / (g["w4_8"].sum() + 1)
    frame["discount_share"] = g["discount"].sum() / g["value"].sum().clip(lower=1)
    frame["fuel_share"] = g["fuel"].mean()
    frame["last_basket_value"] = g["value"].last()
    frame["stores"] = g["store"].nunique()
    frame["recency_over_max_gap"] = frame["recency_days"] / frame["max_gap_days"].clip(lower=1)
    # Poisson chance of 8 quiet weeks at the household's recent and lifetime visit rates.
    frame["quiet_8w"] = np.exp(-HORIZON * 7 * frame["baskets_8w"] / (LOOKBACK * 7))
    frame["quiet_all"] = np.exp(
        -HORIZON * 7 * frame["baskets_all"] / frame["tenure_days"].clip(lower=7)
    )
    frame["first_week"] = g["week"].min()
    later = lines[(lines["week"] >= week) & (lines["week"] < week + HORIZON)]
    came_back = set(later["household"].unique().tolist())
    label = np.array([0.0 if h in came_back else 1.0 for h in population])
    if lines["week"].max() < week + HORIZON - 1:
        label[:] = np.nan
    frame["label"] = label
    frame["snapshot"] = week
    return frame.reset_index()


def rfm_logistic(train: pd.DataFrame) -> object:
    """The baseline: a logistic regression on the recency / frequency / basket features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.log1p(train[RFM_FEATURES].clip(lower=0).fillna(0))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x, train["label"])
    return model


def rfm_scores(model: object, frame: pd.DataFrame) -> np.ndarray:
    """Churn probability from the baseline."""
    x = np.log1p(frame[RFM_FEATURES].clip(lower=0).fillna(0))
    return np.asarray(model.predict_proba(x)[:, 1])  # type: ignore[attr-defined]


_LINEAR = ("quiet_8w", "quiet_all", "trend_4w", "discount_share", "fuel_share")


def _design(frame: pd.DataFrame) -> pd.DataFrame:
    x = frame[FEATURES].astype(float).copy()
    for column in FEATURES:
        if column not in _LINEAR:
            x[column] = np.log1p(x[column].clip(lower=0))
    return x.replace([np.inf, -np.inf], np.nan).fillna(0.0)


@dataclass
class ChurnModel:
    """A regularised logistic regression over the log-scaled FEATURES, trained on the last
    `snapshots` labelled snapshots (gradient-boosted trees did worse on this little data:
    about 120 churners per snapshot)."""

    snapshots: int = 17
    c: float = 0.1
    model: object = field(default=None, repr=False)

    def fit(self, train: pd.DataFrame) -> ChurnModel:
        """Learn from labelled snapshots (rows with a NaN label are skipped)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train = train[train["label"].notna()]
        newest = sorted(train["snapshot"].unique())[-self.snapshots :]
        train = train[train["snapshot"].isin(newest)]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=3000))
        model.fit(_design(train), train["label"].astype(int))
        self.model = model
        return self

    def risk(self, frame: pd.DataFrame) -> np.ndarray:
        """Churn probability per row."""
        return np.asarray(self.model.predict_proba(_design(frame))[:, 1])  # type: ignore[attr-defined]
