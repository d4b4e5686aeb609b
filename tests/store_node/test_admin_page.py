"""The store node's admin page over real HTTP: the store admin signs in (credentials of the
store's enrolment, in store.db; lockout; CSRF), sees the store's health in Russian or English,
and enrols a new register."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from store_node.admin_auth import MAX_FAILURES, AdminAuth
from store_node.auth import RegisterAuth
from store_node.cli import main
from tests.store_node.store_fakes import (
    Clock,
    heartbeat_body,
    make_config,
    make_sale,
    running_node,
)

PASSWORD = "keeper of the keys"


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:400]
    return found.group(1)


@asynccontextmanager
async def _browser(url: str, language: str = "en") -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe: keep the cookies of 127.0.0.1 (a browser does).
    jar = aiohttp.CookieJar(unsafe=True)
    headers = {"Accept-Language": language}
    async with aiohttp.ClientSession(url, cookie_jar=jar, headers=headers) as session:
        yield session


async def _sign_in(
    browser: aiohttp.ClientSession, username: str = "keeper", password: str = PASSWORD
) -> tuple[int, str]:
    async with browser.get("/") as page:
        form = {"csrf_token": _token(await page.text()), "username": username}
    async with browser.post("/sign-in", data={**form, "password": password}) as answer:
        return answer.status, await answer.text()


async def test_admin_page_shows_each_register_its_devices_last_sale_and_the_center_lag(
    tmp_path: Path,
) -> None:
    clock = Clock()
    config = make_config(tmp_path)
    AdminAuth(config.db_path).set_admin("keeper", PASSWORD, clock())
    async with running_node(config, run_jobs=False, clock=clock) as node:
        await node.send(make_sale(1), make_sale(2))
        clock.advance(30)
        status, _, _ = await node.post(
            "/v1/heartbeat",
            heartbeat_body(devices={"printer": "error", "display": "ok", "printer_paper": "out"}),
        )
        assert status == 200
        clock.advance(15)
        async with _browser(node.url) as browser:
            async with browser.get("/") as r:  # not signed in: the sign-in form, no figures
                signin = await r.text()
            assert r.status == 200 and 'id="sign-in"' in signin and "register-367-1" not in signin
            assert (await _sign_in(browser))[0] == 200
            async with browser.get("/") as r:
                assert r.status == 200 and r.content_type == "text/html"
                english = await r.text()
            async with browser.get("/", headers={"Accept-Language": "ru-RU"}) as r:
                russian = await r.text()
                assert r.headers["Content-Language"] == "ru"
    assert 'id="register-367-1"' in english
    assert "printer: error" in english and "display: ok" in english
    assert 'id="paper-out-367-1"' in english and "Printer out of paper" in english
    assert "#2," in english  # the last sale's seq
    assert 'id="pending">2<' in english  # both sales wait for the Center
    assert "45 s ago" in english  # the sync lag: the oldest sale waits since 45 s
    assert "Кассы" in russian and "Связь с центром" in russian
    assert "Нет бумаги в принтере" in russian


async def test_admin_page_escapes_what_registers_report(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    AdminAuth(config.db_path).set_admin("keeper", PASSWORD, Clock()())
    async with running_node(config, run_jobs=False, clock=Clock()) as node:
        await node.post("/v1/heartbeat", heartbeat_body(devices={"printer": "<b>x</b>"}))
        async with _browser(node.url) as browser:
            await _sign_in(browser)
            async with browser.get("/") as response:
                html = await response.text()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


async def test_wrong_passwords_lock_the_store_admin_with_one_answer(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    AdminAuth(config.db_path).set_admin("keeper", PASSWORD, Clock()())
    async with (
        running_node(config, run_jobs=False, clock=Clock()) as node,
        _browser(node.url) as browser,
    ):
        status, html = await _sign_in(browser, "nobody")
        assert status == 401 and "Wrong user name or password." in html
        for _ in range(MAX_FAILURES):
            status, html = await _sign_in(browser, password="not the password")
            assert status == 401
        status, html = await _sign_in(browser)  # locked: the right password is refused
        assert status == 401 and "Wrong user name or password." in html
        async with browser.post("/sign-in", data={"username": "keeper", "password": PASSWORD}) as r:
            assert r.status == 403  # no sign-in form token


async def test_the_store_admin_enrols_a_register_whose_token_works_once(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    AdminAuth(config.db_path).set_admin("keeper", PASSWORD, Clock()())
    async with (
        running_node(config, run_jobs=False, clock=Clock()) as node,
        _browser(node.url) as browser,
    ):
        # Without a session, or without its CSRF token, nothing is issued.
        async with browser.post("/registers", data={"register_id": "367-9"}) as r:
            assert r.status == 403
        await _sign_in(browser)
        async with browser.post("/registers", data={"register_id": "367-9"}) as r:
            assert r.status == 403
        async with browser.get("/") as page:
            csrf = _token(await page.text())
        form = {"csrf_token": csrf, "register_id": "<script>"}
        async with browser.post("/registers", data=form) as r:
            html = await r.text()
            assert r.status == 422 and 'id="register_id-error"' in html
            assert "<script>" not in html and 'value="&lt;script&gt;"' in html
        async with browser.post("/registers", data={**form, "register_id": "367-9"}) as r:
            html = await r.text()
            assert r.status == 201 and 'http-equiv="refresh"' not in html
        token = re.search(r'id="register-token">([^<]+)<', html)
        assert token, html
        async with node.session.post(node.url + "/v1/enrol", json={"token": token.group(1)}) as r:
            assert r.status == 200 and (await r.json())["register_id"] == "367-9"
        async with node.session.post(node.url + "/v1/enrol", json={"token": token.group(1)}) as r:
            assert r.status == 403
        async with browser.post("/sign-out", data={"csrf_token": csrf}) as r:
            assert 'id="sign-in"' in await r.text()
        async with browser.get("/") as r:
            assert "register-367" not in await r.text()
    assert RegisterAuth(config.store.data_dir).register_ids() == ["367-9"]


def test_set_admin_and_enrol_check_the_password_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import io

    config = make_config(tmp_path)
    path = tmp_path / "store.toml"
    path.write_text(
        "[store]\n"
        f'store_id = "{config.store.store_id}"\n'
        f'data_dir = "{config.store.data_dir}"\n\n'
        "[center]\n"
        'url = "http://127.0.0.1:9"\n'
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["enrol", "--config", str(path), "--token", "x", "--admin-user", "keeper"]) == 2
    assert "admin password" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["set-admin", "--config", str(path), "keeper"]) == 0
    auth = AdminAuth(config.store.data_dir / "store.db")
    assert auth.sign_in("keeper", PASSWORD, datetime.now(UTC))[1].username == "keeper"
    held = auth._connect().execute("SELECT password_hash FROM store_admins").fetchone()[0]
    assert held.startswith("$argon2id$") and PASSWORD not in held


def test_a_store_db_of_the_previous_release_takes_the_store_admin(tmp_path: Path) -> None:
    import sqlite3

    from store_node.salesbox import SalesBox
    from tests.store_node.fixtures.build_previous_release import STORE_ID
    from tests.store_node.test_store_migrations import _previous_release, _rows

    path = _previous_release("store.db", tmp_path)
    SalesBox(path, store_id=STORE_ID).close()
    before = _rows(path)
    auth = AdminAuth(path)
    auth.set_admin("keeper", PASSWORD, datetime.now(UTC))
    assert auth.sign_in("keeper", PASSWORD, datetime.now(UTC))[1].username == "keeper"
    after = _rows(path)
    assert {k: v for k, v in after.items() if not k.startswith("store_admin")} == before
    SalesBox(path, store_id=STORE_ID).close()  # the sales box opens it as before
    conn = sqlite3.connect(path)
    try:
        names = conn.execute(
            "SELECT name FROM _migrations WHERE migration_set = 'store_admin'"
        ).fetchall()
    finally:
        conn.close()
    assert names == [("m006_store_admin",)]
