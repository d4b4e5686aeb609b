"""The supplier's scenario in a real browser against a running cluster: a supplier's person
builds an audience and sees its size change with the parameters, creates a campaign, sees the
budget estimated on the stored history, cannot launch it unfunded; the chain's person tops the
account up; the supplier launches it and the promotions domain holds the supplier-funded rule."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from sync_protocol import Payment, Sale, SaleLine
from tests.console.conftest import PASSWORD, STORE, Console

pytestmark = pytest.mark.timeout(120)

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "suppliers"
KEEP_SHOTS = bool(os.environ.get("SUPPLIER_SCREENSHOTS"))
"""Set to refresh docs/suppliers/*.png from this run."""
BUYERS = 20


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


def _shot(console: Console, page: Any, name: str) -> None:
    console.shot(page, name)
    if KEEP_SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _history(now: datetime) -> list[Sale]:
    """Two days ago each of BUYERS card holders bought two Acme yoghurts (2 x 120.00)."""
    sales = []
    for i in range(BUYERS):
        closed = now - timedelta(days=2) + timedelta(minutes=i)
        line = SaleLine(1, "acme-yoghurt", 2000, 12000, 24000)
        sales.append(
            Sale(
                sale_id=str(uuid.uuid4()),
                store_id=STORE,
                register_id="hist-1",
                seq=i + 1,
                opened_at=closed - timedelta(minutes=1),
                closed_at=closed,
                card_no=f"2955500000{i:03d}",
                lines=(line,),
                payments=(Payment("cash", 24000),),
                loyalty=(),
                subtotal_minor=24000,
                discount_minor=0,
                total_minor=24000,
                promo_version=1,
            )
        )
    return sales


@pytest.fixture(scope="module")
def seeded(console: Console) -> Console:
    from center.access.people import add_person
    from center.config import load_config
    from center.storage import open_storage

    now = datetime.now(UTC)
    storage = open_storage(load_config(console.cluster.center.config).storage)
    try:
        storage.feed.upsert_master(
            {
                "products": [
                    {
                        "product_id": "acme-yoghurt",
                        "name": "Acme yoghurt",
                        "brand": "Acme",
                        "category": "YOGHURT",
                        "price_minor": 12000,
                    },
                ],
                "customers": [{"customer_id": f"sup-c{i}"} for i in range(BUYERS)],
                "cards": [
                    {"card_no": f"2955500000{i:03d}", "customer_id": f"sup-c{i}"}
                    for i in range(BUYERS)
                ],
            }
        )
        storage.sales.ingest(_history(now), now)
        add_person(storage, "sam", "supplier_manager", PASSWORD, "test", now)
    finally:
        storage.close()
    console.api("POST", "/v1/suppliers", {"supplier_id": "acme", "name": "Acme Dairy"})
    console.api("POST", "/v1/suppliers/acme/people", {"username": "vera", "password": PASSWORD})
    return console


def _sign_in(page: Any, console: Console, username: str) -> None:
    page.goto(console.url + "/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#sign-out")


def test_a_supplier_builds_an_audience_estimates_is_funded_and_launches(
    page: Any, seeded: Console
) -> None:
    console = seeded
    _sign_in(page, console, "vera")
    # A supplier's person sees its cabinet, nothing of the chain's customers.
    expect(page.locator("#nav-customers")).to_have_count(0)
    page.click("#go-supplier")
    size = page.locator("#audience-size")
    page.fill("input[name=brands_bought]", "Acme")
    page.fill("input[name=window_days]", "30")
    expect(size).to_have_text(f"Audience: {BUYERS} customers")
    page.fill("input[name=min_receipts]", "2")  # nobody bought twice: a group under 10
    expect(size).to_have_text("Audience: < 10 customers")
    page.fill("input[name=min_receipts]", "")
    expect(size).to_have_text(f"Audience: {BUYERS} customers")
    page.fill("input[name=name]", "Acme yoghurt -10 %")
    page.fill("input[name=product_ids]", "acme-yoghurt")
    page.fill("input[name=percent]", "10")
    page.fill("input[name=date_to]", (datetime.now(UTC).date() + timedelta(days=6)).isoformat())
    _shot(console, page, "1-audience")
    page.click("#create-campaign")
    page.wait_for_selector("#no-estimate")
    page.click("#estimate-button")
    # 20 x 240.00 at 10 %: 480.00 on the history; the treated 90 %: 432.00.
    expect(page.locator("#estimate-amount")).to_contain_text("432.00")
    _shot(console, page, "2-estimate")
    campaign_url = page.url
    page.click("#launch-button")
    expect(page.locator("#campaign-error")).to_contain_text("top it up by")
    expect(page.locator("#campaign-error")).to_contain_text("432.00")
    expect(page.locator("#state")).to_have_text("draft")
    _shot(console, page, "3-unfunded")
    page.click("#sign-out")

    # The chain's person enters the supplier's payment.
    _sign_in(page, console, "sam")
    page.click("#go-suppliers")
    row = page.locator("#supplier-acme")
    row.locator("input[name=amount]").fill("500")
    row.locator("input[name=note]").fill("payment order 118")
    row.locator("button.top-up").click()
    expect(page.locator("#supplier-acme .available")).to_contain_text("500.00")
    _shot(console, page, "4-top-up")
    page.click("#sign-out")

    _sign_in(page, console, "vera")
    page.goto(campaign_url)
    page.click("#launch-button")
    expect(page.locator("#state")).to_have_text("live")
    expect(page.locator("#budget")).to_contain_text("432.00")
    _shot(console, page, "5-launched")
    campaign_id = campaign_url.rstrip("/").rsplit("/", 1)[-1]
    promotion = console.api("GET", f"/v1/promotions/sup-{campaign_id}")
    assert promotion["status"] == "active"
    assert promotion["doc"]["funding"] == {"by": "supplier:acme", "budget_minor": 43200}
    assert promotion["doc"]["segments"] == [f"sup-{campaign_id}"]
    account = console.api("GET", "/v1/suppliers/acme/account")
    assert (account["available_minor"], account["reserved_minor"]) == (6800, 43200)
