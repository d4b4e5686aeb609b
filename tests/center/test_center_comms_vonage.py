"""Viber with SMS failover through the Vonage Messages API, against a local server that follows
that API and posts its signed status webhooks to the Center's callback route."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.communications import Consent, NewMessage, send_due
from center.communications.channels import VonageChannel
from center.config import load_config
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import write_config
from tests.center.comms_factories import NOW, at, seed
from tests.center.vonage_server import VonageServer, sign

SECRET = "whsec-0123456789"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[SqliteStorage]:
    storage = SqliteStorage(tmp_path / "center.db")
    storage.migrate()
    seed(storage)
    # c1 and c2 agreed to Viber and (seed) to SMS; c3 only to Viber.
    storage.communications.record_consents(
        [
            Consent(c, "viber", p, True, "app", "toggle", NOW)
            for c in ("c1", "c2", "c3")
            for p in ("advertising", "personal_data")
        ]
    )
    yield storage
    storage.close()


@pytest.fixture
async def center(
    tmp_path: Path, shop: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[Any, Any]]:
    monkeypatch.setenv("VONAGE_SIGNATURE_SECRET", SECRET)
    config = load_config(write_config(tmp_path))
    async with TestClient(TestServer(create_app(config, shop, clock=lambda: NOW))) as client:
        yield client


def viber(key: str, customer_id: str, phone: str) -> NewMessage:
    return NewMessage(key, customer_id, "viber", "marketing", phone, "", "Сгорают бонусы")


async def test_viber_falls_back_to_sms_and_webhooks_update_the_outbox(
    center: TestClient[Any, Any], shop: SqliteStorage
) -> None:
    vonage = VonageServer(
        api_key="key",
        api_secret="secret",
        signature_secret=SECRET,
        status_url=str(center.make_url("/v1/communications/callbacks/vonage")),
        clock=NOW.timestamp,
        no_viber=frozenset({"79990000000", "79160000003"}),
    )
    async with TestServer(vonage.app()) as api:
        shop.communications.enqueue(
            [
                viber("v1", "c1", "+7 916 123-45-67"),
                viber("v2", "c2", "8 999 000-00-00"),
                viber("v3", "c3", "79160000003"),
            ],
            NOW,
        )
        channel = VonageChannel(
            str(api.make_url("/")),
            api_key="key",
            api_secret="secret",
            viber_service_id="16273",
            sms_sender="Shop",
        )
        try:
            report = await send_due(shop.communications, {"viber": channel}, clock=at(NOW))
        finally:
            await channel.close()
        assert report.sent == 3
        for _ in range(200):
            if not vonage.tasks:
                break
            await asyncio.sleep(0.02)
    by_key = {r["client_ref"]: r for r in vonage.requests}
    assert by_key["v1"]["channel"] == "viber_service" and by_key["v1"]["to"] == "79161234567"
    assert by_key["v1"]["viber_service"]["category"] == "promotion"
    assert by_key["v2"]["failover"][0]["channel"] == "sms", "c2 agreed to SMS: failover included"
    assert "failover" not in by_key["v3"], "c3 did not agree to SMS: no failover"
    assert all(code == 200 for _, code in vonage.webhooks), vonage.webhooks
    states = dict(shop.db.execute("SELECT idempotency_key, state FROM comm_messages").fetchall())
    assert states == {"v1": "delivered", "v2": "delivered", "v3": "failed"}
    # c2 reached by the SMS failover: the Viber rejection in between changed nothing.
    v2_statuses = [s["status"] for s, _ in vonage.webhooks if s["client_ref"] == "v2"]
    assert v2_statuses == ["rejected", "delivered"]
    (reason,) = shop.db.execute(
        "SELECT reason FROM comm_messages WHERE idempotency_key = 'v3'"
    ).fetchone()
    assert "rejected on viber_service" in reason


async def test_unsigned_forged_or_stale_webhooks_are_refused(
    center: TestClient[Any, Any], shop: SqliteStorage
) -> None:
    shop.communications.enqueue([viber("v9", "c1", "79161234567")], NOW)
    status = {"message_uuid": "m-1", "status": "delivered", "channel": "viber_service"}
    data = json.dumps(status).encode()
    url = "/v1/communications/callbacks/vonage"
    for authorization in (
        "",
        sign(data, "not-the-secret", NOW.timestamp()),
        sign(data, SECRET, NOW.timestamp() - 3600),
        sign(b"{}", SECRET, NOW.timestamp()),  # signed for another body
    ):
        answer = await center.post(
            url,
            data=data,
            headers={"Authorization": authorization, "Content-Type": "application/json"},
        )
        assert answer.status == 401, authorization
    answer = await center.post(
        url,
        data=data,
        headers={"Authorization": sign(data, SECRET, NOW.timestamp())},
    )
    assert answer.status == 200 and await answer.json() == {"applied": 0}, "unknown uuid"
