"""A real cluster (Center, one store node, one register as processes) and Debian's chromium
driven by Playwright, shared by the browser scenarios of this folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from demo.cluster import Cluster
from tests.console.printer_pty import PtyPrinter

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
STORE = "s1"
STORE_ADMIN = "keeper"
"""The store admin of STORE's admin page (`loyalty-store set-admin`, password PASSWORD)."""
STORE_LATE_S, STORE_SILENT_S = 4, 8
"""The Center's [monitoring] limits in these clusters: a killed store node is red in seconds."""
CUSTOMER = {
    "customer_id": "c-100",
    "last_name": "Smirnova",
    "first_name": "Elena",
    "phone": "+7 912 555 01 02",
    "email": "elena@example.com",
}
CARDS = ("2900000000105", "2900000000112")
PEOPLE = {
    "olga": "call_center",
    "max": "loyalty_manager",
    "ann": "data_analyst",
    "lucy": "call_center",
    "mark": "marketer",
}
SCREENSHOTS = (
    Path(os.environ.get("CONSOLE_SCREENSHOTS", ""))
    if os.environ.get("CONSOLE_SCREENSHOTS")
    else None
)
"""Where the scenarios also save their screenshots (docs/console for the README)."""


@dataclass
class Console:
    """The running cluster and what the scenarios need to reach it."""

    cluster: Cluster
    url: str
    store_url: str
    token: str
    """An administrator's bearer token, to check results through the JSON API."""
    totp_secret: str
    shots: Path
    taken: list[Path] = field(default_factory=list)
    printer: PtyPrinter | None = None
    """The register's printer on a pty, for a module that sets PRINTER_PTY = True."""

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Center's JSON API as the administrator; the decoded answer."""
        response = requests.request(
            method,
            self.url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert response.status_code < 300, response.text
        return response.json()

    def shot(self, page: Any, name: str) -> None:
        """A full-page screenshot, kept with the test's files (and in SCREENSHOTS if set)."""
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        if SCREENSHOTS is not None:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / path.name).write_bytes(path.read_bytes())


def _tool(command: str, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name(command)), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _printer_on(config: Path, path: str) -> None:
    """Point a register's [printer] at a serial device and have it ask the printer's status."""
    text = config.read_text()
    head, _, rest = text.partition("[printer]\n")
    _old, _, rest = rest.partition("\n")  # the uri line
    config.write_text(
        f'{head}[printer]\nuri = "serial://{path}?timeout=1"\nquery_status = true\n{rest}'
    )


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Console]:
    from center.access.people import add_person
    from center.config import load_config
    from center.storage import open_storage

    root = tmp_path_factory.mktemp("console")
    with ExitStack() as stack:
        cluster = stack.enter_context(Cluster(root / "cluster", [STORE], 1))
        printer = (
            stack.enter_context(PtyPrinter())
            if getattr(request.module, "PRINTER_PTY", False)
            else None
        )
        cluster.write_configs()
        with cluster.center.config.open("a") as center_toml:
            center_toml.write(
                f"\n[monitoring]\nstore_late_s = {STORE_LATE_S}\n"
                f"store_silent_s = {STORE_SILENT_S}\n"
            )
        if printer is not None:
            _printer_on(cluster.registers[f"{STORE}-1"].config, printer.path)
        cluster.start(cluster.center)  # started first, enrolment leaves it running
        cluster.enrol_all()
        # The store admin of the store's admin page, as the operator sets it.
        _tool(
            "loyalty-store",
            "set-admin",
            "--config",
            str(cluster.store_nodes[STORE].config),
            STORE_ADMIN,
            stdin=PASSWORD + "\n",
        )
        cluster.start(cluster.store_nodes[STORE])
        cluster.start(cluster.registers[f"{STORE}-1"])
        config = str(cluster.center.config)
        # The administrator through the command an operator would run (with a one-time code).
        uri = _tool(
            "loyalty-center",
            "add-person",
            "root",
            "--role",
            "administrator",
            "--totp",
            "--config",
            config,
            stdin=PASSWORD + "\n",
        )
        import pyotp

        secret = pyotp.parse_uri(uri).secret
        token = _tool(
            "loyalty-center", "add-user", "api", "--role", "administrator", "--config", config
        )
        storage = open_storage(load_config(cluster.center.config).storage)
        try:
            for name, role in PEOPLE.items():
                add_person(storage, name, role, PASSWORD, "test", datetime.now(UTC))
            storage.feed.upsert_master(
                {"stores": [{"store_id": STORE, "name": "Tverskaya 1", "format": "hypermarket"}]}
            )
        finally:
            storage.close()
        console = Console(
            cluster,
            cluster.center.url,
            cluster.store_nodes[STORE].url,
            token,
            secret,
            root / "shots",
            printer=printer,
        )
        console.shots.mkdir()
        console.api("POST", "/v1/customers", CUSTOMER)
        for card_no in CARDS:
            console.api(
                "POST",
                "/v1/cards",
                {"customer_id": CUSTOMER["customer_id"], "card_no": card_no, "type": "electronic"},
            )
        # The store node reports itself (and its register) to the Center within seconds.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            health = requests.get(console.store_url + "/health", timeout=5).json()
            if health["registers"] and health["last_center_ok_at"]:
                break
            time.sleep(0.2)
        yield console


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope: Playwright's sync API keeps an event loop running while it is open, which
    # the asyncio tests of other modules must not meet.
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "locale(tag): the browser context's locale (en-GB else)")
