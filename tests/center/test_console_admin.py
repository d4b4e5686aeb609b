"""The administrator's pages through aiohttp's test client (people and roles, the audit log
with its keyset search) and the audit search on both backends."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.audit import AuditQuery
from center.access.people import LOCKOUT, MAX_FAILURES, add_person, sign_in
from center.config import Config, load_config
from center.errors import Unauthorized
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import T0, write_config

PASSWORD = "correct horse battery"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = SqliteStorage(tmp_path / "console.db")
    storage.migrate()
    add_person(storage, "root", "administrator", PASSWORD, "test", T0)
    add_person(storage, "ann", "data_analyst", PASSWORD, "test", T0)
    add_person(storage, "olga", "call_center", PASSWORD, "test", T0)
    return storage


@pytest.fixture
async def client(config: Config, db: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(config, db, clock=lambda: T0 + timedelta(minutes=1))
    browser = {"Accept-Language": "en", "Accept": "text/html,*/*;q=0.8"}
    async with TestClient(TestServer(app), headers=browser) as client:
        yield client
    db.close()


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _signed_in(client: TestClient[Any, Any], username: str) -> str:
    """Sign in through the form; the session's CSRF token."""
    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": username, "password": PASSWORD}
    answer = await client.post("/sign-in", data=form, allow_redirects=False)
    assert answer.status == 303, await answer.text()
    return _token(await (await client.get("/console")).text())


async def test_the_administrator_adds_a_person_who_can_then_sign_in(
    client: TestClient[Any, Any], db: Storage
) -> None:
    csrf = await _signed_in(client, "root")
    bad = await client.post(
        "/console/users",
        data={"csrf_token": csrf, "username": "kim", "role": "marketer", "password": "short"},
    )
    html = await bad.text()
    # Refused next to its field, what was typed kept, nothing written.
    assert bad.status == 422 and 'id="password-error"' in html and 'value="kim"' in html
    assert db.people.credentials("kim") is None
    made = await client.post(
        "/console/users",
        data={
            "csrf_token": csrf,
            "username": "kim",
            "role": "marketer",
            "password": PASSWORD,
            "totp": "on",
        },
    )
    html = await made.text()
    assert made.status == 201 and 'id="person-kim"' in html and "otpauth://" in html
    secret = pyotp.parse_uri(re.search(r"(otpauth://[^<]+)</code>", html).group(1)).secret  # type: ignore[union-attr]
    held = db.people.credentials("kim")
    assert held is not None and held.role == "marketer" and held.totp_secret == secret
    done = sign_in(db, "kim", PASSWORD, pyotp.TOTP(secret).at(T0), T0, page="/sign-in")
    assert done.person.role == "marketer"
    (row,) = [r for r in db.audit.audit_history("user", "kim") if r["action"] == "create"]
    assert row["actor"] == "root via /console/users"


async def test_role_password_unlock_totp_and_revoke_are_audited_with_the_page(
    client: TestClient[Any, Any], db: Storage
) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(Unauthorized):
            sign_in(db, "olga", "wrong password", "", T0, page="/sign-in")
    csrf = await _signed_in(client, "root")
    listed = await (await client.get("/console/users")).text()
    assert re.search(r'id="person-olga" data-role="call_center" data-locked="1"', listed)
    for path, form in (
        ("role", {"role": "loyalty_manager"}),
        ("unlock", {}),
        ("password", {"password": "another long password"}),
        ("totp", {"required": "1"}),
    ):
        answer = await client.post(f"/console/users/olga/{path}", data={"csrf_token": csrf, **form})
        assert answer.status == 200, await answer.text()
    held = db.people.credentials("olga")
    assert held is not None and held.role == "loyalty_manager" and held.locked_until is None
    assert held.totp_secret and sign_in(
        db, "olga", "another long password", pyotp.TOTP(held.totp_secret).at(T0), T0, page="/"
    )
    bad_role = await client.post(
        "/console/users/olga/role", data={"csrf_token": csrf, "role": "god"}
    )
    assert bad_role.status == 422 and 'id="olga-role-error"' in await bad_role.text()
    revoked = await client.post("/console/users/olga/revoke", data={"csrf_token": csrf})
    assert revoked.status == 200
    with pytest.raises(Unauthorized):
        sign_in(db, "olga", "another long password", "", T0 + LOCKOUT, page="/sign-in")
    actions = {
        r["action"]: r["actor"]
        for r in db.audit.audit_history("user", "olga")
        if "via" in r["actor"]
    }
    for action, page in (
        ("set_role", "role"),
        ("unlock", "unlock"),
        ("reset_password", "password"),
        ("set_totp", "totp"),
        ("revoke", "revoke"),
    ):
        assert actions[action] == f"root via /console/users/olga/{page}"


async def test_a_role_without_users_admin_neither_sees_nor_posts(
    client: TestClient[Any, Any], db: Storage
) -> None:
    csrf = await _signed_in(client, "ann")  # data analyst: audit.read, not users.admin
    home = await (await client.get("/console")).text()
    assert 'id="nav-users"' not in home and 'id="nav-audit"' in home
    assert (await client.get("/console/users")).status == 403
    refused = await client.post(
        "/console/users/olga/role", data={"csrf_token": csrf, "role": "administrator"}
    )
    assert refused.status == 403
    assert db.people.credentials("olga").role == "call_center"  # type: ignore[union-attr]
    forged = await client.post("/console/users/olga/unlock", data={})
    assert forged.status == 403


