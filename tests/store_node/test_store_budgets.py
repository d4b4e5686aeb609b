"""Supplier budget leases at the store node: a receipt is let give what the lease has left (the
node asks the Center first when it does not cover the want), confirms hold it until their sale
arrives, offline only the lease counts, ended leases go back with what unsent sales gave."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from store_node.budgets_api import BUDGETS_KEY, parse_take
from store_node.errors import InvalidRequest
from sync_protocol import LineDiscount, Payment
from tests.store_node.store_fakes import Clock, free_port, make_config, make_sale, running_node
from tests.store_node.test_reservations import _call


class BudgetCenter:
    """A fake Center carving one promotion's budget into per-store leases."""

    def __init__(self, budget: int, share: int, ttl_s: int = 600) -> None:
        self.port = free_port()
        self.budget, self.share, self.ttl_s = budget, share, ttl_s
        self.leases: dict[str, int] = {}
        self.asked: list[dict[str, Any]] = []
        self.returns: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None

    async def _grant(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.asked.append(body)
        store = body["store_id"]
        others = sum(v for k, v in self.leases.items() if k != store)
        want = max(body["need_minor"], body["unsent_minor"] + self.share)
        amount = max(0, min(self.budget - others, want))
        self.leases[store] = amount
        return web.json_response(
            {"lease_id": f"{store}-{len(self.asked)}", "amount": amount, "ttl_s": self.ttl_s}
        )

    async def _return(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.returns.append(body)
        return web.json_response({"store_id": body["store_id"], "returned": []})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/budget-leases", self._grant)
        app.router.add_post("/v1/budget-leases/return", self._return)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def center() -> AsyncIterator[BudgetCenter]:
    fake = BudgetCenter(budget=300, share=100)
    await fake.start()
    yield fake
    await fake.stop()


def _config(tmp_path: Path, center: BudgetCenter) -> Any:
    return make_config(tmp_path, center_url=f"http://127.0.0.1:{center.port}")


S1 = "00000000-0000-4000-8000-000000000001"


def _take(hold_id: str, want: int, *, hold: bool = True) -> dict[str, Any]:
    return {"hold_id": hold_id, "want": {"acme": want}, "hold": hold}


def _acme_sale(seq: int, sale_id: str, gave: int) -> Any:
    sale = make_sale(seq, sale_id=sale_id)
    line = dataclasses.replace(sale.lines[0], discounts=(LineDiscount("acme", gave),))
    lines = (line, *sale.lines[1:])
    total = sale.subtotal_minor - gave
    return dataclasses.replace(
        sale,
        lines=lines,
        discount_minor=gave,
        total_minor=total,
        payments=(Payment("cash", total),),
    )


async def test_holds_share_the_lease_and_a_sale_takes_its_hold_over(
    tmp_path: Path, center: BudgetCenter
) -> None:
    clock = Clock()
    async with running_node(_config(tmp_path, center), run_jobs=False, clock=clock) as node:
        status, first = await _call(node, "POST", "/v1/budget-holds", _take(S1, 80))
        assert status == 200, first
        assert first["budgets_left"] == {"acme": 80} and first["mode"] == "online"
        # Asked for what the receipt wants or the store's share, whichever is more.
        assert center.asked[-1]["need_minor"] == 80 and center.leases["367"] == 100
        # A second register's confirm gets what the first one's hold leaves, after the node
        # asked the Center to raise the lease: 300 - nothing elsewhere.
        center.leases["406"] = 150  # another store holds part of the budget meanwhile
        status, second = await _call(node, "POST", "/v1/budget-holds", _take("s2", 200))
        assert second["budgets_left"] == {"acme": 70}  # lease 150 - 80 held by s1
        # The sale of s1 arrives having given 60: its hold stops, its amount counts instead.
        await node.send(_acme_sale(1, S1, 60))
        status, third = await _call(node, "POST", "/v1/budget-holds", _take("s3", 50, hold=False))
        assert third["budgets_left"] == {"acme": 20}  # 150 - 60 given - 70 held by s2

        # Offline, only the lease counts; past its end, nothing.
        await center.stop()
        status, offline = await _call(node, "POST", "/v1/budget-holds", _take("s4", 50))
        assert offline == {"hold_id": "s4", "budgets_left": {"acme": 20}, "mode": "offline"}
        clock.advance(600)
        status, late = await _call(node, "POST", "/v1/budget-holds", _take("s5", 10))
        assert late["budgets_left"] == {"acme": 0}

        # The ended lease goes back with what the unsent sale and the live holds keep of it.
        await center.start()
        assert await node.app[BUDGETS_KEY].give_back() == 1
        (back,) = center.returns
        assert back["leases"][0]["promotion_id"] == "acme"
        assert back["leases"][0]["unsent_minor"] == 60 + 70 + 20
        assert await node.app[BUDGETS_KEY].give_back() == 0


async def test_a_promotion_never_leased_gives_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path)  # nothing listens there
    async with running_node(config, run_jobs=False, clock=Clock()) as node:
        status, answer = await _call(node, "POST", "/v1/budget-holds", _take("s1", 50))
        assert status == 200 and answer["budgets_left"] == {"acme": 0}
        assert answer["mode"] == "offline"


def test_bodies_are_checked_naming_the_field() -> None:
    assert parse_take({"hold_id": "s", "want": {"a": 1}}) == ("s", {"a": 1}, False)
    for body, field in (
        ({"want": {}}, "body.hold_id"),
        ({"hold_id": "s", "want": []}, "body.want"),
        ({"hold_id": "s", "want": {"a": -1}}, "body.want.a"),
        ({"hold_id": "s", "want": {"a": True}}, "body.want.a"),
        ({"hold_id": "s", "want": {}, "hold": 1}, "body.hold"),
        ({"hold_id": "s", "want": {}, "x": 1}, "body.x"),
    ):
        with pytest.raises(InvalidRequest, match=field.replace(".", r"\.")):
            parse_take(body)
