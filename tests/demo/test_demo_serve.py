"""`loyalty-demo --serve`: after reconciling, the cluster keeps running; the console and each
store admin page answer with the printed logins; Ctrl-C (SIGINT) stops every process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


def _sign_in(url: str, username: str, password: str) -> requests.Session:
    browser = requests.Session()
    form = {"csrf_token": _token(browser.get(url, timeout=30).text)}
    answer = browser.post(
        url.rstrip("/") + "/sign-in",
        data={**form, "username": username, "password": password},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:300]  # followed to the page
    return browser


@pytest.mark.timeout(600)
def test_serve_prints_logins_that_work_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "demo.cli",
            "--days",
            "1",
            "--stores",
            "367",
            "--registers",
            "1",
            "--no-chaos",
            "--serve",
            "--data",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("SERVING"):
                break
        text = "\n".join(lines)
        assert "RECONCILED" in text, text
        console = re.search(r"^CONSOLE (\S+)$", text, re.M)
        login = re.search(r"^LOGIN operator (\S+) \(call_center\)$", text, re.M)
        store = re.search(r"^STORE 367 (\S+) LOGIN (\S+) (\S+)$", text, re.M)
        assert console and login and store, text
        roles = re.findall(r"^LOGIN \S+ \S+ \((\w+)\)$", text, re.M)
        assert len(roles) == 7  # one login for every role
        browser = _sign_in(console.group(1), "operator", login.group(1))
        page = browser.get(console.group(1) + "console/customers", timeout=30)
        assert page.status_code == 200 and 'id="q"' in page.text
        store_page = _sign_in(store.group(1), store.group(2), store.group(3))
        assert "register-367-1" in store_page.get(store.group(1), timeout=30).text
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert time.monotonic() - started < 60
        with pytest.raises(requests.ConnectionError):
            requests.get(console.group(1), timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
