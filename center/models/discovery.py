"""New-to-this-customer offers: products a household never bought, from what similar
households buy (EASE item-item regression over time-decayed baskets), and the popularity
baseline with the household's own history left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from center.models.repeat import cutoff_day

__all__ = ["NEW_FEATURES", "Ease", "NewItemRanker", "new_candidates", "new_truth", "popular_unseen"]


def new_truth(lines: pd.DataFrame, start: int, weeks: int) -> dict[int, set[int]]:
    """Per household active before `start`, the products it bought in the window and never
    before `start` (products unknown to training included)."""
    past = lines[lines["week"] < start]
    seen = set(zip(past["household"].tolist(), past["product"].tolist(), strict=True))
    window = lines[(lines["week"] >= start) & (lines["week"] < start + weeks)]
    window = window[window["household"].isin(set(past["household"].unique().tolist()))]
    truth: dict[int, set[int]] = {}
    for h, p in zip(window["household"].tolist(), window["product"].tolist(), strict=True):
        bucket = truth.setdefault(h, set())
        if (h, p) not in seen:
            bucket.add(p)
    return truth


def _history(lines: pd.DataFrame, week: int) -> dict[int, set[int]]:
    past = lines[lines["week"] < week][["household", "product"]].drop_duplicates()
    return {int(h): set(g.tolist()) for h, g in past.groupby("household")["product"]}


def popular_unseen(
    lines: pd.DataFrame, week: int, *, recent_weeks: int = 8, k: int = 10
) -> dict[int, list[int]]:
    """Per household, the products most households bought in the last `recent_weeks` before
    `week`, leaving out those it bought before."""
    recent = lines[(lines["week"] < week) & (lines["week"] >= week - recent_weeks)]
    ranking = (
        recent.drop_duplicates(["household", "product"]).groupby("product").size()
    ).sort_values(ascending=False, kind="stable")
    head = ranking.index[:2000].tolist()
    offers = {}
    for household, seen in _history(lines, week).items():
        offers[household] = [p for p in head if p not in seen][:k]
    return offers


@dataclass
class Ease:
    """EASE (Steck 2019) over the `items` products most households bought before the cutoff,
    on household rows weighted by recency; blended with recent popularity."""

    items: int = 6000
    l2: float = 400.0
    half_life_days: float = 112.0
    popularity_weight: float = 0.0
    recent_weeks: int = 8
    products: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    def _matrix(
        self, lines: pd.DataFrame, week: int, products: np.ndarray
    ) -> tuple[np.ndarray, Any]:
        from scipy import sparse

        now = cutoff_day(lines, week)
        past = lines[(lines["week"] < week) & lines["product"].isin(products)]
        past = past.drop_duplicates(["household", "product", "basket"])
        households, rows = np.unique(past["household"].to_numpy(), return_inverse=True)
        cols = np.searchsorted(products, past["product"].to_numpy())
        weight = np.exp2(-(now - past["day"].to_numpy()) / self.half_life_days)
        matrix = sparse.csr_matrix((weight, (rows, cols)), shape=(len(households), len(products)))
        matrix.data = np.log1p(matrix.data)
        return households, matrix

    def fit(self, lines: pd.DataFrame, week: int) -> Ease:
        """Learn item-item weights from the purchases before `week`."""
        past = lines[lines["week"] < week][["household", "product"]].drop_duplicates()
        buyers = past.groupby("product").size().sort_values(ascending=False, kind="stable")
        self.products = np.sort(buyers.index[: self.items].to_numpy())
        _, matrix = self._matrix(lines, week, self.products)
        gram = (matrix.T @ matrix).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = np.linalg.inv(gram)
        weights = inverse / (-np.diag(inverse))
        weights[np.diag_indices_from(weights)] = 0.0
        self.weights = weights
        return self

    def offers(self, lines: pd.DataFrame, week: int, k: int = 10) -> dict[int, list[int]]:
        """Per household, k products it never bought before `week`, best first."""
        households, matrix = self._matrix(lines, week, self.products)
        scores = np.asarray(matrix @ self.weights)
        if self.popularity_weight:
            recent = lines[(lines["week"] < week) & (lines["week"] >= week - self.recent_weeks)]
            counts = (
                (recent.drop_duplicates(["household", "product"]).groupby("product").size())
                .reindex(self.products, fill_value=0)
                .to_numpy(np.float64)
            )
            scores = scores + self.popularity_weight * counts / max(counts.max(), 1.0)
        past = lines[(lines["week"] < week) & lines["product"].isin(self.products)]
        rows = np.searchsorted(households, past["household"].to_numpy())
        cols = np.searchsorted(self.products, past["product"].to_numpy())
        scores[rows, cols] = -np.inf
        best = np.argpartition(-scores, k, axis=1)[:, :k]
        offers = {}
        for i, household in enumerate(households.tolist()):
            row = best[i][np.argsort(-scores[i, best[i]])]
            offers[int(household)] = self.products[row].tolist()
        return offers


NEW_FEATURES = [
    "ease",
    "ease_rank",
    "p_buyers",
    "p_recent",
    "p_trend",
    "p_first_recent",
    "p_first_2w",
    "ease_share",
    "c_baskets",
    "c_decayed",
    "c_since_last",
    "h_baskets",
    "h_products",
]


def new_candidates(
    lines: pd.DataFrame, week: int, ease: Ease, per_household: int = 40
) -> pd.DataFrame:
    """Per household, its `per_household` best unseen products by EASE, with NEW_FEATURES."""
    now = cutoff_day(lines, week)
    households, matrix = ease._matrix(lines, week, ease.products)
    scores = np.asarray(matrix @ ease.weights)
    past = lines[lines["week"] < week]
    inside = past[past["product"].isin(ease.products)]
    scores[
        np.searchsorted(households, inside["household"].to_numpy()),
        np.searchsorted(ease.products, inside["product"].to_numpy()),
    ] = -np.inf
    k = min(per_household, scores.shape[1] - 1)
    best = np.argpartition(-scores, k, axis=1)[:, :k]
    picked = np.take_along_axis(scores, best, axis=1)
    order = np.argsort(-picked, axis=1)
    best = np.take_along_axis(best, order, axis=1)
    picked = np.take_along_axis(picked, order, axis=1)
    frame = pd.DataFrame(
        {
            "household": np.repeat(households, k),
            "product": ease.products[best.ravel()],
            "ease": picked.ravel(),
            "ease_rank": np.tile(np.arange(k), len(households)),
        }
    )
    frame = frame[np.isfinite(frame["ease"])]
    pairs = past.drop_duplicates(["household", "product"])
    buyers = pairs.groupby("product").size()
    recent = past[past["week"] >= week - 4].drop_duplicates(["household", "product"])
    recent_buyers = recent.groupby("product").size()
    older = past[(past["week"] >= week - 16) & (past["week"] < week - 4)]
    older_buyers = older.drop_duplicates(["household", "product"]).groupby("product").size()
    frame["p_buyers"] = frame["product"].map(buyers).fillna(0).to_numpy()
    frame["p_recent"] = frame["product"].map(recent_buyers).fillna(0).to_numpy()
    frame["p_trend"] = frame["p_recent"] * 3 / (frame["product"].map(older_buyers).fillna(0) + 1)
    # Products that keep winning first-time buyers are the ones a household may try next.
    first = past.groupby(["household", "product"])["day"].min().reset_index()
    first_recent = first[first["day"] >= now - 28].groupby("product").size()
    first_2w = first[first["day"] >= now - 14].groupby("product").size()
    frame["p_first_recent"] = frame["product"].map(first_recent).fillna(0).to_numpy()
    frame["p_first_2w"] = frame["product"].map(first_2w).fillna(0).to_numpy()
    frame["ease_share"] = frame["ease"] / frame.groupby("household")["ease"].transform("max")
    category = lines.drop_duplicates("product").set_index("product")["category"]
    frame["category"] = frame["product"].map(category).fillna(-1).to_numpy()
    visits = past.drop_duplicates(["household", "category", "basket"])
    weight = np.exp2(-(now - visits["day"].to_numpy()) / 56.0)
    kinds = (
        visits.assign(w=weight)
        .groupby(["household", "category"])
        .agg(c_baskets=("basket", "size"), c_decayed=("w", "sum"), c_last=("day", "max"))
    )
    frame = frame.join(kinds, on=["household", "category"])
    frame["c_baskets"] = frame["c_baskets"].fillna(0)
    frame["c_decayed"] = frame["c_decayed"].fillna(0)
    frame["c_since_last"] = now - frame["c_last"]
    household = past.groupby("household").agg(
        h_baskets=("basket", "nunique"), h_products=("product", "nunique")
    )
    frame = frame.join(household, on="household")
    return frame[["household", "product", *NEW_FEATURES]].reset_index(drop=True)


@dataclass
class NewItemRanker:
    """Two stages: EASE proposes unseen products, a LightGBM classifier re-ranks them with the
    household's habit for the product's kind and the product's recent trend."""

    train_weeks: tuple[int, ...]
    window_weeks: int = 4
    per_household: int = 40
    ease_items: int = 3000
    rounds: int = 200
    threads: int = 1
    seed: int = 7
    model: object = field(default=None, repr=False)

    def fit(self, lines: pd.DataFrame) -> NewItemRanker:
        """Learn from every cutoff of train_weeks (label: bought in the next window)."""
        import lightgbm as lgb

        parts = []
        for week in self.train_weeks:
            ease = Ease(items=self.ease_items).fit(lines, week)
            frame = new_candidates(lines, week, ease, self.per_household)
            window = lines[(lines["week"] >= week) & (lines["week"] < week + self.window_weeks)]
            bought = window[["household", "product"]].drop_duplicates().assign(y=1)
            frame = frame.merge(bought, on=["household", "product"], how="left")
            frame["y"] = frame["y"].fillna(0).astype(int)
            parts.append(frame)
        data = pd.concat(parts, ignore_index=True)
        classifier = lgb.LGBMClassifier(
            n_estimators=self.rounds,
            learning_rate=0.05,
            num_leaves=31,
            min_child_samples=100,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            num_threads=self.threads,
            random_state=self.seed,
            verbose=-1,
        )
        classifier.fit(data[NEW_FEATURES], data["y"])
        self.model = classifier
        return self

    def score(self, lines: pd.DataFrame, week: int) -> pd.DataFrame:
        """(household, product, score) of every candidate as of `week`."""
        ease = Ease(items=self.ease_items).fit(lines, week)
        frame = new_candidates(lines, week, ease, self.per_household)
        frame["score"] = self.model.predict_proba(frame[NEW_FEATURES])[:, 1]  # type: ignore[attr-defined]
        return frame[["household", "product", "score"]]

    def offers(self, lines: pd.DataFrame, week: int, k: int = 10) -> dict[int, list[int]]:
        """Per household, k products it never bought before `week`, best first."""
        from center.models.repeat import top_k

        return top_k(self.score(lines, week), "score", k)
