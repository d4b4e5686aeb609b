"""The customer's scenario in a real browser on a phone-sized screen against a running cluster:
sign up on the portal with a code received by e-mail (the local SMTP server), choose favourite
categories, show the e-card at a register of the cluster, and see that receipt appear in the
purchase history with its bonuses; the marketer's advertising block is on the home page."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from demo.message_sinks import SmtpSink
from tests.console.conftest import STORE, Console

pytestmark = pytest.mark.timeout(120)

EMAIL = "anna.petrova@shop.example"
PROMOTION = "portal-card-5"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "portal"
KEEP = os.environ.get("PORTAL_SCREENSHOTS") == "1"
"""Set to 1 to refresh the screenshots in docs/portal."""


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A phone-sized context in Russian; no script may fail under the portal's CSP."""
    context = browser.new_context(
        locale="ru-RU", viewport={"width": 390, "height": 844}, device_scale_factor=2
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def _shot(console: Console, page: Any, name: str) -> None:
    console.shot(page, name)
    if KEEP:
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)


def _code_from_mailbox(console: Console, smtp: SmtpSink) -> str:
    """Send the outbox through the local SMTP server as the Center's sender does; the code."""
    report = console.cluster.run_tool_json(
        "loyalty-center",
        "send-messages",
        "--config",
        str(console.cluster.center.config),
        "--smtp",
        f"127.0.0.1:{smtp.port}",
        "--sender",
        "shop@shop.example",
        "--public-url",
        console.url,
    )
    with smtp.lock:
        mails = [m for m in smtp.mailbox.values() if EMAIL in str(m["To"])]
    assert mails, report
    body = mails[-1].get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(r"\b(\d{6})\b", body.get_content())
    assert found, body.get_content()
    return found.group(1)


def _setup_chain(console: Console) -> int:
    """Products with categories, a 5 % accrual for card holders, an advertising block; the
    master version the register must reach."""
    products = [
        {"product_id": "MILK", "name": "Молоко", "category_path": "Продукты>Молочные продукты",
         "price_minor": 8990},
        {"product_id": "BREAD", "name": "Хлеб", "category_path": "Продукты>Выпечка",
         "price_minor": 4500},
        {"product_id": "KIBBLE", "name": "Корм для кошек", "category_path": "Товары>Зоотовары",
         "price_minor": 31000},
    ]  # fmt: skip
    console.api("POST", "/v1/master/products", {"rows": products})
    promotion = {
        "promotion_id": PROMOTION,
        "kind": "accrual_percent",
        "title": "5 % бонусами по карте",
        "description": "За каждую покупку по карте",
        "requires_card": True,
        "percent": "5",
        "wallet": "bonus",
    }
    console.api("POST", "/v1/promotions", promotion)
    console.api("POST", f"/v1/promotions/{PROMOTION}/activate")
    published = console.api("GET", f"/v1/promotions/{PROMOTION}")["published_version"]
    block = {
        "block_id": "portal-welcome",
        "name": "Неделя выпечки",
        "audience": "card_holders",
        "placement": "home_top",
        "priority": 10,
        "starts_at": "2020-01-01T00:00",
        "ends_at": "2099-01-01T00:00",
        "rich_text": "<p><b>−20 %</b> на выпечку до воскресенья</p><script>alert(1)</script>",
    }
    created = console.api("POST", "/v1/advertising/blocks", block)
    assert "script" not in created["rich_text"]
    return int(published)


def _wait_register(console: Console, version: int) -> str:
    register = console.cluster.registers[f"{STORE}-1"].url
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = requests.get(register + "/health", timeout=5).json()
        if int(health.get("master_version") or 0) >= version:
            return register
        time.sleep(0.3)
    pytest.fail(f"the register never reached master version {version}")


def _screen_codes(page: Any, selector: str) -> dict[str, str]:
    """What a scanner reads off the phone's screen: {symbology: text} (zxing-cpp)."""
    import zxingcpp
    from PIL import Image

    shot = page.locator(selector).screenshot()
    image = Image.open(io.BytesIO(shot))
    return {str(r.format): r.text for r in zxingcpp.read_barcodes(image)}


