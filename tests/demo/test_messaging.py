"""The demo's chain inputs: its customers live where it is daytime, and their contacts cover
every path of the chain (e-mail, SMS only, a refused address, no consent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from demo.messaging import daytime_zone, demo_contacts


def test_the_demo_customers_zone_is_at_noon_whatever_the_hour() -> None:
    start = datetime(2026, 12, 7, tzinfo=UTC)
    for hour in range(24):
        now = start + timedelta(hours=hour, minutes=30)
        local = now.astimezone(ZoneInfo(daytime_zone(now)))
        assert local.hour == 12, (hour, daytime_zone(now))


def test_demo_contacts_cover_every_path_of_the_chain() -> None:
    rows = demo_contacts([f"hh-{n}" for n in range(200)], "Etc/GMT-3")
    emails = [r.get("email", "") for r in rows]
    assert any(e.endswith("@shop.example") and "email" in r.get("consents", {})
               for e, r in zip(emails, rows, strict=True))  # fmt: skip
    assert any(e.endswith("@refused.example") for e in emails)
    assert any("email" not in r and "sms" in r["consents"] for r in rows)
    assert any("consents" not in r for r in rows)
    assert demo_contacts(["hh-1"], "UTC") == demo_contacts(["hh-1"], "UTC"), "deterministic"
