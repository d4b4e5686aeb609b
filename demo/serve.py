"""`loyalty-demo --serve`: after the demo, keep the cluster running and let a person try the
customer's portal as a demo household: print the portal's address and the household's sign-in
(an e-mail address), send the Center's outbox through a local SMTP server every few seconds and
print each sign-in code it receives, until Ctrl-C."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import requests

from demo.cluster import Cluster
from demo.errors import DemoError
from demo.message_sinks import SmtpSink

__all__ = ["DEMO_EMAIL", "SEND_EVERY_S", "PortalDemo", "demo_customer"]

DEMO_EMAIL = "demo.customer@shop.example"
SEND_EVERY_S = 2.0


def demo_customer(cluster: Cluster, households: Iterable[str]) -> str:
    """Give the first of the demo's households (one with receipts) the demo's e-mail address,
    with consent: the customer id that signs in with it."""
    first = next(iter(households), None)
    if first is None:
        raise DemoError("no demo household has a card: nobody to sign in as")
    customer_id = f"hh-{first}"
    token = cluster.staff_token("demo-portal-admin", "administrator")
    row = {
        "customer_id": customer_id,
        "email": DEMO_EMAIL,
        "first_name": "Demo",
        "consents": {"email": {"advertising": True, "personal_data": True}},
    }
    answer = requests.post(
        cluster.center.url + "/v1/communications/contacts",
        json={"rows": [row], "source": "demo --serve"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    if answer.status_code >= 300:
        raise DemoError(f"could not give {customer_id} an e-mail: {answer.text[:300]}")
    return customer_id


def _send(cluster: Cluster, smtp: SmtpSink) -> Any:
    return cluster.run_tool_json(
        "loyalty-center",
        "send-messages",
        "--config",
        str(cluster.center.config),
        "--smtp",
        f"127.0.0.1:{smtp.port}",
        "--sender",
        "shop@shop.example",
        "--public-url",
        cluster.center.url,
    )


class PortalDemo:
    """The portal part of `--serve`: the demo customer's address given, a local SMTP server
    for the Center's outbox, and the sign-in codes it receives printed as they arrive."""

    def __init__(self, cluster: Cluster, households: Iterable[str]) -> None:
        self.cluster = cluster
        self.customer_id = demo_customer(cluster, households)
        self.smtp = SmtpSink().start()
        self.seen: set[str] = set()

    def lines(self) -> list[str]:
        """What to print: the portal's address and the demo customer's sign-in."""
        return [
            f"PORTAL {self.cluster.center.url}/portal",
            f"PORTAL_SIGN_IN email={DEMO_EMAIL} customer={self.customer_id} "
            "(ask for a code on the portal: it is printed here as CODE)",
        ]

    def poll(self) -> None:
        """Send what the outbox holds and print each new sign-in code."""
        _send(self.cluster, self.smtp)
        with self.smtp.lock:
            mails = dict(self.smtp.mailbox)
        for message_id, mail in mails.items():
            if message_id in self.seen:
                continue
            self.seen.add(message_id)
            body = mail.get_body(preferencelist=("plain",))
            text = body.get_content() if body is not None else ""
            found = re.search(r"\b(\d{6})\b", text)
            if found:
                print(f"CODE to={mail['To']} code={found.group(1)}", flush=True)

    def stop(self) -> None:
        """Stop the SMTP server."""
        self.smtp.stop()
