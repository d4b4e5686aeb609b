"""A personal message for the customer's next purchase (issue 16 item 6), through the real
tiers: queued in the outbox, sent on the till channel by the real sender, carried in the card
rows to a store node and its register, told to the cashier and printed on the slip of the next
receipt with the card, then delivered at the Center and shown nowhere again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from center.communications.channels.till import TillChannel
from center.communications.model import Consent
from center.communications.rules import decide
from center.communications.sender import collect_receipts, send_due
from center.communications.store import NewMessage
from center.communications.templates import parse_template
from center.communications.till_store import till_parts
from center.communications.triggers import TriggerCampaign, TriggerCandidate, plan_trigger
from center.storage import Storage
from tests.center.center_factories import CARD, master_tables
from tests.center.till import center, line, ring, store, until, uploaded

TEXT = "Завтра кофе со скидкой 20 % только для вас"


def _message_state(storage: Storage) -> tuple[str, str]:
    row = storage.db.execute(
        "SELECT message_id, state FROM comm_messages WHERE customer_id = 'hh-1'"
    ).fetchone()
    return str(row[0]), str(row[1])


async def _identify(register: Any) -> list[dict[str, Any]]:
    rid = (await (await register.post("/v1/receipts", json={})).json())["receipt_id"]
    resp = await register.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
    assert resp.status == 200, await resp.text()
    messages: list[dict[str, Any]] = (await resp.json())["personal_messages"]
    await register.post(f"/v1/receipts/{rid}/cancel", json={})
    return messages


async def test_a_message_for_the_next_purchase_is_shown_once_and_delivered(
    tmp_path: Path, storage: Storage
) -> None:
    tables = master_tables()
    tables["promotions"] = []
    storage.feed.upsert_master(tables)
    now = datetime.now(UTC)
    storage.communications.record_consents(
        [Consent("hh-1", "email", "personal_data", True, "test", "form 1", now)]
    )
    storage.communications.enqueue(
        [
            NewMessage(
                "coffee:hh-1",
                "hh-1",
                "till",
                "marketing",
                "hh-1",
                "Кофе -20 %",
                TEXT,
                campaign_id="coffee",
            ),
            NewMessage("coffee:hh-2", "hh-2", "till", "marketing", "hh-2", "Кофе -20 %", TEXT),
        ],
        now,
    )
    channel = TillChannel(storage.till)
    report = await send_due(storage.communications, {"till": channel}, clock=lambda: now)
    # hh-1 has the personal data consent and a card; hh-2 has no consent: skipped.
    assert (report.sent, report.by_channel) == (1, {"till": 1})
    message_id, state = _message_state(storage)
    assert state == "sent"

    async with center(tmp_path, storage) as url:
        async with store(tmp_path, url, "367") as register:
            [shown] = await _identify(register)
            assert shown == {
                "message_id": message_id,
                "cashier": "Кофе -20 %",
                "display": "Кофе -20 %",
            }
            first = await ring(register, [line("1000", 250)])
            assert TEXT in first["confirmed"]["messages"]  # on the slip
            # The register's own journal drops it: the next receipt there shows nothing.
            assert await _identify(register) == []
            second = await ring(register, [line("1000", 250)])
            assert TEXT not in second["confirmed"]["messages"]
            await uploaded(register)

            async def shown_at_center() -> bool:
                return not storage.till.pending(["hh-1"])

            await until(shown_at_center, "the Center marking the message shown")
        # Another store learns the card from the Center: the message is not there any more.
        async with store(tmp_path, url, "406") as other:
            assert await _identify(other) == []

    assert await collect_receipts(storage.communications, {"till": channel}, clock=lambda: now)
    assert _message_state(storage) == (message_id, "delivered")
    assert await channel.receipts() == []  # each reported once


def test_till_rules_parts_and_planning() -> None:
    now = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)  # night in Moscow: no quiet hours here
    consent = {("sms", "personal_data"): True}
    assert decide(
        kind="marketing", channel="till", address="hh-1", consents=consent, sent_today=9,
        daily_cap=2, now=now, zone="Europe/Moscow", expires_at=None,
    ).action == "send"  # fmt: skip
    refused = decide(
        kind="marketing", channel="till", address="hh-1", consents={("sms", "advertising"): True},
        sent_today=0, daily_cap=2, now=now, zone="Europe/Moscow", expires_at=None,
    )  # fmt: skip
    assert (refused.action, refused.reason) == ("skip", "no personal_data consent on any channel")
    assert till_parts("", "Line one\nLine two") == ("Line one\nLine two", "Line one", "Line one")
    assert len(till_parts("", "x" * 2000)[0]) == 480
    # A chain to e-mail, then the till: a customer without an address gets the till message.
    template = parse_template(
        "t", {"subject": {"ru": "Привет", "en": "Hi"}, "body": {"ru": "{name}", "en": "{name}"}}
    )
    campaign = TriggerCampaign(
        "c", "segment", {"A": template}, split=(("A", 10_000),),
        channels=("email", "till"), segment_id="s",
    )  # fmt: skip
    _, messages = plan_trigger(
        campaign,
        [TriggerCandidate("hh-1", "x"), TriggerCandidate("hh-2", "x")],
        {"hh-1": {"email": "a@example.com"}, "hh-2": {}},
    )
    assert [(m.customer_id, m.channel, m.address) for m in messages] == [
        ("hh-1", "email", "a@example.com"),
        ("hh-2", "till", "hh-2"),
    ]
