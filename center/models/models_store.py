"""Trained model versions with their metrics, and each customer's churn risk (m031_models)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "ModelRepository"]


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
