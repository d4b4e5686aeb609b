"""Supplier budgets at the store node: registers ask what a receipt may give of each budgeted
promotion (and hold it at confirm); the node asks the Center for budget leases and gives ended
ones back (store_node/budgets.py; ARCHITECTURE.md "Supplier budget leases").

A lease is asked for (renewed, raised) when a receipt wants more of a promotion than the live
lease has left: awaited, the Center's `reservations.center_timeout_s`, and not again for
`QUIET_AFTER_FAILURE_S` after the Center could not be reached (store_node/leases_center.py).
Offline the node answers from the lease it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from store_node import leases_center
from store_node.bodies import json_body
from store_node.budgets import BudgetGrant
from store_node.errors import InvalidRequest, MalformedRequest
from store_node.keys import CLOCK_KEY, CONFIG_KEY, IDENTITY_KEY, RUN_JOBS_KEY
from store_node.reservations import ReservationBook
from store_node.reservations_api import RESERVATIONS_KEY

__all__ = ["add_routes", "parse_take"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_PROMOTIONS = 50
RETURN_EVERY_S = 5.0
_MAX_INT = 2**53 - 1
_ID_MAX = 128


def parse_take(body: Any) -> tuple[str, dict[str, int], bool]:
    """(hold_id, want, hold) of a POST /v1/budget-holds body; InvalidRequest names the field."""
    if not isinstance(body, dict):
        raise MalformedRequest("body: expected a JSON object")
    for key in sorted(set(body) - {"hold_id", "want", "hold"}):
        raise InvalidRequest(f"body.{key}: unknown field (known: hold, hold_id, want)")
    hold_id = body.get("hold_id")
    if not isinstance(hold_id, str) or not 0 < len(hold_id) <= _ID_MAX:
        raise InvalidRequest(f"body.hold_id: expected 1..{_ID_MAX} characters")
    want = body.get("want")
    if not isinstance(want, dict) or len(want) > MAX_PROMOTIONS:
        raise InvalidRequest(
            f"body.want: expected an object of at most {MAX_PROMOTIONS} promotion ids"
        )
    out: dict[str, int] = {}
    for pid, amount in want.items():
        if not 0 < len(pid) <= _ID_MAX or not pid.isprintable():
            raise InvalidRequest(f"body.want: promotion id {pid[:40]!r} is not 1..128 characters")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= _MAX_INT:
            raise InvalidRequest(f"body.want.{pid}: expected an integer 0..2^53, got {amount!r}")
        out[pid] = amount
    hold = body.get("hold", False)
    if not isinstance(hold, bool):
        raise InvalidRequest("body.hold: expected true or false")
    return hold_id, out, hold


class BudgetClient:
    """This node's side of the budget lease protocol (one per app)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def renew(self, promotion_id: str, want: int, hold_id: str) -> bool:
        """Ask the Center for the promotion's lease, sized to cover `want` more; whether it
        answered (the grant is kept)."""
        book = self.app[RESERVATIONS_KEY]
        now = self.app[CLOCK_KEY]()
        unsent, held = await book.run(
            lambda b: b.budget_need(promotion_id, now=now, exclude=hold_id)
        )
        leases = self.app[leases_center.LEASES_KEY]
        status, answer = await leases.post(
            "/v1/budget-leases",
            {
                "store_id": self.app[CONFIG_KEY].store.store_id,
                "promotion_id": promotion_id,
                "unsent_minor": min(_MAX_INT, unsent),
                "need_minor": min(_MAX_INT, unsent + held + want),
            },
            waits=True,
        )
        if status != 200 or not isinstance(answer, dict):
            if status not in (0, 404, 405):
                log.warning(
                    "POST /v1/budget-leases for %s: HTTP %d %s", promotion_id, status, answer
                )
            return False
        try:
            grant = BudgetGrant(
                str(answer["lease_id"]), int(answer["amount"]), int(answer["ttl_s"])
            )
        except (KeyError, TypeError, ValueError):
            log.warning("POST /v1/budget-leases for %s: unexpected answer %r", promotion_id, answer)
            return False
        await book.run(lambda b: b.save_budget_lease(promotion_id, grant, requested_at=now))
        log.info(
            "budget lease %s on %s: %d for %d s",
            grant.lease_id,
            promotion_id,
            grant.amount,
            grant.ttl_s,
        )
        return True

    async def take(
        self, hold_id: str, register_id: str, want: Mapping[str, int], hold: bool
    ) -> tuple[dict[str, int], bool]:
        """(promotion_id -> what the receipt may give, whether the Center was asked and
        answered); leases raised first where they do not cover the want."""
        book = self.app[RESERVATIONS_KEY]
        now = self.app[CLOCK_KEY]()
        have = await book.run(
            lambda b: b.budget_take(
                want, hold_id=hold_id, register_id=register_id, now=now, hold=False
            )
        )
        online = True
        for pid, amount in sorted(want.items()):
            if amount > have.get(pid, 0):
                online = await self.renew(pid, amount, hold_id) and online
        now = self.app[CLOCK_KEY]()
        took = await book.run(
            lambda b: b.budget_take(
                want, hold_id=hold_id, register_id=register_id, now=now, hold=hold
            )
        )
        return took, online

    async def give_back(self) -> int:
        """Give the budget leases that ended here back to the Center; how many it took."""
        book = self.app[RESERVATIONS_KEY]
        now = self.app[CLOCK_KEY]()
        due = await book.run(lambda b: b.budget_leases_due(now=now))
        if not due:
            return 0
        leases = self.app[leases_center.LEASES_KEY]
        status, _ = await leases.post(
            "/v1/budget-leases/return",
            {
                "store_id": self.app[CONFIG_KEY].store.store_id,
                "leases": [
                    {
                        "lease_id": lease.lease_id,
                        "promotion_id": lease.promotion_id,
                        "unsent_minor": min(_MAX_INT, unsent),
                    }
                    for lease, unsent in due
                ],
            },
        )
        if status != 200:
            return 0
        done = [lease for lease, _ in due]
        await book.run(lambda b: _forget(b, done))
        return len(done)

    async def loop(self) -> None:
        while True:
            try:
                await self.give_back()
            except Exception:
                log.exception("giving budget leases back failed; retried")
            await asyncio.sleep(RETURN_EVERY_S)


