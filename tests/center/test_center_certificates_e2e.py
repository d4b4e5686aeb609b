"""Gift certificates through the real tiers: two stores (a store node app and a register app
with its real uploader each) and the Center app on both backends, over loopback HTTP.

A 1,000.00 certificate is sold at store 367 and activated when its sale reaches the Center;
300.00 is redeemed at store 406; 800.00 is refused (700.00 left); 700.00 is redeemed; the
Center shows 0 left and every movement linked to its sale. With the Center stopped, only the
holder store redeems a certificate; the other refuses it, naming why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from center.config import load_config as load_center_config
from center.storage import Storage
from center.web.app import create_app as create_center
from loyalty_engine import default_promotions, default_settings
from store_node.certificates_api import refresh_holders
from store_node.config import parse_config as parse_node_config
from tests.center.center_factories import CARD, master_tables, write_config
from tests.center.staff import staff_token
from tests.pos_agent.pos_fakes import make_config as make_pos_config
from tests.pos_agent.pos_fakes import running_agent
from tests.store_node.store_fakes import RunningNode, free_port, running_node

Pos = TestClient[Any, Any]
NOMINAL = "GIFT-1000"


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


@dataclasses.dataclass
class Chain:
    storage: Storage
    center: str
    nodes: dict[str, RunningNode]
    pos: dict[str, Pos]
    start_center: Callable[[], Awaitable[None]]
    stop_center: Callable[[], Awaitable[None]]

    async def staff(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = staff_token(self.storage, "loyalty_manager")
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method, self.center + path, json=body, headers={"Authorization": f"Bearer {token}"}
            ) as resp,
        ):
            return resp.status, await resp.json()

    async def certificate(self, code: str) -> dict[str, Any]:
        status, found = await self.staff("GET", f"/v1/certificates/{code}")
        assert status == 200, found
        return dict(found)

    async def synced(self) -> None:
        """Every register's sales are at the Center."""

        async def done() -> bool:
            wanted = 0
            for pos in self.pos.values():
                health = await (await pos.get("/health")).json()
                if health["queue_depth"]:
                    return False
                wanted += health["last_seq"]
            return self.storage.counts().sales == wanted

        await until(done, "every sale at the Center")


def _node_config(tmp_path: Path, store_id: str, center: str) -> Any:
    return parse_node_config(
        {
            "store": {
                "store_id": store_id,
                "node_id": f"store-{store_id}",
                "listen_host": "127.0.0.1",
                "listen_port": free_port(),
                "data_dir": f"store-{store_id}",
                "advertise": False,
            },
            "center": {
                "url": center,
                "batch_size": 500,
                "interval_s": 0.05,
                "backoff_initial_s": 0.02,
                "backoff_max_s": 0.1,
                "timeout_s": 2.0,
                "master_poll_s": 0.05,
            },
            "security": {"require_signatures": False},
        },
        base_dir=tmp_path,
    )


@asynccontextmanager
async def running_chain(
    tmp_path: Path, storage: Storage, promotions: list[dict[str, Any]] | None = None
) -> AsyncIterator[Chain]:
    tables = master_tables()
    # No discount rule unless given: goods are sold at their price.
    docs = promotions or [d for d in default_promotions() if d["promotion_id"] == "base-accrual-3"]
    tables["promotions"] = [{"promotion_id": doc["promotion_id"], "doc": doc} for doc in docs]
    tables["settings"] = [{"name": k, "value": v} for k, v in default_settings().items()]
    storage.feed.upsert_master(tables)
    (tmp_path / "center").mkdir()
    config = load_center_config(
        write_config(tmp_path / "center", verify=True, extra="[master]\nchecksum_every_s = 0\n")
    )
    port = free_port()
    center = f"http://127.0.0.1:{port}"
    runners: list[web.AppRunner] = []

    async def start_center() -> None:
        runner = web.AppRunner(create_center(config, storage))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)

    async def stop_center() -> None:
        await runners.pop().cleanup()

    await start_center()
    try:
        async with AsyncExitStack() as stack:
            pos: dict[str, Pos] = {}
            nodes: dict[str, RunningNode] = {}
            for store_id in ("367", "406"):
                node = await stack.enter_async_context(
                    running_node(_node_config(tmp_path, store_id, center))
                )
                nodes[store_id] = node
                pos_config = make_pos_config(tmp_path / f"pos-{store_id}", node.url)
                register = dataclasses.replace(
                    pos_config.register, register_id=f"{store_id}-1", store_id=store_id
                )
                pos[store_id] = await stack.enter_async_context(
                    running_agent(
                        dataclasses.replace(pos_config, register=register),
                        clock=lambda: datetime.now(UTC),
                    )
                )
            version = storage.versions.current()

            async def ready() -> bool:
                for client in pos.values():
                    health = await (await client.get("/health")).json()
                    if health["master_version"] < version:
                        return False
                return True

            await until(ready, "master data at every register")
            yield Chain(storage, center, nodes, pos, start_center, stop_center)
    finally:
        while runners:
            await runners.pop().cleanup()


