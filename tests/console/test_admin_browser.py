"""The administrator and the store admin in a real browser against a running cluster: the store
admin signs in at the store node and sees the register's printer report paper out (a serial
printer on a pty); the administrator manages a person, searches the audit log, and sees a
store node that was killed turn red on the monitoring page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest
import requests

from tests.console.conftest import (
    PASSWORD,
    STORE,
    STORE_ADMIN,
    STORE_SILENT_S,
    Console,
)

pytestmark = pytest.mark.timeout(120)

PRINTER_PTY = True
"""This module's register prints to a pty printer whose paper sensor the test sets."""


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == []


@pytest.fixture(scope="module")
def chief(console: Console) -> str:
    """A second administrator, without a one-time code (root's code is good once per 30 s)."""
    from center.access.people import add_person
    from center.config import load_config
    from center.storage import open_storage

    storage = open_storage(load_config(console.cluster.center.config).storage)
    try:
        add_person(storage, "chief", "administrator", PASSWORD, "test", datetime.now(UTC))
    finally:
        storage.close()
    return "chief"


def _sign_in_root(page: Any, console: Console) -> None:
    page.goto(console.url + "/")
    page.fill("#username", "root")
    page.fill("#password", PASSWORD)
    page.fill("#code", pyotp.TOTP(console.totp_secret).now())
    page.click("#sign-in")
    page.wait_for_selector("#who")


def _sign_in(page: Any, console: Console, username: str) -> None:
    page.goto(console.url + "/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#who")


def _ring_and_confirm(register_url: str) -> None:
    """One cash sale at the register (its slip goes to the printer)."""
    receipt = requests.post(register_url + "/v1/receipts", json={}, timeout=30).json()
    base = f"{register_url}/v1/receipts/{receipt['receipt_id']}"
    line = {"product_id": "MILK", "qty_milli": 1000, "unit_price_minor": 8990}
    assert requests.post(base + "/lines", json={"lines": [line]}, timeout=30).ok
    cash = [{"method": "cash", "amount_minor": 0}]
    calculated = requests.post(base + "/calculate", json={"payments": cash}, timeout=30)
    assert calculated.ok, calculated.text
    total = calculated.json()["total_minor"]
    tender = {"payments": [{"method": "cash", "amount_minor": total}]}
    confirmed = requests.post(base + "/confirm", json=tender, timeout=30)
    assert confirmed.ok, confirmed.text


def test_store_admin_signs_in_and_sees_the_printer_report_paper_out(
    page: Any, console: Console
) -> None:
    assert console.printer is not None
    page.goto(console.store_url + "/?lang=en")
    page.fill("#username", STORE_ADMIN)
    page.fill("#password", "not the password")
    page.click("#sign-in")
    assert "Wrong user name or password" in page.inner_text("#signin-error")
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector(f"#register-{STORE}-1")
    assert page.locator(f"#paper-out-{STORE}-1").count() == 0
    # The paper runs out; the next receipt's status request tells the register.
    console.printer.paper = "out"
    _ring_and_confirm(console.cluster.registers[f"{STORE}-1"].url)
    deadline = time.monotonic() + 60
    while page.locator(f"#paper-out-{STORE}-1").count() == 0:
        assert time.monotonic() < deadline, page.inner_text(f"#register-{STORE}-1")
        time.sleep(1)
        page.reload()
    assert "Printer out of paper" in page.inner_text(f"#register-{STORE}-1")
    assert b"\x10\x04\x04" in console.printer.received  # the register asked the sensor
    console.shot(page, "store-admin-paper-out")
    # ... and the administrator's monitoring says it too, from the store node's heartbeat.
    _sign_in_root(page, console)
    page.goto(console.url + "/console/nodes")
    alert = f"#node-{STORE}-1 [data-alert=printer_paper_out]"
    page.wait_for_selector(alert, timeout=30_000)
    assert page.get_attribute(f"#node-{STORE}-1", "data-status") == "late"


def test_store_admin_enrols_a_register_from_the_page(page: Any, console: Console) -> None:
    page.goto(console.store_url + "/?lang=ru")
    page.fill("#username", STORE_ADMIN)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#enrol")
    assert page.inner_text("h2 >> nth=2") == "Подключить новую кассу"
    page.fill("#register_id", f"{STORE}-2")
    page.click("#enrol-submit")
    token = page.inner_text("#register-token").strip()
    console.shot(page, "store-admin-enrol")
    answer = requests.post(console.store_url + "/v1/enrol", json={"token": token}, timeout=30)
    assert answer.status_code == 200 and answer.json()["register_id"] == f"{STORE}-2"


def test_administrator_adds_a_person_and_finds_it_in_the_audit_log(
    page: Any, console: Console, chief: str
) -> None:
    _sign_in(page, console, chief)
    page.click("#nav-users")
    page.fill("#new-username", "vera")
    page.select_option("#new-role", "marketer")
    page.fill("#new-password", "short")
    page.click("#add-person-submit")
    page.wait_for_selector("#password-error")  # next to its field, the name kept
    assert page.input_value("#new-username") == "vera"
    page.fill("#new-password", PASSWORD)
    page.click("#add-person-submit")
    page.wait_for_selector("#person-vera")
    page.select_option("#role-vera", "data_analyst")
    page.click("#person-vera button.set-role")
    page.wait_for_selector("#notice")
    assert page.get_attribute("#person-vera", "data-role") == "data_analyst"
    console.shot(page, "administrator-users")
    page.click("#nav-audit")
    page.fill("#person", chief)
    page.fill("#object_id", "vera")
    page.click("#audit-find")
    page.wait_for_selector(".audit-row")
    actions = page.locator("#audit .action").all_inner_texts()
    # Newest first; the refused first try wrote nothing.
    assert actions == ["set_role", "set_password", "create"], actions
    actors = set(page.locator("#audit .actor").all_inner_texts())
    assert actors == {f"{chief} via /console/users", f"{chief} via /console/users/vera/role"}
    console.shot(page, "administrator-audit")


def test_administrator_sees_a_killed_store_node_turn_red(
    page: Any, console: Console, chief: str
) -> None:
    _sign_in(page, console, chief)
    page.click("#nav-nodes")
    row = f"#node-store-{STORE}"
    page.wait_for_selector(f"{row}[data-status=ok]")
    killed_at = time.monotonic()
    console.cluster.kill(console.cluster.store_nodes[STORE])
    # The page refreshes itself (htmx, every 5 s): no reload here.
    page.wait_for_selector(
        f"{row}[data-status=silent] [data-alert=store_silent]",
        timeout=(STORE_SILENT_S + 20) * 1000,
    )
    waited = time.monotonic() - killed_at
    assert waited >= STORE_SILENT_S - 1  # red only once the heartbeat timeout passed
    colour = page.eval_on_selector(row, "e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(248, 212, 212)", colour  # .status-silent: red
    assert page.locator("#contacts tbody tr").first.get_attribute("id") == row[1:]  # worst first
    console.shot(page, "administrator-store-silent")
