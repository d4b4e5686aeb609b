"""A small shop for the communications tests: customers with contacts, consents, burning lots."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from center.communications import Consent
from center.storage import LedgerEntry, Storage
from tests.center.center_factories import T0

NOW = T0 + timedelta(days=1, hours=4)
"""16:00 UTC: 19:00 in Moscow, 10:00 in Chicago: outside quiet hours in both."""
TEMPLATE = {
    "subject": {
        "ru": "{name}, сгорают {burning_amount}",
        "en": "{name}, {burning_amount} of bonuses expire",
    },
    "body": {
        "ru": "Здравствуйте, {name}! {burning_date} сгорит {burning_amount} из {balance}. "
        "Ждём вас в магазине {store}.",
        "en": "Hello {name}! {burning_amount} of your {balance} expire on {burning_date}. "
        "See you at {store}.",
    },
}
CUSTOMERS: dict[str, dict[str, Any]] = {
    # every consent, valid contacts
    "c1": {"first_name": "Анна", "email": "anna@example.org", "phone": "+7 916 123-45-67",
           "store_id": "367"},
    # every consent; an invalid e-mail, a phone the SMSC cannot deliver to
    "c2": {"first_name": "Борис", "email": "not-an-email", "phone": "8 999 000-00-00"},
    # no consent at all
    "c3": {"first_name": "Вера", "email": "vera@example.org", "phone": "79160000003"},
    # consent on SMS only; English
    "c4": {"first_name": "Gleb", "email": "gleb@example.org", "phone": "79160000004",
           "lang": "en"},
}  # fmt: skip


def seed(storage: Storage) -> None:
    """Stores, the four customers with a card each, their consents, and bonus lots of which
    some burn within a week."""
    storage.feed.upsert_master(
        {
            "stores": [
                {"store_id": "367", "name": "Ромашка на Ленина", "timezone": "America/Chicago"}
            ],
            "customers": [{"customer_id": c, "attributes": a} for c, a in CUSTOMERS.items()],
            "cards": [{"card_no": f"K{c}", "customer_id": c} for c in CUSTOMERS],
        }
    )
    entries = []
    for i, customer_id in enumerate(CUSTOMERS, start=1):
        card = f"K{customer_id}"
        entries.append(
            LedgerEntry(card, "bonus", "accrue", 35_000, "base", f"burn-{i}", T0,
                        expires_at=NOW + timedelta(days=3, hours=i))
        )  # fmt: skip
        entries.append(
            LedgerEntry(card, "bonus", "accrue", 10_000, "base", f"keep-{i}", T0,
                        expires_at=NOW + timedelta(days=60))
        )  # fmt: skip
    storage.ledger.add_ledger_entries(entries)
    consents = []
    for customer_id, channels in (
        ("c1", ("email", "sms")),
        ("c2", ("email", "sms")),
        ("c4", ("sms",)),
    ):
        for channel in channels:
            for purpose in ("advertising", "personal_data"):
                consents.append(
                    Consent(customer_id, channel, purpose, True, "signup form", "form #42", T0)
                )
    storage.communications.record_consents(consents)


def at(now: datetime) -> Any:
    return lambda: now