async def _receipt(pos: Pos, line: dict[str, Any]) -> str:
    receipt_id: str = (await (await pos.post("/v1/receipts", json={})).json())["receipt_id"]
    resp = await pos.post(f"/v1/receipts/{receipt_id}/lines", json=line)
    assert resp.status == 200, await resp.text()
    return receipt_id


async def _sell(pos: Pos, code: str) -> tuple[str, str]:
    """A receipt selling certificate `code` (1,000.00), confirmed with cash: (receipt, sale)."""
    line = {
        "product_id": NOMINAL,
        "qty_milli": 1000,
        "unit_price_minor": 100_000,
        "certificate_code": code,
    }
    receipt_id = await _receipt(pos, line)
    resp = await pos.post(
        f"/v1/receipts/{receipt_id}/confirm",
        json={"payments": [{"method": "cash", "amount_minor": 100_000}]},
    )
    assert resp.status == 200, await resp.text()
    return receipt_id, (await resp.json())["sale_id"]


async def _goods(pos: Pos, amount: int) -> str:
    return await _receipt(
        pos, {"product_id": "1000", "qty_milli": 1000, "unit_price_minor": amount}
    )


async def _pay(pos: Pos, receipt_id: str, code: str, amount: int) -> tuple[int, dict[str, Any]]:
    resp = await pos.post(
        f"/v1/receipts/{receipt_id}/certificates", json={"code": code, "amount_minor": amount}
    )
    return resp.status, await resp.json()


async def _confirm(pos: Pos, receipt_id: str) -> str:
    resp = await pos.post(f"/v1/receipts/{receipt_id}/calculate", json={})
    assert resp.status == 200, await resp.text()
    resp = await pos.post(f"/v1/receipts/{receipt_id}/confirm", json={"payments": []})
    assert resp.status == 200, await resp.text()
    sale_id: str = (await resp.json())["sale_id"]
    return sale_id


