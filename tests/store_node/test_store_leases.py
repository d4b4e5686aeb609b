"""Spending leases at the store node: online it spends within a lease it asks for, offline
within the lease it has, never beyond; a second store is held to its own lease."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from store_node.leases_center import LEASES_KEY
from sync_protocol import LoyaltyMovement, Payment
from tests.store_node.store_fakes import (
    T0,
    Clock,
    RunningNode,
    free_port,
    make_config,
    make_sale,
    running_node,
)
from tests.store_node.test_reservations import CARD, _call, _reserve, _seed_master


class LeaseCenter:
    """A fake Center carving one card's balance into per-store leases of at most `cap`."""

    def __init__(self, balance: int, cap: int, ttl_s: int = 600) -> None:
        self.port = free_port()
        self.balance, self.cap, self.ttl_s = balance, cap, ttl_s
        self.leases: dict[str, int] = {}
        self.asked: list[dict[str, Any]] = []
        self.returns: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None

    async def _grant(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.asked.append(body)
        store = body["store_id"]
        others = sum(v for k, v in self.leases.items() if k != store)
        want = max(body["need_minor"], body["unsent_minor"] + self.cap)
        amount = max(0, min(self.balance - others, want))
        self.leases[store] = amount
        lease_id = f"{store}-{len(self.asked)}"
        return web.json_response({"lease_id": lease_id, "amount": amount, "ttl_s": self.ttl_s})

    async def _return(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.returns.append(body)
        return web.json_response({"store_id": body["store_id"], "returned": []})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/leases", self._grant)
        app.router.add_post("/v1/leases/return", self._return)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def center() -> AsyncIterator[LeaseCenter]:
    fake = LeaseCenter(balance=1024, cap=600)
    await fake.start()
    yield fake
    await fake.stop()


def _config(tmp_path: Path, center: LeaseCenter, store_id: str) -> Any:
    config = make_config(tmp_path / store_id, center_url=f"http://127.0.0.1:{center.port}")
    store = dataclasses.replace(config.store, store_id=store_id, node_id=f"store-{store_id}")
    return dataclasses.replace(config, store=store)


async def _identify(node: RunningNode) -> None:
    """A register identifies the card: the node renews its lease (awaited here)."""
    await node.app[LEASES_KEY].renew(CARD)


async def test_online_the_node_spends_within_the_lease_it_asks_for(
    tmp_path: Path, center: LeaseCenter
) -> None:
    async with running_node(_config(tmp_path, center, "367"), run_jobs=False, clock=Clock()) as a:
        await _seed_master(a, 1024)
        status, held = await _call(a, "POST", "/v1/reservations", _reserve("r1", 700))
        assert status == 201, held
        # It asked for what the receipt needs, and the Center lent it.
        assert center.asked[-1]["need_minor"] == 700 and center.leases["367"] == 700
        center.leases["406"] = 324  # another store holds the rest now
        status, refused = await _call(a, "POST", "/v1/reservations", _reserve("r2", 1))
        assert status == 409 and "spending lease from the Center is 700" in refused["detail"]


async def test_offline_each_store_spends_only_its_own_lease(
    tmp_path: Path, center: LeaseCenter
) -> None:
    clock = Clock()
    config_a, config_b = _config(tmp_path, center, "367"), _config(tmp_path, center, "406")
    async with (
        running_node(config_a, run_jobs=False, clock=clock) as a,
        running_node(config_b, run_jobs=False, clock=clock) as b,
    ):
        for node in (a, b):
            await _seed_master(node, 1024)  # each cache says the card holds 1,024
            await _identify(node)
        assert center.leases == {"367": 600, "406": 424}
        await center.stop()  # the Center goes away
        spent = 0
        for node, receipt in ((a, "a"), (b, "b")):
            status, refused = await _call(node, "POST", "/v1/reservations", _reserve(receipt, 1024))
            assert status == 409 and "spending lease" in refused["detail"], refused
            for step in range(1, 20):
                status, _ = await _call(
                    node, "POST", "/v1/reservations", _reserve(f"{receipt}{step}", 100)
                )
                if status != 201:
                    break
                spent += 100
        assert spent == 600 + 400  # 424 leaves 24 that a 100 does not fit
        # Past the lease's end, nothing more is spent here.
        clock.advance(600)
        status, refused = await _call(a, "POST", "/v1/reservations", _reserve("late", 1))
        assert status == 409 and "is 0" in refused["detail"]


async def test_spends_in_sales_count_against_the_lease_and_ended_leases_go_back(
    tmp_path: Path, center: LeaseCenter
) -> None:
    clock = Clock()
    async with running_node(_config(tmp_path, center, "367"), run_jobs=False, clock=clock) as a:
        await _seed_master(a, 1024)
        await _identify(a)
        spend = make_sale(
            1,
            card_no=CARD,
            payments=(Payment("cash", 950), Payment("bonus", 200)),
            loyalty=(LoyaltyMovement("bonus", "spend", 200),),
        )
        await a.send(spend)  # a sale spent 200 of the lease, not yet at the Center
        await center.stop()
        assert (await _call(a, "POST", "/v1/reservations", _reserve("r1", 401)))[0] == 409
        status, held = await _call(a, "POST", "/v1/reservations", _reserve("r1", 400))
        assert status == 201
        rid = held["reservation_id"]
        other = "00000000-0000-4000-8000-000000000001"
        assert (await _call(a, "POST", f"/v1/reservations/{rid}/commit", {"sale_id": other}))[
            0
        ] == 200
        await center.start()
        clock.advance(600)
        assert await a.app[LEASES_KEY].give_back() == 1
        (back,) = center.returns
        # What the sale and the committed hold spend of it stays with the lease until settled.
        assert back["leases"][0]["unsent_minor"] == 600 and back["store_id"] == "367"
        assert await a.app[LEASES_KEY].give_back() == 0  # forgotten once the Center has it


async def test_an_older_center_grants_no_lease_and_the_old_rule_stays(tmp_path: Path) -> None:
    config = make_config(tmp_path)  # nothing listens there: no lease was ever granted
    async with running_node(config, run_jobs=False, clock=Clock(T0)) as node:
        await _seed_master(node, 1000)
        status, _ = await _call(node, "POST", "/v1/reservations", _reserve("r1", 1000))
        assert status == 201
