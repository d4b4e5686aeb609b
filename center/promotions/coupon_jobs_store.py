"""Coupon batches generated as a background job, in steps, never half-visible.

A job's codes are drawn in steps of at most a chunk, each its own transaction, into the
staging table `coupon_job_codes` (the job row counts them: the progress). Only the last step
creates the batch: in one transaction it writes the `coupon_batches` row, moves the staged
codes into `coupons` (drawing again for any code another batch already holds) and drops them
from staging. Until then no batch, and so no code, exists for issue, export, the registers or
ingest. A job whose process died is marked failed (its staged codes deleted) by the next start.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from center.access.audit import AuditLog
from center.errors import Conflict, UnknownObject
from center.promotions.coupons import BatchRequest
from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "CouponBatches", "CouponJobRepository"]

JOB_STATES = ("running", "done", "failed")


def _migration(ts: str, big: str, unlogged: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE coupon_jobs (
            job_id TEXT PRIMARY KEY,
            batch_id TEXT NOT NULL UNIQUE,
            request TEXT NOT NULL,
            state TEXT NOT NULL,
            total {big} NOT NULL,
            generated {big} NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT '',
            owner TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at {ts} NOT NULL,
            updated_at {ts} NOT NULL,
            finished_at {ts}
        )""",
        "CREATE INDEX coupon_jobs_state ON coupon_jobs (state)",
        # Staging: written in steps, read once in code order by the last step. Unlogged on
        # PostgreSQL: a crash loses it, and a crash fails the job anyway.
        f"CREATE {unlogged}TABLE coupon_job_codes (job_id TEXT NOT NULL, code TEXT NOT NULL)",
        "CREATE INDEX coupon_job_codes_job ON coupon_job_codes (job_id)",
    )


def _index_merged(storage: Any) -> None:
    from center.crm.customers_store import index_merged_customers

    index_merged_customers(storage)


SQLITE_MIGRATION = Migration(
    "m017_coupon_jobs", (*_migration("TEXT", "INTEGER", ""), _index_merged)
)
"""Coupon batch jobs (and merged customers searchable again), on SQLite."""
POSTGRES_MIGRATION = Migration(
    "m017_coupon_jobs", (*_migration("TIMESTAMPTZ", "BIGINT", "UNLOGGED "), _index_merged)
)
"""Coupon batch jobs (and merged customers searchable again), on PostgreSQL."""


def _request_json(request: BatchRequest) -> str:
    return json.dumps(
        {
            "promotion_id": request.promotion_id,
            "name": request.name,
            "prefix": request.prefix,
            "count": request.count,
            "single_use": request.single_use,
            "valid_from": None if request.valid_from is None else request.valid_from.isoformat(),
            "valid_to": None if request.valid_to is None else request.valid_to.isoformat(),
            "signed": request.signed,
        },
        sort_keys=True,
    )


def _request_of(text: str) -> BatchRequest:
    from datetime import date

    doc = json.loads(text)
    return BatchRequest(
        promotion_id=doc["promotion_id"],
        name=doc["name"],
        prefix=doc["prefix"],
        count=int(doc["count"]),
        single_use=bool(doc["single_use"]),
        valid_from=None if doc["valid_from"] is None else date.fromisoformat(doc["valid_from"]),
        valid_to=None if doc["valid_to"] is None else date.fromisoformat(doc["valid_to"]),
        signed=bool(doc["signed"]),
    )


class CouponBatches(Protocol):
    """What a job needs of the coupon repository: the batch code it shares with it."""

    def require_promotion(self, promotion_id: str) -> None: ...

    def code_maker(self, request: BatchRequest) -> Callable[[int], list[str]]: ...

    def insert_batch(self, batch_id: str, request: BatchRequest, actor: str, at: Any) -> None: ...

    def insert_codes(self, batch_id: str, codes: list[str]) -> int: ...

    def batch_view(self, batch_id: str) -> dict[str, Any] | None: ...


