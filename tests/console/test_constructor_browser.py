"""The marketer's scenario in a real browser against a running cluster: build "+0.5 % bonuses if
the receipt total < 1 000, every card holder, every store except the Discounter format" through
the constructor's form, preview it, activate it, and see the store's register apply it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from tests.console.conftest import CARDS, STORE, Console

pytestmark = pytest.mark.timeout(120)

PROMOTION = "small-basket-half"


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


def _ring(register_url: str, card_no: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """A receipt rung at the register's local API with a card: its calculation."""
    receipt = requests.post(register_url + "/v1/receipts", json={}, timeout=30).json()
    base = f"{register_url}/v1/receipts/{receipt['receipt_id']}"
    answer = requests.post(base + "/lines", json={"lines": lines}, timeout=30)
    assert answer.status_code == 200, answer.text
    answer = requests.post(base + "/card", json={"card_no": card_no}, timeout=30)
    assert answer.status_code == 200, answer.text
    tender = [{"method": "cash", "amount_minor": 0}]
    answer = requests.post(base + "/calculate", json={"payments": tender}, timeout=30)
    assert answer.status_code == 200, answer.text
    calc: dict[str, Any] = answer.json()
    return calc


def test_marketer_builds_previews_and_activates_a_promotion_a_register_applies(
    page: Any, console: Console
) -> None:
    # A Discounter store in the chain's master data, so the exclusion names a real format.
    formats = [{"name": "Hypermarket"}, {"name": "Discounter"}]
    console.api("POST", "/v1/master/formats", {"rows": formats})
    store = {"store_id": "d1", "name": "Lenina 5", "format": "Discounter", "timezone": "UTC"}
    console.api("POST", "/v1/master/stores", {"rows": [store]})
    page.goto(console.url + "/")
    page.fill("#username", "mark")
    page.fill("#password", "correct horse battery")
    page.click("#sign-in")
    page.click("#nav-promotions")
    page.click("#new-promotion")
    page.select_option("#kind", "accrual_percent")
    page.click("#choose-kind-submit")
    page.fill("#f-promotion_id", PROMOTION)
    page.fill("#f-title", "+0,5 % bonuses under 1 000")
    page.fill("#f-description", "Small baskets of card holders, except Discounter stores")
    page.select_option("#f-requires_card", "yes")
    page.fill("#f-place-exclude_formats", "Discounter")
    page.fill("#f-percent", "0,5")
    page.fill("#f-max_total_minor", "1 000,001")  # a typo: refused next to the field, kept
    page.fill("#f-messages-slip", "+{amount} bonus for a small basket")
    page.click("#save")
    page.wait_for_selector("#err-max_total_minor")
    assert page.input_value("#f-max_total_minor") == "1 000,001"
    assert page.input_value("#f-title") == "+0,5 % bonuses under 1 000"
    console.shot(page, "marketer-constructor-error")
    page.fill("#f-max_total_minor", "1 000")
    page.click("#save")
    page.wait_for_selector("#notice")
    assert page.get_attribute("#promotion-status", "data-status") == "draft"
    stored = console.api("GET", f"/v1/promotions/{PROMOTION}")["doc"]
    assert (stored["percent"], stored["max_total_minor"]) == ("0.5", 100000)
    assert (stored["requires_card"], stored["place"]) == (True, {"exclude_formats": ["Discounter"]})
    console.shot(page, "marketer-constructor")

    # Preview on a sample receipt at the register's store, then at the Discounter.
    page.fill("#sample", "MILK ; 2 ; 89,90")
    page.fill("#sample-store", STORE)
    page.check("#sample-card")
    page.click("#preview-submit")
    page.wait_for_selector("#preview-explanation li")
    assert page.inner_text("#preview-own-accrual").strip() == "0.90"  # 0.5 % of 179.80
    explanation = page.inner_text("#preview-explanation")
    assert f"{PROMOTION}: applied" in explanation, explanation
    console.shot(page, "marketer-constructor-preview")
    page.fill("#sample-store", "d1")
    page.click("#preview-submit")
    # Playwright's expect polls without eval (the pages' CSP forbids it).
    expect(page.locator("#preview-own-accrual")).to_have_text("0.00")
    assert f"{PROMOTION}: skipped" in page.inner_text("#preview-explanation")

    page.click("#activate")
    page.wait_for_selector("#notice")
    assert page.get_attribute("#promotion-status", "data-status") == "active"
    published = console.api("GET", f"/v1/promotions/{PROMOTION}")["published_version"]
    assert published

    # The register of the running cluster receives it through its store node and applies it.
    register = console.cluster.registers[f"{STORE}-1"].url
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = requests.get(register + "/health", timeout=5).json()
        if int(health.get("master_version") or 0) >= published:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"the register never reached master version {published}")
    calc = _ring(
        register, CARDS[1], [{"product_id": "MILK", "qty_milli": 2000, "unit_price_minor": 8990}]
    )
    assert calc["total_minor"] < 100000
    ours = [a for a in calc["accrual"] if a["rule_id"] == PROMOTION]
    expected = int(
        (Decimal(calc["total_minor"]) * Decimal("0.005")).quantize(Decimal(1), ROUND_HALF_EVEN)
    )
    assert [(a["wallet"], a["amount"]) for a in ours] == [("bonus", expected)], calc
    # A receipt of 1 000 or more gets nothing from it.
    big = _ring(
        register, CARDS[1], [{"product_id": "TV", "qty_milli": 1000, "unit_price_minor": 150000}]
    )
    assert not [a for a in big["accrual"] if a["rule_id"] == PROMOTION], big

    # What-if over the last month: a progress bar polled by htmx until the run is done.
    page.reload()
    page.click("#simulate-submit")
    page.wait_for_selector("#simulation-state[data-state=done]")
    assert page.get_attribute("#simulation-progress", "value") == "100"
    console.shot(page, "marketer-constructor-what-if")
    page.wait_for_selector("#history .change")
    assert page.locator("#revisions tbody tr").count() == 1
    audit = console.api("GET", f"/v1/promotions/{PROMOTION}/history")["changes"]
    assert [(c["action"], c["actor"]) for c in audit] == [
        ("create", "mark via /console/promotions/new"),
        ("activate", f"mark via /console/promotions/{PROMOTION}/activate"),
    ]


