"""The background uploader: outbox -> store node, heartbeats, master data -> replica.

One thread with its own SQLite connections and its own requests.Session. A queued sale is
deleted only after the store node's ack says it is durably committed (accepted or
duplicate); a rejected sale is flagged, kept and reported, never resent.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import requests

from loyalty_engine import RuleError, load_promotion_set
from pos_agent.config import Config
from pos_agent.credentials import Credentials, load_credentials
from pos_agent.discovery import StoreDiscovery
from pos_agent.errors import PosError, ReplicaError, StoreNodeUnreachable, UploadError
from pos_agent.journal import Journal, OutboxRow
from pos_agent.register import Clock, utc_now
from pos_agent.replica import Replica
from sync_protocol import (
    CONTENT_TYPE,
    Ack,
    Backoff,
    FailureLog,
    Heartbeat,
    MasterDelta,
    MasterSnapshot,
    ProtocolError,
    decode,
    decode_sale,
    encode,
    encode_sale_batch,
)

__all__ = ["Uploader", "UploaderStatus", "Uploads"]

log = logging.getLogger(__name__)

_DISCOVERY_WAIT_S = 3.0


@dataclass(frozen=True, slots=True)
class UploaderStatus:
    """What /health shows about the link to the store node."""

    store_url: str | None = None
    last_upload_at: datetime | None = None
    last_error: str | None = None
    last_master_at: datetime | None = None


class Uploads(Protocol):
    """What the app needs from an uploader (the real one below, or a test double)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wake(self) -> None: ...

    def status(self) -> UploaderStatus: ...


def lan_session(verify: str | bool = True) -> requests.Session:
    """An HTTP session for the shop LAN: proxy settings from the environment do not apply;
    an https store node's certificate is checked against `verify` (a CA file, or True for the
    system CAs: `StoreNodeConfig.verify`)."""
    session = requests.Session()
    # A proxy configured for the internet must never sit between a register and its store.
    session.trust_env = False
    session.verify = verify
    return session