class CouponJobRepository:
    """Coupon batch jobs and their staged codes, over the shared Database; a finished job's
    batch is made by the coupon repository's batch code."""

    def __init__(self, db: Database, *, audit: AuditLog, coupons: CouponBatches) -> None:
        self.db = db
        self.audit = audit
        self.coupons = coupons

    def _job_row(self, job_id: str, *, lock: bool = False) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT job_id, batch_id, request, state, total, generated, error, owner, "
            "created_by, created_at, updated_at, finished_at FROM coupon_jobs WHERE job_id = ?"
            f"{self.db.dialect.for_update if lock else ''}",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        return {
            "job_id": row[0],
            "batch_id": row[1],
            "request": row[2],
            "state": row[3],
            "total": int(row[4]),
            "generated": int(row[5]),
            "error": row[6],
            "owner": row[7],
            "created_by": row[8],
            "created_at": self.db.dt(row[9]).isoformat(),
            "updated_at": self.db.dt(row[10]).isoformat(),
            "finished_at": None if row[11] is None else self.db.dt(row[11]).isoformat(),
        }

    def _job_view(self, job: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in job.items() if k not in ("request", "owner")}
        view["request"] = json.loads(job["request"])
        view["batch"] = self.coupons.batch_view(job["batch_id"]) if job["state"] == "done" else None
        return view

    def _running(self, job_id: str) -> dict[str, Any]:
        job = self._job_row(job_id, lock=True)
        if job is None:
            raise UnknownObject("job_id", f"unknown coupon job {job_id!r}")
        if job["state"] != "running":
            raise Conflict("job_id", f"coupon job {job_id} is {job['state']}: {job['error']}")
        return job

    def start_coupon_job(
        self, request: BatchRequest, actor: str, owner: str, now: datetime
    ) -> dict[str, Any]:
        """Check the request (promotion, coupon_key) and record a running job; its view."""
        job_id = f"cj-{uuid.uuid4().hex[:16]}"
        batch_id = f"cb-{uuid.uuid4().hex[:16]}"
        at = self.db.ts(now)
        with self.db.guard("start coupon job"), self.db.transaction():
            self.coupons.require_promotion(request.promotion_id)
            self.coupons.code_maker(request)  # Conflict now, not later, without a coupon_key
            self.db.execute(
                "INSERT INTO coupon_jobs (job_id, batch_id, request, state, total, owner, "
                "created_by, created_at, updated_at) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (job_id, batch_id, _request_json(request), request.count, owner, actor, at, at),
            )
            job = self._job_row(job_id)
            assert job is not None
            return self._job_view(job)

    def coupon_job_step(self, job_id: str, chunk: int, now: datetime) -> dict[str, Any]:
        """Stage up to `chunk` more codes (one transaction); the job's view. Conflict when
        the job is not running (failed meanwhile)."""
        with self.db.guard("generate coupon codes"), self.db.transaction():
            job = self._running(job_id)
            want = min(chunk, job["total"] - job["generated"])
            if want > 0:
                codes = self.coupons.code_maker(_request_of(job["request"]))(want)
                codes.sort()  # staged in order: the index grows at its end
                self.db.bulk_insert(
                    "coupon_job_codes", ("job_id", "code"), [(job_id, c) for c in codes]
                )
                self.db.execute(
                    "UPDATE coupon_jobs SET generated = generated + ?, updated_at = ? "
                    "WHERE job_id = ?",
                    (len(codes), self.db.ts(now), job_id),
                )
            found = self._job_row(job_id)
            assert found is not None
            return self._job_view(found)

    def finish_coupon_job(self, job_id: str, now: datetime) -> dict[str, Any]:
        """Create the batch from the staged codes in one transaction; the job's view."""
        at = self.db.ts(now)
        with self.db.guard("finish coupon job"), self.db.transaction():
            job = self._running(job_id)
            request = _request_of(job["request"])
            batch_id = job["batch_id"]
            if job["generated"] < job["total"]:
                raise Conflict(
                    "job_id",
                    f"coupon job {job_id} has {job['generated']} of {job['total']} codes",
                )
            self.coupons.insert_batch(batch_id, request, job["created_by"], at)
            made = self.db.dialect.count_inserted(
                self.db.execute,
                lambda: self.db.execute(
                    "INSERT INTO coupons (code, batch_id, status) "
                    "SELECT DISTINCT code, ?, 'issued' FROM coupon_job_codes WHERE job_id = ? "
                    "ORDER BY code ON CONFLICT DO NOTHING",
                    (batch_id, job_id),
                ),
            )
            generate = self.coupons.code_maker(request)
            while made < request.count:  # codes another batch holds (or drawn twice): again
                made += self.coupons.insert_codes(batch_id, generate(request.count - made))
            self.db.execute("DELETE FROM coupon_job_codes WHERE job_id = ?", (job_id,))
            self.db.execute(
                "UPDATE coupon_jobs SET state = 'done', updated_at = ?, finished_at = ? "
                "WHERE job_id = ?",
                (at, at, job_id),
            )
            view = self.coupons.batch_view(batch_id)
            assert view is not None
            after = {k: v for k, v in view.items() if k != "counts"}
            self.audit.record(
                "coupon_batch", batch_id, "create", None, {**after, "job_id": job_id},
                job["created_by"], at,
            )  # fmt: skip
            found = self._job_row(job_id)
            assert found is not None
            return self._job_view(found)

    def fail_coupon_job(self, job_id: str, error: str, now: datetime) -> bool:
        """Mark a running job failed and delete its staged codes; whether it was running."""
        at = self.db.ts(now)
        with self.db.guard("fail coupon job"), self.db.transaction():
            job = self._job_row(job_id, lock=True)
            if job is None or job["state"] != "running":
                return False
            self.db.execute("DELETE FROM coupon_job_codes WHERE job_id = ?", (job_id,))
            self.db.execute(
                "UPDATE coupon_jobs SET state = 'failed', error = ?, updated_at = ?, "
                "finished_at = ? WHERE job_id = ?",
                (error[:500], at, at, job_id),
            )
        return True

    def coupon_job(self, job_id: str) -> dict[str, Any] | None:
        """A job's view (with its batch once done); None if unknown."""
        with self.db.guard("read coupon job"), self.db.snapshot():
            job = self._job_row(job_id)
            return None if job is None else self._job_view(job)

    def recover_coupon_jobs(
        self, dead: Callable[[str, datetime], bool], now: datetime
    ) -> list[str]:
        """Fail every running job whose owner `dead(owner, updated_at)` says is gone."""
        with self.db.guard("read coupon jobs"):
            rows = self.db.execute(
                "SELECT job_id, owner, updated_at FROM coupon_jobs WHERE state = 'running' "
                "ORDER BY job_id"
            ).fetchall()
        failed = []
        for job_id, owner, updated_at in rows:
            if dead(str(owner), self.db.dt(updated_at)):
                error = f"the process generating it ({owner}) stopped; generate the batch again"
                if self.fail_coupon_job(str(job_id), error, now):
                    failed.append(str(job_id))
        return failed
