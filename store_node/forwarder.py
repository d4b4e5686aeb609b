"""Moves sales to the Center and master data from it, on apscheduler jobs with capped backoff."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from store_node.config import Config
from store_node.credentials import Credentials, load_credentials
from store_node.errors import CenterTooLarge, CenterUnavailable
from store_node.master_cache import MasterGap
from store_node.salesbox import BoxWorker, RegisterState, SalesBox
from sync_protocol import (
    CONTENT_TYPE,
    Ack,
    Backoff,
    FailureLog,
    Heartbeat,
    Limits,
    MasterDelta,
    MasterSnapshot,
    ProtocolError,
    decode,
    encode,
    encode_sale_batch,
)

__all__ = ["Forwarder"]

log = logging.getLogger(__name__)

# A chain's catalogue can be far larger than one sale batch; the Center is trusted more than a
# register, so its snapshots get a larger ceiling than the default decoding limits.
MASTER_MAX_BYTES = 64 * 1024 * 1024
MAX_MASTER_PAGES = 50
"""Delta pages fetched in one poll; the rest come with the next poll."""
MASTER_VERIFY_EVERY_S = 300.0
"""How often an up-to-date cache is re-read in full and checked against the Center's checksum."""
_MAX_DEVICES = 512


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _store_devices(registers: Sequence[RegisterState]) -> dict[str, str]:
    # Heartbeat.devices is a flat str -> str map; prefix keys so the Center can tell them apart.
    devices: dict[str, str] = {}
    for state in registers:
        devices[f"register:{state.register_id}"] = state.last_seen_at.isoformat()
        for name, status in sorted(state.devices.items()):
            devices[f"{state.register_id}:{name}"] = str(status)
        if len(devices) >= _MAX_DEVICES:
            break
    return dict(list(devices.items())[:_MAX_DEVICES])


def _apply_master(
    box: SalesBox, *, message: MasterSnapshot | MasterDelta, now: datetime, verify: bool
) -> tuple[int, bool]:
    return box.apply_master(message, now=now, verify=verify)


def _partial(message: MasterSnapshot | MasterDelta) -> bool:
    """A delta page with more to come (PROTOCOL.md: no checksum, version moved)."""
    return (
        isinstance(message, MasterDelta)
        and not message.checksum
        and message.to_version > message.from_version
    )


