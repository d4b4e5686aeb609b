"""Running a coupon batch job: codes in steps, then the batch in one transaction.

The Center's HTTP route starts a job for a batch above SYNC_MAX codes and runs its steps on the
database thread between requests; `loyalty-center generate-coupons` runs the same steps in the
foreground with a progress line. A job records its owner (host, process id, a token of this
process): at start, the Center fails the running jobs of processes that are gone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import Any

from center.storage import Storage

__all__ = [
    "CHUNK",
    "STALE",
    "SYNC_MAX",
    "owner_dead",
    "run_job",
    "run_job_async",
    "this_owner",
]

log = logging.getLogger(__name__)

SYNC_MAX = 10_000
"""Batches up to this many codes are generated inside the request; bigger ones are jobs."""
CHUNK = 50_000
"""Codes staged per step (one short transaction: requests get the database in between)."""
STALE = timedelta(minutes=10)
"""A job of another host that has not moved for this long is taken as dead."""


@functools.cache
def this_owner() -> str:
    """This process as a job owner: host, pid and a random token (a reused pid differs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def owner_dead(owner: str, updated_at: datetime, now: datetime) -> bool:
    """Whether the process that owns a running job is gone: on this host, its pid is not
    running (or is this process, restarted); elsewhere, the job has not moved for STALE."""
    if owner == this_owner():
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        return pid == os.getpid() or not _pid_alive(pid)
    return now - updated_at > STALE


def run_job(
    storage: Storage,
    job_id: str,
    clock: Callable[[], datetime],
    progress: Callable[[dict[str, Any]], None] = lambda _: None,
    *,
    chunk: int = CHUNK,
) -> dict[str, Any]:
    """Run a started job to its end in this thread; the final job view. A failure marks the
    job failed (its staged codes deleted) and is raised again."""
    try:
        while True:
            view = storage.coupon_jobs.coupon_job_step(job_id, chunk, clock())
            progress(view)
            if view["generated"] >= view["total"]:
                break
        done = storage.coupon_jobs.finish_coupon_job(job_id, clock())
    except BaseException as exc:
        storage.coupon_jobs.fail_coupon_job(job_id, f"{type(exc).__name__}: {exc}", clock())
        raise
    progress(done)
    return done


async def run_job_async(
    storage: Storage,
    executor: Executor,
    job_id: str,
    clock: Callable[[], datetime],
    *,
    chunk: int = CHUNK,
) -> dict[str, Any] | None:
    """Run a started job step by step on the database executor; the final job view, or None
    when it failed (logged; the job row says why). Cancelled: the job is marked failed."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            view = await loop.run_in_executor(
                executor, storage.coupon_jobs.coupon_job_step, job_id, chunk, clock()
            )
            if view["generated"] >= view["total"]:
                break
        done = await loop.run_in_executor(
            executor, storage.coupon_jobs.finish_coupon_job, job_id, clock()
        )
    except asyncio.CancelledError:
        await loop.run_in_executor(
            executor,
            storage.coupon_jobs.fail_coupon_job,
            job_id,
            "the Center stopped; generate again",
            clock(),
        )
        raise
    except Exception as exc:
        log.warning("coupon job %s failed: %s", job_id, exc)
        await loop.run_in_executor(
            executor,
            storage.coupon_jobs.fail_coupon_job,
            job_id,
            f"{type(exc).__name__}: {exc}",
            clock(),
        )
        return None
    log.info("coupon job %s done: batch %s, %d codes", job_id, done["batch_id"], done["total"])
    return done