async def test_sell_activate_redeem_across_stores_and_offline_single_holder(
    tmp_path: Path, storage: Storage
) -> None:
    async with running_chain(tmp_path, storage) as chain:
        pos367, pos406 = chain.pos["367"], chain.pos["406"]
        status, batch = await chain.staff(
            "POST",
            "/v1/certificate-batches",
            {
                "batch_id": "gift-1000",
                "title": "Gift 1000.00",
                "product_id": NOMINAL,
                "nominal_minor": 100_000,
                "count": 4,
            },
        )
        assert status == 201, batch
        code, second, cancelled, moved = (c["code"] for c in batch["certificates"])

        # Not sold: no register can pay with it.
        early = await _goods(pos406, 10_000)
        status, refused = await _pay(pos406, early, code, 10_000)
        assert status == 409 and "never sold" in refused["detail"], refused
        # A cancelled receipt activates nothing.
        line = {"product_id": NOMINAL, "qty_milli": 1000, "unit_price_minor": 100_000}
        dropped = await _receipt(pos367, {**line, "certificate_code": cancelled})
        assert (await pos367.post(f"/v1/receipts/{dropped}/cancel", json={})).status == 200

        _, sold_sale = await _sell(pos367, code)
        await chain.synced()
        view = await chain.certificate(code)
        assert (view["state"], view["balance_minor"], view["holder_store_id"]) == (
            "active",
            100_000,
            "367",
        )
        assert (await chain.certificate(cancelled))["state"] == "issued"

        # 300.00 at the other store, online: held at the Center, redeemed with the sale.
        first = await _goods(pos406, 30_000)
        status, held = await _pay(pos406, first, code, 30_000)
        assert status == 200, held
        assert (held["mode"], held["remaining_minor"]) == ("online", 70_000)
        first_sale = await _confirm(pos406, first)
        await chain.synced()

        async def settled() -> bool:
            found = await chain.certificate(code)
            return found["balance_minor"] == 70_000 and not found["holds"]

        await until(settled, "the 300.00 redemption booked")

        # 800.00 is more than is left: refused naming the balance, nothing held.
        big = await _goods(pos367, 80_000)
        status, refused = await _pay(pos367, big, code, 80_000)
        assert status == 409, refused
        assert refused["error"] == "certificate_refused"
        assert "700.00 available" in refused["detail"] and code in refused["detail"], refused
        assert (await chain.certificate(code))["holds"] == []
        assert (await pos367.post(f"/v1/receipts/{big}/cancel", json={})).status == 200
        # A non-positive amount names the field, nothing held.
        status, bad = await _pay(pos406, early, code, 0)
        assert status == 422 and bad["field"] == "amount_minor", bad

        last = await _goods(pos367, 70_000)
        status, held = await _pay(pos367, last, code, 70_000)
        assert status == 200 and held["remaining_minor"] == 0, held
        last_sale = await _confirm(pos367, last)
        await chain.synced()

        async def used_up() -> dict[str, Any] | None:
            found = await chain.certificate(code)
            return found if found["balance_minor"] == 0 and not found["holds"] else None

        view = await until(used_up, "the 700.00 redemption booked")
        assert view["state"] == "used_up"
        assert [(m["kind"], m["amount_minor"], m["sale_id"]) for m in view["movements"]] == [
            ("activate", 100_000, sold_sale),
            ("redeem", -30_000, first_sale),
            ("redeem", -70_000, last_sale),
        ]
        assert view["holder_store_id"] == "367"

        # Offline: two more certificates sold at 367 (their holder); one of them then pays
        # 100.00 online at 406, which becomes its holder; the store nodes refresh their rights
        # (every 5 s on their own); the Center stops.
        await _sell(pos367, second)
        await _sell(pos367, moved)
        await chain.synced()
        receipt = await _goods(pos406, 10_000)
        assert (await _pay(pos406, receipt, moved, 10_000))[0] == 200
        await _confirm(pos406, receipt)
        await chain.synced()

        async def moved_to_406() -> bool:
            found = await chain.certificate(moved)
            return found["holder_store_id"] == "406" and not found["holds"]

        await until(moved_to_406, "the holder of the moved certificate")
        for node in chain.nodes.values():
            assert await refresh_holders(node.app) is not None
        await chain.stop_center()
        status, refused = await _pay(pos367, await _goods(pos367, 10_000), moved, 10_000)
        assert status == 409 and "held by another store" in refused["detail"], refused
        status, held = await _pay(pos406, await _goods(pos406, 90_000), moved, 90_000)
        assert status == 200 and held["mode"] == "offline", held
        other = await _goods(pos406, 10_000)
        status, refused = await _pay(pos406, other, second, 10_000)
        assert status == 409, refused
        assert "held by another store" in refused["detail"], refused
        here = await _goods(pos367, 10_000)
        status, held = await _pay(pos367, here, second, 10_000)
        assert status == 200 and held["mode"] == "offline", held
        assert held["remaining_minor"] == 90_000
        # Only up to what the holder store knows.
        more = await _goods(pos367, 95_000)
        status, refused = await _pay(pos367, more, second, 95_000)
        assert status == 409 and "900.00 available offline" in refused["detail"], refused
        offline_sale = await _confirm(pos367, here)

        await chain.start_center()
        await chain.synced()
        view = await chain.certificate(second)
        assert view["balance_minor"] == 90_000
        assert view["movements"][-1]["sale_id"] == offline_sale


