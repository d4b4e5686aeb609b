"""Communications over HTTP: consent, templates (an unknown variable is refused, named),
launching the burning chain, messages, RFC 8058 one-click unsubscribe, permissions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import write_config
from tests.center.comms_factories import NOW, TEMPLATE, seed
from tests.center.staff import StaffApi, staff_token


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[SqliteStorage]:
    storage = SqliteStorage(tmp_path / "center.db")
    storage.migrate()
    seed(storage)
    yield storage
    storage.close()


@pytest.fixture
async def client(tmp_path: Path, shop: SqliteStorage) -> AsyncIterator[TestClient[Any, Any]]:
    config: Config = load_config(write_config(tmp_path, signatures=True))
    async with TestClient(TestServer(create_app(config, shop, clock=lambda: NOW))) as client:
        yield client


async def test_chain_consent_and_one_click_unsubscribe(
    client: TestClient[Any, Any], shop: SqliteStorage
) -> None:
    marketer = StaffApi(client, staff_token(shop, "marketer"))
    operator = StaffApi(client, staff_token(shop, "call_center"))
    status, body = await marketer.call(
        "PUT", "/v1/communications/templates/burn",
        {"subject": {"en": "Hi"}, "body": {"en": "{name}, {points} burn"}},
    )  # fmt: skip
    assert status == 422 and body["detail"].startswith("body.body.en: unknown variable {points}")
    status, _ = await marketer.call("PUT", "/v1/communications/templates/burn", TEMPLATE)
    assert status == 200
    status, seen = await marketer.call(
        "POST",
        "/v1/communications/templates/burn/preview",
        {"lang": "ru", "values": {"name": "Анна"}},
    )
    assert status == 200 and seen["subject"] == "Анна, сгорают [burning_amount]"
    status, _ = await operator.call("PUT", "/v1/communications/templates/burn", TEMPLATE)
    assert status == 403, "the call center records consent, it does not write templates"
    status, body = await marketer.call(
        "POST", "/v1/communications/campaigns/burning",
        {"campaign_id": "burn-1", "templates": {"A": "burn"}, "split": {"A": 5000, "X": 4000}},
    )  # fmt: skip
    assert status == 422 and body["detail"].startswith("body.split: shares must sum to 10000")
    status, launched = await marketer.call(
        "POST", "/v1/communications/campaigns/burning",
        {"campaign_id": "burn-1", "templates": {"A": "burn"}, "split": {"A": 10000}},
    )  # fmt: skip
    assert status == 201 and launched["enqueued"] == 4 and launched["groups"] == {"A": 4}
    status, listed = await marketer.call(
        "GET", "/v1/communications/messages", query={"customer_id": "c1"}
    )
    (anna,) = listed["messages"]
    assert (
        anna["state"] == "queued" and anna["channel"] == "email" and "unsubscribe_token" not in anna
    )
    (token,) = shop.db.execute(
        "SELECT unsubscribe_token FROM comm_messages WHERE customer_id = 'c1'"
    ).fetchone()
    # A GET (a link scanner) only shows the form; the RFC 8058 POST unsubscribes, without login.
    page = await client.get(f"/v1/communications/unsubscribe/{token}")
    assert page.status == 200 and "One-Click" in await page.text()
    assert shop.communications.current_consents(["c1"])["c1"][("email", "advertising")] is True
    done = await client.post(
        f"/v1/communications/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}
    )
    assert done.status == 200 and (await done.json())["channel"] == "email"
    status, listed = await marketer.call(
        "GET", "/v1/communications/messages", query={"customer_id": "c1"}
    )
    assert listed["messages"][0]["state"] == "skipped"
    assert listed["messages"][0]["reason"] == "advertising consent withdrawn"
    bad = await client.post(
        "/v1/communications/unsubscribe/" + "x" * 32, data={"List-Unsubscribe": "One-Click"}
    )
    assert bad.status == 404
    # The call center records a new grant; the history keeps all three records with evidence.
    status, body = await operator.call(
        "POST", "/v1/communications/consents",
        {"consents": [{"customer_id": "c1", "channel": "email", "purpose": "advertising",
                       "granted": True, "source": "call center", "evidence": "call 17"}]},
    )  # fmt: skip
    assert status == 201
    status, body = await operator.call(
        "POST", "/v1/communications/consents",
        {"consents": [{"customer_id": "c1", "channel": "fax", "purpose": "advertising",
                       "granted": True, "source": "x", "evidence": "y"}]},
    )  # fmt: skip
    assert status == 422 and body["detail"].startswith("body.consents[0].channel")
    status, card = await operator.call("GET", "/v1/communications/consents/c1")
    email_ads = [
        h for h in card["history"] if (h["channel"], h["purpose"]) == ("email", "advertising")
    ]
    assert [(h["granted"], h["source"]) for h in email_ads] == [
        (True, "signup form"), (False, "one-click unsubscribe"), (True, "call center"),
    ]  # fmt: skip
    assert card["current"]["email"]["advertising"] is True
    status, results = await marketer.call("GET", "/v1/communications/campaigns/burn-1")
    assert status == 200 and results["groups"]["A"]["customers"] == 4
    assert results["states"]["A"]["email"] == {"queued": 3, "skipped": 1}
