"""Web Push (VAPID, aes128gcm) and FCM HTTP v1 through the outbox, against local services that
check what the specifications require."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02

from center.communications import Consent, NewMessage, send_due
from center.communications.channels import FcmChannel, WebPushChannel
from center.storage import Storage
from tests.center.comms_factories import NOW, at, seed
from tests.center.push_servers import FcmServer, PushService, service_account


@pytest.fixture
def shop(storage: Storage) -> Storage:
    seed(storage)
    storage.communications.record_consents(
        [
            Consent("c1", channel, p, True, "portal", "settings page", NOW)
            for channel in ("webpush", "fcm")
            for p in ("advertising", "personal_data")
        ]
    )
    return storage


def _states(shop: Storage) -> dict[str, tuple[str, str]]:
    rows = shop.db.execute("SELECT idempotency_key, state, reason FROM comm_messages").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


async def test_web_push_is_encrypted_for_the_subscription_and_signed_with_vapid(
    shop: Storage,
) -> None:
    service = PushService()
    vapid = Vapid02()
    vapid.generate_keys()
    async with TestServer(service.app()) as server:
        origin = str(server.make_url("")).rstrip("/")
        live = service.subscribe(origin)
        gone = {**service.subscribe(origin), "endpoint": f"{origin}/push/unsubscribed"}
        shop.communications.enqueue(
            [
                NewMessage("p1", "c1", "webpush", "marketing", json.dumps(live),
                           "Бонусы сгорают", "Анна, 350,00 ₽ сгорят в воскресенье"),
                NewMessage("p2", "c1", "webpush", "transactional", json.dumps(gone), "Код", "1234"),
                NewMessage("p3", "c1", "webpush", "transactional", '{"endpoint": "ftp://x"}',
                           "Код", "1234"),
                NewMessage("p4", "c2", "webpush", "marketing", json.dumps(live), "Hi", "none"),
            ],
            NOW,
        )  # fmt: skip
        channel = WebPushChannel(
            vapid_private_key=vapid.private_pem().decode(), subject="mailto:push@shop.example"
        )
        try:
            report = await send_due(shop.communications, {"webpush": channel}, clock=at(NOW))
        finally:
            await channel.close()
    assert service.refused == [(410, "no such subscription")]
    # The service decrypted the body with the subscription's private key and auth secret.
    assert service.received == [
        {"title": "Бонусы сгорают", "body": "Анна, 350,00 ₽ сгорят в воскресенье", "tag": "p1"}
    ]
    assert report.sent == 1
    states = _states(shop)
    assert states["p1"][0] == "sent"
    assert states["p2"][0] == "failed" and "410" in states["p2"][1]
    assert states["p3"] == ("skipped", 'invalid webpush address \'{"endpoint": "ftp://x"}\'')
    assert states["p4"] == ("skipped", "no advertising consent on webpush")


async def test_a_subscription_bound_to_another_vapid_key_refuses_the_push(
    shop: Storage,
) -> None:
    service = PushService()
    ours, theirs = Vapid02(), Vapid02()
    ours.generate_keys()
    theirs.generate_keys()
    bound_to = theirs.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    async with TestServer(service.app()) as server:
        origin = str(server.make_url("")).rstrip("/")
        subscription = service.subscribe(origin, application_server_key=bound_to)
        shop.communications.enqueue(
            [
                NewMessage(
                    "q1", "c1", "webpush", "transactional", json.dumps(subscription), "T", "B"
                )
            ],
            NOW,
        )
        channel = WebPushChannel(
            vapid_private_key=ours.private_pem().decode(), subject="mailto:push@shop.example"
        )
        try:
            await send_due(shop.communications, {"webpush": channel}, clock=at(NOW))
        finally:
            await channel.close()
    assert service.refused == [(401, "k is not the subscription's applicationServerKey")]
    assert service.received == [] and _states(shop)["q1"][0] == "failed"


async def test_fcm_v1_trades_a_service_account_jwt_for_a_token_and_sends(shop: Storage) -> None:
    fcm = FcmServer()
    async with TestServer(fcm.app()) as server:
        base = str(server.make_url("")).rstrip("/")
        account = service_account(f"{base}/token", fcm)
        fcm.unregistered.add("token-of-an-uninstalled-app-0000")
        shop.communications.enqueue(
            [
                NewMessage("f1", "c1", "fcm", "marketing", "dGVzdC1kZXZpY2UtdG9rZW4tMDAwMQ:APA91b",
                           "Бонусы", "Сгорят в воскресенье"),
                NewMessage("f2", "c1", "fcm", "transactional", "token-of-an-uninstalled-app-0000",
                           "Код", "1234"),
            ],
            NOW,
        )  # fmt: skip
        channel = FcmChannel(account, base_url=base)
        try:
            report = await send_due(shop.communications, {"fcm": channel}, clock=at(NOW))
            # The access token is kept; once revoked, a 401 renews it once.
            fcm.tokens.clear()
            shop.communications.enqueue(
                [NewMessage("f3", "c1", "fcm", "transactional",
                            "dGVzdC1kZXZpY2UtdG9rZW4tMDAwMQ:APA91b", "Код", "5678")],
                NOW,
            )  # fmt: skip
            await send_due(shop.communications, {"fcm": channel}, clock=at(NOW))
        finally:
            await channel.close()
    assert report.sent == 1
    assert fcm.token_requests == 2
    assert [m["notification"]["body"] for m in fcm.sent] == ["Сгорят в воскресенье", "5678"]
    assert fcm.sent[0]["data"]["idempotency_key"] == "f1"
    states = _states(shop)
    assert states["f1"][0] == "sent" and states["f3"][0] == "sent"
    assert states["f2"][0] == "failed" and "UNREGISTERED" in states["f2"][1]
