"""Single-use means single-use, through the real tiers (issue 13): two stores, each a store node
app and a POS agent app with its real uploader, and the Center app on both backends, all over
loopback HTTP. Online the Center holds a code for one store at a time; offline each coupon
type's policy decides, and what got through twice is in the double-redemption report."""

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
from center.promotions.coupons import BatchRequest, IssueRequest
from center.storage import Storage
from center.web.app import create_app as create_center
from loyalty_engine import default_promotions, default_settings
from store_node.config import Config as NodeConfig
from store_node.config import parse_config as parse_node_config
from store_node.reservations_api import fetch_policies
from tests.center.center_factories import CARD, master_tables, write_config
from tests.center.staff import staff_token
from tests.pos_agent.pos_fakes import make_config as make_pos_config
from tests.pos_agent.pos_fakes import running_agent
from tests.store_node.store_fakes import RunningNode, free_port, running_node

Pos = TestClient[Any, Any]

PAPER = {
    "promotion_id": "paper",
    "title": "10 % off with a PAPER coupon",
    "kind": "coupon",
    "status": "active",
    "priority": 30,
    "requires_card": False,
    "batch_prefix": "PAPER",
    "multi_use": False,
    "percent": "10",
}
FLYER = {**PAPER, "promotion_id": "flyer", "title": "10 % off, FLYER", "batch_prefix": "FLYER"}


def _line(amount: int) -> dict[str, Any]:
    return {"product_id": "1000", "qty_milli": 1000, "unit_price_minor": amount}


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


async def _open(pos: Pos, amount: int, *, card: str | None = None) -> str:
    receipt_id: str = (await (await pos.post("/v1/receipts", json={})).json())["receipt_id"]
    resp = await pos.post(f"/v1/receipts/{receipt_id}/lines", json=_line(amount))
    assert resp.status == 200, await resp.text()
    if card is not None:
        resp = await pos.post(f"/v1/receipts/{receipt_id}/card", json={"card_no": card})
        assert resp.status == 200, await resp.text()
    return receipt_id


async def _present(pos: Pos, receipt_id: str, code: str) -> tuple[int, dict[str, Any]]:
    resp = await pos.post(f"/v1/receipts/{receipt_id}/coupons", json={"code": code})
    return resp.status, await resp.json()


async def _confirm(pos: Pos, receipt_id: str) -> dict[str, Any]:
    resp = await pos.post(f"/v1/receipts/{receipt_id}/calculate", json={})
    assert resp.status == 200, await resp.text()
    total = (await resp.json())["total_minor"]
    resp = await pos.post(
        f"/v1/receipts/{receipt_id}/confirm",
        json={"payments": [{"method": "cash", "amount_minor": total}]},
    )
    assert resp.status == 200, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


def _node_config(tmp_path: Path, store_id: str, center: str) -> NodeConfig:
    doc = {
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
    }
    return parse_node_config(doc, base_dir=tmp_path)


