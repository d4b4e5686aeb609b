"""Triggered chains: welcome, inactivity, birthday, purchase and a manual launch to a segment,
each customer told once per occasion on their preferred channel where they can be reached."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from center.communications import parse_template
from center.communications.campaigns import launch_trigger
from center.communications.triggers import TriggerCampaign, choose_channel, is_birthday
from center.crm.model import CustomerInput
from center.errors import InvalidRequest
from center.storage import Storage
from tests.center.center_factories import make_sale
from tests.center.comms_factories import NOW, seed

TEMPLATE = parse_template(
    "hello",
    {
        "subject": {"en": "Hi {name}"},
        "body": {"en": "{name}, you have {balance}.", "ru": "{name}!"},
    },
)


def campaign(trigger: str, **kw: object) -> TriggerCampaign:
    options: dict[str, object] = {"split": (("A", 10_000),), "channels": ("email", "sms"), **kw}
    return TriggerCampaign(f"t-{trigger}", trigger, {"A": TEMPLATE}, **options)  # type: ignore[arg-type]


def _messages(storage: Storage, campaign_id: str) -> dict[str, tuple[str, str]]:
    rows = storage.db.execute(
        "SELECT customer_id, channel, address FROM comm_messages WHERE campaign_id = ?",
        (campaign_id,),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_choose_channel_prefers_the_customers_channel_where_reachable() -> None:
    contact = {"email": "a@example.org", "phone": "+79161234567", "preferred_channel": "sms"}
    assert choose_channel(contact, ("email", "sms")) == ("sms", "+79161234567")
    assert choose_channel(contact, ("email",)) == ("email", "a@example.org")
    no_phone = {**contact, "phone": "call me"}
    assert choose_channel(no_phone, ("email", "sms")) == ("email", "a@example.org")
    assert choose_channel({}, ("sms", "email")) == ("sms", ""), "skipped later, with a reason"


def test_birthdays_and_29_february() -> None:
    assert is_birthday("1990-03-02", date(2026, 3, 2))
    assert not is_birthday("1990-03-02", date(2026, 3, 3))
    assert is_birthday("2000-02-29", date(2026, 2, 28)) and is_birthday(
        "2000-02-29", date(2028, 2, 29)
    )
    assert not is_birthday("2000-02-29", date(2028, 2, 28))
    assert not is_birthday("soon", date(2026, 3, 2)) and not is_birthday(None, date(2026, 3, 2))


def test_bad_campaigns_are_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidRequest, match=r"body\.trigger"):
        campaign("someday")
    with pytest.raises(InvalidRequest, match=r"body\.segment_id"):
        campaign("segment")
    with pytest.raises(InvalidRequest, match=r"body\.channels"):
        campaign("welcome", channels=("pigeon",))


def test_each_trigger_finds_its_customers_once_per_occasion(storage: Storage) -> None:
    seed(storage)
    storage.feed.upsert_master(
        {"cards": [{"card_no": f"700{n}", "customer_id": f"c{n}"} for n in range(1, 5)]}
    )

    def sale(seq: int, card: str, days_ago: float):  # type: ignore[no-untyped-def]
        at = NOW - timedelta(days=days_ago)
        made = make_sale(seq, card_no=card, amounts=(500,))
        return dataclasses.replace(made, opened_at=at - timedelta(minutes=1), closed_at=at)

    storage.sales.ingest(
        [sale(1, "7001", 100), sale(2, "7002", 100), sale(3, "7002", 1), sale(4, "7003", 2)],
        NOW,
    )
    # welcome: a customer registered yesterday (c1..c4 came in a master load, not registered)
    storage.customers.create_customer(
        CustomerInput("new-1", {"first_name": "Nina", "email": "nina@example.org"}),
        "call center",
        NOW - timedelta(days=1),
    )
    done = launch_trigger(storage.communications, campaign("welcome", days=7), NOW)
    assert done["customers"] == 1 and _messages(storage, "t-welcome") == {
        "new-1": ("email", "nina@example.org")
    }
    # inactivity: c1 bought 100 days ago and nothing since; c2 bought yesterday too
    done = launch_trigger(storage.communications, campaign("inactivity", days=60), NOW)
    assert set(_messages(storage, "t-inactivity")) == {"c1"}
    # purchase: who bought in the last 3 days
    launch_trigger(storage.communications, campaign("purchase", days=3), NOW)
    assert set(_messages(storage, "t-purchase")) == {"c2", "c3"}
    # segment: a manual launch to its members
    with storage.db.transaction():
        storage.db.execute(
            "INSERT INTO segment_members (segment_id, customer_id) VALUES ('vip', 'c4')"
        )
    done = launch_trigger(storage.communications, campaign("segment", segment_id="vip"), NOW)
    assert done["customers"] == 1
    assert _messages(storage, "t-segment")["c4"][0] == "email"
    # birthday: today in the customer's own zone
    today = NOW.date().isoformat()
    storage.customers.create_customer(
        CustomerInput("bday", {"first_name": "Bo", "phone": "79160000009",
                               "birth_date": "1990" + today[4:], "preferred_channel": "sms"}),
        "call center",
        NOW - timedelta(days=400),
    )  # fmt: skip
    done = launch_trigger(storage.communications, campaign("birthday"), NOW)
    assert done["customers"] == 1 and done["channels"] == {"sms": 1}
    assert _messages(storage, "t-birthday") == {"bday": ("sms", "79160000009")}
    # Run again (the daily job): no occasion is told twice.
    again = launch_trigger(storage.communications, campaign("birthday"), NOW)
    assert again["enqueued"] == 0
    again = launch_trigger(storage.communications, campaign("inactivity", days=60), NOW)
    assert again["enqueued"] == 0