class Forwarder:
    """Owns the link to the Center: the HTTP session, the scheduler and its three jobs."""

    def __init__(
        self,
        config: Config,
        worker: BoxWorker,
        *,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.worker = worker
        self.clock = clock
        self.batch_size = config.center.batch_size
        self.backoff = Backoff(
            base_s=config.center.backoff_initial_s,
            cap_s=config.center.backoff_max_s,
            rng=rng,
            monotonic=monotonic,
        )
        ids = {"store": config.store.store_id, "node": config.store.node_id}
        self._ingest_log = FailureLog(log, "sending sales to the Center", ids=ids)
        self._heartbeat_log = FailureLog(log, "heartbeat to the Center", ids=ids)
        self._master_log = FailureLog(log, "fetching master data from the Center", ids=ids)
        self._recovery_log = FailureLog(
            log, "asking the Center which sales it holds (store.db recovery)", ids=ids
        )
        self._session: aiohttp.ClientSession | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self.credentials: Credentials | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, *, schedule: bool = True) -> None:
        """Open the HTTP session and, unless `schedule` is False, start the periodic jobs."""
        self.credentials = load_credentials(self.config.store.data_dir)
        if self.credentials is None:
            log.warning(
                "not enrolled: requests to the Center are unsigned and a Center with "
                "security.require_signatures refuses them; run `loyalty-store enrol --token T`"
            )
        else:
            log.info("signing requests to the Center as node %s", self.credentials.node_id)
        timeout = aiohttp.ClientTimeout(total=self.config.center.timeout_s)
        context = self.config.center.ssl_context()
        connector = aiohttp.TCPConnector(ssl=context) if context is not None else None
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        if not schedule:
            return
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        center = self.config.center
        for job, every in (
            (self._forward_job, center.interval_s),
            (self._master_job, center.master_poll_s),
            (self._heartbeat_job, center.master_poll_s),
        ):
            scheduler.add_job(
                job,
                "interval",
                seconds=every,
                id=job.__name__,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=datetime.now(UTC),
            )
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self) -> None:
        """Stop the jobs, wait for the ones running to end, close the HTTP session."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _guarded(self, what: str, step: Callable[[], Awaitable[object]]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await step()
        except asyncio.CancelledError:
            # Shutdown cancels us; the job ends quietly and its work is redone after a restart.
            return
        except Exception:
            log.exception("%s job failed unexpectedly", what)
        finally:
            self._running.discard(task)

    async def _forward_job(self) -> None:
        await self._guarded("forward", self.forward_once)
        await self._guarded("recovery", self.recover_once)

    async def _master_job(self) -> None:
        await self._guarded("master poll", self.poll_master_once)

    async def _heartbeat_job(self) -> None:
        await self._guarded("heartbeat", self.heartbeat_once)

    def _headers(
        self, method: str, path: str, body: bytes = b"", query: dict[str, str] | None = None
    ) -> dict[str, str]:
        headers = {"Content-Type": CONTENT_TYPE} if method == "POST" else {}
        if self.credentials is not None:
            headers.update(
                self.credentials.headers(
                    method, path, query, body, now_s=lambda: self.clock().timestamp()
                )
            )
        return headers

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Forwarder.start() was not called")
        return self._session

    # -- sales ----------------------------------------------------------------------------

    def _prepare_batch(self, box: SalesBox, limit: int) -> tuple[list[str], dict[str, str], bytes]:
        pending = box.pending(limit)
        body = encode_sale_batch(
            [item.payload for item in pending],
            sender=self.config.store.node_id,
            sent_at=self.clock(),
        )
        return [p.sale_id for p in pending], {p.sale_id: p.register_id for p in pending}, body

    async def forward_once(self) -> int:
        """Send pending sales to the Center while full batches go through; return sales settled."""
        if not self.backoff.ready():
            return 0
        settled = 0
        while True:
            limit = self.batch_size
            ids, registers, body = await self.worker.run(partial(self._prepare_batch, limit=limit))
            if not ids:
                return settled
            try:
                ack = await self._post_batch(body)
            except CenterTooLarge as exc:
                if self.batch_size > 1:
                    self.batch_size = max(1, self.batch_size // 2)
                    log.warning("%s; sending at most %d sales per batch", exc, self.batch_size)
                    continue
                await self._center_failed(self._ingest_log, exc)
                return settled
            except (CenterUnavailable, aiohttp.ClientError, TimeoutError, ProtocolError) as exc:
                await self._center_failed(self._ingest_log, exc)
                return settled
            self.backoff.succeeded()
            self._ingest_log.recovered()
            sent = set(ids)
            forwarded = [s for s in (*ack.accepted, *ack.duplicates) if s in sent]
            rejected = [r for r in ack.rejected if r.sale_id in sent]
            now = self.clock()
            settled += await self.worker.run(
                partial(SalesBox.settle, forwarded=forwarded, rejected=rejected, now=now)
            )
            log.info(
                "forwarded %d sales to the Center (%d new, %d already there, %d rejected)",
                len(ids),
                len([s for s in ack.accepted if s in sent]),
                len([s for s in ack.duplicates if s in sent]),
                len(rejected),
            )
            for rejection in rejected:
                log.warning(
                    "Center rejected sale %s of register %s: %s",
                    rejection.sale_id,
                    registers[rejection.sale_id],
                    rejection.reason,
                )
            unanswered = sent - set(forwarded) - {r.sale_id for r in rejected}
            if unanswered:
                # Resending now could loop forever; the next scheduled run retries them.
                log.warning(
                    "Center ack did not mention %d of %d sales (e.g. %s); resending later",
                    len(unanswered),
                    len(ids),
                    min(unanswered),
                )
                return settled
            if len(ids) < limit:
                return settled

    async def _post_batch(self, body: bytes) -> Ack:
        url = f"{self.config.center.url}/v1/ingest"
        # BytesIO: aiohttp warns about (and may block on) raw-bytes bodies over 1 MiB.
        async with self.session.post(
            url, data=io.BytesIO(body), headers=self._headers("POST", "/v1/ingest", body)
        ) as response:
            answer = await response.read()
            if response.status == 413:
                raise CenterTooLarge(f"POST {url}: HTTP 413 for a batch of {len(body)} bytes")
            if response.status != 200:
                raise CenterUnavailable(
                    f"POST {url}: HTTP {response.status} {answer[:200].decode(errors='replace')}"
                )
        message = decode(answer, expect=Ack).message
        assert isinstance(message, Ack)
        return message

    async def _center_failed(self, failures: FailureLog, exc: BaseException) -> None:
        delay = self.backoff.failed() if failures is self._ingest_log else None
        text = _describe(exc)
        if delay is not None:
            failures.failed(f"{text}; next attempt in {delay:.1f} s")
        else:
            failures.failed(text)
        now = self.clock()
        await self.worker.run(lambda b: b.record_center_error(text, now=now))

    async def _center_ok(self, failures: FailureLog) -> None:
        failures.recovered()
        now = self.clock()
        await self.worker.run(lambda b: b.record_center_ok(now=now))

    # -- recovery of a lost store.db --------------------------------------------------------

    async def _fetch_coverage(self) -> list[tuple[str, int, list[tuple[int, int]]]]:
        """What the Center holds per register of this store: (register_id, max_seq, gaps)."""
        url = f"{self.config.center.url}/v1/reconciliation"
        params = {"store_id": self.config.store.store_id}
        headers = self._headers("GET", "/v1/reconciliation", query=params)
        async with self.session.get(url, params=params, headers=headers) as response:
            answer = await response.read()
            if response.status != 200:
                raise CenterUnavailable(
                    f"GET {url}: HTTP {response.status} {answer[:200].decode(errors='replace')}"
                )
        try:
            rows = json.loads(answer)["registers"]
            return [
                (
                    str(row["register_id"]),
                    int(row["max_seq"]),
                    [(int(first), int(last)) for first, last in row["gaps"]],
                )
                for row in rows
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise CenterUnavailable(f"GET {url}: not a reconciliation answer: {exc!r}") from exc

    async def recover_once(self) -> bool:
        """While store.db is being recovered: ask the Center what it holds (once per recovery),
        then end the recovery once caught up; True when it ended now."""
        if await self.worker.run(lambda b: b.center_check_due()):
            try:
                rows = await self._fetch_coverage()
            except (CenterUnavailable, aiohttp.ClientError, TimeoutError) as exc:
                await self._center_failed(self._recovery_log, exc)
                return False
            self._recovery_log.recovered()
            now = self.clock()
            await self.worker.run(partial(SalesBox.save_center_coverage, registers=rows, now=now))
            log.info(
                "store.db recovery: the Center holds sales of %d registers up to seqs %s",
                len(rows),
                {register_id: max_seq for register_id, max_seq, _ in rows},
            )
        now = self.clock()
        state, ended = await self.worker.run(lambda b: b.settle_recovery(now))
        if ended and state is not None:
            log.warning(
                "store.db recovery finished: every acknowledged sale of the registers that "
                "reported is here or at the Center (it began %s: %s)%s",
                state.since.isoformat(),
                state.reason,
                f"; never reported: {', '.join(state.unreported)} (checked when they do)"
                if state.unreported
                else "",
            )
        return ended

    # -- heartbeat ------------------------------------------------------------------------

    def _build_heartbeat(self, box: SalesBox) -> bytes:
        outbox = box.outbox()
        master = box.master_state()
        now = self.clock()
        recovery = box.recovery(now)
        devices = {} if recovery is None else {"alert:store_db_recovery": recovery.alert()[:500]}
        heartbeat = Heartbeat(
            node_id=self.config.store.node_id,
            role="store",
            store_id=self.config.store.store_id,
            sent_at=now,
            last_seq=0,
            queue_depth=outbox.pending,
            oldest_queued_at=outbox.oldest_pending_at,
            master_version=master.version if master else 0,
            devices={**devices, **_store_devices(box.registers())},
        )
        return encode(heartbeat, sender=self.config.store.node_id, sent_at=now)

    async def heartbeat_once(self) -> bool:
        """Tell the Center this node is alive and how far behind it is; True when it answered."""
        body = await self.worker.run(self._build_heartbeat)
        url = f"{self.config.center.url}/v1/heartbeat"
        try:
            async with self.session.post(
                url, data=io.BytesIO(body), headers=self._headers("POST", "/v1/heartbeat", body)
            ) as response:
                answer = await response.read()
                if response.status != 200:
                    raise CenterUnavailable(
                        f"POST {url}: HTTP {response.status} "
                        f"{answer[:200].decode(errors='replace')}"
                    )
        except (CenterUnavailable, aiohttp.ClientError, TimeoutError) as exc:
            await self._center_failed(self._heartbeat_log, exc)
            return False
        await self._center_ok(self._heartbeat_log)
        return True

    # -- master data ----------------------------------------------------------------------

    async def _fetch_master(self, since: int) -> MasterSnapshot | MasterDelta:
        url = f"{self.config.center.url}/v1/master"
        params = {"store_id": self.config.store.store_id, "since": str(since)}
        headers = self._headers("GET", "/v1/master", query=params)
        async with self.session.get(url, params=params, headers=headers) as response:
            answer = await response.read()
            if response.status != 200:
                raise CenterUnavailable(
                    f"GET {url}: HTTP {response.status} {answer[:200].decode(errors='replace')}"
                )
        message = decode(
            answer, limits=Limits(max_bytes=MASTER_MAX_BYTES), expect=(MasterSnapshot, MasterDelta)
        ).message
        assert isinstance(message, MasterSnapshot | MasterDelta)
        return message

    async def poll_master_once(self) -> int | None:
        """Bring the master cache up to the Center's version (following delta pages, repairing
        a drifted cache with a snapshot); return the new version, None if unchanged or failed."""
        held = await self.worker.run(lambda b: b.master_state())
        start = held.version if held else 0
        since = start
        verify = self._master_verify_due()
        try:
            for _ in range(MAX_MASTER_PAGES):
                message = await self._fetch_master(since)
                try:
                    version, matched = await self.worker.run(
                        partial(_apply_master, message=message, now=self.clock(), verify=verify)
                    )
                except MasterGap as exc:
                    log.warning("master data: %s; asking for a snapshot", exc)
                    since = 0
                    continue
                if not matched:
                    log.warning(
                        "master data: checksum differs at version %d; asking for a snapshot",
                        version,
                    )
                    if isinstance(message, MasterSnapshot):
                        break  # kept anyway: nothing better is to be had
                    since = 0
                    continue
                since = version
                if not _partial(message):
                    break
        except (CenterUnavailable, aiohttp.ClientError, TimeoutError, ProtocolError) as exc:
            await self._center_failed(self._master_log, exc)
            return None
        await self._center_ok(self._master_log)
        if verify:
            self._master_next_verify = time.monotonic() + MASTER_VERIFY_EVERY_S
        if since != start:
            log.info("master data updated from version %d to %d", start, since)
            return since
        return None

    def _master_verify_due(self) -> bool:
        due: float = getattr(self, "_master_next_verify", 0.0)
        return time.monotonic() >= due
