"""Asking the Center for spending leases and giving them back (store_node/leases.py).

A lease is asked for (renewed, raised) when a card is identified at a register of this store
(`renew_soon`, in the background) and before every bonus reservation (`renew`, awaited, sized
to what the receipt needs); leases that ended here are given back every `RETURN_EVERY_S` with
what sales not yet at the Center spend of them. An older Center (404 on POST /v1/leases) grants
none, and the node keeps the rule of the release before; an unreachable Center leaves the lease
the node has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from store_node.keys import CLOCK_KEY, CONFIG_KEY, FORWARDER_KEY, RUN_JOBS_KEY
from store_node.leases import LeaseGrant
from store_node.reservations import ReservationBook, ReservationWorker

__all__ = ["LEASES_KEY", "LeaseClient", "add_lifecycle", "renew_soon"]

log = logging.getLogger(__name__)

RETURN_EVERY_S = 5.0
"""How often leases that ended here are given back."""
RENEW_AFTER_S = 30.0
"""A card identified again within this long of its last lease request is not asked for again
(a spend it does not cover still is)."""
QUIET_AFTER_FAILURE_S = 5.0
"""After the Center could not be reached, reservations do not wait on it again for this long:
a register at the till gets the lease the node has at once."""
_MAX_INT = 2**53 - 1


class LeaseClient:
    """This node's side of the lease protocol (one per app)."""

    def __init__(self, app: web.Application, worker: ReservationWorker) -> None:
        self.app = app
        self.worker = worker
        self.tasks: set[asyncio.Task[Any]] = set()
        self._quiet_until = 0.0
        self._asked: dict[str, float] = {}

    async def _post(
        self, path: str, payload: dict[str, Any], *, waits: bool = False
    ) -> tuple[int, Any]:
        """(status, JSON answer); status 0 when the Center cannot be reached. ``waits``: a
        register waits on this call, so it is not made shortly after a failure."""
        if waits and time.monotonic() < self._quiet_until:
            return 0, None
        config = self.app[CONFIG_KEY]
        forwarder = self.app[FORWARDER_KEY]
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if forwarder.credentials is not None:
            headers.update(forwarder.credentials.headers("POST", path, None, body))
        timeout = aiohttp.ClientTimeout(total=config.reservations.center_timeout_s)
        try:
            async with forwarder.session.post(
                config.center.url + path, data=body, headers=headers, timeout=timeout
            ) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
                return response.status, answer
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
            log.info("POST %s: the Center cannot be reached: %r", path, exc)
            self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE_S
            return 0, None

    async def post(
        self, path: str, payload: dict[str, Any], *, waits: bool = False
    ) -> tuple[int, Any]:
        """A signed JSON POST to the Center: (status, answer), status 0 when unreachable;
        ``waits``: a register waits on it (not made shortly after a failure)."""
        return await self._post(path, payload, waits=waits)

    async def renew(
        self, card_no: str, amount: int = 0, receipt: tuple[str, str] | None = None
    ) -> LeaseGrant | None:
        """Ask the Center for the card's lease, sized to cover `amount` more for `receipt`
        (register_id, receipt_id); the grant kept, or None (no answer: the old lease stays)."""
        now = self.app[CLOCK_KEY]()
        unsent, held = await self.worker.run(
            lambda b: b.lease_need(card_no, now=now, exclude=receipt)
        )
        need = unsent + held
        status, answer = await self._post(
            "/v1/leases",
            {
                "store_id": self.app[CONFIG_KEY].store.store_id,
                "card_no": card_no,
                "wallet": "bonus",
                "unsent_minor": min(_MAX_INT, max(0, unsent)),
                "need_minor": min(_MAX_INT, max(0, need + amount)),
            },
            waits=receipt is not None,
        )
        if status in (404, 405):
            # A Center of an older release: not asked again for a while.
            self._quiet_until = time.monotonic() + RENEW_AFTER_S
        if status != 200 or not isinstance(answer, dict):
            if status not in (0, 404, 405):
                log.warning("POST /v1/leases for card %s: HTTP %d %s", card_no, status, answer)
            return None
        try:
            grant = LeaseGrant(str(answer["lease_id"]), int(answer["amount"]), int(answer["ttl_s"]))
        except (KeyError, TypeError, ValueError):
            log.warning("POST /v1/leases for card %s: unexpected answer %r", card_no, answer)
            return None
        await self.worker.run(lambda b: b.save_lease(card_no, grant, requested_at=now))
        log.info(
            "lease %s on card %s: %d for %d s", grant.lease_id, card_no, grant.amount, grant.ttl_s
        )
        return grant

    async def cover(self, card_no: str, amount: int, receipt: tuple[str, str]) -> None:
        """Before a bonus hold: ask for the lease to be raised unless it covers `amount`."""
        now = self.app[CLOCK_KEY]()
        if not await self.worker.run(
            lambda b: b.lease_covers(card_no, amount, now=now, exclude=receipt)
        ):
            await self.renew(card_no, amount, receipt)

    def renew_soon(self, card_no: str) -> None:
        """Renew the card's lease in the background (the register is not kept waiting)."""
        last = self._asked.get(card_no)
        if last is not None and time.monotonic() - last < RENEW_AFTER_S:
            return
        if len(self._asked) > 10_000:
            self._asked.clear()
        self._asked[card_no] = time.monotonic()
        self._spawn(lambda: self.renew(card_no))

    def _spawn(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        task = asyncio.create_task(make())
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("lease renewal failed: %r", task.exception())

    async def give_back(self) -> int:
        """Give the leases that ended here back to the Center; how many it took."""
        now = self.app[CLOCK_KEY]()
        due = await self.worker.run(lambda b: b.leases_due(now=now))
        if not due:
            return 0
        status, _ = await self._post(
            "/v1/leases/return",
            {
                "store_id": self.app[CONFIG_KEY].store.store_id,
                "leases": [
                    {
                        "lease_id": lease.lease_id,
                        "card_no": lease.card_no,
                        "wallet": lease.wallet,
                        "unsent_minor": min(_MAX_INT, max(0, unsent)),
                    }
                    for lease, unsent in due
                ],
            },
        )
        if status != 200:
            return 0
        # Every lease sent is the Center's again: taken back, or renewed or returned before.
        done = [lease for lease, _ in due]
        await self.worker.run(lambda b: _forget(b, done))
        return len(done)

    async def loop(self) -> None:
        while True:
            try:
                await self.give_back()
            except Exception:
                log.exception("giving spending leases back failed; retried")
            await asyncio.sleep(RETURN_EVERY_S)


def _forget(book: ReservationBook, done: list[Any]) -> None:
    book.leases_returned(done)


LEASES_KEY = web.AppKey("leases", LeaseClient)


def renew_soon(app: web.Application, card_no: str) -> None:
    """A card was identified here: renew its lease in the background (if leases are set up)."""
    client = app.get(LEASES_KEY)
    if client is not None:
        client.renew_soon(card_no)


def add_lifecycle(app: web.Application, worker: ReservationWorker) -> None:
    """Set up the lease client and its return loop (after the reservation book opens)."""
    app[LEASES_KEY] = LeaseClient(app, worker)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client = app[LEASES_KEY]
        task = asyncio.create_task(client.loop()) if app[RUN_JOBS_KEY] else None
        yield
        for pending in [*client.tasks, *([task] if task else [])]:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending

    app.cleanup_ctx.append(ctx)
