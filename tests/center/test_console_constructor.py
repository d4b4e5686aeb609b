"""The marketer's promotion constructor through aiohttp's test client: the form becomes the
rule document the API would store, errors stay next to their fields with what was typed,
preview, what-if, activate / archive, revisions with diffs, rights, CSRF and escaping; and
the pages around it: segments with live member counts, coupon batches."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.people import add_person
from center.config import Config, load_config
from center.crm.model import CustomerInput
from center.promotions.segments import parse_segment
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import CARD, OTHER_CARD, T0, make_sale, write_config

PASSWORD = "correct horse battery"

# "+0.5 % bonuses if the receipt total < 1 000, every card holder, every store except the
# Discounter format", as the marketer types it.
HALF_PERCENT = {
    "kind": "accrual_percent",
    "promotion_id": "small-basket-half",
    "title": "+0,5 % under 1 000",
    "description": "Small baskets earn a little more",
    "requires_card": "yes",
    "place.exclude_formats": "Discounter",
    "percent": "0,5",
    "max_total_minor": "1 000,00",
    "wallet": "bonus",
    "lifetime_days": "365",
    "messages.slip": "+{amount} bonus for a small basket",
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = SqliteStorage(tmp_path / "console.db")
    storage.migrate()
    for name, role in (("mark", "marketer"), ("ann", "data_analyst")):
        add_person(storage, name, role, PASSWORD, "test", T0)
    storage.feed.upsert_master(
        {
            "stores": [
                {"store_id": "s1", "name": "Tverskaya 1", "format": "hypermarket"},
                {"store_id": "s2", "name": "Lenina 5", "format": "Discounter"},
            ],
            "products": [
                {"product_id": "MILK", "name": "Milk", "price_minor": 8990, "category": "dairy"}
            ],
        }
    )
    return storage


@pytest.fixture
async def client(config: Config, db: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(config, db, clock=lambda: T0)
    browser = {"Accept-Language": "en", "Accept": "text/html,*/*;q=0.8"}
    async with TestClient(TestServer(app), headers=browser) as client:
        yield client
    db.close()


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


async def _signed_in(client: TestClient[Any, Any], username: str) -> str:
    """Sign in; the CSRF token of the session."""
    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": username, "password": PASSWORD}
    response = await client.post("/sign-in", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    home = await client.get("/console/promotions")
    return _token(await home.text())


async def _post(
    client: TestClient[Any, Any], path: str, form: dict[str, str], token: str
) -> tuple[int, str, str]:
    response = await client.post(path, data={**form, "csrf_token": token}, allow_redirects=False)
    return response.status, await response.text(), response.headers.get("Location", "")


def _value(page: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', page)
    assert found, name
    return html.unescape(found.group(1))


async def test_the_form_stores_the_rule_document_the_engine_reads(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _signed_in(client, "mark")
    status, _, location = await _post(client, "/console/promotions/new", HALF_PERCENT, token)
    assert (status, location) == (303, "/console/promotions/small-basket-half?done=saved")
    stored = db.promotions.get_promotion("small-basket-half")
    assert stored is not None and stored["status"] == "draft"
    assert stored["doc"] == {
        "kind": "accrual_percent",
        "promotion_id": "small-basket-half",
        "title": "+0,5 % under 1 000",
        "description": "Small baskets earn a little more",
        "requires_card": True,
        "place": {"exclude_formats": ["Discounter"]},
        "percent": "0.5",
        "max_total_minor": 100000,
        "wallet": "bonus",
        "lifetime_days": 365,
        "messages": {"slip": "+{amount} bonus for a small basket"},
    }
    # Shown again in major units, as typed.
    page = await (await client.get("/console/promotions/small-basket-half")).text()
    assert _value(page, "max_total_minor") == "1 000.00"
    assert "Small baskets earn a little more" in page


async def test_bad_input_is_shown_next_to_its_field_and_nothing_is_saved(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _signed_in(client, "mark")
    bad = {**HALF_PERCENT, "percent": "150", "max_total_minor": "12,345", "schedule.hours": "9"}
    status, page, _ = await _post(client, "/console/promotions/new", bad, token)
    assert status == 422
    assert 'id="err-max_total_minor"' in page and "too many decimal places" in page
    assert 'id="err-schedule-hours"' in page
    assert _value(page, "max_total_minor") == "12,345" and _value(page, "percent") == "150"
    # The text read, the engine's own check names the field.
    fixed = {**bad, "max_total_minor": "1 000", "schedule.hours": "9-21"}
    status, page, _ = await _post(client, "/console/promotions/new", fixed, token)
    assert status == 422 and 'id="err-percent"' in page and "150" in page
    assert db.promotions.get_promotion("small-basket-half") is None


async def test_preview_activate_archive_and_the_revisions_with_their_diffs(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _signed_in(client, "mark")
    await _post(client, "/console/promotions/new", HALF_PERCENT, token)
    one = "/console/promotions/small-basket-half"
    sample = {"sample": "MILK ; 2 ; 89,90", "sample_store": "s1", "sample_card": "yes"}
    response = await client.post(
        one + "/preview", data={**sample, "csrf_token": token}, headers={"HX-Request": "true"}
    )
    fragment = await response.text()
    assert response.status == 200 and fragment.startswith('<div id="preview-result">')
    # 0.5 % of 179.80 = 0.899, rounded half to even to 0.90: 90 bonus minor units.
    assert re.search(r'id="preview-own-accrual">0.90<', fragment), fragment
    assert "small-basket-half: applied" in fragment
    # At the Discounter store it does not apply, and the explanation says why.
    response = await client.post(
        one + "/preview",
        data={**sample, "sample_store": "s2", "csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert re.search(r'id="preview-own-accrual">0.00<', await response.text())

    status, _, location = await _post(client, one, {**HALF_PERCENT, "percent": "0,7"}, token)
    assert (status, location) == (303, one + "?done=saved")
    status, _, location = await _post(client, one + "/activate", {}, token)
    assert (status, location) == (303, one + "?done=activated")
    state = db.promotions.get_promotion("small-basket-half")
    assert state is not None and (state["status"], state["live_revision"]) == ("active", 2)
    live = dict(db.promotions.promotion_set(db.versions.current()))["small-basket-half"]
    assert live["percent"] == "0.7" and "description" not in live
    page = await (await client.get(one)).text()
    assert 'data-status="active"' in page and 'id="revision-2"' in page
    diff = re.search(
        r"<code>percent</code></td><td class=\"old\">(.*?)</td><td class=\"new\">(.*?)<", page
    )
    assert diff and (html.unescape(diff.group(1)), html.unescape(diff.group(2))) == (
        '"0.5"',
        '"0.7"',
    )
    status, _, location = await _post(client, one + "/archive", {}, token)
    assert (status, location) == (303, one + "?done=archived")
    assert dict(db.promotions.promotion_set(db.versions.current())).get("small-basket-half") is None
    audit = db.promotions.promotion_history("small-basket-half")
    assert audit is not None
    assert [a["action"] for a in audit] == ["create", "update", "activate", "archive"]
    assert audit[0]["actor"] == "mark via /console/promotions/new"


async def test_every_kind_has_a_form_and_html_is_escaped_in_every_text_field(
    client: TestClient[Any, Any], db: Storage
) -> None:
    from center.promotions.constructor_form import KINDS, form_fields
    from loyalty_engine.kinds import KINDS as ENGINE_KINDS

    assert set(KINDS) == set(ENGINE_KINDS)
    token = await _signed_in(client, "mark")
    for kind in KINDS:
        page = await (await client.get(f"/console/promotions/new?kind={kind}")).text()
        for field in form_fields(kind):
            assert f'name="{field.name}"' in page, (kind, field.name)
    script = "<script>alert(1)</script>"
    form = {
        **HALF_PERCENT,
        "title": script,
        "description": script,
        "messages.slip": script,
        "messages.cashier": script,
        "messages.display": script,
        "place.exclude_formats": "Discounter",
        "segments": script,
        "attributes": f"city = {script}",
    }
    status, _, location = await _post(client, "/console/promotions/new", form, token)
    assert status == 303, location
    page = await (await client.get(location)).text()
    assert script not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    listing = await (await client.get("/console/promotions")).text()
    assert script not in listing


async def test_an_analyst_reads_but_is_shown_and_allowed_no_change(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _signed_in(client, "mark")
    await _post(client, "/console/promotions/new", HALF_PERCENT, token)
    await client.post("/sign-out", data={"csrf_token": token})
    token = await _signed_in(client, "ann")
    listing = await (await client.get("/console/promotions")).text()
    assert 'id="new-promotion"' not in listing
    one = "/console/promotions/small-basket-half"
    page = await (await client.get(one)).text()
    assert 'id="save"' not in page and 'id="activate"' not in page and 'id="preview"' not in page
    assert '<fieldset class="plain" disabled>' in page
    for path, form in (
        ("/console/promotions/new", HALF_PERCENT),
        (one, {**HALF_PERCENT, "percent": "9"}),
        (one + "/activate", {}),
        (one + "/archive", {}),
    ):
        status, _, _ = await _post(client, path, form, token)
        assert status == 403, path
    assert (await client.get("/console/promotions/new")).status == 403
    state = db.promotions.get_promotion("small-basket-half")
    assert state is not None and (state["status"], state["revision"]) == ("draft", 1)


async def test_a_form_without_its_csrf_token_changes_nothing(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _signed_in(client, "mark")
    response = await client.post(
        "/console/promotions/new", data=HALF_PERCENT, allow_redirects=False
    )
    assert response.status == 403
    assert db.promotions.get_promotion("small-basket-half") is None


async def test_what_if_prices_the_stored_sales_of_a_period_with_a_progress_bar(
    client: TestClient[Any, Any], db: Storage
) -> None:
    small = make_sale(1, store_id="s1", register_id="s1-1", card_no=CARD, amounts=(25000, 19900))
    discounter = make_sale(1, store_id="s2", register_id="s2-1", card_no=OTHER_CARD)
    cardless = make_sale(2, store_id="s1", register_id="s1-1", amounts=(25000,))
    big = make_sale(3, store_id="s1", register_id="s1-1", card_no=OTHER_CARD, amounts=(150000,))
    assert len(db.sales.ingest([small, discounter, cardless, big], T0).accepted) == 4
    token = await _signed_in(client, "mark")
    await _post(client, "/console/promotions/new", HALF_PERCENT, token)
    one = "/console/promotions/small-basket-half"
    htmx = {"HX-Request": "true"}
    bad = await client.post(
        one + "/simulations",
        data={"sim_from": "2024-03-02", "sim_to": "2024-03-01", "csrf_token": token},
        headers=htmx,
    )
    assert 'id="simulation-error"' in await bad.text()
    started = await client.post(
        one + "/simulations",
        data={"sim_from": "2024-02-29", "sim_to": "2024-03-01", "csrf_token": token},
        headers=htmx,
    )
    fragment = await started.text()
    assert 'id="simulation-progress"' in fragment
    poll = re.search(r'hx-get="([^"]+)"', fragment)
    assert poll, fragment
    for _ in range(400):
        fragment = await (await client.get(poll.group(1), headers=htmx)).text()
        if 'data-state="running"' not in fragment:
            break
        await asyncio.sleep(0.025)
    assert 'data-state="done"' in fragment and 'value="100"' in fragment, fragment
    assert "hx-get" not in fragment  # done: the page stops polling
    # Only the small receipt of a card holder outside the Discounter: 0.5 % of 449.00.
    assert re.search(r'id="simulation-accrued-bonus">2.24<', fragment), fragment
    assert re.search(r'id="simulation-receipts">1<', fragment)
    assert re.search(r'id="simulation-customers">1<', fragment)
    assert "2 of 2 days, 4 receipts" in fragment
    gone = await client.get(one + "/simulations/sim-unknown", headers=htmx)
    assert gone.status == 404


# -- segments and coupon batches ---------------------------------------------------------------

COUPON = {
    "kind": "coupon",
    "promotion_id": "spring-10",
    "title": "Spring <b>10 %</b>",
    "batch_prefix": "SPR",
    "percent": "10",
}


def _segment(db: Storage) -> None:
    customer_id = db.customers.create_customer(
        CustomerInput(customer_id="c-1", attributes={"last_name": "Ivanova"}), "test", T0
    )
    db.customers.issue_card(customer_id, CARD, "electronic", "test", T0)
    db.segments.create_segment(
        parse_segment(
            {
                "segment_id": "vip",
                "name": "VIP <i>club</i>",
                "kind": "static",
                "customer_ids": ["c-1"],
            }
        ),
        "test",
        T0,
    )


async def test_segments_show_their_member_count_and_poll_it(
    client: TestClient[Any, Any], db: Storage
) -> None:
    _segment(db)
    await _signed_in(client, "mark")
    page = await (await client.get("/console/segments")).text()
    assert re.search(r'id="count-vip"[^>]*hx-trigger="every 10s"[^>]*>1<', page), page
    assert "VIP &lt;i&gt;club&lt;/i&gt;" in page
    cell = await client.get("/console/segments/vip/count", headers={"HX-Request": "true"})
    assert cell.status == 200 and ">1<" in await cell.text()
    assert (await client.get("/console/segments/nope/count")).status == 404


async def test_a_batch_is_generated_issued_to_a_segment_and_exported(
    client: TestClient[Any, Any], db: Storage
) -> None:
    _segment(db)
    token = await _signed_in(client, "mark")
    status, _, _ = await _post(client, "/console/promotions/new", COUPON, token)
    assert status == 303
    await _post(client, "/console/promotions/spring-10/activate", {}, token)
    form = {"promotion_id": "spring-10", "name": "Spring", "prefix": "SPR", "count": "0"}
    status, page, _ = await _post(client, "/console/coupon-batches", form, token)
    assert status == 422 and 'id="err-count"' in page and 'value="Spring"' in page
    form["count"] = "5"
    status, page, _ = await _post(
        client, "/console/coupon-batches", {**form, "single_use": "yes"}, token
    )
    assert status == 200 and 'id="notice"' in page, page
    batch = db.coupons.list_coupon_batches()[0]
    assert (batch["promotion_id"], batch["count"], batch["single_use"]) == ("spring-10", 5, True)
    assert f'id="batch-{batch["batch_id"]}"' in page
    status, page, _ = await _post(
        client, f"/console/coupon-batches/{batch['batch_id']}/issue", {"segment_id": "vip"}, token
    )
    assert status == 200 and "Issued 1 codes" in page, page
    view = db.coupons.coupon_batch(batch["batch_id"])
    assert view is not None and view["counts"]["assigned"] == 1
    export = await client.get(f"/v1/coupon-batches/{batch['batch_id']}/export")
    text = await export.text()
    assert export.status == 200 and text.startswith("code,check,customer_id")
    assert len(text.strip().splitlines()) == 6 and ",c-1," in text


async def test_an_analyst_sees_batches_and_segments_but_no_form(
    client: TestClient[Any, Any], db: Storage
) -> None:
    _segment(db)
    token = await _signed_in(client, "ann")
    page = await (await client.get("/console/coupon-batches")).text()
    assert 'id="new-batch"' not in page
    segments = await (await client.get("/console/segments")).text()
    assert "recount" not in segments
    form = {"promotion_id": "spring-10", "name": "x", "prefix": "SPR", "count": "5"}
    status, _, _ = await _post(client, "/console/coupon-batches", form, token)
    assert status == 403
    status, _, _ = await _post(client, "/console/segments/vip/recalculate", {}, token)
    assert status == 403
    assert db.coupons.list_coupon_batches() == []


async def test_the_constructor_speaks_russian_with_amounts_as_russians_write_them(
    client: TestClient[Any, Any], db: Storage
) -> None:
    token = await _signed_in(client, "mark")
    await _post(client, "/console/promotions/new", HALF_PERCENT, token)
    ru = {"Accept-Language": "ru"}
    page = await (await client.get("/console/promotions/small-basket-half", headers=ru)).text()
    assert "Сохранить новую редакцию" in page and "Процент бонусами от чека" in page
    assert _value(page, "max_total_minor") == "1 000,00" and _value(page, "percent") == "0,5"
    assert "бонусами оплачивается не больше 50 % чека" in page
    fresh = await (
        await client.get("/console/promotions/new?kind=threshold_discount", headers=ru)
    ).text()
    assert "Скидка от суммы чека" in fresh and 'name="steps"' in fresh
