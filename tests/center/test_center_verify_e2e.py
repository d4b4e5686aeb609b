"""Verification through the real tiers: receipts rung at a register's HTTP API travel through
its store node to a Center that verifies every sale (both backends). The honest ones book as
claimed with no case; a forged batch sent to the store node as the same register (a 2.99 sale
claiming 1,000,000 points) is acknowledged at every hop, yet the Center books its own accrual
and the claim waits in the review queue."""

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

from center.config import load_config as load_center_config
from center.storage import Storage
from center.web.app import create_app as create_center
from sync_protocol import CONTENT_TYPE, LoyaltyMovement, SaleBatch, decode_sale, encode
from tests.center.center_factories import CARD, master_tables, write_config
from tests.pos_agent.pos_fakes import make_config as make_pos_config
from tests.pos_agent.pos_fakes import running_agent
from tests.store_node.store_fakes import free_port, running_node
from tests.store_node.store_fakes import make_config as make_node_config

PROMOTIONS: list[dict[str, Any]] = [
    {
        "promotion_id": "welcome",
        "kind": "counter_reward",
        "status": "active",
        "counter": "purchases",
        "at": 1,
        "points": 10_000,
    },
    {
        "promotion_id": "base",
        "kind": "accrual_percent",
        "status": "active",
        "requires_card": True,
        "percent": "3",
    },
]


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def center_at(tmp_path: Path, storage: Storage) -> AsyncIterator[str]:
    (tmp_path / "center").mkdir()
    config = load_center_config(
        write_config(tmp_path / "center", verify=True, extra="[master]\nchecksum_every_s = 0\n")
    )
    assert config.verify.enabled
    runner = web.AppRunner(create_center(config, storage))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def ring(pos: Any, price: int) -> dict[str, Any]:
    resp = await pos.post("/v1/receipts", json={})
    receipt_id = (await resp.json())["receipt_id"]
    line = {"product_id": "1000", "qty_milli": 1000, "unit_price_minor": price}
    resp = await pos.post(f"/v1/receipts/{receipt_id}/lines", json={"lines": [line]})
    assert resp.status == 200, await resp.text()
    resp = await pos.post(f"/v1/receipts/{receipt_id}/card", json={"card_no": CARD})
    assert resp.status == 200, await resp.text()
    resp = await pos.post(f"/v1/receipts/{receipt_id}/calculate", json={})
    assert resp.status == 200, await resp.text()
    calc: dict[str, Any] = await resp.json()
    paid = [{"method": "card", "amount_minor": calc["total_minor"]}]
    resp = await pos.post(f"/v1/receipts/{receipt_id}/confirm", json={"payments": paid})
    assert resp.status == 200, await resp.text()
    return calc


def sales_at_center(storage: Storage) -> list[bytes]:
    rows = storage.db.execute(
        "SELECT payload FROM sales WHERE card_no = ? ORDER BY register_id, seq", (CARD,)
    ).fetchall()
    return [bytes(r[0]) for r in rows]


def bonus(storage: Storage) -> int:
    balance = storage.ledger.balance(CARD, datetime.now(UTC))
    assert balance is not None
    return balance.wallets.get("bonus", 0)


async def test_honest_sales_verify_clean_and_a_forged_one_is_cut_through_the_tiers(
    tmp_path: Path, storage: Storage
) -> None:
    tables = master_tables()
    tables["promotions"] = [{"promotion_id": d["promotion_id"], "doc": d} for d in PROMOTIONS]
    storage.feed.upsert_master(tables)
    node_port = free_port()
    clock = lambda: datetime.now(UTC)  # noqa: E731
    async with center_at(tmp_path, storage) as center:
        node_config = make_node_config(tmp_path / "n367", center_url=center, port=node_port)
        pos_config = make_pos_config(tmp_path / "pos", f"http://127.0.0.1:{node_port}")
        async with running_node(node_config) as node, running_agent(pos_config, clock=clock) as pos:

            async def ready() -> bool:
                return bool((await (await pos.get("/health")).json())["master_version"])

            await until(ready, "master data at register 367-1")
            first = await ring(pos, 1_000)
            second = await ring(pos, 2_000)

            async def both() -> bool:
                return len(sales_at_center(storage)) == 2

            await until(both, "the two honest sales at the Center")
            assert [a["rule_id"] for a in first["accrual"]].count("welcome") == 1
            assert "welcome" not in [a["rule_id"] for a in second["accrual"]]
            honest = bonus(storage)
            assert honest == 10_000 + 30 + 60
            assert storage.reviews.list_cases() == []
            # The second sale named the state it was priced with: the register's first sale.
            stored = decode_sale(sales_at_center(storage)[1])
            assert [(s.register_id, s.seq) for s in stored.state_seen] == [("367-1", 1)]

            # A forged batch in the register's name: its next seq, a 2.99 sale, 1,000,000 points.
            forged = dataclasses.replace(
                stored,
                sale_id="5d0c6a52-8f8e-4c3b-9f41-6f2a1b7c0d13",
                seq=3,
                lines=(
                    dataclasses.replace(stored.lines[0], unit_price_minor=299, amount_minor=299),
                ),
                payments=(dataclasses.replace(stored.payments[0], amount_minor=299),),
                subtotal_minor=299,
                discount_minor=0,
                total_minor=299,
                loyalty=(LoyaltyMovement("bonus", "accrue", 1_000_000, "base"),),
                state_seen=(),
                promotions=(),
            )
            body = encode(SaleBatch(sales=(forged,)), sender="367-1")
            async with node.session.post(
                f"{node.url}/v1/sales", data=body, headers={"Content-Type": CONTENT_TYPE}
            ) as resp:
                assert resp.status == 200, await resp.text()

            async def three() -> bool:
                return len(sales_at_center(storage)) == 3

            await until(three, "the forged sale at the Center")
    # Booked: the Center's own 3 % of 2.99 (8.97, rounded); the claim waits for a person.
    assert bonus(storage) == honest + 9
    [case] = storage.reviews.list_cases(state="open")
    assert case["sale_id"] == forged.sale_id
    assert [(m["rule_id"], m["amount"]) for m in case["claimed"]] == [("base", 1_000_000)]
    assert [(m["rule_id"], m["amount"]) for m in case["verified"]] == [("base", 9)]
    assert "state_seen: leaves out" in case["reason"]