def _ring_and_confirm(register: str, card: dict[str, str]) -> dict[str, Any]:
    """A receipt rung with the customer's card (`card_no` or `qr`) and paid in cash: its
    calculation and sale."""
    receipt = requests.post(register + "/v1/receipts", json={}, timeout=30).json()
    base = f"{register}/v1/receipts/{receipt['receipt_id']}"
    lines = [
        {"product_id": "MILK", "qty_milli": 2000, "unit_price_minor": 8990},
        {"product_id": "BREAD", "qty_milli": 1000, "unit_price_minor": 4500},
    ]
    for path, body in (("/lines", {"lines": lines}), ("/card", card)):
        answer = requests.post(base + path, json=body, timeout=30)
        assert answer.status_code == 200, answer.text
    answer = requests.post(base + "/calculate", json={"payments": []}, timeout=30)
    assert answer.status_code == 200, answer.text
    calc = answer.json()
    paid = [{"method": "cash", "amount_minor": calc["total_minor"]}]
    answer = requests.post(base + "/confirm", json={"payments": paid}, timeout=30)
    assert answer.status_code == 200, answer.text
    return {"calc": calc, "sale": answer.json()}


def test_customer_signs_up_chooses_categories_and_sees_her_receipt_with_its_bonuses(
    phone: Any, console: Console, smtp: SmtpSink
) -> None:
    published = _setup_chain(console)
    page = phone
    page.goto(console.url + "/portal")
    page.wait_for_selector("#sign-in")  # not signed in: the sign-in page
    assert page.locator("h1").inner_text() == "Вход и регистрация"
    _shot(console, page, "portal-sign-in")
    page.fill("#address", EMAIL)
    page.click("#send-code")
    page.wait_for_selector("#code")
    code = _code_from_mailbox(console, smtp)
    page.fill("#code", code)
    page.fill("#first_name", "Анна")
    page.check("#personal_data")
    page.click("#check-code")

    # A new customer lands on the favourite categories, chosen from the chain's list.
    page.wait_for_selector("#welcome")
    page.check("input[value='Выпечка']")
    page.check("input[value='Зоотовары']")
    _shot(console, page, "portal-categories")
    page.click("#save-categories")
    page.wait_for_selector("#notice")
    assert page.is_checked("input[value='Выпечка']")
    found = console.api("GET", "/v1/customers/search?q=" + EMAIL)["customers"]
    assert len(found) == 1
    customer_id = found[0]["customer_id"]
    view = console.api("GET", f"/v1/customers/{customer_id}")
    assert view["attributes"]["favourite_categories"] == ["Выпечка", "Зоотовары"]

    # Home: the balance, the menu, the marketer's block for card holders (sanitised).
    page.goto(console.url + "/portal")
    expect(page.locator("#bonus-balance")).to_have_text("0,00")
    assert page.locator("[data-block='portal-welcome'] .ad-rich b").inner_text() == "−20 %"
    page.click("#menu summary")
    for title in ("Акции и товарные предложения", "История покупок", "О программе лояльности"):
        assert page.locator("#menu").get_by_text(title).count() == 1
    _shot(console, page, "portal-home")

    # The e-card: a barcode and a QR code the register takes; shown at the register.
    page.click("#menu-card")
    page.wait_for_selector("#qr-box svg.qr")
    card_no = page.get_attribute("#barcode svg", "aria-label")
    assert card_no and card_no.isdigit()
    payload = page.get_attribute("#qr-box .qr-box", "data-qr")
    assert payload and payload.startswith(f"LQR1.{card_no}.")
    _shot(console, page, "portal-card")
    # The QR's key reached the register with the master data; the cashier scans the screen.
    settings_version = console.api("GET", "/v1/settings")["version"]
    register = _wait_register(console, max(published, int(settings_version)))
    page.reload()
    page.wait_for_selector("#qr-box svg.qr")
    scanned = _screen_codes(page, ".ecard")
    assert scanned["EAN-13"] == card_no, scanned
    assert scanned["QR Code"].startswith(f"LQR1.{card_no}."), scanned
    rung = _ring_and_confirm(register, {"qr": scanned["QR Code"]})
    assert rung["calc"].get("card_no", card_no) == card_no
    ours = [a for a in rung["calc"]["accrual"] if a["rule_id"] == PROMOTION]
    assert ours and ours[0]["amount"] > 0, rung["calc"]
    earned = ours[0]["amount"]

    # The receipt travels register -> store node -> Center, and appears in the history.
    deadline = time.monotonic() + 60
    row = page.locator(f"[data-sale='{rung['sale']['sale_id']}']")
    while time.monotonic() < deadline:
        page.goto(console.url + "/portal/history?period=week")
        if row.count():
            break
        time.sleep(1)
    else:
        pytest.fail("the receipt never reached the portal's history")
    points = f"{earned // 100},{earned % 100:02d}"
    expect(row.locator(".earned")).to_have_text(f"+{points} бонусов")
    assert page.locator("#total-receipts").inner_text() == "1"
    # One column with money; the chart draws every day of the week so far (empty ones at 0).
    assert page.locator('#chart rect.day:not([data-value="0"])').count() == 1
    _shot(console, page, "portal-history")
    page.click(f"[data-sale='{rung['sale']['sale_id']}'] a")
    page.wait_for_selector("#receipt")
    assert "Молоко" in page.locator("#receipt").inner_text()
    loyalty = page.locator("#receipt-loyalty").inner_text()
    assert f"5 % бонусами по карте: +{points}" in loyalty, loyalty
    _shot(console, page, "portal-receipt")
    page.goto(console.url + "/portal")
    expect(page.locator("#bonus-balance")).to_have_text(points)
    page.goto(console.url + "/portal/offers")
    assert page.locator(f"[data-promotion='{PROMOTION}']").count() == 1
    _shot(console, page, "portal-offers")


