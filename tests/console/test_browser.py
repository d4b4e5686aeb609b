"""The console in a real browser (Debian's chromium, driven by Playwright) against a real
Center, store node and register: each person signs in through the form and does their task;
the results are checked through the JSON API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest

from tests.console.conftest import CARDS, CUSTOMER, PASSWORD, STORE, STORE_ADMIN, Console

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) in English, or in the language marked."""
    marker = request.node.get_closest_marker("locale")
    locale = marker.args[0] if marker else "en-GB"
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    # The pages run under a strict Content-Security-Policy: nothing of ours may break it, and
    # no script may fail (the browser's own lines for answers such as 403 or 422 aside).
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []


def _sign_in(
    page: Any, console: Console, username: str, password: str = PASSWORD, code: str = ""
) -> None:
    page.goto(console.url + "/")
    page.fill("#username", username)
    page.fill("#password", password)
    if code:
        page.fill("#code", code)
    page.click("#sign-in")


def _customer(console: Console) -> dict[str, Any]:
    return dict(console.api("GET", f"/v1/customers/{CUSTOMER['customer_id']}"))


def _card_status(console: Console, card_no: str) -> str:
    return next(c["status"] for c in _customer(console)["cards"] if c["card_no"] == card_no)


def test_call_center_finds_a_customer_as_she_types_and_blocks_a_card(
    page: Any, console: Console
) -> None:
    _sign_in(page, console, "olga")
    page.click("#nav-customers")
    # Results come as she types (htmx), no submit: a phone written with a leading 8 and spaces.
    page.type("#q", "555 01 02", delay=20)
    page.wait_for_selector("#found a.customer-link")
    console.shot(page, "call-center-search")
    page.click("#found a.customer-link")
    page.wait_for_selector("#customer-name")
    assert "Smirnova" in page.inner_text("#customer-name")
    assert page.locator("#adjust").count() == 0  # not her right: not shown
    page.fill(f"#reason-{CARDS[0]}", "lost <b>in the bus</b>")
    page.click(f"#card-{CARDS[0]} button.block-card")
    page.wait_for_selector("#notice")
    console.shot(page, "call-center-customer")
    assert "blocked" in page.inner_text(f"#card-{CARDS[0]} .card-status")
    assert "lost <b>in the bus</b>" in page.inner_text(f"#card-{CARDS[0]} .card-status")
    assert _card_status(console, CARDS[0]) == "blocked"
    audit = console.api("GET", f"/v1/audit?kind=card&id={CARDS[0]}")["changes"][-1]
    assert (audit["action"], audit["actor"]) == (
        "block",
        f"olga via /console/cards/{CARDS[0]}/block",
    )


def test_loyalty_manager_corrects_a_balance_through_the_ledger(page: Any, console: Console) -> None:
    before = _customer(console)["wallets"].get("bonus", 0)
    _sign_in(page, console, "max")
    page.goto(console.url + f"/console/customers/{CUSTOMER['customer_id']}")
    page.select_option("#adjust-card", CARDS[1])
    page.fill("#adjust-amount", "250")
    page.click("#adjust-submit")  # no reason: refused, shown next to the field, amount kept
    page.wait_for_selector("#reason-error")
    assert page.input_value("#adjust-amount") == "250"
    assert _customer(console)["wallets"].get("bonus", 0) == before
    page.fill("#adjust-reason", "goodwill after a complaint")
    page.click("#adjust-submit")
    page.wait_for_selector("#notice")
    console.shot(page, "loyalty-manager-adjusted")
    assert _customer(console)["wallets"]["bonus"] == before + 250
    assert page.inner_text("#balance-bonus").replace("\u00a0", " ").strip() == str(before + 250)
    audit = console.api("GET", f"/v1/audit?kind=card&id={CARDS[1]}")["changes"][-1]
    assert audit["action"] == "adjust" and audit["actor"] == "max via /console/adjustments"


def test_a_role_without_the_right_sees_no_action_and_a_direct_post_is_refused(
    page: Any, console: Console
) -> None:
    _sign_in(page, console, "ann")  # data analyst
    page.goto(console.url + f"/console/customers/{CUSTOMER['customer_id']}")
    page.wait_for_selector("#customer-name")
    assert page.locator("button.block-card").count() == 0
    assert page.locator("#adjust").count() == 0 and page.locator("#nav-nodes").count() == 0
    token = page.get_attribute("input[name=csrf_token]", "value")
    refused = page.request.post(
        console.url + f"/console/cards/{CARDS[1]}/block",
        form={"csrf_token": token, "customer_id": CUSTOMER["customer_id"], "reason": "x"},
    )
    assert refused.status == 403
    assert page.request.get(console.url + "/console/nodes").status == 403
    assert _card_status(console, CARDS[1]) == "active"


def test_a_form_posted_without_its_csrf_token_is_refused(page: Any, console: Console) -> None:
    _sign_in(page, console, "olga")
    page.wait_for_selector("#who")
    refused = page.request.post(
        console.url + f"/console/cards/{CARDS[1]}/block",
        form={"customer_id": CUSTOMER["customer_id"], "reason": "forged"},
    )
    assert refused.status == 403
    assert _card_status(console, CARDS[1]) == "active"


def test_repeated_wrong_passwords_lock_the_account(page: Any, console: Console) -> None:
    for _ in range(5):
        _sign_in(page, console, "lucy", "not the password")
        assert "Wrong user name, password or code" in page.inner_text("#signin-error")
    _sign_in(page, console, "lucy")  # the right password is refused while locked
    # ... with the answer of a wrong password: it does not tell that the account exists.
    assert "Wrong user name, password or code" in page.inner_text("#signin-error")
    console.shot(page, "sign-in-locked")
    assert page.locator("#who").count() == 0


