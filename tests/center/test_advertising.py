"""Advertising blocks: the checks of every field (media links, rich text), the pure selection by
audience, placement, channel, period and priority, the repository on both backends, and the
JSON routes with who may call them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.advertising.model import Block, Viewer, parse_block, select_blocks
from center.config import Config, load_config
from center.crm.model import CustomerInput
from center.errors import Conflict, InvalidRequest
from center.promotions.segments import SegmentInput
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import T0, master_tables, write_config
from tests.center.staff import StaffApi, staff_token


def body(**change: Any) -> dict[str, Any]:
    """A valid block of the portal's home page for everyone, the month around T0 (Moscow)."""
    doc: dict[str, Any] = {
        "block_id": "spring-banner",
        "name": "Spring week",
        "description": "Banner of the spring campaign",
        "audience": "everyone",
        "placement": "home_top",
        "priority": 10,
        "channels": ["portal", "app"],
        "timezone": "Europe/Moscow",
        "starts_at": "2024-02-15T00:00",
        "ends_at": "2024-03-15T00:00",
        "media_url": "https://cdn.example.com/spring/banner.jpg",
        "link_url": "https://shop.example.com/spring",
        "rich_text": "<p><b>-20 %</b> on tulips</p>",
    }
    doc.update(change)
    return {k: v for k, v in doc.items() if v is not None}


def block(**change: Any) -> Block:
    return Block(parse_block(body(**change)), 1, T0)


# -- the checks -------------------------------------------------------------------------------


def test_a_block_is_read_with_its_times_in_its_zone_and_kept_in_utc() -> None:
    data = parse_block(body())
    assert data.starts_at == datetime(2024, 2, 14, 21, 0, tzinfo=UTC)  # Moscow is UTC+3
    assert data.media_kind == "image"
    assert data.channels == ("portal", "app")
    assert parse_block(body(media_url="https://cdn.example.com/a/clip.MP4")).media_kind == "video"


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.com/banner.jpg",  # not https
        "javascript:alert(1)//x.jpg",
        "https://cdn.example.com/banner.svg",  # may carry script
        "https://cdn.example.com/banner.exe",
        "https://cdn.example.com/banner",
        "https://127.0.0.1/banner.jpg",  # an address, not a host
        "https://[::1]/banner.jpg",
        "https://localhost/banner.jpg",
        "https://printer.local/banner.jpg",
        "https://user:secret@cdn.example.com/banner.jpg",
        "https://cdn.example.com:8443/banner.jpg",
        "https://cdn.example.com/ban ner.jpg",
        "https://cdn.example.com:99999/banner.jpg",
        "https://",
        "//cdn.example.com/banner.jpg",
    ],
)
def test_a_malformed_media_link_is_refused_naming_the_field(url: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_block(body(media_url=url))
    assert caught.value.field == "body.media_url"
    assert caught.value.status == 422


def test_media_hosts_when_the_chain_lists_them_are_the_only_ones_allowed() -> None:
    hosts = frozenset({"cdn.example.com"})
    assert parse_block(body(), media_hosts=hosts).media_url.startswith("https://cdn.example.com")
    with pytest.raises(InvalidRequest, match="not allowed") as caught:
        parse_block(body(media_url="https://evil.example.net/a.png"), media_hosts=hosts)
    assert caught.value.field == "body.media_url"


def test_rich_text_keeps_allow_listed_tags_only() -> None:
    data = parse_block(
        body(
            rich_text='<p onclick="x()">Hi <script>alert(1)</script><img src=x onerror="alert(2)">'
            '<a href="javascript:alert(3)">bad</a> <a href="https://ok.example.com/">ok</a>'
            "<iframe src='https://evil.example.com'></iframe><style>p{}</style><em>!</em></p>"
        )
    )
    text = data.rich_text
    for gone in ("script", "alert", "onerror", "onclick", "<img", "iframe", "javascript", "style"):
        assert gone not in text, (gone, text)
    assert "<em>!</em>" in text
    assert '<a href="https://ok.example.com/" rel="noopener noreferrer nofollow">ok</a>' in text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"block_id": "has space"}, "body.block_id"),
        ({"name": " "}, "body.name"),
        ({"audience": "vips"}, "body.audience"),
        ({"audience": "segment"}, "body.segment_id"),
        ({"placement": "Home Top"}, "body.placement"),
        ({"priority": 1001}, "body.priority"),
        ({"priority": True}, "body.priority"),
        ({"priority": "5"}, "body.priority"),
        ({"channels": []}, "body.channels"),
        ({"channels": ["tv"]}, "body.channels"),
        ({"timezone": "Mars/Olympus"}, "body.timezone"),
        ({"starts_at": "tomorrow"}, "body.starts_at"),
        ({"ends_at": "2024-02-01T00:00"}, "body.ends_at"),
        ({"link_url": "http://shop.example.com"}, "body.link_url"),
        ({"media_url": "", "rich_text": "<script>only</script>"}, "body.media_url"),
        ({"status": "deleted"}, "body.status"),
        ({"colour": "red"}, "body.colour"),
    ],
)
def test_every_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_block(body(**change))
    assert caught.value.field == field


