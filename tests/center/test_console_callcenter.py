"""The call-center operator's console pages through aiohttp's test client: register a
customer, bind, replace and merge, the completed customer card; permissions, CSRF, escaping."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from center.crm.model import CustomerInput, parse_search
from center.storage import Storage
from tests.center import test_console_pages as console_pages
from tests.center.center_factories import T0, make_sale
from tests.center.test_console_pages import CARD, _page, _sign_in, _token

# The console's fixtures (a signed-in-able Center over SQLite with olga, max, ann and root).
config = console_pages.config
db = console_pages.db
clock = console_pages.clock
client = console_pages.client

NEW_CARD = "2900000000037"
SCRIPT = "<script>alert(1)</script>"


async def _post(
    client: TestClient[Any, Any], path: str, html: str, form: dict[str, str]
) -> tuple[int, str, str]:
    response = await client.post(
        path, data={"csrf_token": _token(html), **form}, allow_redirects=False
    )
    return response.status, await response.text(), response.headers.get("Location", "")


async def test_operator_registers_a_customer_errors_by_their_field_then_binds_a_card(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "olga")
    status, html = await _page(client, "/console/customers")
    assert status == 200 and 'href="/console/customers/new"' in html
    status, html = await _page(client, "/console/customers/new")
    assert status == 200 and 'id="register"' in html
    status, text, _ = await _post(
        client, "/console/customers/new", html, {"first_name": "Petr", "phone": "12"}
    )
    # The API's own parser: the first bad field is named, what was typed is kept.
    assert status == 400 and 'id="last_name-error"' in text and 'value="Petr"' in text
    status, text, _ = await _post(
        client,
        "/console/customers/new",
        html,
        {"last_name": "Petrov", "first_name": "Petr", "phone": "12"},
    )
    assert status == 400 and 'id="phone-error"' in text
    status, _, location = await _post(
        client,
        "/console/customers/new",
        html,
        {"last_name": "Petrov", "first_name": "Petr", "phone": "+7 912 000-11-22"},
    )
    assert status == 303 and location.endswith("?done=created")
    customer_id = location.split("/")[-1].split("?")[0]
    view = db.customers.customer_view(customer_id, T0)
    assert view is not None and view["attributes"]["phone"] == "+7 912 000-11-22"
    assert db.audit.audit_history("customer", customer_id)[-1]["actor"] == (
        "olga via /console/customers/new"
    )
    status, card_page = await _page(client, location)
    assert status == 200 and 'id="bind"' in card_page and "bind a card" in card_page
    bind = f"/console/customers/{customer_id}/cards"
    status, text, _ = await _post(
        client, bind, card_page, {"bind_card_no": "29x", "bind_type": "physical"}
    )
    assert status == 400 and 'id="bind-card-error"' in text  # not a card number
    assert 'value="29x"' in text
    status, text, _ = await _post(client, bind, card_page, {"bind_card_no": CARD})
    assert status == 409 and 'id="bind-card-error"' in text  # c-1's card
    status, _, location = await _post(
        client, bind, card_page, {"bind_card_no": f" {NEW_CARD} ", "bind_type": "physical"}
    )
    assert status == 303 and location.endswith("?done=bound")
    view = db.customers.customer_view(customer_id, T0)
    assert view is not None
    assert [(c["card_no"], c["status"]) for c in view["cards"]] == [(NEW_CARD, "issued")]
    status, _, _ = await _post(client, bind, card_page, {"bind_card_no": ""})
    view = db.customers.customer_view(customer_id, T0)
    assert status == 303 and view is not None and len(view["cards"]) == 2  # a new number


async def test_operator_replaces_a_card_and_its_balance_moves(
    client: TestClient[Any, Any], db: Storage
) -> None:
    db.returns.adjust(CARD, "bonus", 300, "welcome", "test", T0, idempotency_key="k1")
    await _sign_in(client, "olga")
    _, html = await _page(client, "/console/customers/c-1")
    assert f'action="/console/cards/{CARD}/replace"' in html
    status, text, _ = await _post(
        client,
        f"/console/cards/{CARD}/replace",
        html,
        {"customer_id": "c-1", "new_card_no": "12x"},
    )
    assert status == 400 and f'id="replace-error-{CARD}"' in text and 'value="12x"' in text
    status, _, location = await _post(
        client,
        f"/console/cards/{CARD}/replace",
        html,
        {"customer_id": "c-1", "new_card_no": NEW_CARD},
    )
    assert status == 303 and location == "/console/customers/c-1?done=replaced"
    old, new = db.ledger.balance(CARD, T0), db.ledger.balance(NEW_CARD, T0)
    assert old is not None and new is not None
    assert (old.wallets.get("bonus", 0), new.wallets["bonus"]) == (0, 300)
    view = db.customers.customer_view("c-1", T0)
    assert view is not None
    cards = {c["card_no"]: (c["status"], c["block_reason"]) for c in view["cards"]}
    assert cards == {CARD: ("blocked", "replaced"), NEW_CARD: ("active", "")} or cards == {
        CARD: ("blocked", "replaced"),
        NEW_CARD: ("active", None),
    }
    _, html = await _page(client, location)
    assert "The card is replaced" in html and 'class="replaced-by">' + NEW_CARD in html
    assert db.audit.audit_history("card", CARD)[-1]["actor"] == (
        f"olga via /console/cards/{CARD}/replace"
    )


async def test_operator_merges_two_customers_with_a_reason(
    client: TestClient[Any, Any], db: Storage
) -> None:
    db.customers.create_customer(
        CustomerInput("c-2", {"last_name": "Ivanova", "first_name": "Anya"}), "test", T0
    )
    db.customers.issue_card("c-2", NEW_CARD, "electronic", "test", T0)
    db.returns.adjust(NEW_CARD, "bonus", 70, "welcome", "test", T0, idempotency_key="k2")
    await _sign_in(client, "olga")
    _, html = await _page(client, "/console/customers/c-1")
    path = "/console/customers/c-1/merge"
    status, text, _ = await _post(client, path, html, {"merged_id": "c-2", "merge_reason": ""})
    assert status == 400 and 'id="merge_reason-error"' in text and 'value="c-2"' in text
    status, text, _ = await _post(client, path, html, {"merged_id": "c-9", "merge_reason": "x"})
    assert status == 404 and 'id="merged_id-error"' in text
    status, text, _ = await _post(client, path, html, {"merged_id": "c-1", "merge_reason": "x"})
    assert status == 422 and 'id="merged_id-error"' in text
    assert db.customers.customer_card_view("c-2", T0)["status"] == "active"  # type: ignore[index]
    status, _, location = await _post(
        client, path, html, {"merged_id": "c-2", "merge_reason": "the same person"}
    )
    assert status == 303 and location == "/console/customers/c-1?done=merged"
    view = db.customers.customer_view("c-1", T0)
    assert view is not None and view["wallets"]["bonus"] == 70
    assert sorted(c["card_no"] for c in view["cards"]) == [CARD, NEW_CARD]
    last = db.audit.audit_history("customer", "c-2")[-1]
    assert last["action"] == "merged_into" and last["after"]["reason"] == "the same person"
    assert last["actor"] == "olga via /console/customers/c-1/merge"
    _, merged = await _page(client, "/console/customers/c-2")
    assert 'id="merged-into"' in merged and 'id="merge"' not in merged


async def test_the_card_shows_pending_burning_receipts_favourites_and_offers(
    client: TestClient[Any, Any], db: Storage
) -> None:
    from tests.center.center_factories import master_tables

    db.feed.upsert_master({"products": master_tables()["products"]})
    db.sales.ingest(
        [make_sale(1, card_no=CARD, amounts=(123456,), accrue=40, active_from=T0 + timedelta(2))],
        T0,
    )
    db.returns.adjust(
        CARD, "bonus", 25, "goodwill", "test", T0,
        expires_at=T0 + timedelta(days=10), idempotency_key="k3",
    )  # fmt: skip
    await _sign_in(client, "olga")
    status, html = await _page(client, "/console/customers/c-1")
    assert status == 200
    row = re.search(rf'id="card-balance-{CARD}-bonus">(.*?)</tr>', html, re.S)
    assert row, html[html.find('id="balance"') :][:3000]
    pending = re.search(r'class="pending">([^<]*)<', row.group(1))
    burning = re.search(r'class="burning">([^<]*)<', row.group(1))
    assert pending and pending.group(1).startswith("40 (3/3/24")
    assert burning and burning.group(1).startswith("25 (3/11/24")
    assert "1,234.56" in html and 'class="receipt-link"' in html  # money in the locale
    assert 'id="favourites"' in html and 'id="offers"' not in html


async def test_a_role_without_the_rights_gets_no_form_and_a_refused_post(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "ann")  # data analyst: reads only
    _, html = await _page(client, "/console/customers/c-1")
    for form in ('id="bind"', 'id="merge"', "/replace", 'id="register-customer"'):
        assert form not in html
    assert (await _page(client, "/console/customers/new"))[0] == 403
    for path, form in (
        ("/console/customers/new", {"last_name": "X"}),
        ("/console/customers/c-1/cards", {"bind_card_no": NEW_CARD}),
        (f"/console/cards/{CARD}/replace", {"customer_id": "c-1"}),
        ("/console/customers/c-1/merge", {"merged_id": "c-2", "merge_reason": "x"}),
    ):
        status, _, _ = await _post(client, path, html, form)
        assert status == 403, path
    view = db.customers.customer_view("c-1", T0)
    assert view is not None and [c["status"] for c in view["cards"]] == ["active"]


async def test_the_forms_refuse_a_post_without_the_csrf_token(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "olga")
    response = await client.post(
        "/console/customers/new", data={"last_name": "Forged"}, allow_redirects=False
    )
    assert response.status == 403
    assert db.customers.search_customers(parse_search("Forged")) == []


async def test_script_typed_into_every_text_field_comes_back_escaped(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "olga")
    _, html = await _page(client, "/console/customers/new")
    fields = {"last_name": SCRIPT, "first_name": SCRIPT, "middle_name": SCRIPT, "email": SCRIPT}
    status, text, _ = await _post(client, "/console/customers/new", html, fields)
    assert status == 400 and SCRIPT not in text and "&lt;script&gt;" in text
    status, _, location = await _post(
        client, "/console/customers/new", html, {**fields, "email": ""}
    )
    assert status == 303
    _, card = await _page(client, location)
    assert SCRIPT not in card and card.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3
    customer_id = location.split("/")[-1].split("?")[0]
    for path, form in (
        (f"/console/customers/{customer_id}/cards", {"bind_card_no": SCRIPT}),
        (f"/console/customers/{customer_id}/merge", {"merged_id": SCRIPT, "merge_reason": SCRIPT}),
        (f"/console/cards/{CARD}/replace", {"customer_id": "c-1", "new_card_no": SCRIPT}),
    ):
        status, text, _ = await _post(client, path, card, form)
        assert 400 <= status < 500 and SCRIPT not in text and "&lt;script&gt;" in text, path


async def test_the_card_lists_the_gift_certificates_its_receipts_sold(
    client: TestClient[Any, Any], db: Storage
) -> None:
    from dataclasses import replace

    from center.certificates.model import parse_batch

    view = db.certificates.create_batch(
        parse_batch(
            {"batch_id": "g1", "title": "Gift", "product_id": "GIFT-1000",
             "nominal_minor": 100000, "count": 1}
        ),
        "test",
        T0,
    )  # fmt: skip
    code = view["certificates"][0]["code"]
    base = make_sale(1, card_no=CARD, amounts=(100000,))
    line = replace(base.lines[0], product_id="GIFT-1000", certificate_code=code)
    db.sales.ingest([replace(base, lines=(line,))], T0)
    await _sign_in(client, "olga")
    _, html = await _page(client, "/console/customers/c-1")
    row = re.search(r'<tr class="certificate">(.*?)</tr>', html, re.S)
    assert row and f'href="/console/certificates/codes/{code}"' in row.group(1)
    assert "activate" in row.group(1) and "1,000.00" in row.group(1)
