"""Factories and fakes for store node tests: sales, configs, a real fake Center, a running node."""

from __future__ import annotations

import asyncio
import io
import shutil
import socket
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from store_node import Config, parse_config
from store_node.app import create_app
from sync_protocol import (
    CONTENT_TYPE,
    Ack,
    Heartbeat,
    LineDiscount,
    MasterDelta,
    MasterSnapshot,
    Payment,
    Rejection,
    Sale,
    SaleBatch,
    SaleLine,
    decode,
    encode,
)

STORE_ID = "367"
T0 = datetime(2024, 5, 17, 9, 30, tzinfo=UTC)


def make_sale(seq: int = 1, **overrides: Any) -> Sale:
    """A consistent sale of store 367, register 367-1; any field can be overridden."""
    lines = overrides.pop(
        "lines",
        (
            SaleLine(1, "4600001", 2000, 500, 1000, (LineDiscount("promo-10pct", 100),)),
            SaleLine(2, "4600002", 1000, 250, 250),
        ),
    )
    subtotal = sum(line.amount_minor for line in lines)
    discount = sum(d.amount_minor for line in lines for d in line.discounts)
    fields: dict[str, Any] = {
        "sale_id": str(uuid.uuid4()),
        "store_id": STORE_ID,
        "register_id": "367-1",
        "seq": seq,
        "opened_at": T0 + timedelta(minutes=seq),
        "closed_at": T0 + timedelta(minutes=seq, seconds=30),
        "card_no": None,
        "lines": lines,
        "payments": (Payment("cash", subtotal - discount),),
        "loyalty": (),
        "subtotal_minor": subtotal,
        "discount_minor": discount,
        "total_minor": subtotal - discount,
        "promo_version": 1,
    }
    fields.update(overrides)
    return Sale(**fields)


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(
    tmp_path: Path,
    *,
    center_url: str = "http://127.0.0.1:9",
    port: int = 0,
    advertise: bool = False,
    signatures: bool = False,
    **center: Any,
) -> Config:
    """A valid config with fast timings, data under tmp_path/store."""
    center_table: dict[str, Any] = {
        "url": center_url,
        "batch_size": 500,
        "interval_s": 0.05,
        "backoff_initial_s": 0.02,
        "backoff_max_s": 0.1,
        "timeout_s": 2.0,
        "master_poll_s": 0.05,
    }
    center_table.update(center)
    doc = {
        "store": {
            "store_id": STORE_ID,
            "node_id": "store-367",
            "listen_host": "127.0.0.1",
            "listen_port": port,
            "data_dir": "store",
            "advertise": advertise,
        },
        "center": center_table,
        "security": {"require_signatures": signatures},
    }
    return parse_config(doc, base_dir=tmp_path)


class Clock:
    """A settable UTC clock for create_app(clock=...)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def batch_body(*sales: Sale, sender: str = "367-1") -> bytes:
    """A register's sale_batch envelope."""
    return encode(SaleBatch(sales=tuple(sales)), sender=sender, sent_at=T0)


