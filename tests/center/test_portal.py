"""The customer's portal through aiohttp's test client: sign-up by a one-time code into a cookie
session, every menu page over the member services, purchase history by period with the totals
per day and the chart, the e-card's rotating QR, favourite categories, advertising blocks and
supplier-funded promotions, CSRF, refresh of an expired access token, sign-out, isolation."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.advertising.model import parse_block
from center.config import Config, load_config
from center.crm.model import CustomerInput
from center.errors import InvalidRequest
from center.portal.history import chart_svg, day_totals, parse_period
from center.promotions.segments import SegmentInput
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from sync_protocol import ECARD_KEY_SETTING, check_ecard_payload
from tests.center.center_factories import T0, make_sale, master_tables, write_config
from tests.center.member_factories import Clock, code_in_outbox

PHONE = "+7 912 555-01-02"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = SqliteStorage(tmp_path / "portal.db")
    storage.migrate()
    tables = master_tables()
    for product, category in zip(tables["products"], ("Dairy", "Bakery", "Fruit"), strict=True):
        product["category"] = category
    tables["settings"].append({"name": "timezone", "value": "Europe/Moscow"})
    storage.feed.upsert_master(tables)
    return storage


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def client(config: Config, db: Storage, clock: Clock) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(config, db, clock=clock)
    browser = {"Accept-Language": "ru", "Accept": "text/html,*/*;q=0.8"}
    async with TestClient(TestServer(app), headers=browser) as client:
        yield client
    db.close()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


async def _sign_up(client: TestClient[Any, Any], db: Storage, address: str = PHONE) -> str:
    """Sign up through the pages; the new customer's id."""
    page = await (await client.get("/portal/sign-in")).text()
    token = _csrf(page)
    sent = await client.post(
        "/portal/sign-in", data={"csrf_token": token, "address": address}, allow_redirects=False
    )
    assert sent.status == 303, await sent.text()
    challenge = re.search(r"challenge=([0-9a-f]+)", sent.headers["Location"])
    assert challenge
    code = code_in_outbox(db, challenge.group(1))
    form = {"csrf_token": token, "challenge": challenge.group(1), "code": code}
    refused = await client.post("/portal/code", data=form, allow_redirects=False)
    assert refused.status == 422  # a new customer must consent first
    assert 'id="err-personal_data"' in await refused.text()
    done = await client.post(
        "/portal/code",
        data={**form, "personal_data": "yes", "first_name": "Elena"},
        allow_redirects=False,
    )
    assert (done.status, done.headers["Location"]) == (303, "/portal/categories?welcome=1")
    row = db.db.execute(
        "SELECT customer_id FROM member_identities WHERE address LIKE ?", ("%",)
    ).fetchall()
    return str(row[-1][0])


async def test_pages_need_a_signed_in_member(client: TestClient[Any, Any]) -> None:
    for path in ("/portal", "/portal/history", "/portal/card", "/portal/offers"):
        response = await client.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/portal/sign-in"), path
    page = await client.get("/portal/sign-in")
    assert page.status == 200 and "Вход и регистрация" in await page.text()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


async def test_sign_up_then_every_menu_page_in_russian(
    client: TestClient[Any, Any], db: Storage
) -> None:
    customer_id = await _sign_up(client, db)
    home = await client.get("/portal")
    text = await home.text()
    assert home.status == 200
    assert "Здравствуйте, Elena!" in text
    for title in (
        "Главная",
        "Акции и товарные предложения",
        "Купоны",
        "Любимые категории",
        "Магазины",
        "История покупок",
        "Оповещения",
        "История накоплений",
        "О программе лояльности",
    ):
        assert title in text, title
    for path in (
        "/portal/offers",
        "/portal/coupons",
        "/portal/categories",
        "/portal/stores",
        "/portal/history",
        "/portal/notifications",
        "/portal/accruals",
        "/portal/about",
        "/portal/card",
    ):
        page = await client.get(path)
        assert page.status == 200, (path, await page.text())
    assert "Store 367" in await (await client.get("/portal/stores")).text()
    assert db.audit.audit_history("member", customer_id)[0]["action"] == "sign_up"


