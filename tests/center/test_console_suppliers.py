"""The supplier cabinet's pages through aiohttp's test client: a supplier's person signs in like
any console person and sees only its cabinet; forms need the CSRF token; what a supplier types
is escaped; the pages speak Russian; the chain's person tops an account up in major units."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.people import add_person
from center.config import Config, load_config
from center.promotions.segments import SegmentInput
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import T0, write_config

PASSWORD = "correct horse battery"


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = SqliteStorage(tmp_path / "cabinet.db")
    storage.migrate()
    storage.suppliers.create_supplier("acme", "Acme Dairy", "test", T0)
    storage.segments.create_segment(SegmentInput("pets", "Pet owners", "static"), "test", T0)
    storage.suppliers.create_supplier("beta", "Beta Foods", "test", T0)
    for name, role, supplier in (
        ("vera", "supplier", "acme"),
        ("boris", "supplier", "beta"),
        ("sam", "supplier_manager", None),
    ):
        add_person(storage, name, role, PASSWORD, "test", T0)
        if supplier:
            storage.suppliers.bind_person(name, supplier, "test", T0)
    return storage


@pytest.fixture
async def client(tmp_path: Path, db: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    config: Config = load_config(write_config(tmp_path))
    app = create_app(config, db, clock=lambda: T0)
    browser = {"Accept-Language": "en", "Accept": "text/html,*/*;q=0.8"}
    async with TestClient(TestServer(app), headers=browser) as client:
        yield client


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _sign_in(client: TestClient[Any, Any], username: str) -> str:
    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": username, "password": PASSWORD}
    response = await client.post("/sign-in", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    return await (await client.get("/console/supplier")).text()


def _campaign_form(csrf: str, name: str) -> dict[str, str]:
    return {
        "csrf_token": csrf,
        "name": name,
        "product_ids": "1000",
        "percent": "10",
        "date_from": T0.date().isoformat(),
        "date_to": (T0.date() + timedelta(days=6)).isoformat(),
        "brands_bought": "Acme",
        "min_avg_receipt": "1 234,50",
        "control_percent": "10",
    }


async def test_a_supplier_creates_a_campaign_escaped_and_only_with_the_csrf_token(
    client: TestClient[Any, Any], db: Storage
) -> None:
    html = await _sign_in(client, "vera")
    assert "Supplier cabinet: Acme Dairy" in html and 'id="nav-customers"' not in html
    name = '<script>alert("x")</script> yoghurt'
    # The chain's segments are offered by name, to tick.
    assert 'name="segments" value="pets"> Pet owners' in html
    form: Any = [*_campaign_form(_token(html), name).items(), ("segments", "pets")]
    form += [("segments", "vip")]
    forged = [(k, "forged" if k == "csrf_token" else v) for k, v in form]
    refused = await client.post("/console/supplier/campaigns", data=forged)
    assert refused.status == 403 and db.suppliers.campaigns("acme") == []
    created = await client.post("/console/supplier/campaigns", data=form, allow_redirects=False)
    assert created.status == 303, await created.text()
    [campaign] = db.suppliers.campaigns("acme")
    # Money typed in major units reaches the audience in minor units.
    assert campaign["audience"] == {
        "brands": ["Acme"],
        "min_avg_receipt_minor": 123450,
        "segments": ["pets", "vip"],
        "window_days": 90,
    }
    page = await (await client.get(created.headers["Location"])).text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)" in page
    bad = await client.post(
        "/console/supplier/campaigns",
        data=[(k, "200" if k == "percent" else v) for k, v in form],
        allow_redirects=False,
    )
    assert bad.status == 422 and "percent" in await bad.text()
    # The audience size fragment, masked below 10.
    size = await client.post(
        "/console/supplier/audience-size",
        data={"brands_bought": "Acme"},
        headers={"X-CSRF-Token": _token(html), "HX-Request": "true"},
    )
    assert size.status == 200 and "Audience: &lt; 10 customers" in await size.text()


async def test_another_supplier_and_the_chain_pages(
    client: TestClient[Any, Any], db: Storage
) -> None:
    html = await _sign_in(client, "vera")
    created = await client.post(
        "/console/supplier/campaigns", data=_campaign_form(_token(html), "Acme"),
        allow_redirects=False,
    )  # fmt: skip
    where = created.headers["Location"]
    await client.post("/sign-out", data={"csrf_token": _token(html)})
    html = await _sign_in(client, "boris")
    assert (await client.get(where)).status == 404
    assert (await client.get("/console/suppliers")).status == 403
    response = await client.post(
        where + "/launch", data={"csrf_token": _token(html)}, allow_redirects=False
    )
    assert response.status == 404
    await client.post("/sign-out", data={"csrf_token": _token(html)})

    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": "sam", "password": PASSWORD}
    await client.post("/sign-in", data=form)
    html = await (await client.get("/console/suppliers")).text()
    assert "Acme Dairy" in html and "Beta Foods" in html
    done = await client.post(
        "/console/suppliers/acme/top-ups",
        data={"csrf_token": _token(html), "amount": "1 500,25", "note": "order 7"},
        allow_redirects=False,
    )
    assert done.status == 303
    account = db.suppliers.account("acme")
    assert account is not None and account["available_minor"] == 150025
    assert account["entries"][0]["actor"] == "sam via /console/suppliers/acme/top-ups"
    bad = await client.post(
        "/console/suppliers/acme/top-ups", data={"csrf_token": _token(html), "amount": "-5"}
    )
    assert bad.status == 422
    russian = await client.get("/console/suppliers", headers={"Accept-Language": "ru"})
    assert "Поставщики" in await russian.text()
