"""Center -> store node -> register over real HTTP: deltas, card lookup, the Center away."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from center.config import load_config as load_center_config
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app as create_center
from store_node.app import FORWARDER_KEY
from sync_protocol import MasterDelta, MasterSnapshot, decode, replica_checksum
from tests.center.center_factories import CARD, OTHER_CARD, make_sale, master_tables
from tests.center.center_factories import write_config as write_center_config
from tests.store_node.store_fakes import RunningNode, free_port, make_config, running_node

KEYS = {
    "products": "product_id",
    "stores": "store_id",
    "promotions": "promotion_id",
    "settings": "name",
    "cards": "card_no",
}


@dataclass
class Center:
    url: str
    storage: SqliteStorage
    runner: web.AppRunner
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def _start_center(
    storage: SqliteStorage, folder: Path, port: int, master: str = ""
) -> Center:
    # Every delta checksummed: the conservative setting (more work per poll than the default).
    config = load_center_config(
        write_center_config(folder, extra="[master]\nchecksum_every_s = 0\n" + master)
    )
    runner = web.AppRunner(create_center(config, storage))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Center(f"http://127.0.0.1:{port}", storage, runner, port)


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[Center]:
    (tmp_path / "center").mkdir()
    storage = SqliteStorage(tmp_path / "center" / "center.db")
    storage.migrate()
    storage.feed.upsert_master(master_tables())
    # CARD shopped at 367 lately: it is in the store's scope; OTHER_CARD is not.
    now = datetime.now(UTC)
    sale = make_sale(1, card_no=CARD, accrue=40)
    recent = dataclasses.replace(sale, opened_at=now - timedelta(minutes=1), closed_at=now)
    storage.sales.ingest([recent], now)
    running = await _start_center(storage, tmp_path / "center", free_port())
    try:
        yield running
    finally:
        await running.stop()
        storage.close()


class Register:
    """A register's master replica driven over plain HTTP, checking every checksum."""

    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self.version = 0
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self.repairs = 0

    async def poll(self) -> None:
        async with self.node.session.get(
            f"{self.node.url}/v1/master", params={"since": str(self.version)}
        ) as response:
            assert response.status == 200, await response.text()
            message = decode(await response.read(), expect=(MasterSnapshot, MasterDelta)).message
        if isinstance(message, MasterSnapshot):
            self.tables = {
                t: {r[KEYS[t]]: copy.deepcopy(r) for r in rows}
                for t, rows in message.tables.items()
            }
            self.version = message.version
        else:
            assert isinstance(message, MasterDelta)
            assert message.from_version == self.version
            for table, keys in message.deletes.items():
                for key in keys:
                    self.tables.get(table, {}).pop(key, None)
            for table, rows in message.upserts.items():
                for row in rows:
                    self.tables.setdefault(table, {})[row[KEYS[table]]] = copy.deepcopy(row)
            self.version = message.to_version
        if message.checksum:
            mine = replica_checksum({t: list(r.values()) for t, r in self.tables.items()})
            if mine != message.checksum:
                self.repairs += 1
                self.version = 0


async def test_a_promotion_change_reaches_a_register_within_10_s(
    tmp_path: Path, center: Center
) -> None:
    # The default intervals: store node polls the Center every 5 s, the register every 5 s.
    config = make_config(tmp_path, center_url=center.url, master_poll_s=5.0, interval_s=5.0)
    async with running_node(config) as node:
        register = Register(node)
        deadline = time.monotonic() + 10
        while "promotions" not in register.tables and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            async with node.session.get(f"{node.url}/v1/master?since=0") as response:
                if response.status == 200:
                    await register.poll()
        assert register.tables["promotions"]["base-accrual-3"]["doc"]["x"] == 1

        async def register_loop() -> None:
            while True:
                await register.poll()
                await asyncio.sleep(5.0)

        task = asyncio.create_task(register_loop())
        try:
            await asyncio.sleep(1.3)  # any phase: the change lands between polls
            changed_at = time.monotonic()
            doc = {"promotion_id": "base-accrual-3", "x": 2}
            center.storage.feed.upsert_master(
                {"promotions": [{"promotion_id": "base-accrual-3", "doc": doc}]}
            )
            while register.tables["promotions"]["base-accrual-3"]["doc"]["x"] != 2:
                assert time.monotonic() - changed_at < 10.0, "not at the register within 10 s"
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - changed_at
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert elapsed < 10.0
    assert register.repairs == 0