async def test_favourite_categories_are_chosen_from_the_chains_list_with_csrf(
    client: TestClient[Any, Any], db: Storage
) -> None:
    customer_id = await _sign_up(client, db)
    page = await (await client.get("/portal/categories?welcome=1")).text()
    assert 'id="welcome"' in page and 'value="Dairy"' in page
    refused = await client.post(
        "/portal/categories", data={"category": "Dairy"}, allow_redirects=False
    )
    assert refused.status == 403
    saved = await client.post(
        "/portal/categories",
        data=[("csrf_token", _csrf(page)), ("category", "Dairy"), ("category", "Fruit")],
        allow_redirects=False,
    )
    assert (saved.status, saved.headers["Location"]) == (303, "/portal/categories?done=saved")
    view = db.customers.customer_view(customer_id, T0)
    assert view is not None and view["attributes"]["favourite_categories"] == ["Dairy", "Fruit"]
    unknown = await client.post(
        "/portal/categories",
        data=[("csrf_token", _csrf(page)), ("category", "Caviar")],
        allow_redirects=False,
    )
    assert unknown.status == 422 and 'id="err-categories"' in await unknown.text()


async def test_purchase_history_by_period_with_totals_per_day_and_bonuses(
    client: TestClient[Any, Any], db: Storage, clock: Clock
) -> None:
    customer_id = await _sign_up(client, db)
    card_no = db.members.cards(customer_id, T0)["cards"][0]["card_no"]
    # T0 is Friday 1 March 2024, 15:00 in Moscow; one receipt the day before, one a month back.
    db.sales.ingest(
        [
            make_sale(1, card_no=card_no, accrue=45),
            make_sale(2, card_no=card_no, amounts=(1000,), accrue=30),
        ],
        T0,
    )
    earlier = make_sale(3, card_no=card_no, amounts=(500,), accrue=5)
    db.sales.ingest(
        [earlier.__class__(**{**_fields(earlier), "closed_at": T0 - timedelta(days=1)})], T0
    )
    old = make_sale(4, card_no=card_no, amounts=(700,))
    db.sales.ingest([old.__class__(**{**_fields(old), "closed_at": T0 - timedelta(days=40)})], T0)
    clock.advance(minutes=10)

    week = await (await client.get("/portal/history?period=week")).text()
    assert re.search(r'id="total-receipts">3<', week)
    assert 'data-day="2024-03-01"' in week and 'data-day="2024-02-29"' in week
    # 449 + 1000 paid on Friday (a column of the chart), bonuses 0,45 + 0,30 that day.
    assert 'data-day="2024-03-01" data-value="1449"' in week
    assert "+0,45" in html.unescape(week) and "+0,75" in html.unescape(week)
    assert re.search(r'id="total-earned">0,80<', week)
    month = await (await client.get("/portal/history?period=month")).text()
    assert re.search(r'id="total-receipts">2<', month)  # 29 February is last month
    period = await (
        await client.get("/portal/history?period=period&from=2024-01-01&to=2024-03-01")
    ).text()
    assert re.search(r'id="total-receipts">4<', period)
    bad = await client.get("/portal/history?period=period&from=2024-03-05&to=2024-03-01")
    assert 'id="err-period"' in await bad.text()
    # The e-receipt of one of them, and not of anyone else's.
    sale_id = re.search(r'data-sale="([^"]+)"', week)
    assert sale_id
    assert (await client.get(f"/portal/history/{sale_id.group(1)}")).status == 200
    db.customers.create_customer(CustomerInput("other", {"last_name": "Other"}), "t", T0)
    db.customers.issue_card("other", None, "electronic", "t", T0)
    theirs = make_sale(9, card_no=db.members.cards("other", T0)["cards"][0]["card_no"])
    db.sales.ingest([theirs], T0)
    assert (await client.get(f"/portal/history/{theirs.sale_id}")).status == 404


