"""The outbox on both backends: idempotent enqueue, claim gates (consent, address, quiet hours,
daily cap, expiry), retries with backoff, receipts, unsubscribe; the burning chain end to end
through local SMTP and SMPP servers with its SMS fallback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

from center.communications import (
    BurningCampaign,
    Consent,
    NewMessage,
    launch_burning,
    parse_template,
    run_fallback,
    send_due,
)
from center.communications.channels import EmailChannel, SmsChannel
from center.communications.model import Receipt, SendOutcome
from center.communications.sender import collect_receipts
from center.storage import Storage
from demo.message_sinks import SmppSink, SmtpSink
from tests.center.comms_factories import NOW, TEMPLATE, at, seed


@pytest.fixture
def shop(storage: Storage) -> Storage:
    seed(storage)
    return storage


def mail(
    key: str, customer_id: str, address: str, kind: str = "marketing", **kw: object
) -> NewMessage:
    return NewMessage(key, customer_id, "email", kind, address, "Тема", "Текст", **kw)  # type: ignore[arg-type]


def state(storage: Storage, key: str) -> tuple[str, str]:
    row = storage.db.execute(
        "SELECT state, reason FROM comm_messages WHERE idempotency_key = ?", (key,)
    ).fetchone()
    return row[0], row[1]


def claim(storage: Storage, key: str, now=NOW, cap: int = 2):  # type: ignore[no-untyped-def]
    (message_id,) = storage.db.execute(
        "SELECT message_id FROM comm_messages WHERE idempotency_key = ?", (key,)
    ).fetchone()
    return storage.communications.claim(message_id, now, daily_cap=cap, lease=timedelta(minutes=5))


def test_claim_checks_consent_address_quiet_hours_and_expiry(shop: Storage) -> None:
    repo = shop.communications
    batch = [
        mail("ok", "c1", "anna@example.org"),
        mail("no-consent", "c3", "vera@example.org"),
        mail("code", "c3", "vera@example.org", kind="transactional"),
        mail("bad-address", "c2", "not-an-email"),
        mail("late", "c1", "anna@example.org", expires_at=NOW - timedelta(minutes=1)),
    ]
    assert repo.enqueue(batch, NOW) == 5
    assert repo.enqueue(batch, NOW) == 0, "an idempotency key enqueues once"
    assert claim(shop, "ok") is not None and state(shop, "ok")[0] == "sending"
    assert claim(shop, "no-consent") is None
    assert state(shop, "no-consent") == ("skipped", "no advertising consent on email")
    assert claim(shop, "code") is not None, "transactional needs no consent"
    assert claim(shop, "bad-address") is None
    assert state(shop, "bad-address") == ("skipped", "invalid email address 'not-an-email'")
    assert claim(shop, "late") is None and state(shop, "late")[0] == "expired"
    # Night in Moscow (02:00): marketing waits for 09:00 local.
    repo.enqueue([mail("night", "c1", "anna@example.org", zone="Europe/Moscow")], NOW)
    night = NOW.replace(hour=23)
    assert claim(shop, "night", now=night) is None
    row = shop.db.execute(
        "SELECT state, reason, not_before FROM comm_messages WHERE idempotency_key = 'night'"
    ).fetchone()
    assert (row[0], row[1]) == ("queued", "quiet hours")
    assert shop.db.dt(row[2]) == NOW.replace(day=NOW.day + 1, hour=6, minute=0)  # 09:00 MSK


def test_daily_cap_retry_backoff_and_receipts(shop: Storage) -> None:
    repo = shop.communications
    repo.enqueue([mail(f"m{i}", "c1", "anna@example.org") for i in range(3)], NOW)
    for key in ("m0", "m1"):
        claimed = claim(shop, key, cap=2)
        assert claimed is not None
        assert (
            repo.record_outcome(claimed.message_id, SendOutcome(True, ("r-" + key,)), NOW) == "sent"
        )
    assert claim(shop, "m2", cap=2) is None
    assert state(shop, "m2") == ("queued", "daily cap of 2 on email")
    # a temporary failure is retried after backoff, a permanent one fails at once
    repo.enqueue([mail("t", "c1", "anna@example.org", kind="transactional")], NOW)
    claimed = claim(shop, "t")
    assert claimed is not None
    assert (
        repo.record_outcome(claimed.message_id, SendOutcome(False, reason="421 busy"), NOW)
        == "queued"
    )
    assert claim(shop, "t", now=NOW + timedelta(seconds=10)) is None, "not before its backoff"
    again = claim(shop, "t", now=NOW + timedelta(seconds=31))
    assert again is not None
    assert (
        repo.record_outcome(
            again.message_id, SendOutcome(False, permanent=True, reason="550 no"), NOW
        )
        == "failed"
    )
    # receipts: delivered once every part is, a duplicate receipt changes nothing
    assert (
        repo.apply_receipts([Receipt("r-m0", "delivered"), Receipt("r-m0", "delivered")], NOW) == 1
    )
    assert repo.apply_receipts([Receipt("r-m1", "failed", "UNDELIV")], NOW) == 1
    assert state(shop, "m0")[0] == "delivered" and state(shop, "m1")[0] == "failed"
    assert repo.apply_receipts([Receipt("unknown", "delivered")], NOW) == 0
    (token,) = shop.db.execute(
        "SELECT unsubscribe_token FROM comm_messages WHERE idempotency_key = 'm0'"
    ).fetchone()
    assert repo.mark_engaged(token, "opened", NOW) and state(shop, "m0")[0] == "opened"
    assert not repo.mark_engaged(token, "opened", NOW), "an open is recorded once"
    assert repo.mark_engaged(token, "clicked", NOW) and state(shop, "m0")[0] == "clicked"


def test_withdrawal_skips_queued_marketing_at_once_and_history_keeps_both(shop: Storage) -> None:
    repo = shop.communications
    repo.enqueue(
        [
            mail("promo", "c1", "anna@example.org"),
            mail("otp", "c1", "anna@example.org", kind="transactional"),
        ],
        NOW,
    )
    repo.record_consents(
        [Consent("c1", "email", "advertising", False, "call center", "call 17", NOW)]
    )
    assert state(shop, "promo") == ("skipped", "advertising consent withdrawn")
    assert state(shop, "otp")[0] == "queued"
    history = repo.consent_history("c1")
    email_ads = [h for h in history if (h["channel"], h["purpose"]) == ("email", "advertising")]
    assert [h["granted"] for h in email_ads] == [True, False]
    assert email_ads[-1]["source"] == "call center" and email_ads[-1]["evidence"] == "call 17"
    assert repo.current_consents(["c1"])["c1"][("sms", "advertising")] is True


@pytest.fixture
def servers() -> Iterator[tuple[SmtpSink, SmppSink]]:
    smtp = SmtpSink().start()
    smsc = SmppSink(undeliverable=frozenset({"79990000000"})).start()
    yield smtp, smsc
    smtp.stop()
    smsc.stop()


async def test_burning_chain_sends_email_then_sms_fallback(
    shop: Storage, servers: tuple[SmtpSink, SmppSink]
) -> None:
    smtp, smsc = servers
    repo = shop.communications
    template = parse_template("burn", TEMPLATE)
    campaign = BurningCampaign("burn-1", {"A": template}, (("A", 10_000),), within_days=7)
    launched = launch_burning(repo, campaign, NOW)
    assert launched["customers"] == 4 and launched["enqueued"] == 4
    assert launch_burning(repo, campaign, NOW)["enqueued"] == 0, "a relaunch sends nothing twice"
    channels = {
        "email": EmailChannel(
            "127.0.0.1", smtp.port, sender="bonus@shop.example", public_url="http://c"
        ),
        "sms": SmsChannel(
            "127.0.0.1", smsc.port, system_id="shop", password="pw", source_addr="Shop"
        ),
    }
    try:
        first = await send_due(repo, channels, clock=at(NOW))
        assert first.by_channel == {"email": 1}
        assert run_fallback(repo, campaign, NOW) == 3  # c2 bad address, c3 and c4 no e-mail consent
        assert run_fallback(repo, campaign, NOW) == 0
        second = await send_due(repo, channels, clock=at(NOW))
        assert second.by_channel == {"sms": 2}  # c3 has no SMS consent either
        for _ in range(40):
            if (
                await collect_receipts(repo, channels, clock=at(NOW)) == 0
                and len(smsc.submitted) >= 2
            ):
                counts = repo.state_counts("burn-1")["A"]
                if counts["sms"].get("sent", 0) == 0:
                    break
            await asyncio.sleep(0.05)
    finally:
        for channel in channels.values():
            await channel.close()
    counts = repo.state_counts("burn-1")["A"]
    assert counts["email"] == {"sent": 1, "skipped": 3}
    assert counts["sms"] == {"delivered": 1, "failed": 1, "skipped": 1}
    (anna,) = smtp.mailbox.values()
    assert anna["To"] == "anna@example.org" and anna["Subject"] == "Анна, сгорают 350,00\u00a0₽"
    body = anna.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "из 450,00\u00a0₽" in body and "Ромашка на Ленина" in body
    texts = dict(smsc.texts())
    assert texts["79160000004"].startswith("Hello Gleb! RUB 350.00 of your RUB 450.00 expire on")
    assert "79990000000" in texts  # c2's 8 999... normalised, sent, reported undelivered
    reasons = {
        m["customer_id"]: m["reason"]
        for m in repo.messages(campaign_id="burn-1")
        if m["channel"] == "sms"
    }
    assert reasons["c3"] == "no advertising consent on sms"