async def test_the_audit_log_pages_by_keyset_and_escapes(
    client: TestClient[Any, Any], db: Storage
) -> None:
    for n in range(60):
        db.people.set_language("ann", "en" if n % 2 else "ru", T0, page="/<script>x</script>")
    await _signed_in(client, "ann")
    first = await client.get("/console/audit", params={"person": "ann", "action": "set_language"})
    html = await first.text()
    rows = re.findall(r'id="audit-(\d+)" class="audit-row"', html)
    assert len(rows) == 50 and rows == sorted(rows, key=int, reverse=True)
    assert "<script>x" not in html and "&lt;script&gt;x" in html
    older = re.search(r'id="audit-older" href="([^"]+)"', html)
    assert older, "no link to the older rows"
    second = await (await client.get(older.group(1).replace("&amp;", "&"))).text()
    more = re.findall(r'id="audit-(\d+)" class="audit-row"', second)
    assert len(more) == 10 and int(more[0]) < int(rows[-1])
    assert 'id="audit-older"' not in second
    bad = await client.get("/console/audit", params={"since": "yesterday"})
    assert bad.status == 422 and 'id="since-error"' in await bad.text()


def test_audit_search_on_both_backends(storage: Storage) -> None:
    add_person(storage, "root", "administrator", PASSWORD, "test", T0)
    add_person(storage, "root2", "administrator", PASSWORD, "test", T0)
    for n in range(5):
        storage.people.set_language(
            "root", "en" if n % 2 else "ru", T0 + timedelta(days=n), page="/console/language"
        )
    storage.people.set_language("root2", "en", T0, page="/console/language")
    mine = AuditQuery(person="root", action="set_language")
    rows, cursor = storage.audit.search(mine, limit=3)
    # "root" is not "root2": the person is matched whole, before " via ".
    assert [r["actor"] for r in rows] == ["root via /console/language"] * 3 and cursor is not None
    rest, end = storage.audit.search(mine, before_id=cursor, limit=3)
    assert len(rest) == 2 and end is None
    assert rest[0]["audit_id"] < rows[-1]["audit_id"]
    period = AuditQuery(person="root", since=T0 + timedelta(days=1), until=T0 + timedelta(days=3))
    assert len(storage.audit.search(period)[0]) == 2
    by_object = AuditQuery(kind="user", object_id="root2", action="create")
    ((row,), _) = storage.audit.search(by_object)
    assert row["actor"] == "test"


async def test_the_chain_default_language_applies_unless_the_person_chose_one(
    client: TestClient[Any, Any], db: Storage, tmp_path: Path
) -> None:
    russian_browser = {"Accept-Language": "ru-RU"}
    before = await (await client.get("/", headers=russian_browser)).text()
    assert "<h1>Вход</h1>" in before
    db.master.set_settings({"console_language": "en"}, actor="test", now=T0)
    with pytest.raises(Exception, match="ru or en"):
        db.master.set_settings({"console_language": "de"}, actor="test", now=T0)
    # The cache of the chain setting is per app; a fresh app reads it at once.
    (tmp_path / "fresh").mkdir()
    app = create_app(load_config(write_config(tmp_path / "fresh")), db)
    async with TestClient(TestServer(app), headers=russian_browser) as fresh:
        english = await (await fresh.get("/", headers={"Accept": "text/html"})).text()
        assert "<h1>Sign in</h1>" in english
        db.people.set_language("olga", "ru", T0, page="/console/language")
        page = await fresh.get("/")
        form = {"csrf_token": _token(await page.text()), "username": "olga", "password": PASSWORD}
        await fresh.post("/sign-in", data=form, headers={"Accept": "text/html"})
        home = await (await fresh.get("/console", headers={"Accept": "text/html"})).text()
        assert 'lang="ru"' in home  # her own setting wins over the chain's


async def test_the_audit_search_says_what_is_wrong_by_its_field(
    client: TestClient[Any, Any],
) -> None:
    await _signed_in(client, "ann")
    for params, field in (
        ({"until": "9999-12-31"}, "until"),
        ({"person": "<b>"}, "person"),
        ({"kind": "spaceship"}, "kind"),
        ({"before": "-1"}, "before"),
    ):
        answer = await client.get("/console/audit", params=params)
        html = await answer.text()
        assert answer.status == 422 and f'id="{field}-error"' in html, html


def test_monitoring_limits_are_read_and_checked_from_center_toml(tmp_path: Path) -> None:
    from center.errors import ConfigError

    path = write_config(tmp_path, extra="\n[monitoring]\nstore_late_s = 4\nstore_silent_s = 8\n")
    watch = load_config(path).monitoring
    assert (watch.store_late_s, watch.store_silent_s, watch.register_silent_s) == (4, 8, 3600)
    bad = write_config(tmp_path, extra="\n[monitoring]\nstore_late_s = 9\nstore_silent_s = 8\n")
    with pytest.raises(ConfigError) as refused:
        load_config(bad)
    assert any("monitoring.store_silent_s" in p for p in refused.value.problems)
