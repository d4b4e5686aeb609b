"""Factories and fakes for POS agent tests: configs, master data, a real fake store node."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from loyalty_engine import default_promotions, default_settings
from pos_agent import (
    Config,
    OfflineConfig,
    RegisterConfig,
    StoreNodeConfig,
    UploaderStatus,
    create_app,
)
from pos_agent.journal import Journal
from pos_agent.replica import Replica
from sync_protocol import (
    CONTENT_TYPE,
    Ack,
    Heartbeat,
    MasterSnapshot,
    Rejection,
    Sale,
    SaleBatch,
    decode,
    encode,
    sale_fingerprint,
)

REGISTER_ID = "367-1"
STORE_ID = "367"
T0 = datetime(2024, 5, 17, 9, 30, tzinfo=UTC)
CARD = "2000000000011"
CARD_BALANCE = 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TickClock:
    """A deterministic wall clock: each call is one second later than the previous one."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


# Tests written before bounded offline spending sell with bonus offline: a wide allowance.
GENEROUS_OFFLINE = OfflineConfig(max_spend_per_card_minor=1_000_000)


def make_config(
    data_dir: Path, url: str = "", *, offline: OfflineConfig = GENEROUS_OFFLINE, **store_node: Any
) -> Config:
    """A register config with fast timers for tests."""
    timers: dict[str, Any] = {
        "upload_interval_s": 0.05,
        "batch_size": 200,
        "timeout_s": 2.0,
        "master_poll_s": 0.2,
        "backoff_max_s": 0.2,
    }
    timers.update(store_node)
    return Config(
        register=RegisterConfig(register_id=REGISTER_ID, store_id=STORE_ID, data_dir=data_dir),
        store_node=StoreNodeConfig(url=url, **timers),
        offline=offline,
    )


def demo_snapshot(
    version: int = 1,
    *,
    promotions: list[dict[str, Any]] | None = None,
    card_balance: int = CARD_BALANCE,
) -> MasterSnapshot:
    """Master data of one store with the engine's default promotions."""
    docs = default_promotions() if promotions is None else promotions
    return MasterSnapshot(
        version=version,
        tables={
            "products": (
                {"product_id": "milk", "department": "DAIRY", "category": "MILK", "brand": "A"},
                {"product_id": "bread", "department": "BAKERY", "category": "BREAD", "brand": "B"},
                {"product_id": "gum", "department": "CANDY", "category": "GUM", "brand": "C"},
            ),
            "cards": (
                {"card_no": CARD, "bonus_balance": card_balance, "segment": "regular"},
                {"card_no": "2000000000028", "bonus_balance": 0, "segment": "new"},
            ),
            "stores": ({"store_id": STORE_ID, "format": "supermarket", "name": "Store 367"},),
            "promotions": tuple(
                {"promotion_id": doc["promotion_id"], "version": version, "doc": doc}
                for doc in docs
            ),
            "settings": tuple({"name": k, "value": v} for k, v in default_settings().items()),
        },
    )


def seed_replica(config: Config, snapshot: MasterSnapshot | None = None) -> None:
    """Write master data into the register's replica.db before the agent starts."""
    config.register.data_dir.mkdir(parents=True, exist_ok=True)
    replica = Replica(config.register.replica_path)
    try:
        assert replica.apply_snapshot(snapshot or demo_snapshot())
        replica.mark_synced(datetime.now(UTC))
    finally:
        replica.close()


def open_journal(config: Config) -> Journal:
    return Journal(config.register.journal_path, register_id=REGISTER_ID, store_id=STORE_ID)


def outbox_sales(config: Config) -> list[Sale]:
    """The sales still queued in the outbox, decoded from the committed bytes."""
    from sync_protocol import decode_sale

    journal = open_journal(config)
    try:
        return [decode_sale(row.payload) for row in journal.outbox_batch(10_000)]
    finally:
        journal.close()


@dataclass
class IdleUploader:
    """Stands in for the uploader when a test is about the API alone; counts wake-ups."""

    wakes: int = 0
    started: bool = False
    stopped: bool = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def wake(self) -> None:
        self.wakes += 1

    def status(self) -> UploaderStatus:
        return UploaderStatus()


