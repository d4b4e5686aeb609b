"""Trained model versions with their metrics, and each customer's churn risk (m031_models)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = [
    "POSTGRES_MIGRATION",
    "POSTGRES_PREFERENCES_MIGRATION",
    "SQLITE_MIGRATION",
    "SQLITE_PREFERENCES_MIGRATION",
    "ModelRepository",
]


def _migration(ts: str, real: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE model_versions (
            kind TEXT NOT NULL,
            version INTEGER NOT NULL,
            trained_at {ts} NOT NULL,
            metrics TEXT NOT NULL,
            params TEXT NOT NULL,
            PRIMARY KEY (kind, version)
        )""",
        f"""CREATE TABLE churn_risk (
            customer_id TEXT PRIMARY KEY,
            risk {real} NOT NULL,
            model_version INTEGER NOT NULL,
            scored_at {ts} NOT NULL
        )""",
    )


SQLITE_MIGRATION = Migration("m031_models", _migration("TEXT", "REAL"))
"""Model versions and churn risk, on SQLite."""
POSTGRES_MIGRATION = Migration("m031_models", _migration("TIMESTAMPTZ", "DOUBLE PRECISION"))
"""Model versions and churn risk, on PostgreSQL."""


def _preferences(ts: str, real: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE customer_preferences (
            customer_id TEXT PRIMARY KEY,
            preferred_store TEXT NOT NULL,
            store_share {real} NOT NULL,
            segment TEXT NOT NULL,
            categories TEXT NOT NULL,
            brands TEXT NOT NULL,
            model_version INTEGER NOT NULL,
            scored_at {ts} NOT NULL
        )""",
        "CREATE INDEX customer_preferences_store ON customer_preferences (preferred_store)",
        f"""CREATE TABLE segment_associations (
            segment TEXT NOT NULL,
            antecedent TEXT NOT NULL,
            consequent TEXT NOT NULL,
            receipts INTEGER NOT NULL,
            segment_receipts INTEGER NOT NULL,
            support {real} NOT NULL,
            confidence {real} NOT NULL,
            lift {real} NOT NULL,
            model_version INTEGER NOT NULL,
            PRIMARY KEY (segment, antecedent, consequent)
        )""",
    )


SQLITE_PREFERENCES_MIGRATION = Migration("m038_analytics_models", _preferences("TEXT", "REAL"))
"""Customer preferences (preferred store, segment, affinities) and associations per segment."""
POSTGRES_PREFERENCES_MIGRATION = Migration(
    "m038_analytics_models", _preferences("TIMESTAMPTZ", "DOUBLE PRECISION")
)
"""The same on PostgreSQL."""

_ASSOCIATION_COLUMNS = (
    "segment", "antecedent", "consequent", "receipts", "segment_receipts", "support",
    "confidence", "lift",
)  # fmt: skip


class ModelRepository:
    """Model versions (one row per training, numbered per kind) and the latest churn risks."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record_version(
        self, kind: str, metrics: dict[str, Any], params: dict[str, Any], now: datetime
    ) -> int:
        """Store one trained version of `kind` with its metrics; its number (1, 2, ...)."""
        with self.db.guard("record model version"), self.db.transaction():
            row = self.db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE kind = ?", (kind,)
            ).fetchone()
            version = int(row[0]) + 1
            self.db.execute(
                "INSERT INTO model_versions (kind, version, trained_at, metrics, params) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    kind,
                    version,
                    self.db.ts(now),
                    json.dumps(metrics, sort_keys=True),
                    json.dumps(params, sort_keys=True),
                ),
            )
        return version

    def versions(self, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest versions first, of one kind or of all."""
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        rows = self.db.execute(
            "SELECT kind, version, trained_at, metrics, params FROM model_versions "
            f"{where} ORDER BY trained_at DESC, kind, version DESC LIMIT {int(limit)}",
            args,
        ).fetchall()
        return [
            {
                "kind": str(r[0]),
                "version": int(r[1]),
                "trained_at": self.db.dt(r[2]).isoformat(),
                "metrics": json.loads(r[3]),
                "params": json.loads(r[4]),
            }
            for r in rows
        ]

    def replace_churn_risk(
        self, risks: Sequence[tuple[str, float]], version: int, now: datetime
    ) -> None:
        """Make `risks` (customer id, probability) the current churn risks, all at once."""
        at = self.db.ts(now)
        with self.db.guard("store churn risk"), self.db.transaction():
            self.db.execute("DELETE FROM churn_risk")
            if risks:
                self.db.executemany(
                    "INSERT INTO churn_risk (customer_id, risk, model_version, scored_at) "
                    "VALUES (?, ?, ?, ?)",
                    [(c, round(float(r), 4), version, at) for c, r in risks],
                )

    def churn_risk(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's current churn risk, or None when the model has not scored them."""
        row = self.db.execute(
            "SELECT risk, model_version, scored_at FROM churn_risk WHERE customer_id = ?",
            (customer_id,),
        ).fetchone()
        if row is None:
            return None
        return {
            "risk": float(row[0]),
            "model_version": int(row[1]),
            "scored_at": self.db.dt(row[2]).isoformat(),
        }

    def replace_preferences(
        self,
        customers: Sequence[dict[str, Any]],
        associations: Sequence[dict[str, Any]],
        version: int,
        now: datetime,
    ) -> None:
        """Make these the current customer preferences and associations per segment, at once."""
        at = self.db.ts(now)
        with self.db.guard("store customer preferences"), self.db.transaction():
            self.db.execute("DELETE FROM customer_preferences")
            self.db.execute("DELETE FROM segment_associations")
            if customers:
                self.db.executemany(
                    "INSERT INTO customer_preferences (customer_id, preferred_store, "
                    "store_share, segment, categories, brands, model_version, scored_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            c["customer_id"],
                            c["preferred_store"],
                            float(c["store_share"]),
                            c["segment"],
                            json.dumps(c["categories"], ensure_ascii=False),
                            json.dumps(c["brands"], ensure_ascii=False),
                            version,
                            at,
                        )
                        for c in customers
                    ],
                )
            if associations:
                self.db.executemany(
                    f"INSERT INTO segment_associations ({', '.join(_ASSOCIATION_COLUMNS)}, "
                    "model_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*(a[c] for c in _ASSOCIATION_COLUMNS), version) for a in associations],
                )

    def preferences(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's preferred store, segment and affinities, or None when not scored."""
        row = self.db.execute(
            "SELECT preferred_store, store_share, segment, categories, brands, model_version, "
            "scored_at FROM customer_preferences WHERE customer_id = ?",
            (customer_id,),
        ).fetchone()
        if row is None:
            return None
        return {
            "customer_id": customer_id,
            "preferred_store": str(row[0]),
            "store_share": float(row[1]),
            "segment": str(row[2]),
            "categories": json.loads(row[3]),
            "brands": json.loads(row[4]),
            "model_version": int(row[5]),
            "scored_at": self.db.dt(row[6]).isoformat(),
        }

    def customers_preferring(self, store_id: str) -> set[str]:
        """The customers whose preferred store is `store_id`."""
        return {
            str(r[0])
            for r in self.db.execute(
                "SELECT customer_id FROM customer_preferences WHERE preferred_store = ?",
                (store_id,),
            ).fetchall()
        }

    def associations(self, segment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The stored associations, of one segment or of all, by segment then lift."""
        where, args = ("WHERE segment = ?", (segment,)) if segment else ("", ())
        rows = self.db.execute(
            f"SELECT {', '.join(_ASSOCIATION_COLUMNS)}, model_version FROM segment_associations "
            f"{where} ORDER BY segment, lift DESC, receipts DESC, antecedent, consequent "
            f"LIMIT {int(limit)}",
            args,
        ).fetchall()
        return [
            {**dict(zip(_ASSOCIATION_COLUMNS, r[:-1], strict=True)), "model_version": int(r[-1])}
            for r in rows
        ]

    def segments(self) -> list[dict[str, Any]]:
        """Each segment with its customers (from the preferences) and its stored pairs."""
        customers = dict(
            self.db.execute(
                "SELECT segment, COUNT(*) FROM customer_preferences GROUP BY segment"
            ).fetchall()
        )
        pairs = dict(
            self.db.execute(
                "SELECT segment, COUNT(*) FROM segment_associations GROUP BY segment"
            ).fetchall()
        )
        return [
            {
                "segment": str(s),
                "customers": int(customers.get(s, 0)),
                "pairs": int(pairs.get(s, 0)),
            }
            for s in sorted(set(customers) | set(pairs))
        ]
