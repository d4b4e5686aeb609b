"""Supplier budgets at the register: a funded promotion gives what the store node's lease lets
the receipt give (held for the sale at confirm); cut off from its node, the register gives
nothing of any budget (ARCHITECTURE.md "Supplier budget leases")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.pos_agent.pos_fakes import (
    BREAD,
    IdleUploader,
    demo_snapshot,
    free_port,
    make_config,
    running_agent,
    seed_replica,
)

ACME = {
    "promotion_id": "acme",
    "title": "Acme bread -10 %",
    "kind": "goods_discount",
    "status": "active",
    "priority": 90,
    "requires_card": False,
    "goods": {"products": ["bread"]},
    "percent": "10",
    "funding": {"by": "supplier:acme", "budget_minor": 1000},
}


class BudgetNode:
    """A fake store node that lets every receipt give at most `left` of each promotion."""

    def __init__(self, left: int) -> None:
        self.left = left
        self.asked: list[dict[str, Any]] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.asked.append(body)
        took = {pid: min(want, self.left) for pid, want in body["want"].items()}
        return web.json_response(
            {"hold_id": body["hold_id"], "budgets_left": took, "mode": "online"}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/budget-holds", self._take)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def node() -> AsyncIterator[BudgetNode]:
    fake = BudgetNode(left=10)
    await fake.start()
    yield fake
    await fake.stop()


async def _price_and_confirm(client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    receipt_id = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
    resp = await client.post(f"/v1/receipts/{receipt_id}/lines", json={"lines": [BREAD]})
    assert resp.status == 200, await resp.text()
    resp = await client.post(f"/v1/receipts/{receipt_id}/calculate", json={})
    assert resp.status == 200, await resp.text()
    calc = await resp.json()
    resp = await client.post(
        f"/v1/receipts/{receipt_id}/confirm",
        json={"payments": [{"method": "cash", "amount_minor": calc["total_minor"]}]},
    )
    assert resp.status == 200, await resp.text()
    return calc, await resp.json()


async def test_the_node_caps_what_a_funded_promotion_gives_and_holds_it_at_confirm(
    tmp_path: Path, node: BudgetNode
) -> None:
    config = make_config(tmp_path / "pos", f"http://127.0.0.1:{node.port}")
    seed_replica(config, demo_snapshot(promotions=[ACME]))
    async with running_agent(config, uploader=IdleUploader()) as client:
        calc, sale = await _price_and_confirm(client)
    # The rule would give 0.25 of the 2.50 bread; the node lets it give 0.10.
    assert calc["total_minor"] == 240 and sale["total_minor"] == 240
    preview, confirm = node.asked
    assert preview["want"] == {"acme": 25} and preview["hold"] is False
    assert confirm["want"] == {"acme": 25} and confirm["hold"] is True
    assert confirm["hold_id"] == sale["sale_id"]  # held for this sale until it reaches the node


async def test_a_register_cut_off_from_its_node_gives_nothing_of_a_budget(tmp_path: Path) -> None:
    config = make_config(tmp_path / "pos", f"http://127.0.0.1:{free_port()}")  # nobody there
    seed_replica(config, demo_snapshot(promotions=[ACME]))
    async with running_agent(config, uploader=IdleUploader()) as client:
        calc, sale = await _price_and_confirm(client)
    assert calc["total_minor"] == 250 and sale["total_minor"] == 250
    assert (
        "acme: skipped: no budget state given for the budget of supplier:acme"
        in (calc["explanation"])
    )


async def test_a_confirm_that_fails_gives_its_budget_hold_back(
    tmp_path: Path, node: BudgetNode
) -> None:
    config = make_config(tmp_path / "pos", f"http://127.0.0.1:{node.port}")
    seed_replica(config, demo_snapshot(promotions=[ACME]))
    async with running_agent(config, uploader=IdleUploader()) as client:
        receipt_id = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(f"/v1/receipts/{receipt_id}/lines", json={"lines": [BREAD]})
        resp = await client.post(
            f"/v1/receipts/{receipt_id}/confirm",
            json={"payments": [{"method": "cash", "amount_minor": 1}]},  # short of the total
        )
        assert resp.status == 422, await resp.text()
    held, released = node.asked
    assert held["hold"] is True and held["want"] == {"acme": 25}
    assert released == {"hold_id": held["hold_id"], "want": {}, "hold": True}
