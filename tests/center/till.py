"""Receipts rung at real registers against a real Center: a Center app on loopback, store
nodes and registers (each its own app over HTTP), and the steps a cashier takes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from center.config import load_config as load_center_config
from center.storage import Storage
from center.web.app import create_app as create_center
from tests.center.center_factories import CARD, write_config
from tests.pos_agent.pos_fakes import make_config as make_pos_config
from tests.pos_agent.pos_fakes import running_agent
from tests.store_node.store_fakes import free_port, running_node
from tests.store_node.store_fakes import make_config as make_node_config

Register = TestClient[Any, Any]


def line(product_id: str, price: int, units: int = 1) -> dict[str, Any]:
    """A receipt line of `units` whole units at `price` minor units each."""
    return {"product_id": product_id, "qty_milli": units * 1000, "unit_price_minor": price}


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    """Poll `check` every 0.1 s until it is truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def center(tmp_path: Path, storage: Storage, *, verify: bool = True) -> AsyncIterator[str]:
    """The Center's app on a free loopback port (verification on), yielding its URL."""
    (tmp_path / "center").mkdir()
    config = load_center_config(
        write_config(tmp_path / "center", verify=verify, extra="[master]\nchecksum_every_s = 0\n")
    )
    runner = web.AppRunner(create_center(config, storage))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def store(tmp_path: Path, center_url: str, store_id: str) -> AsyncIterator[Register]:
    """Store `store_id`'s node and its register `<store_id>-1`, the register holding master
    data from the Center; yields a client of the register."""
    port = free_port()
    node = make_node_config(tmp_path / f"n{store_id}", center_url=center_url, port=port)
    node = dataclasses.replace(
        node, store=dataclasses.replace(node.store, store_id=store_id, node_id=f"store-{store_id}")
    )
    pos = make_pos_config(tmp_path / f"pos{store_id}", f"http://127.0.0.1:{port}")
    pos = dataclasses.replace(
        pos,
        register=dataclasses.replace(pos.register, register_id=f"{store_id}-1", store_id=store_id),
    )
    clock = lambda: datetime.now(UTC)  # noqa: E731
    async with running_node(node), running_agent(pos, clock=clock) as register:

        async def ready() -> bool:
            return bool((await (await register.get("/health")).json())["master_version"])

        await until(ready, f"master data at register {store_id}-1")
        yield register


async def ring(
    register: Register,
    lines: list[dict[str, Any]],
    *,
    card_no: str | None = CARD,
    method: str = "cash",
    spend: dict[str, int] | None = None,
    coupons: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One receipt: lines, card, coupons, priced with `spend` and the tender, confirmed paid in
    full by `method`; the register's calculation, with the confirm answer under "confirmed"."""
    resp = await register.post("/v1/receipts", json={})
    receipt_id = (await resp.json())["receipt_id"]
    resp = await register.post(f"/v1/receipts/{receipt_id}/lines", json={"lines": lines})
    assert resp.status == 200, await resp.text()
    if card_no is not None:
        resp = await register.post(f"/v1/receipts/{receipt_id}/card", json={"card_no": card_no})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["known"] is True
    for code in coupons:
        resp = await register.post(f"/v1/receipts/{receipt_id}/coupons", json={"code": code})
        assert resp.status == 200, await resp.text()
    extra: dict[str, Any] = {"spend": spend} if spend else {}
    tender = [{"method": method, "amount_minor": 0}]
    resp = await register.post(
        f"/v1/receipts/{receipt_id}/calculate", json={**extra, "payments": tender}
    )
    assert resp.status == 200, await resp.text()
    calc: dict[str, Any] = await resp.json()
    paid = [{"method": method, "amount_minor": calc["to_pay_minor"]}]
    resp = await register.post(
        f"/v1/receipts/{receipt_id}/confirm", json={**extra, "payments": paid}
    )
    assert resp.status == 200, await resp.text()
    calc["confirmed"] = await resp.json()
    return calc


async def uploaded(register: Register) -> None:
    """Wait until the register's outbox is empty (its store node holds every sale)."""

    async def empty() -> bool:
        health = await (await register.get("/health")).json()
        return health["queue_depth"] == 0

    await until(empty, "the register's outbox emptied")


def discounts(calc: dict[str, Any]) -> dict[str, int]:
    """Discount per rule id over every line of a calculation."""
    out: dict[str, int] = {}
    for row in calc["lines"]:
        for d in row["discounts"]:
            out[d["rule_id"]] = out.get(d["rule_id"], 0) + d["amount_minor"]
    return out


def accrued(calc: dict[str, Any]) -> dict[str, int]:
    """Accrual per rule id of a calculation."""
    return {a["rule_id"]: a["amount"] for a in calc["accrual"]}
