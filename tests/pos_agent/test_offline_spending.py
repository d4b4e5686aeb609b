"""Bounded spending: the store node holds bonus and coupons online, the register limits offline.

Real registers (POS agent apps) and a real store node, over HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from loyalty_engine import make_code
from loyalty_engine.defaults import DEMO_COUPON_KEY
from pos_agent import Config, OfflineConfig
from pos_agent.credentials import enrol, save_credentials
from pos_agent.errors import StoreNodeUnreachable
from pos_agent.journal import Journal
from pos_agent.register import utc_now
from pos_agent.replica import Replica
from pos_agent.storelink import StoreLink
from store_node.app import AUTH_KEY, WORKER_KEY
from store_node.reservations_api import RESERVATIONS_KEY
from sync_protocol import encode
from tests.pos_agent.pos_fakes import (
    CARD,
    REGISTER_ID,
    STORE_ID,
    IdleUploader,
    demo_snapshot,
    free_port,
    make_config,
    outbox_sales,
    running_agent,
    seed_replica,
)
from tests.store_node.store_fakes import Clock, RunningNode, running_node
from tests.store_node.store_fakes import make_config as store_config

Client = TestClient[web.Request, web.Application]

BIG = {"product_id": "milk", "qty_milli": 10_000, "unit_price_minor": 3000}  # total 27000
NOW = datetime.now(UTC)


class SetClock:
    """A settable wall clock for a register."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def store(
    tmp_path: Path, *, balance: int = 1000, clock: Clock | None = None, port: int = 0
) -> AsyncIterator[RunningNode]:
    """A real store node whose master cache holds the demo data with CARD at `balance`."""
    config = store_config(tmp_path / "store", port=port)
    async with running_node(config, run_jobs=False, clock=clock or Clock(NOW)) as node:
        snapshot = demo_snapshot(version=3, card_balance=balance)
        payload = encode(snapshot, sender="center")
        await node.app[WORKER_KEY].run(lambda box: box.save_master(3, payload, now=NOW))
        yield node


def register(
    tmp_path: Path,
    name: str,
    url: str,
    *,
    allowance: int = 0,
    max_age_s: float = 86400.0,
    **store_node: Any,
) -> Config:
    config = make_config(
        tmp_path / name,
        url=url,
        offline=OfflineConfig(max_spend_per_card_minor=allowance, max_replica_age_s=max_age_s),
        **store_node,
    )
    config = replace(config, register=replace(config.register, register_id=name))
    seed_replica(config)
    return config


def journal_of(config: Config) -> Journal:
    register_id = config.register.register_id
    return Journal(config.register.journal_path, register_id=register_id, store_id=STORE_ID)


async def open_with(client: Client, *, card: str | None = CARD, line: Any = BIG) -> str:
    rid: str = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
    await client.post(f"/v1/receipts/{rid}/lines", json=line)
    if card is not None:
        await client.post(f"/v1/receipts/{rid}/card", json={"card_no": card})
    return rid


async def calculate(client: Client, rid: str, bonus: int) -> tuple[int, dict[str, Any]]:
    resp = await client.post(f"/v1/receipts/{rid}/calculate", json={"bonus_to_spend": bonus})
    return resp.status, await resp.json()


async def confirm(client: Client, rid: str, bonus: int) -> dict[str, Any]:
    status, calc = await calculate(client, rid, bonus)
    assert status == 200, calc
    total = calc["total_minor"]
    resp = await client.post(
        f"/v1/receipts/{rid}/confirm",
        json={
            "payments": [{"method": "cash", "amount_minor": total - bonus}],
            "bonus_to_spend": bonus,
        },
    )
    answer: dict[str, Any] = await resp.json()
    assert resp.status == 200, answer
    return answer


async def reservation(node: RunningNode, rid: str) -> dict[str, Any]:
    async with node.session.get(f"{node.url}/v1/reservations/{rid}") as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


