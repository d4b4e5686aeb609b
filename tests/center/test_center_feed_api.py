"""GET /v1/master (deltas) and GET /v1/cards/{card_no}/lookup through a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.errors import ConfigError, UnknownObject
from center.feed.api import feed_settings
from center.storage import Storage
from center.web.app import create_app
from sync_protocol import MasterDelta, MasterSnapshot, decode
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_auth import Clock, enrol, refusal, signed

NOW = T0 + timedelta(days=1)

# The customer state the Center derives for CARD from its one sale at 367 (4.49, 40 accrued by
# base-accrual-3 on 2024-03-01) and the customer's attributes (center/crm/state.py).
CARD_STATE = {
    "v": 1,
    "attributes": {"age": "65+"},
    "purchases": 1,
    "visits": 1,
    "spend_minor": 449,
    "wallets": {"bonus": 40},
    "fired_total": {"base-accrual-3": 1},
    "seen": {"367-1": 1},
    "days": {
        "2024-03-01": {
            "purchases": 1,
            "spend_minor": 449,
            "fired": {"base-accrual-3": 1},
            "accrued": {"bonus": 40},
        }
    },
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    storage.sales.ingest([make_sale(1, card_no=CARD, accrue=40)], NOW)
    clock = Clock()
    async with TestClient(TestServer(create_app(config, storage, clock=clock))) as client:
        yield client


async def _get(client: TestClient[Any, Any], node: dict[str, str], path: str, **query: str) -> Any:
    return await client.get(path, params=query, headers=signed(node, "GET", path, query=query))


async def test_master_snapshot_then_delta(client: TestClient[Any, Any], storage: Storage) -> None:
    node = await enrol(client, storage, "406")
    response = await _get(client, node, "/v1/master", store_id="406", since="0")
    assert response.status == 200
    snapshot = decode(await response.read(), expect=MasterSnapshot).message
    assert isinstance(snapshot, MasterSnapshot) and snapshot.checksum
    storage.feed.upsert_master({"settings": [{"name": "bonus_max_share", "value": "0.2"}]})
    since = str(snapshot.version)
    response = await _get(client, node, "/v1/master", store_id="406", since=since)
    delta = decode(await response.read(), expect=MasterDelta).message
    assert isinstance(delta, MasterDelta)
    assert delta.upserts == {"settings": ({"name": "bonus_max_share", "value": "0.2"},)}


async def test_lookup_adds_the_card_to_the_store(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    node = await enrol(client, storage, "406")
    path = f"/v1/cards/{CARD}/lookup"
    response = await _get(client, node, path, store_id="406")
    assert response.status == 200
    assert await response.json() == {
        "card_no": CARD,
        "customer_id": "hh-1",
        "status": "active",
        "bonus_balance": 40,
        "segments": [],
        "state": CARD_STATE,
    }
    snapshot = storage.feed.master_feed("406", 0, NOW)
    assert isinstance(snapshot, MasterSnapshot)
    assert [c["card_no"] for c in snapshot.tables["cards"]] == [CARD]
    unknown = await _get(client, node, "/v1/cards/0000000000000/lookup", store_id="406")
    assert "0000000000000" in await refusal(unknown, 404, UnknownObject.kind)
    other = await _get(client, node, path, store_id="367")
    await refusal(other, 403, "forbidden")


async def test_lookup_needs_a_node(client: TestClient[Any, Any], storage: Storage) -> None:
    path = f"/v1/cards/{CARD}/lookup"
    response = await client.get(path, params={"store_id": "406"})
    await refusal(response, 401, "unauthorized")
    marketer = StaffApi(client, staff_token(storage, "marketer"))
    status, body = await marketer.call("GET", path, query={"store_id": "406"})
    assert status == 403 and body["error"] == "forbidden"


def test_master_config_section(tmp_path: Path) -> None:
    default = load_config(write_config(tmp_path))
    assert (default.master.card_scope_days, default.master.checksum_every_s) == (365, 300)
    assert feed_settings(default).scope_days == 365
    tuned = write_config(tmp_path, extra="[master]\ncard_scope_days = 90\ndelta_max_rows = 500\n")
    assert feed_settings(load_config(tuned)).max_rows == 500
    bad = write_config(tmp_path, extra="[master]\ncard_scope_days = 0\nscope = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert any("master.card_scope_days" in p for p in caught.value.problems)
    assert "master.scope: unknown key" in caught.value.problems
