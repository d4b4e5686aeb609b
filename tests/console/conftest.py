"""A real cluster (Center, one store node, one register as processes) and Debian's chromium
driven by Playwright, shared by the browser scenarios of this folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from demo.cluster import Cluster

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


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    from center.access.people import add_person
    from center.config import load_config
    from center.storage import open_storage

    root = tmp_path_factory.mktemp("console")
    with Cluster(root / "cluster", [STORE], 1) as cluster:
        cluster.write_configs()
        cluster.start(cluster.center)  # started first, enrolment leaves it running
        cluster.enrol_all()
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
