"""The models' console page and the churn risk on the customer card, through the HTTP app with
a signed-in person and CSRF: versions newest first with metrics, "train now" only if allowed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.people import add_person
from center.config import load_config
from center.crm.model import CustomerInput
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import T0, write_config

PASSWORD = "correct horse battery"


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = SqliteStorage(tmp_path / "console.db")
    storage.migrate()
    for name, role in (
        ("ann", "data_analyst"),
        ("max", "loyalty_manager"),
        ("olga", "call_center"),
    ):
        add_person(storage, name, role, PASSWORD, "test", T0)
    storage.customers.create_customer(
        CustomerInput(customer_id="c-1", attributes={"last_name": "Ivanova"}), "test", T0
    )
    storage.models.record_version("churn", {"roc_auc": 0.71}, {}, T0)
    storage.models.record_version("churn", {"roc_auc": 0.74}, {}, T0 + timedelta(days=7))
    storage.models.replace_churn_risk([("c-1", 0.8123)], 2, T0 + timedelta(days=7))
    return storage


@pytest.fixture
async def client(tmp_path: Path, db: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(load_config(write_config(tmp_path)), db, clock=lambda: T0 + timedelta(days=8))
    browser = {"Accept-Language": "en", "Accept": "text/html,*/*;q=0.8"}
    async with TestClient(TestServer(app), headers=browser) as client:
        yield client
    db.close()


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _sign_in(client: TestClient[Any, Any], username: str) -> str:
    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": username, "password": PASSWORD}
    response = await client.post("/sign-in", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    home = await client.get("/")
    return _token(await home.text())


async def test_analyst_sees_versions_newest_first_but_no_train_button_and_gets_403(
    client: TestClient[Any, Any],
) -> None:
    token = await _sign_in(client, "ann")
    response = await client.get("/console/models")
    html = await response.text()
    assert response.status == 200
    assert 'id="nav-models"' in html
    rows = re.findall(r'id="version-churn-(\d+)"', html)
    assert rows == ["2", "1"]
    assert "roc_auc: 0.74" in html and "roc_auc: 0.71" in html
    assert 'id="train-now"' not in html
    refused = await client.post(
        "/console/models/train", data={"csrf_token": token}, allow_redirects=False
    )
    assert refused.status == 403


async def test_manager_trains_from_the_page_and_a_new_version_is_listed(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _sign_in(client, "max")
    html = await (await client.get("/console/models")).text()
    assert 'id="train-now"' in html and 'action="/console/models/train"' in html
    # without the CSRF token the post is refused and nothing is trained
    forged = await client.post("/console/models/train", data={}, allow_redirects=False)
    assert forged.status == 403
    assert len(db.models.versions("churn")) == 2
    done = await client.post(
        "/console/models/train", data={"csrf_token": token}, allow_redirects=False
    )
    assert done.status == 303 and done.headers["Location"] == "/console/models?done=trained"
    assert len(db.models.versions("churn")) == 3
    html = await (await client.get("/console/models?done=trained")).text()
    assert 'id="notice"' in html and re.findall(r'id="version-churn-(\d+)"', html)[0] == "3"


async def test_customer_card_shows_the_churn_risk_and_russian_labels(
    client: TestClient[Any, Any],
) -> None:
    await _sign_in(client, "olga")
    html = await (await client.get("/console/customers/c-1")).text()
    assert re.search(r'id="churn-risk">81 %<', html), html
    assert "model version 2" in html
    assert 'id="nav-models"' not in html  # the call center has no reports.read
    ru = await (
        await client.get("/console/customers/c-1", headers={"Accept-Language": "ru"})
    ).text()
    assert "Риск оттока" in ru


async def test_customer_card_without_a_score_shows_no_churn_block(
    client: TestClient[Any, Any], db: Storage
) -> None:
    db.models.replace_churn_risk([], 3, T0)
    await _sign_in(client, "olga")
    html = await (await client.get("/console/customers/c-1")).text()
    assert 'id="churn"' not in html and "Ivanova" in html
