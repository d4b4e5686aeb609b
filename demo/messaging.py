"""The demo's "bonuses burning" chain: contacts and consents for the demo's customers through the
Center's API, the chain launched with ABX, sent through a local SMTP sink and SMSC the demo starts,
e-mails that could not go out falling back to SMS; one line of what was delivered per channel."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import requests

from demo.cluster import Cluster
from demo.errors import DemoError
from demo.message_sinks import SmppSink, SmtpSink

__all__ = ["demo_contacts", "messages_line"]

TEMPLATES: dict[str, dict[str, Any]] = {
    "demo-burning-a": {
        "subject": {
            "ru": "{name}, сгорают {burning_amount}",
            "en": "{name}, {burning_amount} of your bonuses expire",
        },
        "body": {
            "ru": "Здравствуйте, {name}! {burning_date} сгорит {burning_amount} из {balance}. "
            "Ждём вас в магазине {store}.",
            "en": "Hello {name}! {burning_amount} of your {balance} expire on {burning_date}. "
            "See you at {store}.",
        },
    },
    "demo-burning-b": {
        "subject": {"ru": "Не дайте бонусам сгореть", "en": "Don't let your bonuses burn"},
        "body": {
            "ru": "{name}, до {burning_date} успейте потратить {burning_amount}.",
            "en": "{name}, spend {burning_amount} before {burning_date}.",
        },
    },
}


def _share(customer_id: str) -> int:
    return int.from_bytes(hashlib.sha256(customer_id.encode()).digest()[:2], "big") % 100


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon now: the demo's customers live where quiet
    hours (21:00-09:00 local) are not, so the chain goes out whenever the demo runs."""
    offset = 12 - now.astimezone(UTC).hour  # -11 .. +12
    # Etc/GMT names have the sign inverted: Etc/GMT-3 is UTC+3.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def demo_contacts(customer_ids: Iterable[str], zone: str) -> list[dict[str, Any]]:
    """Contacts and consents of the demo's customers, by a hash of the id: most give both
    channels; some only a phone, some an address the mail server refuses (both then get the
    SMS); some give no consent at all."""
    rows = []
    for customer_id in sorted(customer_ids):
        share = _share(customer_id)
        digits = int(hashlib.sha256(customer_id.encode()).hexdigest()[:7], 16) % 10_000_000
        row: dict[str, Any] = {
            "customer_id": customer_id,
            "phone": f"+7 916 {digits:07d}",
            "lang": "en" if share % 3 == 0 else "ru",
            "timezone": zone,
        }
        both = {"advertising": True, "personal_data": True}
        if share < 60:
            row["email"] = f"{customer_id}@shop.example"
            row["consents"] = {"email": both, "sms": both}
        elif share < 75:
            row["consents"] = {"sms": both}  # a phone only: the e-mail is skipped, SMS follows
        elif share < 88:
            row["email"] = f"{customer_id}@refused.example"  # the server answers 550
            row["consents"] = {"email": both, "sms": both}
        else:
            row["email"] = f"{customer_id}@shop.example"  # no consent: nothing is sent
        rows.append(row)
    return rows


def _send(cluster: Cluster, smtp: SmtpSink, smsc: SmppSink) -> dict[str, Any]:
    report = cluster.run_tool_json(
        "loyalty-center",
        "send-messages",
        "--config",
        str(cluster.center.config),
        "--smtp",
        f"127.0.0.1:{smtp.port}",
        "--sender",
        "bonus@shop.example",
        "--sender-name",
        "Demo shop",
        "--public-url",
        cluster.center.url,
        "--smpp",
        f"127.0.0.1:{smsc.port}",
        "--smpp-system-id",
        "demo",
        "--sms-source",
        "DemoShop",
    )
    return dict(report)


def messages_line(cluster: Cluster, customer_ids: Iterable[str]) -> str:
    """Run the chain end to end; one line: `MESSAGES chain=burning email_delivered=N ...`."""
    started = time.monotonic()
    token = cluster.staff_token("demo-marketing-admin", "administrator")
    headers = {"Authorization": f"Bearer {token}"}
    center = cluster.center.url

    def call(method: str, path: str, body: Any) -> Any:
        answer = requests.request(method, center + path, json=body, headers=headers, timeout=60)
        if answer.status_code >= 300:
            raise DemoError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()

    smtp, smsc = SmtpSink().start(), SmppSink().start()
    try:
        rows = demo_contacts(customer_ids, daytime_zone(datetime.now(UTC)))
        call("POST", "/v1/communications/contacts", {"rows": rows, "source": "demo"})
        for template_id, doc in TEMPLATES.items():
            call("PUT", f"/v1/communications/templates/{template_id}", doc)
        campaign_id = f"demo-burning-{int(time.time())}"
        chain = {
            "campaign_id": campaign_id,
            "templates": {"A": "demo-burning-a", "B": "demo-burning-b"},
            "split": {"A": 4500, "B": 4500, "X": 1000},
            # The demo's bonuses were earned today and burn in 365 days (the engine's default).
            "within_days": 365,
            "currency": "USD",
        }
        launched = call("POST", "/v1/communications/campaigns/burning", chain)
        first = _send(cluster, smtp, smsc)
        fallback = call("POST", f"/v1/communications/campaigns/{campaign_id}/fallback", chain)
        second = _send(cluster, smtp, smsc)
        result = requests.get(
            f"{center}/v1/communications/campaigns/{campaign_id}", headers=headers, timeout=60
        ).json()
    finally:
        smtp.stop()
        smsc.stop()
    states: dict[str, dict[str, int]] = {}
    for by_channel in result.get("states", {}).values():
        for channel, counts in by_channel.items():
            for state, count in counts.items():
                states.setdefault(channel, {})[state] = (
                    states.get(channel, {}).get(state, 0) + count
                )
    # E-mail over SMTP ends at "sent": the receiving server accepted it (what the sink holds).
    email_delivered = sum(states.get("email", {}).get(s, 0) for s in ("sent", "opened", "clicked"))
    sms_delivered = states.get("sms", {}).get("delivered", 0)
    no_consent = sum(
        count
        for reason, count in result.get("reasons", {}).get("sms", {}).items()
        if reason.startswith("no ") and reason.endswith("consent on sms")
    )
    if email_delivered != len(smtp.mailbox):
        raise DemoError(f"{email_delivered} e-mails sent but the sink holds {len(smtp.mailbox)}")
    return (
        f"MESSAGES chain=burning email_delivered={email_delivered} sms_delivered={sms_delivered} "
        f"skipped_no_consent={no_consent} customers={launched['customers']} "
        f"groups={','.join(f'{g}:{n}' for g, n in sorted(launched['groups'].items()))} "
        f"sms_fallbacks={fallback['enqueued']} smsc_submits={len(smsc.submitted)} "
        f"sent_passes={first.get('sent', 0)}+{second.get('sent', 0)} "
        f"in_s={time.monotonic() - started:.1f}"
    )
