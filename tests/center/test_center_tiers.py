"""Tiers at the Center on both backends: the programme checked field by field, audited and
published down the feed; levels reviewed from hand-computed purchase histories, with history
and progress in the customer's view; the card state carrying the level; validate's warning."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.people import add_person
from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from sync_protocol import read_programme
from tests.center.center_factories import CARD, OTHER_CARD, make_sale, master_tables, write_config
from tests.center.staff import StaffApi, staff_token

NOW = datetime(2026, 1, 20, 12, tzinfo=UTC)
PROGRAMME: dict[str, Any] = {
    "period_days": 30,
    "grace_days": 10,
    "levels": [
        {"code": "member", "title": {"ru": "Участник", "en": "Member"}, "rank": 0},
        {
            "code": "silver",
            "title": {"ru": "Серебро", "en": "Silver"},
            "rank": 1,
            "spend_minor": 10_000,
        },
        {
            "code": "gold",
            "title": {"ru": "Золото", "en": "Gold"},
            "rank": 2,
            "spend_minor": 30_000,
            "visits": 3,
        },
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(config: Config, storage: Storage, clock: Clock) -> AsyncIterator[StaffApi]:
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=clock))) as client:
        yield StaffApi(client, staff_token(storage, "administrator", username="ada"))


def _buy(storage: Storage, seq: int, day: str, amount: int) -> None:
    """One sale of CARD (customer hh-1) of ``amount`` at noon UTC on ``day``."""
    closed = datetime.fromisoformat(f"{day}T12:00:00+00:00")
    sale = make_sale(seq, card_no=CARD, amounts=(amount,))
    sale = dataclasses.replace(sale, opened_at=closed - timedelta(minutes=1), closed_at=closed)
    ack = storage.sales.ingest([sale], closed + timedelta(minutes=5))
    assert ack.accepted == (sale.sale_id,), ack


async def test_programme_checked_audited_and_published(api: StaffApi, storage: Storage) -> None:
    status, body = await api.call("GET", "/v1/tiers")
    assert (status, body["programme"]) == (200, None)
    bad = {**PROGRAMME, "levels": [{**PROGRAMME["levels"][1], "rank": "1"}], "perks": True}
    status, body = await api.call("PUT", "/v1/tiers", bad)
    assert status == 422
    fields = {p["field"] for p in body["problems"]}
    assert fields == {"perks", "levels[0].rank"}
    assert (await api.call("GET", "/v1/tiers"))[1]["programme"] is None  # nothing written
    before = storage.versions.current()
    status, body = await api.call("PUT", "/v1/tiers", PROGRAMME)
    assert status == 200, body
    assert body["version"] == before + 1
    assert [lv["code"] for lv in body["programme"]["levels"]] == ["member", "silver", "gold"]
    # The same programme again changes nothing (no new version).
    assert (await api.call("PUT", "/v1/tiers", PROGRAMME))[1]["version"] == before + 1
    status, audit = await api.call(
        "GET", "/v1/audit", query={"kind": "setting", "id": "tiers.programme"}
    )
    assert status == 200 and [(c["action"], c["actor"]) for c in audit["changes"]] == [
        ("set", "ada")
    ]
    # Down the feed: the store's replica gets the setting, which reads back as the programme.
    snapshot = storage.feed.master_feed("367", 0, NOW)
    assert snapshot is not None
    settings = {r["name"]: r["value"] for r in snapshot.tables["settings"]}  # type: ignore[union-attr]
    programme = read_programme(settings)
    assert programme is not None and programme.level("gold") is not None


async def test_levels_reviewed_with_history_progress_and_card_state(
    api: StaffApi, storage: Storage, clock: Clock
) -> None:
    assert (await api.call("PUT", "/v1/tiers", PROGRAMME))[0] == 200
    _buy(storage, 1, "2026-01-01", 6_000)
    _buy(storage, 2, "2026-01-05", 5_000)  # 110.00 in 30 days: silver on 01-05
    status, done = await api.call("POST", "/v1/tiers/review", {})
    assert (status, done) == (200, {"reviewed": 1, "changed": 1})
    status, view = await api.call("GET", "/v1/customers/hh-1/tier")
    assert status == 200, view
    assert view["tier"] == "silver" and view["since"] == "2026-01-05"
    assert view["kept_until"] == "2026-02-13"  # review 02-04 + 10 days of grace, less one
    assert (view["spend_minor"], view["visits"]) == (11_000, 2)
    assert view["next"]["tier"] == "gold"
    assert (view["next"]["spend_minor_needed"], view["next"]["visits_needed"]) == (19_000, 1)
    assert view["history"] == [
        {"on": "2026-01-01", "from": "", "to": "member", "reason": "upgrade"},
        {"on": "2026-01-05", "from": "member", "to": "silver", "reason": "upgrade"},
    ]
    status, customer = await api.call("GET", "/v1/customers/hh-1")
    assert status == 200 and customer["tier"]["tier"] == "silver"
    # The card row's state carries the level and the window's counters.
    derived = storage.states.derive([(CARD, "hh-1")], NOW)[CARD].state
    assert (derived.tier, derived.tier_spend_minor, derived.tier_visits) == ("silver", 11_000, 2)
    assert derived.tier_until == "2026-02-13"
    # A review again changes nothing.
    assert (await api.call("POST", "/v1/tiers/review", {"customer_ids": ["hh-1"]}))[1] == {
        "reviewed": 1,
        "changed": 0,
    }
    unknown = await api.call("POST", "/v1/tiers/review", {"customer_ids": ["nobody"]})
    assert unknown[1] == {"reviewed": 0, "changed": 0}
    # Kept through 02-13; on 02-14 the window 01-15..02-13 holds nothing: member again.
    clock.now = datetime(2026, 2, 13, 23, tzinfo=UTC)
    before = storage.versions.current()
    assert (await api.call("POST", "/v1/tiers/review", {}))[1]["changed"] == 0
    # Both sales left the window (now 01-15..02-13) with the calendar alone: the card row is
    # sent again with the window's new counters, the level still kept.
    delta = storage.feed.master_feed("367", before, clock.now)
    assert delta is not None
    rows = [r for r in delta.upserts.get("cards", []) if r["card_no"] == CARD]  # type: ignore[union-attr]
    assert rows and rows[0]["state"]["tier"] == "silver"
    assert "tier_spend_minor" not in rows[0]["state"]  # 0: left out of the row
    clock.now = datetime(2026, 2, 14, 1, tzinfo=UTC)
    before = storage.versions.current()
    assert (await api.call("POST", "/v1/tiers/review", {}))[1] == {"reviewed": 1, "changed": 1}
    # The card row goes down the feed again with the new level.
    delta = storage.feed.master_feed("367", before, clock.now)
    assert delta is not None
    rows = [r for r in delta.upserts.get("cards", []) if r["card_no"] == CARD]  # type: ignore[union-attr]
    assert rows and rows[0]["state"]["tier"] == "member"
    view = (await api.call("GET", "/v1/customers/hh-1/tier"))[1]
    assert view["tier"] == "member" and view["history"][-1] == {
        "on": "2026-02-14",
        "from": "silver",
        "to": "member",
        "reason": "downgrade",
    }
    derived = storage.states.derive([(CARD, "hh-1")], clock.now)[CARD].state
    assert (derived.tier, derived.tier_spend_minor) == ("member", 0)


async def test_the_center_upgrades_at_once_in_the_card_state_before_any_review(
    api: StaffApi, storage: Storage
) -> None:
    assert (await api.call("PUT", "/v1/tiers", PROGRAMME))[0] == 200
    for seq, day in enumerate(("2026-01-10", "2026-01-12", "2026-01-15"), start=1):
        _buy(storage, seq, day, 10_000)
    derived = storage.states.derive([(CARD, "hh-1")], NOW)[CARD].state
    assert derived.tier == "gold"  # 300.00 on 3 visits within 30 days
    assert derived.tier_until == ""  # not reviewed yet: the Center has kept no period


async def test_bad_review_and_unknown_customer_name_the_field(api: StaffApi) -> None:
    status, body = await api.call("POST", "/v1/tiers/review", {"customer_ids": "hh-1"})
    assert status == 400 and body["detail"].startswith("body.customer_ids:"), body
    status, body = await api.call("POST", "/v1/tiers/review", {"who": 1})
    assert status == 400 and body["detail"].startswith("body.who:"), body
    status, body = await api.call("GET", "/v1/customers/hh-1/tier")
    assert status == 404 and body["detail"].startswith("tiers:"), body  # no programme yet
    assert (await api.call("PUT", "/v1/tiers", PROGRAMME))[0] == 200
    status, body = await api.call("GET", "/v1/customers/nobody/tier")
    assert status == 404 and body["detail"].startswith("customer_id:"), body


async def test_validate_warns_of_a_tier_no_level_defines(api: StaffApi) -> None:
    rule = {
        "promotion_id": "gold-10",
        "kind": "goods_discount",
        "goods": {"products": ["1000"]},
        "percent": "10",
        "tiers": ["gold"],
    }
    status, body = await api.call("POST", "/v1/promotions/validate", rule)
    assert status == 200 and any("no tiers are defined" in w for w in body["warnings"]), body
    assert (await api.call("PUT", "/v1/tiers", PROGRAMME))[0] == 200
    status, body = await api.call("POST", "/v1/promotions/validate", rule)
    assert status == 200 and not [w for w in body["warnings"] if "tier" in w], body
    status, body = await api.call(
        "POST", "/v1/promotions/validate", {**rule, "tiers": ["platinum"]}
    )
    assert any("tier 'platinum' is not defined" in w for w in body["warnings"]), body


async def test_the_console_customer_page_shows_the_level_and_progress(
    config: Config, storage: Storage, clock: Clock
) -> None:
    storage.feed.upsert_master(master_tables())
    add_person(storage, "root", "administrator", "correct horse battery", "test", NOW)
    storage.tiers.set_programme(PROGRAMME, actor="test", now=NOW)
    _buy(storage, 1, "2026-01-05", 11_000)
    browser = {"Accept-Language": "en", "Accept": "text/html,*/*;q=0.8"}
    app = create_app(config, storage, clock=clock)
    async with TestClient(TestServer(app), headers=browser) as client:
        page = await (await client.get("/")).text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        form = {
            "csrf_token": token.group(1),
            "username": "root",
            "password": "correct horse battery",
        }
        signed = await client.post("/sign-in", data=form, allow_redirects=False)
        assert signed.status == 303
        response = await client.get("/console/customers/hh-1")
        html = await response.text()
    assert response.status == 200, html[:500]
    assert re.search(r'id="tier-level">Серебро / Silver \(silver\)<', html), html
    assert re.search(r'id="tier-until">2026-02-13<', html)  # 01-05 + 30 + 10 - 1
    assert 'id="tier-next"' in html  # gold: 190.00 and 2 visits to go


async def test_a_scheduled_review_goes_in_batches_and_moves_its_mark_at_the_end(
    api: StaffApi, storage: Storage
) -> None:
    assert (await api.call("PUT", "/v1/tiers", PROGRAMME))[0] == 200
    _buy(storage, 1, "2026-01-05", 11_000)  # hh-1
    other = dataclasses.replace(
        make_sale(2, card_no=OTHER_CARD, amounts=(500,)),
        opened_at=NOW - timedelta(days=2, minutes=1),
        closed_at=NOW - timedelta(days=2),
    )
    storage.sales.ingest([other], NOW - timedelta(days=2))  # hh-2
    storage.tiers.review_batch = 1
    assert storage.tiers.review(NOW) == {"reviewed": 1, "changed": 1}  # hh-1
    assert storage.tiers.review(NOW) == {"reviewed": 1, "changed": 1}  # hh-2, the pass ends
    assert storage.tiers.review(NOW) == {"reviewed": 0, "changed": 0}  # nothing new since
    tiers = dict(storage.db.execute("SELECT customer_id, tier FROM customer_tiers").fetchall())
    assert tiers == {"hh-1": "silver", "hh-2": "member"}
