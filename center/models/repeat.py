"""Buy-again offers: the household's own most-bought baseline and a learned repurchase ranker.

The ranker scores every (household, product) pair the household has bought before the cutoff
from its counts, recency, inter-purchase rhythm, trend and the product's own repurchase rate;
it learns on earlier cutoffs whose 4-week label windows end before the one it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "RepeatRanker",
    "own_most_bought",
    "repeat_features",
    "top_k",
    "window_truth",
]

_HALF_LIVES_DAYS = (14, 28, 56, 112)
FEATURES = [
    "baskets",
    *[f"decayed_{h}" for h in _HALF_LIVES_DAYS],
    "baskets_4w",
    "baskets_8w",
    "baskets_16w",
    "since_last",
    "since_first",
    "mean_gap",
    "due",
    "quantity",
    "share",
    "expected",
    "h_baskets",
    "h_baskets_8w",
    "h_products",
    "h_since_last",
    "p_buyers",
    "p_repeat_rate",
    "p_recent",
    "p_trend",
    "p_gap",
    "c_baskets",
    "c_decayed_56",
    "c_since_last",
    "c_products",
    "c_share",
    "c_decayed_share",
]


def cutoff_day(lines: pd.DataFrame, week: int) -> int:
    """The first day number of `week` (the day after the last day seen before it)."""
    days = lines.loc[lines["week"] >= week, "day"]
    if len(days):
        return int(days.min())
    return int(lines["day"].max()) + 1


def window_truth(lines: pd.DataFrame, start: int, weeks: int) -> dict[int, set[int]]:
    """Products bought per household in weeks start .. start+weeks-1, for households that also
    bought something before `start`."""
    before = set(lines.loc[lines["week"] < start, "household"].unique().tolist())
    window = lines[(lines["week"] >= start) & (lines["week"] < start + weeks)]
    window = window[window["household"].isin(before)]
    return {int(h): set(g.tolist()) for h, g in window.groupby("household")["product"]}


def own_most_bought(
    lines: pd.DataFrame, week: int, *, half_life_days: float = 56.0, k: int = 10
) -> dict[int, list[int]]:
    """Per household, its k products with the most baskets before `week`, each basket weighted
    by 2^(-age / half-life)."""
    past = lines[lines["week"] < week]
    now = cutoff_day(lines, week)
    pairs = past.drop_duplicates(["household", "product", "basket"])
    weight = np.exp2(-(now - pairs["day"].to_numpy()) / half_life_days)
    scored = (
        pd.DataFrame({"household": pairs["household"], "product": pairs["product"], "s": weight})
        .groupby(["household", "product"], sort=False)["s"]
        .sum()
        .reset_index()
    )
    return top_k(scored, "s", k)


def top_k(frame: pd.DataFrame, score: str, k: int) -> dict[int, list[int]]:
    """Per household, the products of its k highest `score` rows (ties by product id)."""
    ordered = frame.sort_values(["household", score, "product"], ascending=[True, False, True])
    best = ordered.groupby("household", sort=False).head(k)
    return {int(h): g.tolist() for h, g in best.groupby("household", sort=False)["product"]}


def repeat_features(lines: pd.DataFrame, week: int) -> pd.DataFrame:
    """One row per (household, product) bought before `week`, with the FEATURES columns."""
    now = cutoff_day(lines, week)
    past = lines[lines["week"] < week]
    pairs = (
        past.groupby(["household", "product", "basket"], sort=False)
        .agg(day=("day", "min"), quantity=("quantity", "sum"), category=("category", "first"))
        .reset_index()
    )
    age = (now - pairs["day"]).to_numpy(np.float64)
    for h in _HALF_LIVES_DAYS:
        pairs[f"decayed_{h}"] = np.exp2(-age / h)
    pairs["w4"] = age <= 28
    pairs["w8"] = age <= 56
    pairs["w16"] = age <= 112
    grouped = pairs.groupby(["household", "product"], sort=False)
    frame = grouped.agg(
        category=("category", "first"),
        baskets=("basket", "size"),
        first=("day", "min"),
        last=("day", "max"),
        quantity=("quantity", "sum"),
        baskets_4w=("w4", "sum"),
        baskets_8w=("w8", "sum"),
        baskets_16w=("w16", "sum"),
        **{f"decayed_{h}": (f"decayed_{h}", "sum") for h in _HALF_LIVES_DAYS},
    ).reset_index()
    frame["since_last"] = now - frame["last"]
    frame["since_first"] = now - frame["first"]
    gaps = (frame["last"] - frame["first"]) / np.maximum(frame["baskets"] - 1, 1)
    frame["mean_gap"] = np.where(frame["baskets"] > 1, gaps, np.nan)
    frame["due"] = frame["since_last"] / frame["mean_gap"]
    visits = past.drop_duplicates("basket")
    household = visits.groupby("household").agg(h_baskets=("basket", "size"), h_last=("day", "max"))
    household["h_baskets_8w"] = (
        visits[visits["day"] >= now - 56].groupby("household").size()
    ).reindex(household.index, fill_value=0)
    household["h_products"] = frame.groupby("household").size()
    household["h_since_last"] = now - household["h_last"]
    frame = frame.join(household.drop(columns="h_last"), on="household")
    frame["share"] = frame["baskets"] / frame["h_baskets"]
    frame["expected"] = frame["share"] * frame["h_baskets_8w"]
    frame["_repeated"] = frame["baskets"] > 1
    product = frame.groupby("product").agg(
        p_buyers=("household", "size"),
        p_repeaters=("_repeated", "sum"),
        p_recent=("baskets_4w", "sum"),
        p_recent16=("baskets_16w", "sum"),
        p_gap=("mean_gap", "median"),
    )
    product["p_repeat_rate"] = (product["p_repeaters"] + 1) / (product["p_buyers"] + 2)
    product["p_trend"] = product["p_recent"] * 4 / (product["p_recent16"] + 1)
    frame = frame.join(
        product[["p_buyers", "p_repeat_rate", "p_recent", "p_trend", "p_gap"]], on="product"
    )
    # The household's habit for the kind of product (it may switch brands or sizes within it).
    kinds = (
        pairs.drop_duplicates(["household", "category", "basket"])
        .groupby(["household", "category"], sort=False)
        .agg(
            c_baskets=("basket", "size"), c_decayed_56=("decayed_56", "sum"), c_last=("day", "max")
        )
    )
    kinds["c_products"] = frame.groupby(["household", "category"], sort=False).size()
    frame = frame.join(kinds, on=["household", "category"])
    frame["c_since_last"] = now - frame["c_last"]
    frame["c_share"] = frame["baskets"] / frame["c_baskets"]
    frame["c_decayed_share"] = frame["decayed_56"] / frame["c_decayed_56"]
    return frame[["household", "product", *FEATURES]]


def _labels(lines: pd.DataFrame, frame: pd.DataFrame, week: int, weeks: int) -> np.ndarray:
    window = lines[(lines["week"] >= week) & (lines["week"] < week + weeks)]
    bought = window[["household", "product"]].drop_duplicates()
    bought["y"] = 1
    merged = frame[["household", "product"]].merge(bought, on=["household", "product"], how="left")
    return merged["y"].fillna(0).to_numpy(np.int32)


@dataclass
class RepeatRanker:
    """A LightGBM classifier of "bought again in the next 4 weeks" over repeat_features of each
    household's `candidates` most-bought products, trained on earlier cutoffs (a lambdarank
    objective did no better on this data and trained slower)."""

    train_weeks: tuple[int, ...]
    window_weeks: int = 4
    candidates: int = 50
    rounds: int = 150
    threads: int = 1
    seed: int = 7
    model: object = field(default=None, repr=False)

    def fit(self, lines: pd.DataFrame) -> RepeatRanker:
        """Learn from every cutoff of train_weeks (labels: bought in the next window), on the
        households that bought again at all."""
        import lightgbm as lgb

        parts = []
        for week in self.train_weeks:
            frame = self._candidates(repeat_features(lines, week))
            frame["y"] = _labels(lines, frame, week, self.window_weeks)
            active = frame.groupby("household")["y"].transform("max") > 0
            parts.append(frame[active])
        data = pd.concat(parts, ignore_index=True)
        if data.empty or data["y"].nunique() < 2:
            raise ValueError("no repurchase to learn from in the training windows")
        classifier = lgb.LGBMClassifier(
            n_estimators=self.rounds,
            learning_rate=0.05,
            num_leaves=31,
            min_child_samples=50,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            num_threads=self.threads,
            random_state=self.seed,
            verbose=-1,
        )
        classifier.fit(data[FEATURES], data["y"])
        self.model = classifier
        return self

    def _candidates(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values(["household", "decayed_56"], ascending=[True, False])
        return frame.groupby("household", sort=False).head(self.candidates).copy()

    def score(self, lines: pd.DataFrame, week: int) -> pd.DataFrame:
        """(household, product, score) for every candidate as of `week`."""
        frame = self._candidates(repeat_features(lines, week))
        frame["score"] = self.model.predict_proba(frame[FEATURES])[:, 1]  # type: ignore[attr-defined]
        return frame[["household", "product", "score"]]

    def offers(self, lines: pd.DataFrame, week: int, k: int = 10) -> dict[int, list[int]]:
        """Per household, its k best repurchase offers as of `week`."""
        return top_k(self.score(lines, week), "score", k)