def test_marketer_generates_a_coupon_batch_and_issues_it_to_a_segment(
    page: Any, console: Console
) -> None:
    coupon = {"promotion_id": "spring-10", "kind": "coupon", "batch_prefix": "SPR", "percent": "10"}
    console.api("POST", "/v1/promotions", {**coupon, "title": "Spring 10 %"})
    console.api("POST", "/v1/promotions/spring-10/activate")
    segment = {"segment_id": "vip", "name": "VIP", "kind": "static", "card_nos": [CARDS[1]]}
    console.api("POST", "/v1/segments", segment)
    page.goto(console.url + "/")
    page.fill("#username", "mark")
    page.fill("#password", "correct horse battery")
    page.click("#sign-in")
    page.click("#nav-promotions")
    page.click("#nav-segments")
    assert page.inner_text("#count-vip").strip() == "1"
    page.click("a[href='/console/coupon-batches']")
    page.select_option("#b-promotion_id", "spring-10")
    page.fill("#b-name", "Spring mailing")
    page.fill("#b-prefix", "SPR")
    page.fill("#b-count", "20")
    page.click("#new-batch-submit")
    page.wait_for_selector("#notice")
    batch_id = page.get_attribute("#batches tbody tr", "id").removeprefix("batch-")
    page.select_option(f"#issue-segment-{batch_id}", "vip")
    page.click(f"#issue-{batch_id}")
    page.wait_for_selector("#notice:has-text('Issued 1')")
    console.shot(page, "marketer-coupon-batches")
    view = console.api("GET", f"/v1/coupon-batches/{batch_id}")
    assert (view["count"], view["counts"]["assigned"]) == (20, 1)
    with page.expect_download() as download:
        page.click(f"#batch-{batch_id} a.export")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("code,check,customer_id") and len(lines) == 21
