"""Big coupon batches as background jobs: progress, the batch made in one last transaction,
and a job whose process is killed failing on the next start with none of its codes usable."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import load_config
from center.errors import Conflict, UnknownObject
from center.promotions import coupon_jobs
from center.promotions.coupons import BatchRequest
from center.promotions.coupons_api import JOBS_KEY
from center.storage import Storage, open_storage
from center.web.app import create_app
from tests.center.center_factories import T0, master_tables, write_config
from tests.center.conftest import BACKENDS
from tests.center.staff import StaffApi, staff_token

REPO = Path(__file__).resolve().parents[2]
PROMO = "base-accrual-3"


def _request(count: int, prefix: str = "SPRING") -> BatchRequest:
    return BatchRequest(PROMO, "spring", prefix, count, True, None, None)


def _staged(storage: Storage, job_id: str) -> int:
    row = storage.db.execute(
        "SELECT COUNT(*) FROM coupon_job_codes WHERE job_id = ?", (job_id,)
    ).fetchone()
    return int(row[0])


def _codes_of(storage: Storage, batch_id: str) -> int:
    row = storage.db.execute(
        "SELECT COUNT(*) FROM coupons WHERE batch_id = ?", (batch_id,)
    ).fetchone()
    return int(row[0])


def test_a_job_stages_codes_in_steps_and_makes_the_batch_at_the_end(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    job = storage.coupon_jobs.start_coupon_job(_request(3500), "marketer", "test-owner", T0)
    assert (job["state"], job["generated"], job["total"], job["batch"]) == (
        "running",
        0,
        3500,
        None,
    )
    seen: list[tuple[str, int]] = []
    view = storage.coupon_jobs.coupon_job_step(job["job_id"], 1000, T0)
    seen.append((view["state"], view["generated"]))
    # Codes are staged, but no batch exists yet: nothing of it can be issued or redeemed.
    assert storage.coupons.coupon_batch(job["batch_id"]) is None
    staged = storage.db.execute(
        "SELECT code FROM coupon_job_codes WHERE job_id = ? LIMIT 1", (job["job_id"],)
    ).fetchone()[0]
    assert storage.coupons.coupon(staged) is None
    done = coupon_jobs.run_job(
        storage,
        job["job_id"],
        lambda: T0,
        lambda v: seen.append((v["state"], v["generated"])),
        chunk=1000,
    )
    assert seen == [
        ("running", 1000),
        ("running", 2000),
        ("running", 3000),
        ("running", 3500),
        ("done", 3500),
    ]
    assert done["state"] == "done" and done["finished_at"] is not None
    assert done["batch"]["counts"]["codes"] == 3500 and done["batch"]["count"] == 3500
    assert storage.coupons.coupon(staged) is not None  # issuable now
    assert _staged(storage, job["job_id"]) == 0
    [audit] = storage.audit.audit_history("coupon_batch", job["batch_id"])
    assert (audit["action"], audit["actor"], audit["after"]["job_id"]) == (
        "create",
        "marketer",
        job["job_id"],
    )
    with pytest.raises(Conflict, match=r"^job_id: "):
        storage.coupon_jobs.coupon_job_step(job["job_id"], 1000, T0)
    with pytest.raises(UnknownObject, match=r"^body\.promotion_id: "):
        storage.coupon_jobs.start_coupon_job(
            BatchRequest("nope", "", "X", 20000, True, None, None), "m", "o", T0
        )


def test_a_failed_job_leaves_nothing_and_cannot_go_on(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    job = storage.coupon_jobs.start_coupon_job(_request(5000), "marketer", "test-owner", T0)
    storage.coupon_jobs.coupon_job_step(job["job_id"], 2000, T0)
    assert _staged(storage, job["job_id"]) == 2000
    assert storage.coupon_jobs.fail_coupon_job(job["job_id"], "disk full", T0) is True
    assert storage.coupon_jobs.fail_coupon_job(job["job_id"], "again", T0) is False
    assert _staged(storage, job["job_id"]) == 0
    with pytest.raises(Conflict, match="failed: disk full"):
        storage.coupon_jobs.coupon_job_step(job["job_id"], 2000, T0)
    with pytest.raises(Conflict):
        storage.coupon_jobs.finish_coupon_job(job["job_id"], T0)
    view = storage.coupon_jobs.coupon_job(job["job_id"])
    assert view is not None and (view["state"], view["error"]) == ("failed", "disk full")
    assert storage.coupons.coupon_batch(job["batch_id"]) is None
    assert _codes_of(storage, job["batch_id"]) == 0


def test_recovery_fails_only_the_jobs_of_dead_processes(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    host = os.uname().nodename
    gone = storage.coupon_jobs.start_coupon_job(_request(20000), "m", f"{host}:999999999:ab", T0)
    mine = storage.coupon_jobs.start_coupon_job(_request(20000), "m", coupon_jobs.this_owner(), T0)
    away = storage.coupon_jobs.start_coupon_job(_request(20000), "m", "elsewhere:12:cd", T0)
    storage.coupon_jobs.coupon_job_step(gone["job_id"], 500, T0)

    def dead(now: Any) -> Any:
        return lambda owner, at: coupon_jobs.owner_dead(owner, at, now)

    assert storage.coupon_jobs.recover_coupon_jobs(dead(T0), T0) == [gone["job_id"]]
    failed = storage.coupon_jobs.coupon_job(gone["job_id"])
    assert failed is not None and failed["state"] == "failed" and "stopped" in failed["error"]
    assert _staged(storage, gone["job_id"]) == 0
    # Another host's job is dead only once it has not moved for STALE.
    later = T0 + coupon_jobs.STALE + timedelta(seconds=1)
    assert storage.coupon_jobs.recover_coupon_jobs(dead(later), later) == [away["job_id"]]
    running = storage.coupon_jobs.coupon_job(mine["job_id"])
    assert running is not None and running["state"] == "running"


async def test_a_big_batch_is_a_job_answered_202_with_its_location(
    tmp_path: Path, storage: Storage
) -> None:
    storage.feed.upsert_master(master_tables())
    config = load_config(write_config(tmp_path, signatures=True))
    app = create_app(config, storage, clock=lambda: T0)
    async with TestClient(TestServer(app)) as client:
        api = StaffApi(client, staff_token(storage, "marketer"))
        body = {"promotion_id": PROMO, "prefix": "BIG", "count": coupon_jobs.SYNC_MAX + 1}
        response = await client.post(
            "/v1/coupon-batches", json=body, headers={"Authorization": f"Bearer {api.token}"}
        )
        started = await response.json()
        assert response.status == 202, started
        assert response.headers["Location"] == f"/v1/coupon-jobs/{started['job_id']}"
        assert started["state"] == "running" and started["total"] == coupon_jobs.SYNC_MAX + 1
        await asyncio.gather(*app[JOBS_KEY].values())
        status, job = await api.call("GET", response.headers["Location"])
        assert status == 200, job
        assert (job["state"], job["generated"]) == ("done", coupon_jobs.SYNC_MAX + 1)
        assert job["batch"]["counts"]["free"] == coupon_jobs.SYNC_MAX + 1
        status, batch = await api.call("GET", f"/v1/coupon-batches/{job['batch_id']}")
        assert status == 200 and batch["prefix"] == "BIG"
        # Small batches stay synchronous.
        status, small = await api.call(
            "POST", "/v1/coupon-batches", {"promotion_id": PROMO, "prefix": "SMALL", "count": 5}
        )
        assert status == 201 and small["counts"]["codes"] == 5
        status, _ = await api.call("GET", "/v1/coupon-jobs/cj-nothing")
        assert status == 404
        status, refused = await api.call(
            "POST", "/v1/coupon-batches", {"promotion_id": "nope", "prefix": "X", "count": 20000}
        )
        assert status == 404 and refused["detail"].startswith("body.promotion_id: ")
        reader = StaffApi(client, staff_token(storage, "call_center"))
        status, _ = await reader.call("GET", response.headers["Location"])
        assert status == 200  # coupons.read


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_killed_job_is_failed_on_restart_and_none_of_its_codes_exist(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgresql" else ""
    path = write_config(tmp_path, backend=backend, dsn=dsn, signatures=True)
    config = load_config(path)
    storage = open_storage(config.storage)
    storage.feed.upsert_master(master_tables())
    storage.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "center", "generate-coupons", "--config", str(path),
         "--promotion-id", PROMO, "--prefix", "KILL", "--count", "1000000"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()
        assert first.startswith("job cj-"), first
        job_id = first.split()[1].rstrip(":")
        batch_id = first.split()[-1]
        progress = proc.stderr.readline()
        assert progress.startswith(f"job {job_id}: 50000/1000000"), progress
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    storage = open_storage(config.storage)
    try:
        job = storage.coupon_jobs.coupon_job(job_id)
        assert job is not None and job["state"] == "running" and job["generated"] >= 50000
        # The next start of the Center fails it.
        app = create_app(config, storage)
        async with TestClient(TestServer(app)) as client:
            api = StaffApi(client, staff_token(storage, "marketer"))
            status, view = await api.call("GET", f"/v1/coupon-jobs/{job_id}")
            assert status == 200
            assert view["state"] == "failed" and "stopped" in view["error"], view
            status, _ = await api.call("GET", f"/v1/coupon-batches/{batch_id}")
            assert status == 404
        assert _codes_of(storage, batch_id) == 0
        assert _staged(storage, job_id) == 0
    finally:
        storage.close()


def test_generate_coupons_command_prints_progress_and_the_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from center.cli import main

    path = write_config(tmp_path)
    storage = open_storage(load_config(path).storage)
    storage.feed.upsert_master(master_tables())
    storage.close()
    base = ["generate-coupons", "--config", str(path), "--promotion-id", PROMO]
    assert main([*base, "--prefix", "CLI", "--count", "120", "--multi-use"]) == 0
    out, err = capsys.readouterr()
    batch = json.loads(out)
    assert (batch["count"], batch["single_use"], batch["counts"]["codes"]) == (120, False, 120)
    assert err.splitlines()[-1].endswith(": 120/120 codes done")
    assert main([*base, "--prefix", "CLI", "--count", "0"]) == 2
    assert "error: --count: expected an integer" in capsys.readouterr().err
    assert main([*base, "--prefix", "CLI", "--count", "5", "--valid-from", "soon"]) == 2
    assert "error: --valid-from: " in capsys.readouterr().err
