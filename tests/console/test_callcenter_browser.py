"""The call-center operator and the loyalty manager in a real browser (Debian's chromium,
driven by Playwright) against a real Center, store node and register: the operator finds a
customer by a misspelt name, blocks the lost card, replaces it (the balance moves) and merges
a duplicate with a reason; the loyalty manager walks the screens of the workstation. Results
are checked through the JSON API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.console.conftest import PASSWORD, Console

pytestmark = pytest.mark.timeout(120)

MARIA = {"customer_id": "c-200", "last_name": "Kuznetsova", "first_name": "Maria"}
DUPLICATE = {"customer_id": "c-201", "last_name": "Kuznetsova", "first_name": "Masha"}
LOST_CARD, NEW_CARD, DUPLICATE_CARD = "2900000000204", "2900000000211", "2900000000228"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context in English; no script may fail under the pages' CSP."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []


def _sign_in(page: Any, console: Console, username: str) -> None:
    page.goto(console.url + "/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#sign-out")


def _customer(console: Console, customer_id: str) -> dict[str, Any]:
    return dict(console.api("GET", f"/v1/customers/{customer_id}/card-view"))


def test_call_center_finds_a_misspelt_name_blocks_replaces_and_merges(
    page: Any, console: Console
) -> None:
    for customer, card_no, points in ((MARIA, LOST_CARD, 320), (DUPLICATE, DUPLICATE_CARD, 80)):
        console.api("POST", "/v1/customers", customer)
        body = {"customer_id": customer["customer_id"], "card_no": card_no, "type": "electronic"}
        console.api("POST", "/v1/cards", body)
        console.api(
            "POST",
            f"/v1/cards/{card_no}/adjustments",
            {"amount": points, "reason": "welcome", "idempotency_key": f"welcome-{card_no}"},
        )
    _sign_in(page, console, "olga")
    page.click("#nav-customers")
    # A misspelt surname, typed as heard on the phone; results come as she types.
    page.type("#q", "Kuznetsvoa", delay=20)
    page.wait_for_selector(
        f"#found a.customer-link[href='/console/customers/{MARIA['customer_id']}']"
    )
    console.shot(page, "call-center-misspelt-search")
    page.click(f"#found a.customer-link[href='/console/customers/{MARIA['customer_id']}']")
    page.wait_for_selector("#customer-name")
    assert "Kuznetsova Maria" in page.inner_text("#customer-name")
    # The card is lost: block it with the reason...
    page.fill(f"#reason-{LOST_CARD}", "lost in the bus")
    page.click(f"#card-{LOST_CARD} button.block-card")
    page.wait_for_selector("#notice")
    assert "blocked" in page.inner_text(f"#card-{LOST_CARD} .card-status")
    # ...and replace it with the new plastic: balance and history move to it.
    page.fill(f"#new-card-{LOST_CARD}", "29000000002x")
    page.click(f"#card-{LOST_CARD} button.replace-card")
    page.wait_for_selector(f"#replace-error-{LOST_CARD}")  # refused by the card rule, kept
    assert page.input_value(f"#new-card-{LOST_CARD}") == "29000000002x"
    page.fill(f"#new-card-{LOST_CARD}", NEW_CARD)
    page.click(f"#card-{LOST_CARD} button.replace-card")
    page.wait_for_selector(f"#card-{NEW_CARD}")
    assert NEW_CARD in page.inner_text(f"#card-{LOST_CARD} .replaced-by")
    console.shot(page, "call-center-replaced")
    view = _customer(console, MARIA["customer_id"])
    balances = console.api("GET", f"/v1/customers/{NEW_CARD}/balance")
    assert balances["wallets"]["bonus"] == 320
    cards = {c["card_no"]: (c["status"], c["block_reason"]) for c in view["cards"]}
    assert cards[LOST_CARD] == ("blocked", "replaced") and cards[NEW_CARD][0] == "active"
    # The same woman called before under a pet name: merge that customer in, saying why.
    page.fill("#merge-id", DUPLICATE["customer_id"])
    page.click("#merge-submit")
    page.wait_for_selector("#merge_reason-error")  # a merge says why
    page.fill("#merge-reason", "the same person, <b>two</b> registrations")
    page.click("#merge-submit")
    page.wait_for_selector("#notice")
    console.shot(page, "call-center-merged")
    assert page.locator(f"#card-{DUPLICATE_CARD}").count() == 1
    assert page.inner_text("#balance-bonus").replace("\u00a0", " ").strip() == "400"
    merged = _customer(console, DUPLICATE["customer_id"])
    assert (merged["status"], merged["merged_into"]) == ("merged", MARIA["customer_id"])
    audit = console.api("GET", f"/v1/audit?kind=customer&id={DUPLICATE['customer_id']}")
    last = audit["changes"][-1]
    assert last["after"]["reason"] == "the same person, <b>two</b> registrations"
    assert last["actor"] == f"olga via /console/customers/{MARIA['customer_id']}/merge"


def test_loyalty_manager_walks_the_workstation(page: Any, console: Console) -> None:
    console.api(
        "POST",
        "/v1/certificate-batches",
        {"batch_id": "gift-b", "title": "Gift 500", "product_id": "GIFT-500",
         "nominal_minor": 50000, "count": 3},
    )  # fmt: skip
    _sign_in(page, console, "max")
    page.click("#nav-loyalty")
    page.wait_for_selector("#loyalty-links")
    console.shot(page, "loyalty-manager-workstation")
    page.click("#go-overdrafts")
    page.wait_for_selector("#no-overdrafts, #overdrafts")
    page.goto(console.url + "/console/loyalty")
    page.click("#go-certificates")
    page.click("a.batch-link")
    page.click("a.code-link")
    page.wait_for_selector("#cert-code")
    code = page.inner_text("#cert-code")
    page.click("#block-submit")
    page.wait_for_selector("#reason-error")  # a block says why
    page.fill("#block-reason", "reported stolen")
    page.click("#block-submit")
    page.wait_for_selector("#notice")
    console.shot(page, "loyalty-manager-certificate")
    assert console.api("GET", f"/v1/certificates/{code}")["state"] == "blocked"
    page.goto(console.url + "/console/fraud")
    page.wait_for_selector("#no-signals, #signals")
    levels = [
        {"code": "silver", "title": {"ru": "Серебро", "en": "Silver"}, "rank": 1},
        {"code": "gold", "title": {"ru": "Золото", "en": "Gold"}, "rank": 2,
         "spend_minor": 3_000_000, "visits": 12, "require": "any"},
    ]  # fmt: skip
    console.api("PUT", "/v1/tiers", {"period_days": 365, "grace_days": 30, "levels": levels})
    page.goto(console.url + "/console/tiers")
    page.wait_for_selector("#tiers")
    assert page.input_value("[name='levels[1].spend']") == "30000"
    assert page.locator("#tiers-submit").count() == 0  # tiers are the marketer's to change
    console.shot(page, "loyalty-manager-tiers")