async def eventually_state(node: RunningNode, rid: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        found = await reservation(node, rid)
        if found["state"] == state:
            return found
        assert time.monotonic() < deadline, f"reservation {rid} stayed {found['state']}"
        await asyncio.sleep(0.02)


def held_id(config: Config, receipt_id: str) -> str:
    journal = journal_of(config)
    try:
        held = journal.reservation(receipt_id)
        assert held is not None
        return held.reservation_id
    finally:
        journal.close()


def spends(config: Config) -> list[int]:
    journal = journal_of(config)
    try:
        return [m.amount for sale in journal.sales() for m in sale.loyalty if m.kind == "spend"]
    finally:
        journal.close()


# -- online: the store node decides -----------------------------------------------------


async def test_two_registers_racing_never_spend_more_than_the_balance(tmp_path: Path) -> None:
    async with store(tmp_path, balance=1000) as node:
        one = register(tmp_path, "367-1", node.url)
        two = register(tmp_path, "367-2", node.url)
        async with (
            running_agent(one, uploader=IdleUploader()) as a,
            running_agent(two, uploader=IdleUploader()) as b,
        ):
            clients = [a, b] * 4
            receipts = [await open_with(client) for client in clients]
            answers = await asyncio.gather(
                *(calculate(c, rid, 300) for c, rid in zip(clients, receipts, strict=True))
            )
            granted = [
                (clients[i], receipts[i]) for i, (status, _) in enumerate(answers) if status == 200
            ]
            refused = [body for status, body in answers if status == 409]
            assert len(granted) == 3 and len(refused) == 5
            assert all(body["error"] == "insufficient_balance" for body in refused)
            assert all("store node" in body["detail"] for body in refused)
            for client, rid in granted:
                await confirm(client, rid, 300)
            # A register cannot go around the store node at confirm either.
            status, body = await calculate(a, await open_with(a), 101)
            assert status == 409 and "100 available" in body["detail"]
    assert sum(spends(one)) + sum(spends(two)) == 900


async def test_release_on_cancel_and_on_timeout_returns_the_points(tmp_path: Path) -> None:
    node_clock = Clock(NOW)
    async with store(tmp_path, balance=1000, clock=node_clock) as node:
        one = register(tmp_path, "367-1", node.url)
        two = register(tmp_path, "367-2", node.url)
        async with running_agent(one) as a, running_agent(two, uploader=IdleUploader()) as b:
            first = await open_with(a)
            assert (await calculate(a, first, 1000))[0] == 200
            first_hold = held_id(one, first)
            other = await open_with(b)
            assert (await calculate(b, other, 1))[0] == 409
            await a.post(f"/v1/receipts/{first}/cancel", json={})
            # The uploader thread carries the release to the store node.
            await eventually_state(node, first_hold, "released")
            status, calc = await calculate(b, other, 1000)
            assert status == 200 and calc["bonus_balance"] == 1000
            # Register two never confirms: after ttl_s the hold lapses by itself.
            third = await open_with(a)
            assert (await calculate(a, third, 1))[0] == 409
            node_clock.advance(301)
            assert (await calculate(a, third, 1000))[0] == 200


async def test_confirm_never_waits_for_the_store_node_after_the_hold(tmp_path: Path) -> None:
    async with store(tmp_path, balance=1000) as node:
        config = register(tmp_path, "367-1", node.url)
        async with running_agent(config) as client:
            rid = await open_with(client)
            assert (await calculate(client, rid, 400))[0] == 200
            reservation_id = held_id(config, rid)
            sale = await confirm(client, rid, 400)
            committed = await eventually_state(node, reservation_id, "committed")
            assert committed["sale_id"] == sale["sale_id"]

    # The store node gone after the hold: the sale is journaled, its commit queued.
    port = free_port()
    config = register(tmp_path, "367-9", f"http://127.0.0.1:{port}")
    async with running_agent(config, uploader=IdleUploader()) as client:
        async with store(tmp_path / "second", balance=1000, port=port):
            rid = await open_with(client)
            assert (await calculate(client, rid, 400))[0] == 200
            reservation_id = held_id(config, rid)
        started = time.monotonic()
        sale = await confirm(client, rid, 400)
        assert time.monotonic() - started < 1.0
        health = await (await client.get("/health")).json()
        assert health["reservations_pending"] == 1
    journal = journal_of(config)
    try:
        ops = journal.reservation_ops()
    finally:
        journal.close()
    assert [(op.reservation_id, op.op, op.sale_id) for op in ops] == [
        (reservation_id, "commit", sale["sale_id"])
    ]


async def test_single_use_coupon_held_by_one_register_is_refused_to_another(
    tmp_path: Path,
) -> None:
    code = make_code(DEMO_COUPON_KEY, "NEXT5", "0000000042")
    async with store(tmp_path) as node:
        # No Center here: let the node take NEXT5 codes offline wherever they were issued.
        policy = [("NEXT5", "register", "any_store")]
        await node.app[RESERVATIONS_KEY].run(lambda b: b.save_policies(policy, now=NOW))
        one = register(tmp_path, "367-1", node.url)
        two = register(tmp_path, "367-2", node.url)
        async with (
            running_agent(one, uploader=IdleUploader()) as a,
            running_agent(two, uploader=IdleUploader()) as b,
        ):
            first = await open_with(a)
            resp = await a.post(f"/v1/receipts/{first}/coupons", json={"code": code})
            assert resp.status == 200, await resp.text()
            second = await open_with(b)
            resp = await b.post(f"/v1/receipts/{second}/coupons", json={"code": code})
            body = await resp.json()
            assert resp.status == 409 and body["error"] == "coupon_unavailable"
            assert "held by register 367-1" in body["detail"]
            # Register one sells with it: still refused to register two afterwards.
            sale = await confirm(a, first, 0)
            assert sale["coupons_redeemed"] == [code]
            resp = await b.post(f"/v1/receipts/{second}/coupons", json={"code": code})
            assert resp.status == 409


# -- offline: the register's own limits --------------------------------------------------


async def test_offline_register_spends_within_its_allowance_only(tmp_path: Path) -> None:
    config = register(tmp_path, REGISTER_ID, f"http://127.0.0.1:{free_port()}", allowance=500)
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = await open_with(client)
        status, calc = await calculate(client, rid, 400)
        assert status == 200 and calc["bonus_to_spend"] == 400
        await confirm(client, rid, 400)
        rid = await open_with(client)
        status, body = await calculate(client, rid, 101)
        assert status == 409 and body["field"] == "bonus_to_spend"
        assert "at most 100 more offline" in body["detail"]
        assert "offline.max_spend_per_card_minor = 500" in body["detail"]
        await confirm(client, rid, 100)
    assert spends(config) == [400, 100]


async def test_the_chain_setting_lowers_the_registers_allowance(tmp_path: Path) -> None:
    config = register(tmp_path, REGISTER_ID, f"http://127.0.0.1:{free_port()}", allowance=500)
    base = demo_snapshot(version=4)
    settings = (
        *base.tables["settings"],
        {"name": "offline_max_spend_per_card_minor", "value": "150"},
    )
    seed_replica(config, replace(base, tables={**base.tables, "settings": settings}))
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = await open_with(client)
        status, body = await calculate(client, rid, 151)
        assert status == 409 and "at most 150 more offline" in body["detail"]
        assert "chain setting offline_max_spend_per_card_minor = 150" in body["detail"]
        await confirm(client, rid, 150)
    assert spends(config) == [150]


async def test_default_allowance_is_zero(tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "pos", url=f"http://127.0.0.1:{free_port()}", offline=OfflineConfig()
    )
    seed_replica(config)
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = await open_with(client)
        status, body = await calculate(client, rid, 1)
        assert status == 409 and "at most 0 more offline" in body["detail"]


async def test_stale_replica_refuses_spending_but_still_accrues(tmp_path: Path) -> None:
    config = register(
        tmp_path, REGISTER_ID, f"http://127.0.0.1:{free_port()}", allowance=500, max_age_s=3600
    )
    clock = SetClock(NOW + timedelta(hours=2))
    async with running_agent(config, clock=clock, uploader=IdleUploader()) as client:
        rid = await open_with(client)
        status, body = await calculate(client, rid, 100)
        assert status == 409 and "offline.max_replica_age_s = 3600" in body["detail"]
        status, calc = await calculate(client, rid, 0)
        assert status == 200 and calc["accrual"]
        await confirm(client, rid, 0)
    (sale,) = outbox_sales(config)
    assert [m.kind for m in sale.loyalty] == ["accrue"] * len(sale.loyalty) and sale.loyalty


async def test_unknown_card_offline_sells_with_accrual_only(tmp_path: Path) -> None:
    config = register(tmp_path, REGISTER_ID, f"http://127.0.0.1:{free_port()}", allowance=500)
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = await open_with(client, card=None)
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": "5550001"})
        assert await resp.json() == {
            "card_no": "5550001",
            "known": False,
            "bonus_balance": 0,
            "wallets": {},
            "tier": "",
            "segments": [],
            "coupons": [],
            "personal_offers": [],
            "personal_messages": [],
        }
        status, _ = await calculate(client, rid, 1)
        assert status == 409
        await confirm(client, rid, 0)
    (sale,) = outbox_sales(config)
    assert sale.card_no == "5550001"
    assert sale.loyalty and all(m.kind == "accrue" for m in sale.loyalty)


async def test_unknown_card_is_looked_up_online_and_kept(tmp_path: Path) -> None:
    lookups: list[str] = []

    async def card(request: web.Request) -> web.Response:
        card_no = request.match_info["card_no"]
        lookups.append(card_no)
        if card_no != "5550002":
            return web.json_response({"error": "unknown_object", "detail": card_no}, status=404)
        row = {"card_no": card_no, "customer_id": "c9", "status": "active", "bonus_balance": 70}
        return web.json_response(row | {"segments": ["new"]})

    app = web.Application()
    app.router.add_get("/v1/cards/{card_no}", card)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        config = register(tmp_path, REGISTER_ID, f"http://127.0.0.1:{port}")
        async with running_agent(config, uploader=IdleUploader()) as client:
            rid = await open_with(client, card=None)
            resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": "5550002"})
            assert await resp.json() == {
                "card_no": "5550002",
                "known": True,
                "bonus_balance": 70,
                "wallets": {"bonus": 70},
                "tier": "",
                "segments": ["new"],
                "coupons": [],
                "personal_offers": [],
                "personal_messages": [],
            }
            resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": "5550003"})
            assert (await resp.json())["known"] is False
    finally:
        await runner.cleanup()
    replica = Replica(config.register.replica_path)
    try:
        kept = replica.card("5550002")
        assert kept is not None and kept.bonus_balance == 70
        assert replica.card("5550003") is None
    finally:
        replica.close()
    assert lookups == ["5550002", "5550003"]


def test_offline_config_is_read_and_checked(tmp_path: Path) -> None:
    from pos_agent import ConfigError, load_config

    path = tmp_path / "pos.toml"
    base = '[register]\nregister_id = "367-1"\nstore_id = "367"\ndata_dir = "d"\n'
    path.write_text(base)
    assert load_config(path).offline == OfflineConfig(0, 86400.0, 1.0, 4.0)
    path.write_text(base + "[offline]\nmax_spend_per_card_minor = 5000\nmax_replica_age_s = 600\n")
    offline = load_config(path).offline
    assert (offline.max_spend_per_card_minor, offline.max_replica_age_s) == (5000, 600.0)
    path.write_text(
        base + "[offline]\nmax_spend_per_card_minor = -1\nmax_replica_age_s = 0\nfoo = 1\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = "\n".join(caught.value.problems)
    assert "offline.max_spend_per_card_minor" in problems
    assert "offline.max_replica_age_s" in problems
    assert "offline.foo: unknown key" in problems


async def test_reservations_are_signed_and_bound_to_the_signing_register(tmp_path: Path) -> None:
    async with running_node(
        store_config(tmp_path / "store", signatures=True), run_jobs=False
    ) as node:
        payload = encode(demo_snapshot(version=3), sender="center")
        await node.app[WORKER_KEY].run(lambda box: box.save_master(3, payload, now=NOW))
        token = node.app[AUTH_KEY].issue_token("367-1", datetime.now(UTC), 1)
        config = register(tmp_path, "367-1", node.url)
        creds = await asyncio.to_thread(enrol, node.url, token, "367-1", timeout_s=5)
        save_credentials(config.register.data_dir, creds)
        async with running_agent(config, clock=utc_now, uploader=IdleUploader()) as client:
            rid = await open_with(client)
            status, calc = await calculate(client, rid, 300)
            assert status == 200 and calc["bonus_balance"] == 1000
        reservation_id = held_id(config, rid)
        found = await node.app[RESERVATIONS_KEY].run(
            lambda book: book.get(reservation_id, now=datetime.now(UTC), register_id="367-1")
        )
        assert (found.state, found.amount, found.register_id) == ("held", 300, "367-1")
        # The same credentials acting for another register: refused, nothing held.
        other = replace(config, register=replace(config.register, register_id="367-2"))
        link = StoreLink(other, lambda: node.url, clock=utc_now)
        with pytest.raises(StoreNodeUnreachable, match="HTTP 403"):
            await asyncio.to_thread(
                lambda: link.reserve(
                    receipt_id="r-x", card_no=CARD, amount=1, codes=(), signed_codes=()
                )
            )
        link.close()
        async with node.session.post(
            f"{node.url}/v1/reservations", json={"receipt_id": "r", "register_id": "367-1"}
        ) as response:
            assert response.status == 401
