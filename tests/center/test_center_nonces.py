"""Replay protection that survives a restart and spans Center workers, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.nodes import NONCE_HORIZON, issue_token
from center.access.nonces_store import PURGE_EVERY
from center.config import Config, load_config
from center.storage import Storage
from center.storage.sql import SqlStorage
from center.web.app import create_app
from tests.center.center_factories import T0, make_sale, master_tables, write_config
from tests.center.conftest import OpenStorage
from tests.center.test_center_auth import Clock, refusal, sales_body, signed


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@asynccontextmanager
async def center(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    """One Center worker (its own app, memory cache and connection) on the shared database."""
    async with TestClient(TestServer(create_app(config, storage, clock=Clock()))) as client:
        yield client


async def enrolled_node(client: TestClient[Any, Any], storage: Storage) -> dict[str, str]:
    token = issue_token(storage, "367", T0, 24)
    response = await client.post("/v1/enrol", json={"token": token})
    assert response.status == 200, await response.text()
    return dict(await response.json())


def stored_nonces(storage: Storage) -> int:
    assert isinstance(storage, SqlStorage)
    return int(storage.db.execute("SELECT COUNT(*) FROM request_nonces").fetchone()[0])


async def test_a_replay_is_refused_after_the_center_restarts(
    config: Config, open_storage: OpenStorage
) -> None:
    before = open_storage()
    before.feed.upsert_master(master_tables())
    body = sales_body(make_sale(1))
    async with center(config, before) as client:
        node = await enrolled_node(client, before)
        headers = signed(node, "POST", "/v1/ingest", body)
        first = await client.post("/v1/ingest", data=body, headers=headers)
        assert first.status == 200, await first.text()
    # A new process: a new connection to the same database, an empty memory cache. The old
    # connection is left open, as a killed process would leave it.
    after = open_storage()
    async with center(config, after) as client:
        again = await client.post("/v1/ingest", data=body, headers=headers)
        detail = await refusal(again, 401, "unauthorized")
        assert "X-Loyalty-Nonce" in detail and "replay" in detail
        # The node itself goes on: a fresh nonce for the same body passes.
        fresh = await client.post(
            "/v1/ingest", data=body, headers=signed(node, "POST", "/v1/ingest", body)
        )
        assert fresh.status == 200, await fresh.text()


async def test_a_replay_sent_to_another_worker_is_refused(
    config: Config, open_storage: OpenStorage
) -> None:
    one, two = open_storage(), open_storage()
    one.feed.upsert_master(master_tables())
    async with center(config, one) as first, center(config, two) as second:
        node = await enrolled_node(first, one)
        body = sales_body(make_sale(1))
        headers = signed(node, "POST", "/v1/ingest", body)
        accepted = await first.post("/v1/ingest", data=body, headers=headers)
        assert accepted.status == 200, await accepted.text()
        replayed = await second.post("/v1/ingest", data=body, headers=headers)
        assert "replay" in await refusal(replayed, 401, "unauthorized")

        # The same request to both workers at once: exactly one of them takes it.
        query = {"store_id": "367", "since": "0"}
        raced = signed(node, "GET", "/v1/master", query=query)
        answers = await asyncio.gather(
            *(
                client.get("/v1/master", params=query, headers=raced)
                for client in (first, second, first, second)
            )
        )
        assert sorted(a.status for a in answers) == [200, 401, 401, 401]


def test_a_nonce_is_claimed_once_and_old_ones_are_purged(open_storage: OpenStorage) -> None:
    storage = open_storage()
    other = open_storage()
    assert storage.nodes.claim_nonce("node-a", "n" * 32, T0, NONCE_HORIZON)
    assert not storage.nodes.claim_nonce("node-a", "n" * 32, T0, NONCE_HORIZON)
    assert not other.nodes.claim_nonce("node-a", "n" * 32, T0 + timedelta(minutes=9), NONCE_HORIZON)
    assert other.nodes.claim_nonce("node-b", "n" * 32, T0, NONCE_HORIZON)  # nonces are per node
    assert stored_nonces(storage) == 2

    # Past the horizon the rows go, in one delete with the next claim (at most once a minute).
    later = T0 + NONCE_HORIZON + timedelta(seconds=1)
    assert storage.nodes.claim_nonce("node-a", "m" * 32, later, NONCE_HORIZON)
    assert stored_nonces(storage) == 1
    assert storage.nodes.claim_nonce("node-a", "o" * 32, later + PURGE_EVERY / 2, NONCE_HORIZON)
    assert stored_nonces(storage) == 2
    assert storage.nodes.purge_nonces(later + timedelta(seconds=1)) == 1
    assert stored_nonces(storage) == 1
    # A row not purged yet but past the horizon does not hold its nonce.
    assert other.nodes.claim_nonce("node-a", "o" * 32, later + NONCE_HORIZON * 2, NONCE_HORIZON)