def _fields(sale: Any) -> dict[str, Any]:
    return {name: getattr(sale, name) for name in sale.__dataclass_fields__}


async def test_the_e_card_shows_a_qr_a_register_accepts_and_it_rotates(
    client: TestClient[Any, Any], db: Storage, clock: Clock
) -> None:
    customer_id = await _sign_up(client, db)
    card_no = db.members.cards(customer_id, T0)["cards"][0]["card_no"]
    page = await (await client.get("/portal/card")).text()
    assert '<svg class="barcode"' in page and 'data-symbology="ean13"' in page
    assert f'hx-get="/portal/card/qr?card_no={card_no}"' in page
    payload = re.search(r'data-qr="([^"]+)"', page)
    assert payload
    key = db.promotions.promotion_settings()[ECARD_KEY_SETTING]
    assert check_ecard_payload(payload.group(1), key, T0.timestamp()) == card_no
    clock.advance(seconds=60)
    fragment = await (
        await client.get(f"/portal/card/qr?card_no={card_no}", headers={"HX-Request": "true"})
    ).text()
    newer = re.search(r'data-qr="([^"]+)"', fragment)
    assert newer and newer.group(1) != payload.group(1)
    assert fragment.startswith('<div class="qr-box"')
    other = await client.get("/portal/card/qr?card_no=2900000000013")  # hh-1's card
    assert other.status == 404


async def test_blocks_and_promotions_follow_the_members_segment_and_funding(
    client: TestClient[Any, Any], db: Storage
) -> None:
    customer_id = await _sign_up(client, db)
    db.segments.create_segment(
        SegmentInput("pets", "Pet owners", "static", customer_ids=(customer_id,)), "t", T0
    )
    db.segments.create_segment(
        SegmentInput("vip", "VIP", "static", customer_ids=("hh-1",)), "t", T0
    )
    common = {
        "placement": "home_top",
        "starts_at": "2024-02-01T00:00",
        "ends_at": "2024-04-01T00:00",
        "rich_text": "<p>hello</p>",
    }
    for block_id, segment in (("for-pets", "pets"), ("for-vip", "vip")):
        db.advertising.create_block(
            parse_block(
                {**common, "block_id": block_id, "name": block_id, "audience": "segment",
                 "segment_id": segment}
            ),
            "mark",
            T0,
        )  # fmt: skip
    home = await (await client.get("/portal")).text()
    assert 'data-block="for-pets"' in home and 'data-block="for-vip"' not in home

    db.feed.upsert_master(
        {
            "promotions": [
                {
                    "promotion_id": "cat-food",
                    "doc": {
                        "promotion_id": "cat-food",
                        "kind": "accrual_percent",
                        "title": "Cat food −15 %",
                        "percent": "15",
                        "funding": {"by": "supplier:purina", "budget_minor": 100000},
                    },
                },
                {
                    "promotion_id": "vip-only",
                    "doc": {"promotion_id": "vip-only", "title": "VIP", "segments": ["vip"]},
                },
            ]
        }
    )
    offers = await (await client.get("/portal/offers")).text()
    item = re.search(r'<li data-promotion="cat-food">(.*?)</li>', offers, re.S)
    assert item and "скидка от поставщика" in item.group(1)
    assert 'data-promotion="vip-only"' not in offers
    assert 'data-promotion="base-accrual-3"' in offers
    base = re.search(r'<li data-promotion="base-accrual-3">(.*?)</li>', offers, re.S)
    assert base and "поставщика" not in base.group(1)


async def test_an_expired_access_token_is_refreshed_and_sign_out_ends_the_session(
    client: TestClient[Any, Any], db: Storage, clock: Clock
) -> None:
    customer_id = await _sign_up(client, db)
    clock.advance(minutes=20)  # past the 15 min access token
    page = await client.get("/portal", allow_redirects=False)
    assert page.status == 200
    assert "portal_refresh" in page.cookies  # rotated
    text = await page.text()
    out = await client.post(
        "/portal/sign-out", data={"csrf_token": _csrf(text)}, allow_redirects=False
    )
    assert (out.status, out.headers["Location"]) == (303, "/portal/sign-in")
    after = await client.get("/portal", allow_redirects=False)
    assert after.status == 303
    actions = [h["action"] for h in db.audit.audit_history("member", customer_id)]
    assert "sign_out" in actions