# -- selection --------------------------------------------------------------------------------


def _ids(found: list[Block]) -> list[str]:
    return [b.data.block_id for b in found]


def test_selection_by_audience_placement_channel_period_and_priority() -> None:
    blocks = [
        block(block_id="all-low", priority=1),
        block(block_id="all-high", priority=50),
        block(block_id="vip", priority=99, audience="segment", segment_id="vip"),
        block(block_id="holders", priority=40, audience="card_holders"),
        block(block_id="strangers", priority=30, audience="no_card"),
        block(block_id="app-only", priority=100, channels=["app"]),
        block(block_id="other-slot", priority=100, placement="history"),
        block(block_id="paused", priority=100, status="paused"),
        block(block_id="later", priority=100, starts_at="2024-03-02T00:00"),
        block(block_id="ended", priority=100, ends_at="2024-03-01T14:59"),  # 11:59 UTC
    ]

    def seen(viewer: Viewer) -> list[str]:
        return _ids(
            select_blocks(blocks, placement="home_top", channel="portal", viewer=viewer, now=T0)
        )

    assert seen(Viewer(frozenset({"vip"}), has_card=True)) == [
        "vip",
        "all-high",
        "holders",
        "all-low",
    ]
    assert seen(Viewer(frozenset({"other"}), has_card=True)) == ["all-high", "holders", "all-low"]
    assert seen(Viewer()) == ["all-high", "strangers", "all-low"]
    # The same moment a minute later: the ended block is gone, the later one not yet there.
    app = select_blocks(
        blocks, placement="home_top", channel="app", viewer=Viewer(), now=T0 + timedelta(days=1)
    )
    assert _ids(app)[0] == "later"
    assert "app-only" in _ids(app) and "ended" not in _ids(app)


def test_equal_priorities_show_the_newest_start_first() -> None:
    older = block(block_id="older", starts_at="2024-02-01T00:00")
    newer = block(block_id="newer", starts_at="2024-02-20T00:00")
    found = select_blocks(
        [older, newer], placement="home_top", channel="portal", viewer=Viewer(), now=T0, limit=1
    )
    assert _ids(found) == ["newer"]


# -- the repository, on both backends -------------------------------------------------------


def _customer_in_segment(storage: Storage) -> None:
    storage.customers.create_customer(CustomerInput("c-vip", {"last_name": "Ivanova"}), "t", T0)
    storage.customers.create_customer(CustomerInput("c-new", {"last_name": "Petrov"}), "t", T0)
    storage.customers.issue_card("c-vip", None, "electronic", "t", T0)
    storage.segments.create_segment(
        SegmentInput("vip", "VIP", "static", customer_ids=("c-vip",)), "t", T0
    )