def test_administrator_signs_in_with_a_code_and_sees_every_node(
    page: Any, console: Console
) -> None:
    _sign_in(page, console, "root")
    assert page.locator("#signin-error").count() == 1  # the code is required
    _sign_in(page, console, "root", code=pyotp.TOTP(console.totp_secret).now())
    page.click("#nav-nodes")
    page.wait_for_selector(f"#node-store-{STORE}")
    console.shot(page, "administrator-nodes")
    assert page.get_attribute(f"#node-store-{STORE}", "data-status") == "ok"
    assert page.get_attribute(f"#node-{STORE}-1", "data-status") == "ok"
    page.click("#sign-out")
    page.wait_for_selector("#sign-in")
    after = page.request.get(
        console.url + "/console/nodes", max_redirects=0, headers={"Accept": "text/html"}
    )
    assert after.status == 303 and after.headers["location"] == "/"


@pytest.mark.locale("ru-RU")
def test_the_console_speaks_russian_to_a_russian_browser(page: Any, console: Console) -> None:
    page.goto(console.url + "/")
    assert page.inner_text("h1") == "Вход"
    _sign_in(page, console, "mark")
    page.wait_for_selector("#who")
    assert "Маркетолог" in page.inner_text("#who")
    page.click("#nav-promotions")
    page.wait_for_selector("h1")
    assert page.inner_text("h1") == "Акции"
    # A person's own setting wins over the browser's.
    page.select_option("select[name=language]", "en")
    page.wait_for_load_state()
    page.wait_for_selector("h1:text('Promotions')")
    console.shot(page, "marketer-promotions")


def test_store_admin_page_shows_the_register_and_the_link_to_the_center(
    page: Any, console: Console
) -> None:
    page.goto(console.store_url + "/")
    page.fill("#username", STORE_ADMIN)  # the store admin set at the store's enrolment
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector(f"#register-{STORE}-1")
    console.shot(page, "store-admin")
    row = page.inner_text(f"#register-{STORE}-1")
    assert re.search(r"printer: (ok|error|unknown)", row), row
    assert page.inner_text("#pending").strip() == "0"


def test_analyst_sees_the_reports_with_their_charts(page: Any, console: Console) -> None:
    _sign_in(page, console, "ann")
    page.click("#nav-reports")
    page.wait_for_selector("#figures")
    page.wait_for_function(
        "[...document.querySelectorAll('img.chart')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("img.chart").count() == 3
    console.shot(page, "analyst-reports")


def _forged_sale_at_the_center(console: Console) -> str:
    """A sale claiming 1,000,000 points, sent to the Center signed as the store node; its id."""
    import time
    import uuid
    from datetime import UTC, datetime, timedelta

    import requests

    from sync_protocol import (
        CONTENT_TYPE,
        LoyaltyMovement,
        Payment,
        Sale,
        SaleBatch,
        SaleLine,
        encode,
        sign_headers,
    )

    now = datetime.now(UTC)
    sale = Sale(
        sale_id=str(uuid.uuid4()),
        store_id=STORE,
        register_id=f"{STORE}-9",
        seq=1,
        opened_at=now - timedelta(minutes=1),
        closed_at=now,
        card_no=CARDS[0],
        lines=(SaleLine(1, "1000", 1000, 299, 299),),
        payments=(Payment("cash", 299),),
        loyalty=(LoyaltyMovement("bonus", "accrue", 1_000_000, "forged"),),
        subtotal_minor=299,
        discount_minor=0,
        total_minor=299,
        promo_version=1,
    )
    node = console.cluster.credentials(STORE)
    body = encode(SaleBatch(sales=(sale,)), sender=node["node_id"])
    headers = sign_headers(
        node["node_id"],
        node["secret"],
        method="POST",
        path="/v1/ingest",
        query="",
        body=body,
        now_s=time.time(),
    )
    headers["Content-Type"] = CONTENT_TYPE
    answer = requests.post(console.url + "/v1/ingest", data=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return sale.sale_id


def test_loyalty_manager_rejects_a_forged_accrual_in_the_review_queue(
    page: Any, console: Console
) -> None:
    before = _customer(console)["wallets"].get("bonus", 0)
    sale_id = _forged_sale_at_the_center(console)
    assert _customer(console)["wallets"].get("bonus", 0) == before  # never booked
    [case] = [c for c in console.api("GET", "/v1/review/cases")["cases"] if c["sale_id"] == sale_id]
    _sign_in(page, console, "max")
    page.click("#nav-review")
    row = page.wait_for_selector(f"#case-{case['case_id']}")
    assert "1,000,000" in row.inner_text().replace("\u00a0", ",").replace(" ", ",")
    console.shot(page, "loyalty-manager-review-queue")
    page.click(f"#case-{case['case_id']} button.reject")
    page.wait_for_selector("#notice")
    decided = console.api("GET", f"/v1/review/cases/{case['case_id']}")
    assert decided["state"] == "rejected"
    assert decided["reviewed_by"] == f"max via /console/review/{case['case_id']}/reject"
    assert _customer(console)["wallets"].get("bonus", 0) == before
    audit = console.api("GET", f"/v1/audit?kind=review_case&id={case['case_id']}")["changes"]
    assert [a["action"] for a in audit] == ["reject"]