async def test_a_certificate_line_is_money_under_a_discount_rule_and_verifies_clean(
    tmp_path: Path, storage: Storage
) -> None:
    rules = [
        {"promotion_id": "all-10", "kind": "goods_discount", "percent": "10"},
        {
            "promotion_id": "from-1000",
            "kind": "threshold_discount",
            "steps": [{"min_total_minor": 100_000, "amount_minor": 5_000}],
        },
        {"promotion_id": "acc-1", "kind": "accrual_percent", "percent": "1"},
    ]
    docs = [{"status": "active", "priority": 10 * i, **doc} for i, doc in enumerate(rules, 1)]
    async with running_chain(tmp_path, storage, docs) as chain:
        pos = chain.pos["367"]
        status, batch = await chain.staff(
            "POST",
            "/v1/certificate-batches",
            {
                "batch_id": "gift-1000",
                "title": "Gift 1000.00",
                "product_id": NOMINAL,
                "nominal_minor": 100_000,
                "count": 1,
            },
        )
        assert status == 201, batch
        code = batch["certificates"][0]["code"]

        # 300.00 of milk and a 1,000.00 certificate, with a card.
        receipt_id = await _goods(pos, 30_000)
        line = {"product_id": NOMINAL, "qty_milli": 1000, "unit_price_minor": 100_000}
        resp = await pos.post(
            f"/v1/receipts/{receipt_id}/lines", json={**line, "certificate_code": code}
        )
        assert resp.status == 200, await resp.text()
        resp = await pos.post(f"/v1/receipts/{receipt_id}/card", json={"card_no": CARD})
        assert resp.status == 200, await resp.text()
        resp = await pos.post(f"/v1/receipts/{receipt_id}/calculate", json={})
        assert resp.status == 200, await resp.text()
        calc = await resp.json()
        discounts = {
            line["line_no"]: sum(d["amount_minor"] for d in line["discounts"])
            for line in calc["lines"]
        }
        # 10 % off the milk only (30.00); the certificate is not discounted, and the receipt
        # does not reach the 1,000.00 threshold by buying it (goods: 300.00).
        assert sorted(discounts.values()) == [0, 3_000], calc
        assert (calc["total_minor"], calc["to_pay_minor"]) == (127_000, 127_000)
        # 1 % of the goods after discount (270.00), not of the certificate.
        assert [(a["rule_id"], a["amount"]) for a in calc["accrual"]] == [("acc-1", 270)]
        resp = await pos.post(
            f"/v1/receipts/{receipt_id}/confirm",
            json={"payments": [{"method": "cash", "amount_minor": 127_000}]},
        )
        assert resp.status == 200, await resp.text()
        await chain.synced()

        # Activated at its nominal, not at a discounted price.
        async def active() -> dict[str, Any] | None:
            found = await chain.certificate(code)
            return found if found["state"] == "active" else None

        view = await until(active, "the certificate activated")
        assert view["balance_minor"] == 100_000
        assert [m["kind"] for m in view["movements"]] == ["activate"]
        # The Center re-priced the sale alike: no review case, the accrual booked as claimed.
        sales = storage.db.execute("SELECT total_minor, discount_minor FROM sales").fetchall()
        assert [(int(t), int(d)) for t, d in sales] == [(127_000, 3_000)]
        assert storage.db.execute("SELECT COUNT(*) FROM review_cases").fetchone()[0] == 0
        history = storage.ledger.history(CARD)
        assert history is not None
        assert [(e.wallet, e.kind, e.amount, e.rule_id) for e in history] == [
            ("bonus", "accrue", 270, "acc-1")
        ]
