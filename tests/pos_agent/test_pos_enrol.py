"""A register enrolled at a real store node signs every request; unenrolled it is refused."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from pos_agent.credentials import CREDENTIALS_FILE, enrol, save_credentials
from pos_agent.errors import EnrolmentFailed
from store_node.app import AUTH_KEY
from tests.pos_agent.pos_fakes import BREAD, make_config, running_agent, seed_replica, sell
from tests.store_node.store_fakes import make_config as store_config
from tests.store_node.store_fakes import running_node


async def _receipts(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/v1/sales/summary") as response:
        registers = (await response.json())["registers"]
    return sum(int(r["receipts"]) for r in registers)


async def test_an_enrolled_register_delivers_signed_and_a_token_works_once(
    tmp_path: Path,
) -> None:
    async with running_node(store_config(tmp_path / "store", signatures=True)) as node:
        token = node.app[AUTH_KEY].issue_token("367-1", datetime.now(UTC), 1)
        config = make_config(tmp_path / "pos", url=node.url)
        seed_replica(config)
        creds = await asyncio.to_thread(enrol, node.url, token, "367-1", timeout_s=5)
        path = save_credentials(config.register.data_dir, creds)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["register_id"] == "367-1"
        with pytest.raises(EnrolmentFailed, match="token_used"):
            await asyncio.to_thread(enrol, node.url, token, "367-1", timeout_s=5)

        async with running_agent(config) as client:
            await sell(client, [BREAD])
            deadline = time.monotonic() + 10
            while await _receipts(node.session, node.url) < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        assert await _receipts(node.session, node.url) == 1


async def test_an_unenrolled_register_is_refused_and_keeps_its_sale(tmp_path: Path) -> None:
    async with running_node(store_config(tmp_path / "store", signatures=True)) as node:
        config = make_config(tmp_path / "pos", url=node.url)
        seed_replica(config)
        assert not (config.register.data_dir / CREDENTIALS_FILE).exists()
        async with running_agent(config) as client:
            await sell(client, [BREAD])
            deadline = time.monotonic() + 10
            health: dict[str, object] = {}
            while time.monotonic() < deadline:
                health = await (await client.get("/health")).json()
                if health.get("last_error"):
                    break
                await asyncio.sleep(0.05)
        assert "401" in str(health["last_error"])
        assert health["queue_depth"] == 1
        assert await _receipts(node.session, node.url) == 0
