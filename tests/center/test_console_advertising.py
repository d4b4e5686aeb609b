"""The advertising blocks' console pages through aiohttp's test client: the form stores what the
API would, errors sit by their fields with nothing written, rich text is sanitised, preview
renders without saving, rights (marketers write, analysts read), CSRF, and Russian."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.people import add_person
from center.config import Config, load_config
from center.crm.model import CustomerInput
from center.promotions.segments import SegmentInput
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import T0, write_config

PASSWORD = "correct horse battery"
FORM = {
    "block_id": "tulips",
    "name": "Tulip week",
    "description": "Spring campaign",
    "audience": "segment",
    "segment_id": "vip",
    "placement": "home_top",
    "priority": "20",
    "timezone": "Asia/Yekaterinburg",
    "starts_at": "2024-02-20T09:00",
    "ends_at": "2024-03-20T21:00",
    "media_url": "https://cdn.example.com/tulips.webp",
    "link_url": "https://shop.example.com/tulips",
    "rich_text": "<p>Tulips <b>-20 %</b><script>alert('x')</script>"
    '<img src=x onerror="alert(1)"></p>',
    "status": "active",
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = SqliteStorage(tmp_path / "console.db")
    storage.migrate()
    for name, role in (("mark", "marketer"), ("ann", "data_analyst"), ("olga", "call_center")):
        add_person(storage, name, role, PASSWORD, "test", T0)
    storage.customers.create_customer(CustomerInput("c-vip", {"last_name": "Ivanova"}), "t", T0)
    storage.segments.create_segment(
        SegmentInput("vip", "VIP", "static", customer_ids=("c-vip",)), "t", T0
    )
    return storage


@pytest.fixture
async def client(config: Config, db: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(config, db, clock=lambda: T0)
    browser = {"Accept-Language": "en", "Accept": "text/html,*/*;q=0.8"}
    async with TestClient(TestServer(app), headers=browser) as client:
        yield client
    db.close()


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


async def _signed_in(client: TestClient[Any, Any], username: str) -> str:
    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": username, "password": PASSWORD}
    response = await client.post("/sign-in", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    home = await client.get("/console/advertising")
    assert home.status == 200
    return _token(await home.text())


async def _post(
    client: TestClient[Any, Any],
    path: str,
    form: dict[str, str],
    token: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    data = [*form.items(), ("channels", "portal"), ("csrf_token", token)]
    response = await client.post(path, data=data, allow_redirects=False, headers=headers)
    return response.status, await response.text(), response.headers.get("Location", "")


async def test_a_marketer_creates_a_block_whose_rich_text_is_sanitised(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _signed_in(client, "mark")
    status, text, location = await _post(client, "/console/advertising/new", FORM, token)
    assert (status, location) == (303, "/console/advertising/tulips?done=saved"), text
    stored = db.advertising.block("tulips")
    assert stored is not None
    data = stored.data
    assert data.channels == ("portal",)
    assert data.starts_at.isoformat() == "2024-02-20T04:00:00+00:00"  # Yekaterinburg is UTC+5
    assert data.rich_text == "<p>Tulips <b>-20 %</b></p>"
    assert db.audit.audit_history("ad_block", "tulips")[0]["actor"] == (
        "mark via /console/advertising/new"
    )
    page = await client.get("/console/advertising/tulips?done=saved")
    html = await page.text()
    assert "alert" not in html and "onerror" not in html
    assert 'value="2024-02-20T09:00"' in html  # shown in the block's own zone again
    assert '<img class="ad-media" src="https://cdn.example.com/tulips.webp"' in html
    # The page lets https media load, scripts stay the console's own.
    policy = page.headers["Content-Security-Policy"]
    assert "img-src 'self' data: https:" in policy and "script-src 'self';" in policy
    listing = await (await client.get("/console/advertising")).text()
    assert 'data-block="tulips"' in listing
    seen = await client.get(
        "/console/advertising", params={"customer_id": "c-vip", "placement": "home_top"}
    )
    assert '<li data-block="tulips">' in await seen.text()
    seen = await client.get(
        "/console/advertising", params={"customer_id": "c-other", "placement": "home_top"}
    )
    assert "Nothing is shown there now." in await seen.text()


async def test_a_malformed_media_link_is_a_422_next_to_its_field_and_nothing_is_saved(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _signed_in(client, "mark")
    bad = {**FORM, "media_url": "javascript:alert(1)//x.png"}
    status, html, _ = await _post(client, "/console/advertising/new", bad, token)
    assert status == 422
    error = re.search(r'id="err-media_url">([^<]*)<', html)
    assert error and "https" in error.group(1)
    assert 'value="Tulip week"' in html  # what was typed is kept
    assert db.advertising.blocks() == []
    status, html, _ = await _post(
        client, "/console/advertising/new", {**FORM, "segment_id": "ghosts"}, token
    )
    assert status == 422 and 'id="err-segment_id"' in html
    assert db.advertising.blocks() == []


async def test_preview_renders_the_form_as_the_portal_would_without_saving(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _signed_in(client, "mark")
    status, html, _ = await _post(
        client, "/console/advertising/preview", FORM, token, headers={"HX-Request": "true"}
    )
    assert status == 200
    assert html.startswith('<div id="ad-preview">')
    assert '<article class="ad-block" data-block="tulips"' in html
    assert "<b>-20 %</b>" in html and "script" not in html
    status, html, _ = await _post(
        client,
        "/console/advertising/preview",
        {**FORM, "media_url": "https://cdn.example.com/x.svg"},
        token,
        headers={"HX-Request": "true"},
    )
    assert 'id="preview-err-media_url"' in html
    assert db.advertising.blocks() == []


async def test_analysts_read_and_may_not_write_call_center_sees_nothing(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _signed_in(client, "mark")
    await _post(client, "/console/advertising/new", FORM, token)
    await client.post("/sign-out", data={"csrf_token": token})
    token = await _signed_in(client, "ann")
    page = await (await client.get("/console/advertising/tulips")).text()
    assert 'id="save"' not in page and '<fieldset class="plain" disabled>' in page
    assert 'id="new-block"' not in await (await client.get("/console/advertising")).text()
    status, _, _ = await _post(
        client, "/console/advertising/tulips", {**FORM, "priority": "99"}, token
    )
    assert status == 403
    stored = db.advertising.block("tulips")
    assert stored is not None and stored.data.priority == 20
    await client.post("/sign-out", data={"csrf_token": token})
    await _signed_in_call_center(client)


async def _signed_in_call_center(client: TestClient[Any, Any]) -> None:
    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": "olga", "password": PASSWORD}
    await client.post("/sign-in", data=form, allow_redirects=False)
    home = await (await client.get("/console/customers")).text()
    assert 'id="nav-advertising"' not in home
    assert (await client.get("/console/advertising")).status == 403


async def test_a_post_without_the_csrf_token_changes_nothing(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _signed_in(client, "mark")
    response = await client.post("/console/advertising/new", data=FORM, allow_redirects=False)
    assert response.status == 403
    assert db.advertising.blocks() == []


async def test_the_pages_speak_russian(client: TestClient[Any, Any], db: Storage) -> None:
    await _signed_in(client, "mark")
    page = await client.get("/console/advertising/new", headers={"Accept-Language": "ru"})
    html = await page.text()
    assert "Рекламные блоки" in html and "Предпросмотр" in html