def heartbeat_body(**overrides: Any) -> bytes:
    """A register's heartbeat envelope."""
    fields: dict[str, Any] = {
        "node_id": "367-1",
        "role": "register",
        "store_id": STORE_ID,
        "sent_at": T0,
        "last_seq": 5,
        "queue_depth": 2,
        "oldest_queued_at": T0,
        "master_version": 3,
        "devices": {"printer": "online", "display": "offline"},
    }
    fields.update(overrides)
    return encode(Heartbeat(**fields), sender=fields["node_id"], sent_at=T0)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 10.0
) -> None:
    """Poll an async check with a deadline (for effects with no event to await)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class FakeCenter:
    """A real HTTP server standing in for the Center: records what it gets, can fail or go away."""

    port: int = field(default_factory=free_port)
    fail_status: int | None = None
    reject: dict[str, str] = field(default_factory=dict)
    ignore: set[str] = field(default_factory=set)
    max_batch: int | None = None
    master: MasterSnapshot | None = None
    batches: list[list[str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # each POST /v1/ingest as received
    received: Counter[str] = field(default_factory=Counter)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    master_queries: list[dict[str, str]] = field(default_factory=list)
    # register_id -> (max_seq, gaps): what GET /v1/reconciliation says the Center holds.
    coverage: dict[str, tuple[int, list[list[int]]]] = field(default_factory=dict)
    reconciliations: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stored(self) -> set[str]:
        return set(self.received)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (event-driven) until predicate() holds after some request, or fail."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def _ingest(self, request: web.Request) -> web.Response:
        self.requests += 1
        try:
            if self.fail_status is not None:
                return web.json_response({"error": "boom"}, status=self.fail_status)
            body = await request.read()
            self.bodies.append(body)
            batch = decode(body, expect=SaleBatch).message
            assert isinstance(batch, SaleBatch)
            ids = [sale.sale_id for sale in batch.sales]
            if self.max_batch is not None and len(ids) > self.max_batch:
                return web.json_response({"error": "too_large"}, status=413)
            self.batches.append(ids)
            accepted: list[str] = []
            duplicates: list[str] = []
            rejected: list[Rejection] = []
            for sale_id in ids:
                if sale_id in self.ignore:
                    continue
                if sale_id in self.reject:
                    rejected.append(Rejection(sale_id, self.reject[sale_id]))
                    continue
                (duplicates if sale_id in self.received else accepted).append(sale_id)
                self.received[sale_id] += 1
            ack = Ack(tuple(accepted), tuple(duplicates), tuple(rejected))
            return web.Response(body=encode(ack, sender="center"), content_type=CONTENT_TYPE)
        finally:
            await self._notify()

    async def _heartbeat(self, request: web.Request) -> web.Response:
        self.requests += 1
        beat = decode(await request.read(), expect=Heartbeat).message
        assert isinstance(beat, Heartbeat)
        self.heartbeats.append(beat)
        await self._notify()
        return web.json_response({"ok": True})

    async def _master(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.master_queries.append(dict(request.query))
        await self._notify()
        if self.fail_status is not None or self.master is None:
            return web.json_response({"error": "boom"}, status=self.fail_status or 500)
        since = int(request.query.get("since", "0"))
        snapshot: MasterSnapshot | MasterDelta = self.master
        if since == self.master.version:
            # Up to date: an empty delta (docs/API.md, master data contract).
            snapshot = MasterDelta(from_version=since, to_version=since)
        return web.Response(body=encode(snapshot, sender="center"), content_type=CONTENT_TYPE)

    async def _reconciliation(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.reconciliations.append(dict(request.query))
        await self._notify()
        if self.fail_status is not None:
            return web.json_response({"error": "boom"}, status=self.fail_status)
        registers = [
            {"register_id": register_id, "max_seq": max_seq, "gaps": gaps}
            for register_id, (max_seq, gaps) in sorted(self.coverage.items())
        ]
        return web.json_response({"registers": registers})

    async def start(self) -> None:
        """Listen on self.port (the same port again after stop())."""
        app = web.Application()
        app.router.add_get("/v1/reconciliation", self._reconciliation)
        app.router.add_post("/v1/ingest", self._ingest)
        app.router.add_post("/v1/heartbeat", self._heartbeat)
        app.router.add_get("/v1/master", self._master)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Stop listening: connections are refused, as when the Center is down."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class RunningNode:
    """A store node served over real HTTP on loopback, with a client session."""

    app: web.Application
    url: str
    session: aiohttp.ClientSession

    async def post(self, path: str, body: bytes, content_type: str = CONTENT_TYPE) -> Any:
        async with self.session.post(
            self.url + path, data=io.BytesIO(body), headers={"Content-Type": content_type}
        ) as response:
            return response.status, response.content_type, await response.read()

    async def send(self, *sales: Sale) -> Ack:
        status, _, body = await self.post("/v1/sales", batch_body(*sales))
        assert status == 200, body
        ack = decode(body, expect=Ack).message
        assert isinstance(ack, Ack)
        return ack

    async def get_json(self, path: str, expect: int = 200) -> Any:
        async with self.session.get(self.url + path) as response:
            assert response.status == expect, await response.text()
            assert response.content_type == "application/json"
            return await response.json()


@asynccontextmanager
async def running_node(config: Config, **options: Any) -> AsyncIterator[RunningNode]:
    """Start create_app(config, **options) on config's port (a free one when 0), then stop it."""
    app = create_app(config, **options)
    runner = web.AppRunner(app)
    await runner.setup()
    port = config.store.listen_port or free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningNode(app, f"http://127.0.0.1:{port}", session)
    finally:
        await runner.cleanup()


def self_signed_cert(folder: Path, name: str = "store") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
