"""The register's replica: deltas with tombstones, checksums, repair, and its sync age."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from pos_agent import Config
from pos_agent.replica import Replica
from sync_protocol import (
    CONTENT_TYPE,
    MasterDelta,
    MasterSnapshot,
    encode,
    replica_checksum,
)
from tests.pos_agent.pos_fakes import (
    CARD,
    demo_snapshot,
    free_port,
    health_until,
    make_config,
    running_agent,
    seed_replica,
)


def test_delta_with_tombstones_matches_the_senders_checksum(tmp_path: Path) -> None:
    snapshot = demo_snapshot(version=1)
    replica = Replica(tmp_path / "replica.db")
    try:
        replica.apply_snapshot(snapshot)
        assert replica.checksum() == replica_checksum(snapshot.tables)
        assert replica.synced_at() is None
        new_card = {"card_no": "42", "customer_id": "c42", "bonus_balance": -30, "segments": []}
        delta = MasterDelta(
            from_version=1,
            to_version=2,
            upserts={"cards": (new_card,)},
            deletes={"products": ("gum",), "cards": ("2000000000028",)},
        )
        assert replica.apply_delta(delta)
        expected = dict(snapshot.tables)
        expected["products"] = tuple(r for r in expected["products"] if r["product_id"] != "gum")
        expected["cards"] = (
            *(r for r in expected["cards"] if r["card_no"] != "2000000000028"),
            new_card,
        )
        assert replica.checksum() == replica_checksum(expected)
        assert replica.product("gum") is None
        assert replica.card("2000000000028") is None
        card = replica.card("42")
        assert card is not None and card.bonus_balance == -30
    finally:
        replica.close()


def test_looked_up_cards_are_not_master_data(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "replica.db")
    try:
        replica.apply_snapshot(demo_snapshot(version=1))
        before = replica.checksum()
        replica.remember_card({"card_no": "77", "bonus_balance": 5}, datetime.now(UTC))
        card = replica.card("77")
        assert card is not None and card.bonus_balance == 5
        assert replica.checksum() == before
        assert replica.master_version() == 1
    finally:
        replica.close()


class MasterServer:
    """A store node's GET /v1/master with checksums: deltas for since>0, snapshots for 0."""

    def __init__(self, truth: MasterSnapshot) -> None:
        self.truth = truth
        self.polls: list[str] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def _master(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        self.polls.append(str(since))
        checksum = replica_checksum(self.truth.tables)
        message: MasterSnapshot | MasterDelta
        if since == 0:
            message = MasterSnapshot(self.truth.version, self.truth.tables, checksum=checksum)
        else:
            message = MasterDelta(since, self.truth.version, checksum=checksum)
        return web.Response(body=encode(message, sender="store-367"), content_type=CONTENT_TYPE)

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/master", self._master)
        app.router.add_post("/v1/heartbeat", self._ok)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _balance(config: Config) -> int | None:
    replica = Replica(config.register.replica_path)
    try:
        card = replica.card(CARD)
        return None if card is None else card.bonus_balance
    finally:
        replica.close()


async def test_checksum_mismatch_triggers_a_full_resync(tmp_path: Path) -> None:
    truth = demo_snapshot(version=5, card_balance=1000)
    server = MasterServer(truth)
    await server.start()
    try:
        config = make_config(tmp_path / "pos", url=f"http://127.0.0.1:{server.port}")
        # The replica drifted: same version, another balance (e.g. a damaged file).
        seed_replica(config, demo_snapshot(version=5, card_balance=3))
        async with running_agent(config) as client:
            await health_until(client, lambda h: h["master_version"] == 5)
            deadline = time.monotonic() + 10
            while "0" not in server.polls:
                assert time.monotonic() < deadline, server.polls
                await asyncio.sleep(0.02)
            while _balance(config) != 1000:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            health = await health_until(client, lambda h: h["last_error"] is None)
            # Once repaired, polls are deltas again (no resync loop).
            repaired_at = server.polls.index("0")
            while len(server.polls) < repaired_at + 3:
                assert time.monotonic() < deadline, server.polls
                await asyncio.sleep(0.02)
        assert server.polls[0] == "5"  # a delta first; its checksum did not match
        assert server.polls.count("0") == 1
        assert health["master_version"] == 5
        replica = Replica(config.register.replica_path)
        try:
            assert replica.checksum() == replica_checksum(truth.tables)
            assert replica.synced_at() is not None
        finally:
            replica.close()
    finally:
        await server.stop()


async def test_replica_checksum_agrees_with_a_real_store_node(tmp_path: Path) -> None:
    from store_node.app import WORKER_KEY
    from tests.store_node.store_fakes import make_config as store_config
    from tests.store_node.store_fakes import running_node

    truth = demo_snapshot(version=4, card_balance=250)
    async with running_node(store_config(tmp_path / "store"), run_jobs=False) as node:
        payload = encode(truth, sender="center")
        now = datetime.now(UTC)
        await node.app[WORKER_KEY].run(lambda box: box.save_master(4, payload, now=now))
        state = await node.app[WORKER_KEY].run(lambda box: box.master_state())
        assert state is not None
        config = make_config(tmp_path / "pos", url=node.url)
        async with running_agent(config) as client:
            await health_until(client, lambda h: h["master_version"] == 4)
            await health_until(client, lambda h: h["last_error"] is None)
    replica = Replica(config.register.replica_path)
    try:
        assert replica.checksum() == state.checksum
        assert replica.synced_at() is not None
        card = replica.card(CARD)
        assert card is not None and card.bonus_balance == 250
    finally:
        replica.close()
