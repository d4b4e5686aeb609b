"""Training on the Center's own sales (read from the analytics store, never the ingest
database), versioned with metrics, and the results put to use: personal offers packed from a
marketer's template and published through the personal offers path (`source: model`), churn
risk stored per customer.

Each model needs history: the learned rankers and the churn model learn on earlier 4- and
8-week windows, so with less history the offers fall back to the household's own most-bought
products and churn is skipped, and the version says so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from center.errors import Conflict, UnknownObject
from center.models.churn import ChurnModel, churn_snapshot, training_weeks
from center.models.dataset import Year
from center.models.metrics import precision_at_k
from center.models.preferences import Preferences, train_preferences
from center.models.repeat import RepeatRanker, own_most_bought, window_truth
from center.promotions.offers import MAX_OFFERS, OfferInput

__all__ = [
    "RANKER_WEEKS",
    "OfferTemplate",
    "TrainedModels",
    "history_weeks",
    "pack_offers",
    "publish",
    "retrain_due",
    "train",
    "train_with_history",
]

RANKER_WEEKS = 17
"""Weeks of history before the learned ranker and the churn model are used (three earlier
4-week windows to learn from, the first starting after week 4)."""


@dataclass(frozen=True, slots=True)
class OfferTemplate:
    """What a marketer sets once: the discount, how many offers a customer gets, how long."""

    percent: Decimal = Decimal("10")
    per_customer: int = 5
    valid_days: int = 28


@dataclass(frozen=True, slots=True)
class TrainedModels:
    """One training's results, with Center ids."""

    offers: Mapping[str, Sequence[tuple[str, str, float]]]
    """customer id -> (product id, strategy, score), best first."""
    churn: Sequence[tuple[str, float]]
    versions: Mapping[str, dict[str, Any]]
    """kind -> {"metrics": ..., "params": ...} to record."""
    preferences: Preferences | None = None
    """Segments, associations per segment, preferred stores and affinities (kind
    `preferences`)."""


def history_weeks(year: Year) -> int:
    """How many weeks of merchandise history `year` holds (0 when none)."""
    lines = year.merchandise
    return int(lines["week"].max()) if len(lines) else 0


def retrain_due(versions: Sequence[Mapping[str, Any]], now: datetime, every_s: int) -> bool:
    """True when the newest of `versions` (GET /v1/models rows) is `every_s` old, or none is."""
    if not versions:
        return True
    newest = max(datetime.fromisoformat(str(v["trained_at"])) for v in versions)
    return now - newest >= timedelta(seconds=every_s)


def train_with_history(year: Year, min_weeks: int = RANKER_WEEKS) -> TrainedModels | str:
    """The scheduled retraining: every model trained on `year`, or why not (too little
    history: a fallback version would only replace the learned ones)."""
    weeks = history_weeks(year)
    if weeks < min_weeks:
        return f"{min_weeks} weeks of history needed, the analytics store has {weeks}"
    return train(year)


def train(year: Year, k: int = 10) -> TrainedModels:
    """Train every model the history allows on `year` (households are customers)."""
    weeks = history_weeks(year)
    if weeks == 0:
        empty = {"metrics": {"skipped": "no sales with a customer in the analytics store"}}
        return TrainedModels(
            offers={},
            churn=[],
            versions={"offers": {**empty, "params": {}}, "churn": {**empty, "params": {}}},
        )
    serve = weeks + 1
    lines = year.merchandise
    versions: dict[str, dict[str, Any]] = {}
    offers: dict[str, list[tuple[str, str, float]]] = {}
    started = time.perf_counter()
    scored = _own_scores(lines, serve)
    strategy = "repeat_own_most_bought"
    holdout: dict[str, Any] = {"reason": f"{RANKER_WEEKS} weeks of history needed, have {weeks}"}
    if weeks >= RANKER_WEEKS:
        try:
            ranker = RepeatRanker(train_weeks=(serve - 12, serve - 8, serve - 4)).fit(lines)
            holdout = _holdout(lines, weeks, k)
        except ValueError as exc:
            holdout = {"reason": str(exc)}
        else:
            scored = ranker.score(lines, serve)
            strategy = "repeat_lightgbm"
    ordered = scored.sort_values(["household", "score"], ascending=[True, False])
    for household, group in ordered.groupby("household", sort=False):
        customer = year.household_ids[int(household)]
        offers[customer] = [
            (year.product_ids[int(p)], strategy, float(s))
            for p, s in zip(group["product"].head(k), group["score"].head(k), strict=True)
        ]
    versions["offers"] = {
        "metrics": {
            "strategy": strategy,
            "customers": len(offers),
            "lines": len(lines),
            "weeks": weeks,
            "holdout": holdout,
            "train_s": round(time.perf_counter() - started, 2),
        },
        "params": {"k": k},
    }
    churn: list[tuple[str, float]] = []
    started = time.perf_counter()
    snapshots = [churn_snapshot(year.lines, w) for w in training_weeks(serve)]
    trained = pd.concat(snapshots, ignore_index=True) if snapshots else pd.DataFrame()
    if weeks < RANKER_WEEKS or trained.empty or trained["label"].nunique() < 2:
        reason = (
            f"{RANKER_WEEKS} weeks of history needed, have {weeks}"
            if weeks < RANKER_WEEKS
            else "no churner and stayer both in the training snapshots"
        )
        versions["churn"] = {"metrics": {"skipped": reason}, "params": {}}
    else:
        model = ChurnModel().fit(trained)
        now_frame = churn_snapshot(year.lines, serve)
        risk = model.risk(now_frame)
        churn = [
            (year.household_ids[int(h)], float(r))
            for h, r in zip(now_frame["household"], risk, strict=True)
        ]
        versions["churn"] = {
            "metrics": {
                "customers": len(churn),
                "training_rows": len(trained),
                "churn_rate": round(float(trained["label"].mean()), 4),
                "train_s": round(time.perf_counter() - started, 2),
            },
            "params": {"snapshots": model.snapshots, "c": model.c},
        }
    preferences = train_preferences(year)
    versions["preferences"] = {
        "metrics": preferences.metrics,
        "params": {"top_items": 5, "clusters": 3},
    }
    return TrainedModels(offers=offers, churn=churn, versions=versions, preferences=preferences)


