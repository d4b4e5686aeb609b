"""Segment routes over HTTP: create static and dynamic, upload, recalculate, members, history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.errors import ConfigError
from center.promotions.segments import SegmentInput, parse_rule
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import (
    CARD,
    OTHER_CARD,
    T0,
    make_sale,
    master_tables,
    write_config,
)
from tests.center.staff import StaffApi, staff_token

NOW = T0 + timedelta(days=1)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    storage.sales.ingest([make_sale(1, card_no=CARD)], T0)
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: NOW))) as client:
        yield client


@pytest.fixture
def api(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "marketer", username="marketer-1"))


async def test_static_and_dynamic_segments(api: StaffApi) -> None:
    status, static = await api.call(
        "POST",
        "/v1/segments",
        {"segment_id": "mail", "name": "Mailing", "kind": "static", "card_nos": [OTHER_CARD]},
    )
    assert status == 201 and static["members"] == 1, static
    status, body = await api.call(
        "POST", "/v1/segments/mail/members", {"card_nos": [CARD, "2900404"], "mode": "add"}
    )
    assert status == 422 and body["detail"].startswith("body.card_nos: 1 unknown card(s): 2900404")
    status, done = await api.call(
        "POST", "/v1/segments/mail/members", {"card_nos": [CARD], "mode": "add"}
    )
    assert status == 200 and done["members"] == 2
    status, dynamic = await api.call(
        "POST",
        "/v1/segments",
        {"segment_id": "recent", "name": "Recent", "kind": "dynamic",
         "rule": {"recency_days": 7, "attributes": {"age": "65+"}}},
    )  # fmt: skip
    assert status == 201 and dynamic["members"] == 1
    assert dynamic["rule"] == {"attributes": {"age": "65+"}, "recency_days": 7}
    status, members = await api.call("GET", "/v1/segments/recent/members", query={"limit": "10"})
    assert status == 200 and members["customer_ids"] == ["hh-1"]
    status, done = await api.call("POST", "/v1/segments/recent/recalculate")
    assert status == 200 and (done["members"], done["added"], done["removed"]) == (1, 0, 0)
    status, found = await api.call("GET", "/v1/segments/recent")
    assert status == 200 and [h["members"] for h in found["history"]] == [1]
    status, listed = await api.call("GET", "/v1/segments")
    assert [s["segment_id"] for s in listed["segments"]] == ["mail", "recent"]
    status, body = await api.call(
        "POST", "/v1/segments", {"name": "Bad", "kind": "dynamic", "rule": {"recency_days": -1}}
    )
    assert status == 422 and body["detail"].startswith("body.rule.recency_days: ")
    status, body = await api.call("POST", "/v1/segments/mail/recalculate")
    assert status == 409
    status, body = await api.call("GET", "/v1/segments/nope")
    assert status == 404


async def test_who_may_call(client: TestClient[Any, Any], storage: Storage) -> None:
    anonymous = await client.get("/v1/segments")
    assert anonymous.status == 401
    call_center = StaffApi(client, staff_token(storage, "call_center"))
    status, body = await call_center.call("GET", "/v1/segments")
    assert status == 403 and "segments.read" in body["detail"]
    analyst = StaffApi(client, staff_token(storage, "data_analyst"))
    status, _ = await analyst.call("GET", "/v1/segments")
    assert status == 200
    status, body = await analyst.call(
        "POST", "/v1/segments", {"name": "X", "kind": "static", "customer_ids": ["hh-1"]}
    )
    assert status == 403 and "segments.write" in body["detail"]


def test_segments_config(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path)).segments.recalc_interval_s == 3600
    path = write_config(tmp_path, extra="\n[segments]\nrecalc_interval_s = 120\n")
    assert load_config(path).segments.recalc_interval_s == 120
    path = write_config(tmp_path, extra="\n[segments]\nrecalc_interval_s = 0\nevery = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "segments.recalc_interval_s" in text and "segments.every: unknown key" in text


async def test_scheduled_recalculation(tmp_path: Path, storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    storage.sales.ingest([make_sale(1, card_no=CARD)], T0)
    rule = parse_rule({"recency_days": 7})
    # Created a month later, nobody is recent; the job runs at the app's clock (NOW).
    storage.segments.create_segment(
        SegmentInput("recent", "Recent", "dynamic", rule=rule), "m", NOW + timedelta(days=30)
    )
    assert storage.segments.segment_members("recent") == []
    config = load_config(write_config(tmp_path, extra="\n[segments]\nrecalc_interval_s = 1\n"))
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: NOW))):
        deadline = time.monotonic() + 15
        while storage.segments.segment_members("recent") != ["hh-1"]:
            assert time.monotonic() < deadline, "the scheduled recalculation never ran"
            await asyncio.sleep(0.05)
    found = storage.segments.segment("recent")
    assert found is not None and found["recalculated_at"] == NOW.isoformat()