@pytest.fixture
def desk(browser: Any) -> Iterator[Any]:
    """A desktop context in English for the console; no script may fail under its CSP."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []


def test_marketer_builds_a_block_sees_its_preview_and_who_sees_it(
    desk: Any, console: Console
) -> None:
    segment = {"segment_id": "bakers", "name": "Bakers", "kind": "static", "card_nos": []}
    console.api("POST", "/v1/segments", segment)
    page = desk
    page.goto(console.url + "/")
    page.fill("#username", "mark")
    page.fill("#password", "correct horse battery")
    page.click("#sign-in")
    page.click("#nav-advertising")
    page.click("#new-block")
    page.fill("#f-block_id", "bakers-banner")
    page.fill("#f-name", "Fresh bread every morning")
    page.fill("#f-description", "For the bakers segment")
    page.fill("#f-media_url", "http://cdn.example.com/bread.jpg")  # not https: refused
    page.fill("#f-rich_text", '<p>From <b>7:00</b></p><img src=x onerror="alert(1)">')
    page.fill("#f-placement", "home_top")
    page.fill("#f-priority", "50")
    page.select_option("#f-audience", "segment")
    page.select_option("#f-segment_id", "bakers")
    page.fill("#f-starts_at", "2026-01-01T08:00")
    page.fill("#f-ends_at", "2099-01-01T08:00")
    page.click("#preview-button")  # htmx: the fragment, nothing saved
    page.wait_for_selector("#preview-err-media_url")
    page.fill("#f-media_url", "https://cdn.example.com/bread.jpg")
    page.click("#preview-button")
    page.wait_for_selector("#ad-preview article.ad-block")
    assert page.locator("#ad-preview .ad-rich b").inner_text() == "7:00"
    assert page.locator("#ad-preview img.ad-media").get_attribute("src") == (
        "https://cdn.example.com/bread.jpg"
    )
    listed = console.api("GET", "/v1/advertising/blocks")["blocks"]
    assert "bakers-banner" not in [b["block_id"] for b in listed]  # a preview saves nothing
    page.click("#save")
    page.wait_for_selector("#notice")
    stored = console.api("GET", "/v1/advertising/blocks/bakers-banner")
    assert (stored["audience"], stored["segment_id"], stored["priority"]) == (
        "segment",
        "bakers",
        50,
    )
    assert "onerror" not in stored["rich_text"] and "<img" not in stored["rich_text"]
    _shot(console, page, "console-advertising-block")
    page.click("text=Advertising blocks")
    page.wait_for_selector("#blocks")
    assert page.locator("tr[data-block='bakers-banner']").count() == 1