class Uploader:
    """Sends queued sales to the store node until stopped; start()/stop() own its thread."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = utc_now,
        session_factory: Callable[[], requests.Session] | None = None,
        discovery_factory: Callable[[str], StoreDiscovery] | None = None,
        rng: random.Random | None = None,
        devices: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        # Printer/display states for Heartbeat.devices (pos_agent.devices.DeviceHub.heartbeat).
        self.devices = devices
        verify = config.store_node.verify
        self._session_factory = session_factory or functools.partial(lan_session, verify)
        self._discovery_factory = discovery_factory or functools.partial(
            StoreDiscovery, verify=verify
        )
        node, register = config.store_node, config.register
        self._backoff = Backoff(base_s=node.upload_interval_s, cap_s=node.backoff_max_s, rng=rng)
        self._failures = FailureLog(
            log,
            "syncing with the store node",
            ids={"store": register.store_id, "register": register.register_id},
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._status = UploaderStatus(store_url=config.store_node.url or None)
        self._batch_limit = config.store_node.batch_size

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run,
            name=f"pos-uploader-{self.config.register.register_id}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to finish and wait for it (at most one HTTP timeout)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.config.store_node.timeout_s + _DISCOVERY_WAIT_S + 2)
            if thread.is_alive():
                log.warning("uploader thread did not stop in time; it is a daemon, leaving it")

    def wake(self) -> None:
        """Upload now instead of at the next interval (unless backing off after failures)."""
        self._wake.set()

    def status(self) -> UploaderStatus:
        with self._lock:
            return self._status

    def _set_status(self, **changes: Any) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        register = self.config.register
        try:
            journal = Journal(
                register.journal_path, register_id=register.register_id, store_id=register.store_id
            )
        except Exception as exc:
            log.exception("uploader cannot open the journal; sales stay queued")
            self._set_status(last_error=f"cannot open the journal: {exc}")
            return
        replica = Replica(register.replica_path)
        session = self._session_factory()
        discovery = (
            None if self.config.store_node.url else self._discovery_factory(register.store_id)
        )
        link = _Link(self, journal, replica, session, discovery)
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    more = link.cycle()
                except (UploadError, ReplicaError) as exc:
                    self._fail(str(exc), journal)
                    self._sleep(self._backoff.failed(), interruptible=False)
                    continue
                except Exception as exc:  # a bug must not kill the thread that saves sales
                    log.exception("uploader cycle failed unexpectedly")
                    self._fail(f"internal error: {exc!r}", journal)
                    self._sleep(self._backoff.failed(), interruptible=False)
                    continue
                if self._backoff.failures:
                    self._backoff.succeeded()
                    self._recover(journal)
                self._sleep(0 if more else self.config.store_node.upload_interval_s)
        finally:
            session.close()
            if discovery is not None:
                discovery.close()
            replica.close()
            journal.close()

    def _sleep(self, seconds: float, *, interruptible: bool = True) -> None:
        if seconds <= 0:
            return
        if interruptible:
            self._wake.wait(seconds)
            return
        # While backing off, a confirmed sale must not trigger a retry storm: only stop() ends
        # the wait early.
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()

    def _fail(self, message: str, journal: Journal) -> None:
        self._set_status(last_error=message)
        depth = journal.stats().queue_depth
        self._failures.failed(f"{message} ({depth} sales queued, selling goes on)")

    def _recover(self, journal: Journal) -> None:
        self._set_status(last_error=None)
        depth = journal.stats().queue_depth
        self._failures.recovered(f"store node {self.status().store_url}, {depth} sales queued")


class _Link:
    """The uploader thread's view of one store node: calls and their bookkeeping."""

    def __init__(
        self,
        owner: Uploader,
        journal: Journal,
        replica: Replica,
        session: requests.Session,
        discovery: StoreDiscovery | None,
    ) -> None:
        self.owner = owner
        self.config = owner.config
        self.journal = journal
        self.replica = replica
        self.session = session
        self.discovery = discovery
        self.url: str | None = self.config.store_node.url or None
        self.store_db_id: str | None = None  # the store node's database last reported to
        self.next_poll = 0.0  # monotonic; 0 = poll master data and heartbeat at once
        self.credentials: Credentials | None = load_credentials(self.config.register.data_dir)
        if self.credentials is None:
            log.warning(
                "not enrolled: requests to the store node are unsigned and a store node with "
                "security.require_signatures refuses them; run `loyalty-pos enrol`"
            )

    def cycle(self) -> bool:
        """One round; True when a full batch went through and more may be waiting."""
        url = self.resolve()
        problems: list[str] = []
        more = False
        try:
            # Commits first: a committed hold is counted once its sale is at the store node.
            # A refused one is reported but never holds back the sales behind it.
            try:
                self.send_reservation_ops(url)
            except StoreNodeUnreachable:
                raise
            except UploadError as exc:
                problems.append(str(exc))
            more = self.upload(url)
        except StoreNodeUnreachable:
            if self.discovery is not None:
                self.url = None  # the node may have moved: browse again next time
            raise
        except UploadError as exc:
            # The node answered, so it still gets our heartbeat: its admin sees the queue grow.
            problems.append(str(exc))
        if time.monotonic() >= self.next_poll:
            for step in (self.heartbeat, self.report_journal, self.poll_master):
                try:
                    step(url)
                except StoreNodeUnreachable as exc:
                    # Even with nothing queued, a dead node must be looked up again: it may
                    # have come back elsewhere (zeroconf), and the next sale must find it.
                    if self.discovery is not None:
                        self.url = None
                    problems.append(str(exc))
                except (UploadError, ReplicaError) as exc:
                    problems.append(str(exc))
            self.next_poll = time.monotonic() + self.config.store_node.master_poll_s
        if problems:
            raise UploadError("; ".join(problems))
        return more

    def resolve(self) -> str:
        # A discovered address is checked again every few seconds (pos_agent.discovery).
        if self.url is not None and (
            self.discovery is None or self.discovery.still_healthy(self.url)
        ):
            return self.url
        assert self.discovery is not None
        url = self.discovery.find(_DISCOVERY_WAIT_S, self.owner._stop)
        if url is None:
            raise UploadError(
                f"no healthy store node advertises store_id={self.config.register.store_id!r} "
                "over zeroconf (_loyalty-store._tcp) and store_node.url is empty "
                "(an https node must have a certificate store_node.ca_file trusts)"
            )
        self.url = url
        self.owner._set_status(store_url=url)
        return url

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if self.credentials is not None:
            signed = self.credentials.headers(
                method, url, kwargs.get("params"), kwargs.get("data", b"")
            )
            kwargs["headers"] = {**kwargs.get("headers", {}), **signed}
        try:
            return self.session.request(
                method, url, timeout=self.config.store_node.timeout_s, **kwargs
            )
        except requests.RequestException as exc:
            raise StoreNodeUnreachable(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc

    def send_reservation_ops(self, url: str) -> None:
        """Tell the store node about holds committed by a sale or released (queued in order)."""
        for op in self.journal.reservation_ops():
            target = f"{url}/v1/reservations/{op.reservation_id}"
            if op.op == "commit":
                # The codes the sale redeemed: any other code of the hold goes back (an
                # older store node ignores the key and waits for the sale instead).
                codes = self.journal.coupons_of_sale(op.sale_id) if op.sale_id else ()
                body = json.dumps({"sale_id": op.sale_id, "coupon_codes": list(codes)}).encode()
                what = f"POST {target}/commit"
                response = self._request(
                    "POST",
                    f"{target}/commit",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
            else:
                what = f"DELETE {target}"
                response = self._request("DELETE", target)
            if response.status_code in (404, 409):
                # Unknown, expired into a release, or already settled the other way: the sale
                # (if any) still reaches the node and is counted there; nothing to retry.
                log.warning("%s: HTTP %d %s", what, response.status_code, response.text[:200])
            elif response.status_code != 200:
                raise UploadError(
                    f"{what} answered HTTP {response.status_code}: {response.text[:200]!r}"
                )
            self.journal.reservation_op_done(op.reservation_id)

    @staticmethod
    def _check(response: requests.Response, what: str) -> None:
        if response.status_code != 200:
            raise UploadError(
                f"{what} answered HTTP {response.status_code}: {response.text[:200]!r}"
            )

    def _decode_rows(self) -> tuple[list[OutboxRow], int]:
        """The pending rows whose stored bytes decode (sent as they are), and the batch limit."""
        limit = self.owner._batch_limit
        sales: list[OutboxRow] = []
        for row in self.journal.outbox_batch(limit):
            try:
                decode_sale(row.payload)
                sales.append(row)
            except ProtocolError as exc:
                # Cannot happen unless the file was damaged; flag it so the queue moves on.
                reason = f"stored payload does not decode: {exc}"
                log.error("sale %s seq %d: %s", row.sale_id, row.seq, reason)
                self.journal.settle((), [(row.sale_id, reason)], master_version=0)
        return sales, limit

    def upload(self, url: str) -> bool:
        sales, limit = self._decode_rows()
        if not sales:
            return False
        register = self.config.register
        body = encode_sale_batch(
            [row.payload for row in sales], sender=register.register_id, sent_at=self.owner.clock()
        )
        what = f"POST {url}/v1/sales"
        response = self._request(
            "POST", f"{url}/v1/sales", data=body, headers={"Content-Type": CONTENT_TYPE}
        )
        if response.status_code == 413 and limit > 1:
            self.owner._batch_limit = max(1, limit // 2)
            raise UploadError(f"{what}: batch of {len(sales)} too large; halving it")
        self._check(response, what)
        try:
            ack = decode(response.content, expect=Ack).message
        except ProtocolError as exc:
            raise UploadError(f"{what}: the answer is not an ack: {exc}") from exc
        assert isinstance(ack, Ack)
        sent = {sale.sale_id for sale in sales}
        delivered = [i for i in (*ack.accepted, *ack.duplicates) if i in sent]
        rejected = [(r.sale_id, r.reason) for r in ack.rejected if r.sale_id in sent]
        dropped, flagged = self.journal.settle(
            delivered, rejected, master_version=self.replica.master_version()
        )
        for sale_id, reason in rejected:
            log.error("store node rejected sale %s (kept, not resent): %s", sale_id, reason)
        if not dropped and not flagged:
            raise UploadError(f"{what}: the ack covers none of the {len(sales)} sales sent")
        self.owner._set_status(last_upload_at=self.owner.clock(), store_url=url)
        if self.owner._batch_limit < self.config.store_node.batch_size:
            self.owner._batch_limit = min(self.config.store_node.batch_size, limit * 2)
        log.debug("uploaded %d sales to %s (%d flagged rejected)", dropped, url, flagged)
        return len(sales) == limit and dropped + flagged == len(sales)

    def heartbeat(self, url: str) -> None:
        stats = self.journal.stats()
        register = self.config.register
        beat = Heartbeat(
            node_id=register.register_id,
            role="register",
            store_id=register.store_id,
            sent_at=self.owner.clock(),
            last_seq=stats.last_seq,
            queue_depth=stats.queue_depth,
            oldest_queued_at=stats.oldest_queued_at,
            master_version=self.replica.master_version(),
            devices=self.owner.devices() if self.owner.devices is not None else {},
        )
        response = self._request(
            "POST",
            f"{url}/v1/heartbeat",
            data=encode(beat, sender=register.register_id),
            headers={"Content-Type": CONTENT_TYPE},
        )
        self._check(response, f"POST {url}/v1/heartbeat")

    def report_journal(self, url: str) -> int:
        """Tell the store node how far our sales were acknowledged; re-send from the journal
        what it says it lost (ARCHITECTURE.md "A lost store database"); how many were sent."""
        register = self.config.register
        body = json.dumps(
            {
                "register_id": register.register_id,
                "last_seq": self.journal.stats().last_seq,
                "acked_seq": self.journal.acked_seq(),
            }
        ).encode()
        what = f"POST {url}/v1/recovery"
        response = self._request(
            "POST", f"{url}/v1/recovery", data=body, headers={"Content-Type": "application/json"}
        )
        if response.status_code == 404:
            log.debug("%s: HTTP 404 (a store node without recovery); not reported", what)
            return 0
        self._check(response, what)
        try:
            answer = response.json()
            db_id = str(answer["db_id"])
            ranges = [(int(first), int(last)) for first, last in answer["resend"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise UploadError(f"{what}: not a recovery answer: {exc!r}") from exc
        if self.store_db_id not in (None, db_id):
            log.warning(
                "the store node's database changed (%s -> %s); it will ask for what it lost",
                self.store_db_id,
                db_id,
            )
        self.store_db_id = db_id
        sent = 0
        while ranges:
            rows = self.journal.sales_in(ranges, self.owner._batch_limit)
            if not rows:
                break
            sent += self._resend(url, rows)
            after = rows[-1].seq
            ranges = [(max(first, after + 1), last) for first, last in ranges if last > after]
        if sent:
            log.warning("re-sent %d acknowledged sales the store node lost (%s)", sent, what)
        return sent

    def _resend(self, url: str, rows: list[OutboxRow]) -> int:
        """Send kept sales again (the outbox is untouched: they were acknowledged before)."""
        register = self.config.register
        body = encode_sale_batch(
            [row.payload for row in rows], sender=register.register_id, sent_at=self.owner.clock()
        )
        what = f"POST {url}/v1/sales (re-send)"
        response = self._request(
            "POST", f"{url}/v1/sales", data=body, headers={"Content-Type": CONTENT_TYPE}
        )
        self._check(response, what)
        try:
            ack = decode(response.content, expect=Ack).message
        except ProtocolError as exc:
            raise UploadError(f"{what}: the answer is not an ack: {exc}") from exc
        assert isinstance(ack, Ack)
        for rejection in ack.rejected:
            log.error(
                "store node rejected re-sent sale %s: %s", rejection.sale_id, rejection.reason
            )
        return len(ack.accepted) + len(ack.duplicates)

    def poll_master(self, url: str, *, repair: bool = False) -> None:
        """Apply what the store node has newer, check the checksum; resync fully on mismatch."""
        current = self.replica.master_version()
        since = 0 if repair else current
        what = f"GET {url}/v1/master?since={since}"
        response = self._request(
            "GET",
            f"{url}/v1/master",
            params={"since": str(since), "store_id": self.config.register.store_id},
        )
        if response.status_code == 503:
            # The store node has no master data from the Center yet; nothing to apply.
            log.debug("%s: HTTP 503, keeping master data v%d", what, current)
            return
        if response.status_code == 304:
            self.replica.mark_synced(self.owner.clock())
            return
        self._check(response, what)
        try:
            message = decode(response.content, expect=(MasterSnapshot, MasterDelta)).message
        except ProtocolError as exc:
            raise UploadError(f"{what}: the answer is not master data: {exc}") from exc
        assert isinstance(message, MasterSnapshot | MasterDelta)
        if (
            isinstance(message, MasterDelta)
            and not repair
            and message.from_version != current
            and message.to_version > current
        ):
            # The node cannot serve a delta from our version: take everything again.
            log.warning(
                "%s: delta %d->%d does not apply to v%d; resyncing in full (since=0)",
                what,
                message.from_version,
                message.to_version,
                current,
            )
            self.poll_master(url, repair=True)
            return
        try:
            applied = self._apply(message, current, repair=repair)
        except PosError as exc:
            raise ReplicaError(
                f"{what}: master data not applied, keeping v{current}: {exc}"
            ) from exc
        version = self.replica.master_version()
        if applied:
            self.journal.forget_local_spend(version)
            self.owner._set_status(last_master_at=self.owner.clock())
            log.info("master data v%d applied: %s", version, self.replica.counts())
        said = (
            message.version if isinstance(message, MasterSnapshot) else message.to_version,
            message.checksum,
        )
        if said[1] and said[0] == version:
            mine = self.replica.checksum()
            if mine != said[1]:
                if repair:
                    raise ReplicaError(
                        f"{what}: checksum {mine[:12]} still differs from the store node's "
                        f"{said[1][:12]} after a full resync at v{version}"
                    )
                log.warning(
                    "replica checksum %s differs from the store node's %s at v%d: "
                    "resyncing in full (since=0)",
                    mine[:12],
                    said[1][:12],
                    version,
                )
                self.poll_master(url, repair=True)
                return
        # Only a verified (or unverifiable) replica counts as synced for offline spending.
        self.replica.mark_synced(self.owner.clock())

    def _apply(self, message: Any, current: int, *, repair: bool = False) -> bool:
        if isinstance(message, MasterSnapshot):
            if repair:
                self._check_promotions(message.version, message.tables)
                return self.replica.apply_snapshot(message, repair=True)
            if message.version <= current or not message.tables:
                return False
            self._check_promotions(message.version, message.tables)
            return self.replica.apply_snapshot(message)
        assert isinstance(message, MasterDelta)
        if message.to_version <= current:
            return False
        self._check_promotions(message.to_version, message.upserts)
        return self.replica.apply_delta(message)

    def _check_promotions(self, version: int, tables: dict[str, Any]) -> None:
        # Promotions the engine would refuse must never reach the replica: the register
        # would then price without them.
        if "promotions" not in tables and "settings" not in tables:
            return
        docs = [row.get("doc") for row in tables.get("promotions", ())]
        settings = (
            {str(row.get("name")): str(row.get("value")) for row in tables["settings"]}
            if "settings" in tables
            else self.replica.promotion_source()[2]
        )
        if "promotions" not in tables:
            docs = self.replica.promotion_source()[1]
        try:
            load_promotion_set(docs, version=version, settings=settings)
        except (RuleError, TypeError, AttributeError) as exc:
            raise ReplicaError(f"promotions: {exc}") from exc