async def test_a_wrong_code_is_refused_and_counted(
    client: TestClient[Any, Any], db: Storage
) -> None:
    page = await (await client.get("/portal/sign-in")).text()
    token = _csrf(page)
    bad = await client.post(
        "/portal/sign-in", data={"csrf_token": token, "address": "not an address"}
    )
    assert bad.status == 422 and 'id="err-address"' in await bad.text()
    sent = await client.post(
        "/portal/sign-in", data={"csrf_token": token, "address": "anna@example.org"},
        allow_redirects=False,
    )  # fmt: skip
    challenge = re.search(r"challenge=([0-9a-f]+)", sent.headers["Location"])
    assert challenge
    right = code_in_outbox(db, challenge.group(1))
    wrong = "000000" if right != "000000" else "111111"
    refused = await client.post(
        "/portal/code",
        data={"csrf_token": token, "challenge": challenge.group(1), "code": wrong},
    )
    assert refused.status == 401 and "Неверный код" in await refused.text()
    assert "portal_access" not in refused.cookies


# -- the pure parts -------------------------------------------------------------------------


def test_periods_are_this_week_this_month_or_checked_dates() -> None:
    friday = date(2024, 3, 1)
    week = parse_period("week", "", "", friday)
    assert (week.first, week.last) == (date(2024, 2, 26), friday)
    month = parse_period("month", "", "", date(2024, 3, 15))
    assert (month.first, month.last) == (date(2024, 3, 1), date(2024, 3, 15))
    assert parse_period("period", "2024-01-01", "", friday).last == friday
    for bad_from, bad_to, field in (
        ("x", "", "from"),
        ("2024-03-02", "2024-03-01", "to"),
        ("2020-01-01", "2024-03-01", "to"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            parse_period("period", bad_from, bad_to, friday)
        assert caught.value.field == field


def test_totals_per_day_are_in_the_chains_zone_and_returns_subtract() -> None:
    zone = ZoneInfo("Europe/Moscow")
    period = parse_period("period", "2024-02-29", "2024-03-01", date(2024, 3, 1))
    receipts = [
        # 22:30 UTC on the 29th is already 1 March in Moscow.
        {"closed_at": "2024-02-29T22:30:00+00:00", "net_minor": 1000, "loyalty": [
            {"wallet": "bonus", "amount": 30}, {"wallet": "stickers", "amount": 1}]},
        {"closed_at": "2024-02-29T10:00:00+00:00", "net_minor": 500, "loyalty": [
            {"wallet": "bonus", "amount": -200}]},
        {"closed_at": "2024-03-01T10:00:00+00:00", "kind": "return", "net_minor": -400,
         "loyalty": [{"wallet": "bonus", "amount": -12}]},
    ]  # fmt: skip
    days = day_totals(receipts, period, zone)
    assert [(d.day.day, d.receipts, d.net_minor, d.bonus_earned, d.bonus_spent) for d in days] == [
        (29, 1, 500, 0, 200),
        (1, 1, 600, 30, 12),
    ]
    svg = chart_svg(days, title="t", money=str, day_label=str, empty="none")
    assert svg.count('<rect class="day"') == 2 and 'data-value="600"' in svg
    assert "none" in chart_svg(
        day_totals([], period, zone), title="t", money=str, day_label=str, empty="none"
    )


async def test_english_is_chosen_by_the_link_and_remembered(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_up(client, db)
    page = await client.get("/portal?lang=en")
    text = await page.text()
    assert page.headers["Content-Language"] == "en"
    assert "Purchase history" in text and "История покупок" not in text
    again = await client.get("/portal/history")  # the browser still asks for Russian
    assert again.headers["Content-Language"] == "en"
    assert "This week" in await again.text()