@dataclasses.dataclass
class Chain:
    """The running tiers: the Center (stoppable), store nodes and registers by store."""

    storage: Storage
    center: str
    nodes: dict[str, RunningNode]
    pos: dict[str, Pos]
    start_center: Callable[[], Awaitable[None]]
    stop_center: Callable[[], Awaitable[None]]

    async def staff(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = staff_token(self.storage, "marketer")
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method,
                self.center + path,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            return resp.status, await resp.json()

    async def synced(self) -> None:
        """Every register's sales are at the Center."""

        async def empty() -> bool:
            for pos in self.pos.values():
                health = await (await pos.get("/health")).json()
                if health["queue_depth"] or health["reservations_pending"]:
                    return False
            total = self.storage.counts().sales
            wanted = 0
            for pos in self.pos.values():
                wanted += (await (await pos.get("/health")).json())["last_seq"]
            return total == wanted

        await _until(empty, "every sale at the Center")


@asynccontextmanager
async def running_chain(tmp_path: Path, storage: Storage) -> AsyncIterator[Chain]:
    tables = master_tables()
    tables["promotions"] = [
        {"promotion_id": doc["promotion_id"], "doc": doc}
        for doc in [*default_promotions(), PAPER, FLYER]
    ]
    tables["settings"] = [{"name": k, "value": v} for k, v in default_settings().items()]
    storage.feed.upsert_master(tables)
    (tmp_path / "center").mkdir()
    config = load_center_config(
        write_config(tmp_path / "center", extra="[master]\nchecksum_every_s = 0\n")
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
            nodes: dict[str, RunningNode] = {}
            pos: dict[str, Pos] = {}
            for store_id in ("367", "406"):
                node_config = _node_config(tmp_path, store_id, center)
                nodes[store_id] = await stack.enter_async_context(running_node(node_config))
                pos_config = make_pos_config(tmp_path / f"pos-{store_id}", nodes[store_id].url)
                register = dataclasses.replace(
                    pos_config.register, register_id=f"{store_id}-1", store_id=store_id
                )
                pos_config = dataclasses.replace(pos_config, register=register)
                pos[store_id] = await stack.enter_async_context(
                    running_agent(pos_config, clock=lambda: datetime.now(UTC))
                )
            version = storage.versions.current()

            async def replicas_ready() -> bool:
                for client in pos.values():
                    health = await (await client.get("/health")).json()
                    if health["master_version"] < version:
                        return False
                return True

            await _until(replicas_ready, "master data at every register")
            yield Chain(storage, center, nodes, pos, start_center, stop_center)
    finally:
        while runners:
            await runners.pop().cleanup()


def _batch(storage: Storage, prefix: str, count: int, offline: str | None = None) -> list[str]:
    now = datetime.now(UTC)
    batch = storage.coupons.create_coupon_batch(
        BatchRequest(prefix.lower(), prefix, prefix, count, True, None, None, offline=offline),
        "ann",
        now,
    )
    issued = storage.coupons.issue_coupons(
        batch["batch_id"], IssueRequest(customer_ids=("hh-1",)), "ann", now
    )
    codes = [c["code"] for c in issued["codes"]]
    codes += [r[0] for r in storage.coupons.coupon_export_page(batch["batch_id"], "", 10)]
    return list(dict.fromkeys(codes))


async def test_two_stores_racing_for_one_code_online_exactly_one_wins(
    tmp_path: Path, storage: Storage
) -> None:
    async with running_chain(tmp_path, storage) as chain:
        code = _batch(storage, "PAPER", 1)[0]
        receipts = {s: await _open(pos, 5000) for s, pos in chain.pos.items()}
        answers = await asyncio.gather(
            *(_present(pos, receipts[s], code) for s, pos in chain.pos.items())
        )
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200, 409], answers
        (refused,) = [body for status, body in answers if status == 409]
        assert refused["error"] == "coupon_unavailable"
        assert code in refused["detail"], refused
        (winner,) = [s for (status, _), s in zip(answers, chain.pos, strict=True) if status == 200]
        loser = "406" if winner == "367" else "367"
        assert f"held by store {winner}" in refused["detail"], refused
        sold = await _confirm(chain.pos[winner], receipts[winner])
        assert sold["coupons_redeemed"] == [code]
        # The losing cashier tries again after the sale: the Center says who redeemed it.
        status, again = await _present(chain.pos[loser], receipts[loser], code)
        assert status == 409 and code in again["detail"]
        assert f"store {winner}" in again["detail"], again
        await _confirm(chain.pos[loser], receipts[loser])
        await chain.synced()
        status, found = await chain.staff("GET", f"/v1/coupons/{code}")
        assert status == 200 and found["redemptions"] == 1
        assert [r["store_id"] for r in found["redeemed_by"]] == [winner]
        assert found["hold"] is None  # settled by the sale's arrival
        status, report = await chain.staff("GET", "/v1/reports/coupon-double-redemptions")
        assert status == 200 and report == {"coupons": []}


async def test_a_next_visit_coupon_is_single_use_across_stores_and_offline_by_policy(
    tmp_path: Path, storage: Storage
) -> None:
    async with running_chain(tmp_path, storage) as chain:
        pos367, pos406 = chain.pos["367"], chain.pos["406"]
        # A 70.00 receipt at 367 issues a NEXT5 coupon; the sale brings it to the Center.
        issuing = await _confirm(pos367, await _open(pos367, 7000, card=CARD))
        (code,) = issuing["coupons_issued"]
        await chain.synced()
        status, found = await chain.staff("GET", f"/v1/coupons/{code}")
        assert status == 200, found  # no longer 404
        assert (found["origin"], found["issued_store_id"], found["issued_sale_id"]) == (
            "register",
            "367",
            issuing["sale_id"],
        )
        assert found["customer_id"] == "hh-1" and found["offline"] == "issuing_store"
        # Redeemed at 367, then presented at 406 at once: refused, naming code and store.
        redeeming = await _open(pos367, 4000)
        assert (await _present(pos367, redeeming, code))[0] == 200
        assert (await _confirm(pos367, redeeming))["coupons_redeemed"] == [code]
        at406 = await _open(pos406, 4000)
        status, refused = await _present(pos406, at406, code)
        assert status == 409 and refused["error"] == "coupon_unavailable", refused
        assert code in refused["detail"] and "store 367" in refused["detail"], refused

        # Offline: a second NEXT5 issued at 367, a PAPER code (policy never) and a FLYER
        # code whose batch a marketer opened to offline redemption in any store.
        second = await _confirm(pos367, await _open(pos367, 7000, card=CARD))
        (next5,) = second["coupons_issued"]
        paper = _batch(storage, "PAPER", 1)[0]
        flyer = _batch(storage, "FLYER", 1)[0]
        batch_id = storage.coupons.coupon(flyer)["batch_id"]  # type: ignore[index]
        status, done = await chain.staff(
            "PATCH", f"/v1/coupon-batches/{batch_id}", {"offline": "any_store"}
        )
        assert status == 200 and done["offline"] == "any_store", done
        for node in chain.nodes.values():
            assert await fetch_policies(node.app)
        await chain.synced()  # the issuing sale is at store 367's node
        await chain.stop_center()

        status, refused = await _present(pos406, at406, next5)
        assert status == 409 and next5 in refused["detail"]
        assert "only in the store that issued it" in refused["detail"], refused
        status, refused = await _present(pos406, at406, paper)
        assert status == 409 and paper in refused["detail"]
        assert "not redeemable offline" in refused["detail"], refused
        at367 = await _open(pos367, 4000)
        assert (await _present(pos367, at367, next5))[0] == 200
        assert (await _present(pos367, at367, flyer))[0] == 200
        assert (await _present(pos406, at406, flyer))[0] == 200
        first_flyer = await _confirm(pos367, at367)
        second_flyer = await _confirm(pos406, at406)
        assert sorted(first_flyer["coupons_redeemed"]) == sorted([next5, flyer])
        assert second_flyer["coupons_redeemed"] == [flyer]

        await chain.start_center()
        await chain.synced()
        status, report = await chain.staff("GET", "/v1/reports/coupon-double-redemptions")
        assert status == 200
        (double,) = report["coupons"]
        assert double["code"] == flyer and double["customer_id"] == "hh-1"
        assert double["stores"] == ["367", "406"]
        assert sorted(s["sale_id"] for s in double["sales"]) == sorted(
            [first_flyer["sale_id"], second_flyer["sale_id"]]
        )
        status, found = await chain.staff("GET", f"/v1/coupons/{next5}")
        assert found["redemptions"] == 1 and found["issued_store_id"] == "367"