def test_the_repository_stores_audits_and_selects_for_a_customer(storage: Storage) -> None:
    _customer_in_segment(storage)
    repo = storage.advertising
    repo.create_block(parse_block(body()), "mark", T0)
    repo.create_block(
        parse_block(body(block_id="vip", audience="segment", segment_id="vip", priority=90)),
        "mark",
        T0,
    )
    repo.create_block(
        parse_block(body(block_id="holders", audience="card_holders", priority=50)), "mark", T0
    )
    with pytest.raises(Conflict):
        repo.create_block(parse_block(body()), "mark", T0)
    with pytest.raises(InvalidRequest) as caught:
        repo.create_block(
            parse_block(body(block_id="x", audience="segment", segment_id="nobody")), "mark", T0
        )
    assert caught.value.field == "body.segment_id"
    assert repo.block("x") is None

    assert _ids(repo.blocks_for("c-vip", "home_top", "portal", T0)) == [
        "vip",
        "holders",
        "spring-banner",
    ]
    assert _ids(repo.blocks_for("c-new", "home_top", "portal", T0)) == ["spring-banner"]
    assert _ids(repo.blocks_for(None, "home_top", "app", T0)) == ["spring-banner"]
    assert repo.blocks_for("c-vip", "home_top", "portal", T0 + timedelta(days=30)) == []

    changed = repo.update_block(parse_block(body(priority=95)), "ann", T0)
    assert changed.revision == 2
    assert repo.update_block(parse_block(body(priority=95)), "ann", T0).revision == 2
    assert _ids(repo.blocks_for("c-vip", "home_top", "portal", T0))[0] == "spring-banner"
    history = storage.audit.audit_history("ad_block", "spring-banner")
    assert [(h["action"], h["actor"]) for h in history] == [("create", "mark"), ("update", "ann")]
    stored = repo.block("spring-banner")
    assert stored is not None and stored.data == parse_block(body(priority=95))


# -- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=False))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


async def test_marketers_write_analysts_read_and_call_center_sees_nothing(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    _customer_in_segment(storage)
    marketer = StaffApi(client, staff_token(storage, "marketer"))
    analyst = StaffApi(client, staff_token(storage, "data_analyst"))
    operator = StaffApi(client, staff_token(storage, "call_center"))
    status, created = await marketer.call("POST", "/v1/advertising/blocks", body())
    assert status == 201, created
    assert created["revision"] == 1 and created["media_kind"] == "image"
    status, _ = await marketer.call("POST", "/v1/advertising/blocks", body())
    assert status == 409
    status, _ = await analyst.call("POST", "/v1/advertising/blocks", body(block_id="b2"))
    assert status == 403
    status, listed = await analyst.call("GET", "/v1/advertising/blocks")
    assert status == 200 and [b["block_id"] for b in listed["blocks"]] == ["spring-banner"]
    status, _ = await operator.call("GET", "/v1/advertising/blocks")
    assert status == 403
    status, changed = await marketer.call(
        "PUT", "/v1/advertising/blocks/spring-banner", body(audience="card_holders")
    )
    assert status == 200 and changed["revision"] == 2
    query = {"placement": "home_top", "customer_id": "c-vip"}
    status, seen = await analyst.call("GET", "/v1/advertising/selection", query=query)
    assert status == 200 and [b["block_id"] for b in seen["blocks"]] == ["spring-banner"]
    query = {"placement": "home_top", "customer_id": "c-new"}
    status, seen = await analyst.call("GET", "/v1/advertising/selection", query=query)
    assert seen["blocks"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"media_url": "https://cdn.example.com/x.svg"}, "body.media_url"),
        ({"media_url": "ftp://cdn.example.com/x.png"}, "body.media_url"),
        ({"link_url": "javascript:alert(1)"}, "body.link_url"),
        ({"timezone": "Nowhere/City"}, "body.timezone"),
    ],
)
async def test_bad_input_over_http_is_a_422_naming_the_field_and_writes_nothing(
    client: TestClient[Any, Any], storage: Storage, change: dict[str, Any], field: str
) -> None:
    marketer = StaffApi(client, staff_token(storage, "marketer"))
    status, answer = await marketer.call("POST", "/v1/advertising/blocks", body(**change))
    assert status == 422, answer
    assert answer["detail"].startswith(field)
    assert storage.advertising.blocks() == []
    assert storage.audit.audit_history("ad_block", "spring-banner") == []
