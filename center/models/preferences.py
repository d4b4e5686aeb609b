"""Customer segments (generation × frequency-monetary cluster), basket associations per segment,
each customer's preferred store and affinity per category and brand (issue 15, item 3).

Pure: pandas frames in (the `Purchases` columns of `dataset`, plus `brand` when known), plain
rows out; the training stores them with a model version.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from center.models.dataset import Year

__all__ = [
    "CLUSTERS",
    "GENERATIONS",
    "Preferences",
    "affinities",
    "fm_clusters",
    "generation_of",
    "preferred_stores",
    "segment_associations",
    "train_preferences",
]

GENERATIONS = ("gen_z", "millennials", "gen_x", "boomers", "unknown")
"""Born 1997 or later, 1981-1996, 1965-1980, before 1965; unknown without a birth date or age."""
CLUSTERS = ("low", "mid", "high")
"""Frequency-monetary clusters, named by their centre's spend."""
TOP_ITEMS = 5
"""Categories and brands kept per customer."""
MIN_PAIR_RECEIPTS = 5
"""A pair needs this many receipts of a segment (or 0.5 % of them, when more) to be kept."""
PAIRS_PER_SEGMENT = 50


def generation_of(attributes: Mapping[str, Any], today: date) -> str:
    """The generation of a customer from `birth_date` (YYYY-MM-DD), `birth_year` or an `age`
    band ("45-54", "65+"; its middle is the age `today`)."""
    born: int | None = None
    raw = attributes.get("birth_date") or attributes.get("birth_year")
    if raw:
        try:
            born = int(str(raw)[:4])
        except ValueError:
            born = None
    age = str(attributes.get("age") or "")
    if born is None and age:
        bounds = [int(x) for x in age.replace("+", "-").split("-") if x.strip().isdigit()]
        if bounds:
            middle = (bounds[0] + bounds[1]) / 2 if len(bounds) == 2 else bounds[0] + 5
            born = today.year - int(middle)
    if born is None or not 1900 <= born <= today.year:
        return "unknown"
    if born >= 1997:
        return "gen_z"
    if born >= 1981:
        return "millennials"
    return "gen_x" if born >= 1965 else "boomers"


def fm_clusters(lines: pd.DataFrame) -> pd.Series:
    """household -> low / mid / high: k-means (k = 3) over log receipts and log spend,
    clusters named by their centre's spend."""
    per = lines.groupby("household").agg(
        frequency=("basket", "nunique"), monetary=("value_minor", "sum")
    )
    if len(per) < len(CLUSTERS):
        return pd.Series("low", index=per.index)
    from sklearn.cluster import KMeans

    x = np.log1p(per[["frequency", "monetary"]].clip(lower=0).to_numpy(float))
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1)
    model = KMeans(n_clusters=len(CLUSTERS), n_init=4, random_state=0).fit(x)
    order = np.argsort(model.cluster_centers_.sum(axis=1))
    names = np.empty(len(CLUSTERS), dtype=object)
    names[order] = CLUSTERS
    return pd.Series(names[model.labels_], index=per.index)