def _forget(book: ReservationBook, done: list[Any]) -> None:
    book.budget_leases_returned(done)


BUDGETS_KEY = web.AppKey("budgets", BudgetClient)


async def post_budget_hold(request: web.Request) -> web.StreamResponse:
    """What a register's receipt may give of each budgeted promotion (held at confirm)."""
    app = request.app
    hold_id, want, hold = parse_take(await json_body(request, max_bytes=MAX_BODY_BYTES, empty={}))
    identity = request[IDENTITY_KEY]
    register_id = "" if identity is None else identity.register_id
    took, online = await app[BUDGETS_KEY].take(hold_id, register_id, want, hold)
    if hold and any(took.values()):
        log.info(
            "budget hold %s by register %s: %s",
            hold_id,
            register_id or "-",
            ", ".join(f"{pid}={amount}" for pid, amount in sorted(took.items()) if amount),
        )
    return web.json_response(
        {"hold_id": hold_id, "budgets_left": took, "mode": "online" if online else "offline"}
    )


async def _budgets_ctx(app: web.Application) -> AsyncIterator[None]:
    client = app[BUDGETS_KEY]
    task = asyncio.create_task(client.loop()) if app[RUN_JOBS_KEY] else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def add_routes(app: web.Application) -> None:
    """Register the budget route and the return loop (after the reservation routes)."""
    app[BUDGETS_KEY] = BudgetClient(app)
    app.cleanup_ctx.append(_budgets_ctx)
    app.router.add_post("/v1/budget-holds", post_budget_hold)
