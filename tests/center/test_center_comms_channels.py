"""Each channel against a real local server: e-mail to an aiosmtpd sink, SMS to an SMPP SMSC."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from center.communications.channels import EmailChannel, SmsChannel, split_sms
from center.communications.model import OutMessage, Receipt
from demo.message_sinks import SmppSink, SmtpSink

SUBJECT = "Ваши 350,00 ₽ бонусов сгорят в воскресенье"
BODY = (
    "Здравствуйте, Анна!\n\nНа вашей карте сгорает 350,00\u00a0₽ 13.12.2026. Ждём вас в «Ромашке»."
)
LONG = "Сгорают бонусы: " + "успейте потратить их в любимом магазине, " * 6


def message(
    address: str, *, body: str = BODY, key: str = "camp1:C1:email", kind: str = "marketing"
) -> OutMessage:
    return OutMessage(
        "m1", key, "C1", "email", kind, address, SUBJECT, body, "tok_abcdefghijklmnopqrstuvwx"
    )


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def smsc() -> Iterator[SmppSink]:
    sink = SmppSink(undeliverable=frozenset({"79990000000"})).start()
    yield sink
    sink.stop()


async def test_email_reaches_the_server_with_unsubscribe_text_part_and_cyrillic(
    smtp: SmtpSink,
) -> None:
    channel = EmailChannel(
        "127.0.0.1",
        smtp.port,
        sender="bonus@shop.example",
        sender_name="Ромашка",
        public_url="https://loyalty.shop.example",
    )
    outcome = await channel.send(message("anna@example.org"))
    await channel.close()
    assert outcome.accepted, outcome.reason
    assert len(smtp.raw) == 1
    raw = smtp.raw[0]
    assert raw.isascii(), "headers and bodies go 7-bit safe (RFC 2047 / base64 or QP)"
    (mail,) = smtp.mailbox.values()
    assert mail["Subject"] == SUBJECT
    assert "Ромашка" in str(mail["From"])
    unsubscribe = str(mail["List-Unsubscribe"])
    assert unsubscribe.startswith(
        "<https://loyalty.shop.example/v1/communications/unsubscribe/tok_"
    )
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain = mail.get_body(preferencelist=("plain",))
    assert plain is not None and plain.get_content().replace("\r\n", "\n").rstrip("\n") == BODY
    html = mail.get_body(preferencelist=("html",))
    assert html is not None and "Ромашке" in html.get_content()
    assert "https://loyalty.shop.example/v1/communications/opened/tok_" in html.get_content()
    assert str(mail["Message-ID"]).endswith("@shop.example>")


async def test_transactional_email_has_no_unsubscribe_and_refusal_is_permanent(
    smtp: SmtpSink,
) -> None:
    channel = EmailChannel(
        "127.0.0.1", smtp.port, sender="bonus@shop.example", public_url="http://x"
    )
    sent = await channel.send(message("anna@example.org", kind="transactional"))
    refused = await channel.send(message("nobody@refused.example", key="k2"))
    await channel.close()
    assert sent.accepted
    (mail,) = smtp.mailbox.values()
    assert mail["List-Unsubscribe"] is None
    assert not refused.accepted and refused.permanent and "550" in refused.reason


async def test_email_to_a_closed_port_is_a_temporary_failure() -> None:
    from demo.message_sinks import free_port

    channel = EmailChannel(
        "127.0.0.1", free_port(), sender="b@shop.example", public_url="http://x", timeout_s=2
    )
    outcome = await channel.send(message("anna@example.org"))
    assert not outcome.accepted and not outcome.permanent


def test_long_cyrillic_sms_splits_in_ucs2_with_udh() -> None:
    parts, coding, esm = split_sms(LONG)
    assert coding == 8 and esm & 0x40
    assert len(parts) == -(-len(LONG) // 67)
    for part in parts:
        assert part[:3] == b"\x05\x00\x03" and len(part) <= 140
    assert b"".join(p[6:] for p in parts).decode("utf-16-be") == LONG
    short, coding, esm = split_sms("Код 1234")
    assert coding == 8 and esm == 0 and len(short) == 1


async def test_sms_over_smpp_splits_and_receipts_mark_delivery(smsc: SmppSink) -> None:
    channel = SmsChannel(
        "127.0.0.1", smsc.port, system_id="shop", password="secret", source_addr="Romashka"
    )
    outcome = await channel.send(
        OutMessage("m1", "k1", "C1", "sms", "marketing", "79161234567", "", LONG, "t" * 20)
    )
    bad = await channel.send(
        OutMessage("m2", "k2", "C2", "sms", "marketing", "79990000000", "", "Привет", "u" * 20)
    )
    receipts: list[Receipt] = []
    for _ in range(50):
        receipts += await channel.receipts()
        if len(receipts) >= len(outcome.provider_refs) + 1:
            break
        await asyncio.sleep(0.05)
    await channel.close()
    assert smsc.binds == [("shop", "secret")]
    assert outcome.accepted and len(outcome.provider_refs) == len(split_sms(LONG)[0]) > 1
    assert all(s.data_coding == 8 for s in smsc.submitted)
    assert smsc.texts() == [("79161234567", LONG), ("79990000000", "Привет")]
    states = {r.provider_ref: r.state for r in receipts}
    assert {states[ref] for ref in outcome.provider_refs} == {"delivered"}
    assert states[bad.provider_refs[0]] == "failed"