def _own_scores(lines: pd.DataFrame, week: int) -> pd.DataFrame:
    top = own_most_bought(lines, week, k=50)
    rows = [(h, p, float(50 - i)) for h, ps in top.items() for i, p in enumerate(ps)]
    return pd.DataFrame(rows, columns=["household", "product", "score"])


def _holdout(lines: pd.DataFrame, weeks: int, k: int) -> dict[str, Any]:
    """precision@k of the ranker and of the own-most-bought baseline on the last 4 weeks."""
    cut = weeks - 3
    seen = lines[lines["week"] < cut + 4]
    truth = window_truth(seen, cut, 4)
    ranker = RepeatRanker(train_weeks=(cut - 12, cut - 8, cut - 4)).fit(seen[seen["week"] < cut])
    return {
        "weeks": f"{cut}-{weeks}",
        "households": len(truth),
        "precision_at_10": round(precision_at_k(ranker.offers(seen, cut, k), truth, k), 4),
        "own_most_bought_precision_at_10": round(
            precision_at_k(own_most_bought(seen, cut, k=k), truth, k), 4
        ),
    }


def pack_offers(
    customer: str,
    ranked: Sequence[tuple[str, str, float]],
    kept: Sequence[OfferInput],
    template: OfferTemplate,
    now: datetime,
) -> tuple[OfferInput, ...]:
    """The customer's new offer set: the offers not made by a model (kept as they are), then
    the top model products at the template's percent, valid from `now` for its days."""
    held = {o.product_id for o in kept}
    room = max(0, min(template.per_customer, MAX_OFFERS - len(kept)))
    fresh: list[OfferInput] = []
    for product, _strategy, _score in ranked:
        if len(fresh) >= room:
            break
        if product in held:
            continue
        held.add(product)
        fresh.append(
            OfferInput(
                offer_id=f"model-{product}"[:64],
                product_id=product,
                percent=template.percent,
                valid_from=now,
                valid_to=now + timedelta(days=template.valid_days),
                source="model",
            )
        )
    return (*kept, *fresh)


def publish(
    storage: Any, trained: TrainedModels, template: OfferTemplate, actor: str, now: datetime
) -> dict[str, Any]:
    """Record the versions, publish the offers (replacing earlier model offers, keeping the
    marketers'), store the churn risks; a summary."""
    from center.promotions.offers import parse_offers

    versions = {
        kind: storage.models.record_version(kind, v["metrics"], v["params"], now)
        for kind, v in trained.versions.items()
    }
    known = _known_products(
        storage, {p for ranked in trained.offers.values() for p, _, _ in ranked}
    )
    published = 0
    for customer, ranked in sorted(trained.offers.items()):
        current = storage.offers.personal_offers(customer)
        if current is None:
            continue
        kept = parse_offers(
            {
                "offers": [
                    {key: o[key] for key in _OFFER_FIELDS if o.get(key) is not None}
                    for o in current.get("offers", [])
                    if o.get("source") != "model"
                ]
            }
        )
        usable = [r for r in ranked if r[0] in known]
        offers = pack_offers(customer, usable, kept, template, now)
        try:
            storage.offers.set_personal_offers(customer, offers, actor, now)
        except (Conflict, UnknownObject):
            continue  # merged or removed since the analytics store saw its sales
        published += len(offers) - len(kept)
    if trained.churn:
        storage.models.replace_churn_risk(trained.churn, versions["churn"], now)
    preferences = trained.preferences
    if preferences is not None and preferences.customers:
        storage.models.replace_preferences(
            preferences.customers, preferences.associations, versions["preferences"], now
        )
    return {
        "versions": versions,
        "offers_published": published,
        "customers_with_offers": len(trained.offers),
        "churn_scored": len(trained.churn),
        "preferences_scored": len(preferences.customers) if preferences is not None else 0,
        "metrics": {kind: v["metrics"] for kind, v in trained.versions.items()},
    }


_OFFER_FIELDS = ("offer_id", "product_id", "percent", "valid_from", "valid_to", "source")


def _known_products(storage: Any, products: set[str]) -> set[str]:
    found: set[str] = set()
    wanted = sorted(products)
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        marks = ", ".join("?" for _ in chunk)
        found.update(
            str(r[0])
            for r in storage.db.execute(
                f"SELECT product_id FROM products WHERE product_id IN ({marks})", chunk
            ).fetchall()
        )
    return found