async def test_card_lookup_and_serving_while_the_center_is_away(
    tmp_path: Path, center: Center
) -> None:
    config = make_config(tmp_path, center_url=center.url)
    async with running_node(config, run_jobs=False) as node:
        forwarder = node.app[FORWARDER_KEY]
        assert await forwarder.poll_master_once() == center.storage.feed.master_version()
        register = Register(node)
        await register.poll()
        assert set(register.tables["cards"]) == {CARD}

        async def card(card_no: str) -> tuple[int, Any]:
            async with node.session.get(f"{node.url}/v1/cards/{card_no}") as response:
                return response.status, await response.json()

        assert await card(CARD) == (200, register.tables["cards"][CARD])
        status, row = await card(OTHER_CARD)  # not held: asked of the Center
        assert status == 200 and row["card_no"] == OTHER_CARD and row["status"] == "blocked"
        status, body = await card("0000000000000")
        assert status == 404 and body["error"] == "unknown_object"
        # The Center added the looked-up card to the store: the next delta brings it.
        await forwarder.poll_master_once()
        await register.poll()
        assert set(register.tables["cards"]) == {CARD, OTHER_CARD}
        assert register.repairs == 0

        await center.stop()
        held = register.version
        assert await forwarder.poll_master_once() is None  # the Center is away
        assert (await card(OTHER_CARD))[0] == 200  # still served from the node
        status, body = await card("2900000000099")
        assert status == 503 and body["error"] == "unavailable"
        fresh = Register(node)
        await fresh.poll()  # a register starting now gets the whole cache
        assert fresh.version == held and fresh.tables == register.tables


async def test_a_drifted_store_cache_is_repaired(tmp_path: Path, center: Center) -> None:
    config = make_config(tmp_path, center_url=center.url)
    async with running_node(config, run_jobs=False) as node:
        forwarder = node.app[FORWARDER_KEY]
        await forwarder.poll_master_once()
        path = config.db_path

        def corrupt() -> None:
            import sqlite3

            with sqlite3.connect(path) as conn:
                conn.execute(
                    "UPDATE master_rows SET row = replace(row, 'Milk', 'Mlik') "
                    "WHERE row_key = '1000'"
                )

        await asyncio.to_thread(corrupt)
        center.storage.feed.upsert_master(
            {"settings": [{"name": "bonus_max_share", "value": "0.3"}]}
        )
        assert await forwarder.poll_master_once() is not None
        register = Register(node)
        await register.poll()
        assert register.tables["products"]["1000"]["name"] == "Milk"
        assert register.tables["settings"]["bonus_max_share"]["value"] == "0.3"


async def test_a_big_change_travels_in_pages(tmp_path: Path, center: Center) -> None:
    await center.stop()
    paged = await _start_center(
        center.storage, tmp_path / "center", free_port(), "delta_max_rows = 100\n"
    )
    try:
        config = make_config(tmp_path, center_url=paged.url)
        async with running_node(config, run_jobs=False) as node:
            forwarder = node.app[FORWARDER_KEY]
            await forwarder.poll_master_once()
            register = Register(node)
            await register.poll()
            for batch in range(3):
                rows = [{"product_id": f"n{batch}-{i:02d}", "name": f"New {i}"} for i in range(60)]
                paged.storage.feed.upsert_master(
                    {
                        "products": rows,
                        "store_products": [
                            {"store_id": "367", "product_id": r["product_id"]} for r in rows
                        ],
                    }
                )
            # One poll follows every page up to the Center's version.
            assert await forwarder.poll_master_once() == paged.storage.feed.master_version()
            while True:
                before = register.version
                await register.poll()
                if register.version == before:
                    break
            assert len(register.tables["products"]) == 2 + 180
            assert register.repairs == 0
    finally:
        await paged.stop()