@asynccontextmanager
async def running_agent(
    config: Config,
    *,
    clock: Callable[[], datetime] | None = None,
    uploader: Any = None,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The agent's app behind a real HTTP server on loopback, with a client for it."""
    app = create_app(config, clock=clock or TickClock(), uploader=uploader)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def sell(
    client: TestClient[web.Request, web.Application],
    lines: list[dict[str, Any]],
    *,
    card_no: str | None = None,
    bonus_to_spend: int = 0,
) -> dict[str, Any]:
    """Open, fill, price and confirm one receipt paid in cash; the confirm answer."""
    resp = await client.post("/v1/receipts", json={})
    assert resp.status == 201, await resp.text()
    receipt_id = (await resp.json())["receipt_id"]
    resp = await client.post(f"/v1/receipts/{receipt_id}/lines", json={"lines": lines})
    assert resp.status == 200, await resp.text()
    if card_no is not None:
        resp = await client.post(f"/v1/receipts/{receipt_id}/card", json={"card_no": card_no})
        assert resp.status == 200, await resp.text()
    resp = await client.post(
        f"/v1/receipts/{receipt_id}/calculate", json={"bonus_to_spend": bonus_to_spend}
    )
    assert resp.status == 200, await resp.text()
    total = (await resp.json())["total_minor"]
    resp = await client.post(
        f"/v1/receipts/{receipt_id}/confirm",
        json={
            "payments": [{"method": "cash", "amount_minor": total - bonus_to_spend}],
            "bonus_to_spend": bonus_to_spend,
        },
    )
    assert resp.status == 200, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


BREAD = {"product_id": "bread", "qty_milli": 1000, "unit_price_minor": 250}


async def health_until(
    client: TestClient[web.Request, web.Application],
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Poll GET /health (the uploader works on its own thread) until predicate holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        health: dict[str, Any] = await (await client.get("/health")).json()
        if predicate(health):
            return health
        if loop.time() > deadline:
            raise AssertionError(f"/health never satisfied the condition: {health}")
        await asyncio.sleep(0.02)


@dataclass
class FakeStoreNode:
    """A real HTTP store node on loopback: commits, records, and fails when told to."""

    port: int = field(default_factory=free_port)
    snapshot: MasterSnapshot | None = None
    fail_sales: bool = False  # answer 500 after receiving (and recording) the batch
    lose_acks: int = 0  # commit the next N batches, then answer 500 as if the ack got lost
    reject_seqs: dict[int, str] = field(default_factory=dict)
    committed: dict[str, Sale] = field(default_factory=dict)
    batches: list[SaleBatch] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # each POST /v1/sales as received
    heartbeats: list[Heartbeat] = field(default_factory=list)
    master_polls: list[str] = field(default_factory=list)
    store_id: str = "367"  # what its /health names (the register checks it after discovery)
    recovery: bool = True  # False: a store node older than POST /v1/recovery (404)
    resend: list[list[int]] = field(default_factory=list)  # asked for once, at the next report
    reports: list[dict[str, Any]] = field(default_factory=list)  # POST /v1/recovery bodies
    db_id: str = "db-1"
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sends(self) -> Counter[str]:
        """How many times each sale_id was sent to this node."""
        return Counter(sale.sale_id for batch in self.batches for sale in batch.sales)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (event-driven: every request notifies) until predicate() holds."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def _sales(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        batch = decode(body, expect=SaleBatch).message
        assert isinstance(batch, SaleBatch)
        self.batches.append(batch)
        try:
            if self.fail_sales:
                return web.Response(status=500, text="disk full (test)")
            accepted: list[str] = []
            duplicates: list[str] = []
            rejected: list[Rejection] = []
            for sale in batch.sales:
                if sale.seq in self.reject_seqs:
                    rejected.append(Rejection(sale.sale_id, self.reject_seqs[sale.seq]))
                elif sale.sale_id in self.committed:
                    assert sale_fingerprint(self.committed[sale.sale_id]) == sale_fingerprint(sale)
                    duplicates.append(sale.sale_id)
                else:
                    self.committed[sale.sale_id] = sale
                    accepted.append(sale.sale_id)
            if self.lose_acks:
                self.lose_acks -= 1
                return web.Response(status=500, text="crashed before answering (test)")
            ack = Ack(tuple(accepted), tuple(duplicates), tuple(rejected))
            return web.Response(body=encode(ack, sender="store-367"), content_type=CONTENT_TYPE)
        finally:
            await self._notify()

    async def _heartbeat(self, request: web.Request) -> web.Response:
        beat = decode(await request.read(), expect=Heartbeat).message
        assert isinstance(beat, Heartbeat)
        self.heartbeats.append(beat)
        await self._notify()
        return web.json_response({"ok": True})

    async def _recovery(self, request: web.Request) -> web.Response:
        self.reports.append(await request.json())
        resend, self.resend = self.resend, []
        await self._notify()
        return web.json_response(
            {"db_id": self.db_id, "recovering": bool(resend), "resend": resend}
        )

    async def _master(self, request: web.Request) -> web.Response:
        since = request.query.get("since", "0")
        self.master_polls.append(since)
        snap = self.snapshot
        if snap is None or snap.version <= int(since):
            snap = MasterSnapshot(version=int(since), tables={})
        await self._notify()
        return web.Response(body=encode(snap, sender="store-367"), content_type=CONTENT_TYPE)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"store_id": self.store_id, "node_id": f"store-{self.store_id}"})

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/sales", self._sales)
        app.router.add_post("/v1/heartbeat", self._heartbeat)
        app.router.add_get("/v1/master", self._master)
        if self.recovery:
            app.router.add_post("/v1/recovery", self._recovery)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