def segment_associations(
    lines: pd.DataFrame, segment_of: pd.Series, names: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Category pairs bought in one receipt, per segment: support, confidence and lift over the
    segment's receipts, the `PAIRS_PER_SEGMENT` strongest by lift; and the seconds per segment."""
    from scipy import sparse

    pairs = lines.loc[lines["category"] >= 0, ["basket", "household", "category"]]
    pairs = pairs.drop_duplicates(["basket", "category"])
    pairs = pairs.assign(segment=segment_of.reindex(pairs["household"]).to_numpy())
    rows: list[dict[str, Any]] = []
    timing: dict[str, float] = {}
    width = int(pairs["category"].max()) + 1 if len(pairs) else 0
    for segment, group in pairs.groupby("segment", sort=True):
        started = time.perf_counter()
        baskets, basket_index = np.unique(group["basket"].to_numpy(), return_inverse=True)
        total = len(baskets)
        x = sparse.csr_matrix(
            (np.ones(len(group), dtype=np.int32), (basket_index, group["category"].to_numpy())),
            shape=(total, width),
        )
        both = (x.T @ x).tocoo()
        single = np.asarray(x.sum(axis=0)).ravel()
        floor = max(MIN_PAIR_RECEIPTS, -(-total * 5 // 1000))
        keep = (both.row != both.col) & (both.data >= floor)
        a, b, n = both.row[keep], both.col[keep], both.data[keep]
        confidence = n / single[a]
        lift = confidence / (single[b] / total)
        best = np.lexsort((-n, -lift))[:PAIRS_PER_SEGMENT]
        for i in best:
            rows.append(
                {
                    "segment": str(segment),
                    "antecedent": _name(names, int(a[i])),
                    "consequent": _name(names, int(b[i])),
                    "receipts": int(n[i]),
                    "segment_receipts": total,
                    "support": round(float(n[i]) / total, 6),
                    "confidence": round(float(confidence[i]), 6),
                    "lift": round(float(lift[i]), 6),
                }
            )
        timing[str(segment)] = round(time.perf_counter() - started, 4)
    return rows, timing


def _name(names: Sequence[str], index: int) -> str:
    return names[index] if index < len(names) else str(index)


def preferred_stores(lines: pd.DataFrame) -> pd.DataFrame:
    """Per household: the store of most receipts (ties: more spend, then the lower store
    number) and the share of the household's receipts made there."""
    per = lines.groupby(["household", "store"], as_index=False).agg(
        receipts=("basket", "nunique"), spend=("value_minor", "sum")
    )
    total = per.groupby("household")["receipts"].transform("sum")
    per["share"] = per["receipts"] / total
    per = per.sort_values(
        ["household", "receipts", "spend", "store"], ascending=[True, False, False, True]
    )
    return per.drop_duplicates("household").set_index("household")[["store", "receipts", "share"]]


def affinities(lines: pd.DataFrame, column: str, top: int = TOP_ITEMS) -> pd.DataFrame:
    """Per household, its `top` items of `column` by spend: the share of its spend, the index
    (that share over the chain's share of spend on the item) and the level: high (index >= 2),
    medium (>= 1), low."""
    known = lines[lines[column] >= 0]
    spend = known.groupby(["household", column], as_index=False)["value_minor"].sum()
    spend = spend[spend["value_minor"] > 0]
    own = spend.groupby("household")["value_minor"].transform("sum")
    chain = spend.groupby(column)["value_minor"].sum() / spend["value_minor"].sum()
    spend["share"] = spend["value_minor"] / own
    spend["index"] = spend["share"] / chain.reindex(spend[column]).to_numpy()
    spend["level"] = np.where(
        spend["index"] >= 2, "high", np.where(spend["index"] >= 1, "medium", "low")
    )
    spend = spend.sort_values(["household", "value_minor", column], ascending=[True, False, True])
    return spend.groupby("household").head(top)


@dataclass(frozen=True, slots=True)
class Preferences:
    """One training of the segment and preference models, with Center ids."""

    customers: list[dict[str, Any]] = field(default_factory=list)
    """customer_id, preferred_store, store_share, segment, categories, brands."""
    associations: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def train_preferences(year: Year) -> Preferences:
    """Segments, associations per segment, preferred store and affinities over `year` (ages
    taken on its last day)."""
    lines = year.merchandise
    if not len(lines):
        return Preferences(metrics={"skipped": "no sales with a customer in the analytics store"})
    started = time.perf_counter()
    everyone = year.lines if len(year.lines) else lines
    generation = pd.Series(
        {
            h: generation_of(year.attributes.get(h, {}), year.last_day or date(2000, 1, 1))
            for h in everyone["household"].unique()
        }
    )
    # A customer with no goods bought (fuel only) spends least: the low cluster.
    cluster = fm_clusters(lines).reindex(generation.index).fillna("low")
    segment_of = generation + "/" + cluster
    associations, timing = segment_associations(lines, segment_of, year.category_names)
    stores = preferred_stores(everyone)
    categories = affinities(lines, "category")
    brands = affinities(lines, "brand") if "brand" in lines.columns else None

    def items(frame: pd.DataFrame | None, names: Sequence[str]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        if frame is None:
            return out
        column = "category" if "category" in frame.columns else "brand"
        for row in frame.itertuples(index=False):
            out.setdefault(int(row.household), []).append(
                {
                    "item": _name(names, int(getattr(row, column))),
                    "share": round(float(row.share), 4),
                    "index": round(float(row.index), 3),
                    "level": str(row.level),
                }
            )
        return out

    by_category = items(categories, year.category_names)
    by_brand = items(brands, year.brand_names)
    customers = []
    store_ids = year.store_ids
    for household, row in stores.iterrows():
        h = int(household)
        customers.append(
            {
                "customer_id": year.household_ids[h] if year.household_ids else str(h),
                "preferred_store": store_ids[int(row["store"])]
                if store_ids
                else str(int(row["store"])),
                "store_share": round(float(row["share"]), 4),
                "segment": str(segment_of[h]),
                "categories": by_category.get(h, []),
                "brands": [b for b in by_brand.get(h, []) if b["item"]],
            }
        )
    counts = segment_of.value_counts()
    return Preferences(
        customers=customers,
        associations=associations,
        metrics={
            "customers": len(customers),
            "segments": {str(k): int(v) for k, v in sorted(counts.items())},
            "association_pairs": len(associations),
            "associations_s_max_segment": max(timing.values(), default=0.0),
            "associations_s_all": round(sum(timing.values()), 3),
            "train_s": round(time.perf_counter() - started, 2),
        },
    )
