"""The console's pages through aiohttp's test client: sign-in, sessions, CSRF, lockout, TOTP,
permissions on pages, the call-center and loyalty-manager tasks, languages, escaping."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access import people
from center.access.people import LOCKOUT, MAX_FAILURES, SESSION_TTL, add_person, session_hash
from center.access.people_session import SESSION_COOKIE
from center.config import Config, load_config
from center.crm.model import CustomerInput
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web import app as center_app
from center.web.app import create_app
from tests.center.center_factories import T0, write_config

PASSWORD = "correct horse battery"
CARD = "2900000000013"


class Clock:
    """A settable clock for the app."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> Any:
        return self.now


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = SqliteStorage(tmp_path / "console.db")
    storage.migrate()
    for name, role in (
        ("olga", "call_center"),
        ("max", "loyalty_manager"),
        ("ann", "data_analyst"),
        ("root", "administrator"),
    ):
        add_person(storage, name, role, PASSWORD, "test", T0)
    customer_id = storage.customers.create_customer(
        CustomerInput(
            customer_id="c-1",
            attributes={"last_name": "Ivanova", "first_name": "Anna", "phone": "+79120001122"},
        ),
        "test",
        T0,
    )
    storage.customers.issue_card(customer_id, CARD, "electronic", "test", T0)
    return storage


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(config: Config, db: Storage, clock: Clock) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(config, db, clock=clock)
    browser = {"Accept-Language": "en", "Accept": "text/html,*/*;q=0.8"}
    async with TestClient(TestServer(app), headers=browser) as client:
        yield client
    db.close()


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _sign_in(
    client: TestClient[Any, Any], username: str, password: str = PASSWORD, code: str = ""
) -> tuple[int, str]:
    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": username, "password": password}
    if code:
        form["code"] = code
    response = await client.post("/sign-in", data=form, allow_redirects=False)
    return response.status, await response.text()


async def _page(client: TestClient[Any, Any], path: str) -> tuple[int, str]:
    response = await client.get(path, allow_redirects=False)
    return response.status, await response.text()


async def test_root_is_the_sign_in_page_not_404(client: TestClient[Any, Any]) -> None:
    response = await client.get("/", headers={"Accept-Language": "en"})
    html = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert 'action="/sign-in' in html and 'name="password"' in html
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "loyalty_signin" in response.cookies


async def test_sign_in_sets_a_strict_httponly_cookie_and_sign_out_ends_it(
    client: TestClient[Any, Any], db: Storage
) -> None:
    page = await client.get("/")
    form = {"csrf_token": _token(await page.text()), "username": "olga", "password": PASSWORD}
    response = await client.post("/sign-in", data=form, allow_redirects=False)
    assert response.status == 303
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP here; Secure is set under TLS
    # Only the cookie's hash is kept.
    assert db.people.session(session_hash(cookie.value), T0) is not None
    status, html = await _page(client, "/console")
    assert status == 200 and "olga" in html
    await client.post("/sign-out", data={"csrf_token": _token(html)}, allow_redirects=False)
    assert db.people.session(session_hash(cookie.value), T0) is None
    status, _ = await _page(client, "/console")
    assert status == 303  # back to the sign-in form
    actions = [r["action"] for r in db.audit.audit_history("user", "olga")]
    assert actions[-2:] == ["sign_in", "sign_out"]


async def test_sign_in_form_without_its_csrf_token_is_refused(
    client: TestClient[Any, Any],
) -> None:
    await client.get("/")
    response = await client.post(
        "/sign-in", data={"username": "olga", "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 403
    assert SESSION_COOKIE not in client.session.cookie_jar.filter_cookies(client.make_url("/"))


async def test_wrong_passwords_lock_the_account_until_the_lockout_ends(
    client: TestClient[Any, Any], clock: Clock, db: Storage
) -> None:
    for _ in range(MAX_FAILURES):
        status, html = await _sign_in(client, "olga", "wrong password!")
        assert status == 401 and "Wrong user name" in html
    status, html = await _sign_in(client, "olga")  # the right password, but locked
    assert status == 401 and "Wrong user name" in html and "locked" not in html
    assert [r["action"] for r in db.audit.audit_history("user", "olga")][-1] == "lock"
    clock.now = T0 + LOCKOUT + timedelta(seconds=1)
    status, _ = await _sign_in(client, "olga")
    assert status == 303


async def test_an_unknown_name_is_refused_like_a_wrong_password(
    client: TestClient[Any, Any],
) -> None:
    status, html = await _sign_in(client, "nobody")
    assert status == 401 and "Wrong user name, password or code" in html


async def test_a_person_with_totp_needs_the_current_code(
    client: TestClient[Any, Any], db: Storage, clock: Clock
) -> None:
    secret = add_person(db, "admin2", "administrator", PASSWORD, "test", T0, totp=True)
    assert secret is not None
    status, _ = await _sign_in(client, "admin2")
    assert status == 401
    status, _ = await _sign_in(client, "admin2", code="000000")
    assert status == 401
    code = pyotp.TOTP(secret).at(clock.now)
    status, _ = await _sign_in(client, "admin2", code=code)
    assert status == 303


def _error(html: str) -> str:
    found = re.search(r'<p class="error" id="signin-error"[^>]*>([^<]*)</p>', html)
    assert found, html[:500]
    return found.group(1)


async def test_a_totp_code_signs_in_once_and_a_replay_is_refused_and_counted(
    client: TestClient[Any, Any], db: Storage, clock: Clock
) -> None:
    secret = add_person(db, "admin2", "administrator", PASSWORD, "test", T0, totp=True)
    assert secret is not None
    totp = pyotp.TOTP(secret)
    code = totp.at(clock.now)
    status, _ = await _sign_in(client, "admin2", code=code)
    assert status == 303
    client.session.cookie_jar.clear()  # another browser, watching the code typed
    clock.now = T0 + timedelta(seconds=10)  # the same 30 s window
    status, html = await _sign_in(client, "admin2", code=code)
    assert status == 401 and "already used" in _error(html)
    assert SESSION_COOKIE not in client.session.cookie_jar.filter_cookies(client.make_url("/"))
    history = db.audit.audit_history("user", "admin2")
    assert history[-1]["action"] == "sign_in_failed"
    # An older code still inside the ±1 step window is refused too.
    status, _ = await _sign_in(client, "admin2", code=totp.at(T0 - timedelta(seconds=30)))
    assert status == 401
    assert db.people.credentials("admin2").failed_attempts == 2  # type: ignore[union-attr]
    clock.now = T0 + timedelta(seconds=30)  # the next code is good, once
    status, _ = await _sign_in(client, "admin2", code=totp.at(clock.now))
    assert status == 303


async def test_unknown_name_locked_account_and_wrong_password_get_one_answer(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(MAX_FAILURES):
        await _sign_in(client, "max", "wrong password!")  # locks max
    spent: list[str | None] = []
    verify = people.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        spent.append(password_hash)
        return verify(password_hash, password)

    monkeypatch.setattr(people, "verify_password", counting)
    answers = []
    for username, password in (
        ("olga", "wrong password!"),
        ("nobody", PASSWORD),
        ("max", PASSWORD),  # the right password of a locked account
    ):
        status, html = await _sign_in(client, username, password)
        answers.append((status, _error(html)))
    assert answers == [(401, "Wrong user name, password or code.")] * 3
    # Each answer cost one argon2 verification: the same timing class.
    assert len(spent) == 3


def _session_users(db: Storage) -> list[str]:
    with db.people.db.guard("test"):
        rows = db.people.db.execute("SELECT username FROM people_sessions").fetchall()
    return sorted(row[0] for row in rows)


async def test_anyones_sign_in_purges_every_ended_session(
    client: TestClient[Any, Any], db: Storage, clock: Clock
) -> None:
    assert (await _sign_in(client, "olga"))[0] == 303
    assert _session_users(db) == ["olga"]
    client.session.cookie_jar.clear()
    clock.now = T0 + SESSION_TTL + timedelta(seconds=1)
    assert (await _sign_in(client, "max"))[0] == 303
    assert _session_users(db) == ["max"]


async def test_the_centers_periodic_job_purges_ended_sessions_by_the_apps_clock(
    config: Config, db: Storage, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(center_app, "SESSIONS_PURGE_EVERY_S", 0.05)
    app = create_app(config, db, clock=clock)
    async with TestClient(TestServer(app), headers={"Accept-Language": "en"}) as client:
        assert (await _sign_in(client, "olga"))[0] == 303
        await asyncio.sleep(0.3)  # several runs: the session is still live by the app's clock
        assert _session_users(db) == ["olga"]
        clock.now = T0 + SESSION_TTL + timedelta(seconds=1)
        for _ in range(100):
            if not _session_users(db):
                break
            await asyncio.sleep(0.05)
        assert _session_users(db) == []
    db.close()


async def test_call_center_blocks_a_card_through_the_page_audited_with_person_and_page(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "olga")
    status, html = await _page(client, "/console/customers?q=2900000")
    assert status == 200 and "/console/customers/c-1" in html
    status, html = await _page(client, "/console/customers/c-1")
    assert status == 200 and "Ivanova" in html and "/block" in html
    assert "/console/adjustments" not in html  # a call-center role may not adjust balances
    response = await client.post(
        f"/console/cards/{CARD}/block",
        data={"csrf_token": _token(html), "customer_id": "c-1", "reason": "lost"},
        allow_redirects=False,
    )
    assert response.status == 303
    view = db.customers.customer_view("c-1", T0)
    assert view is not None and view["cards"][0]["status"] == "blocked"
    last = db.audit.audit_history("card", CARD)[-1]
    assert last["action"] == "block" and last["actor"] == f"olga via /console/cards/{CARD}/block"


async def test_a_post_without_the_csrf_token_changes_nothing(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "olga")
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        response = await client.post(
            f"/console/cards/{CARD}/block",
            data={"customer_id": "c-1", "reason": "lost"},
            headers=headers,
            allow_redirects=False,
        )
        assert response.status == 403
    view = db.customers.customer_view("c-1", T0)
    assert view is not None and view["cards"][0]["status"] == "active"


async def test_a_role_without_the_right_sees_no_link_and_is_refused_a_direct_post(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "ann")  # data analyst: reads customers, writes nothing
    status, html = await _page(client, "/console/customers/c-1")
    assert status == 200 and "/block" not in html and "/console/adjustments" not in html
    assert "/console/nodes" not in html
    response = await client.post(
        f"/console/cards/{CARD}/block",
        data={"csrf_token": _token(html), "customer_id": "c-1", "reason": "lost"},
        allow_redirects=False,
    )
    assert response.status == 403
    status, _ = await _page(client, "/console/nodes")
    assert status == 403
    view = db.customers.customer_view("c-1", T0)
    assert view is not None and view["cards"][0]["status"] == "active"


async def test_loyalty_manager_adjusts_through_the_ledger_and_errors_sit_by_their_field(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "max")
    status, html = await _page(client, "/console/customers/c-1")
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert status == 200 and key
    form = {"csrf_token": _token(html), "customer_id": "c-1", "card_no": CARD}
    bad = await client.post(
        "/console/adjustments",
        data={**form, "amount": "12x", "reason": "goodwill", "idempotency_key": key.group(1)},
    )
    text = await bad.text()
    assert bad.status == 422 and 'id="amount-error"' in text and 'value="goodwill"' in text
    no_reason = await client.post(
        "/console/adjustments",
        data={**form, "amount": "150", "reason": " ", "idempotency_key": key.group(1)},
    )
    assert no_reason.status == 422 and 'id="reason-error"' in await no_reason.text()
    for _ in range(2):  # the same form posted twice adjusts once
        done = await client.post(
            "/console/adjustments",
            data={**form, "amount": "150", "reason": "goodwill", "idempotency_key": key.group(1)},
            allow_redirects=False,
        )
        assert done.status == 303
    balance = db.ledger.balance(CARD, T0)
    assert balance is not None and balance.wallets["bonus"] == 150
    last = db.audit.audit_history("card", CARD)[-1]
    assert last["action"] == "adjust" and last["actor"] == "max via /console/adjustments"
    assert last["after"]["reason"] == "goodwill"


async def test_language_is_the_persons_setting_then_the_browsers(
    client: TestClient[Any, Any], db: Storage
) -> None:
    response = await client.get("/", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert "Вход" in await response.text() and response.headers["Content-Language"] == "ru"
    response = await client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert "Sign in" in await response.text()
    await _sign_in(client, "olga")
    _, html = await _page(client, "/console")
    await client.post("/console/language", data={"csrf_token": _token(html), "language": "ru"})
    response = await client.get("/console", headers={"Accept-Language": "en"})
    assert "Найти клиента" in await response.text()
    assert db.audit.audit_history("user", "olga")[-1]["action"] == "set_language"


async def test_text_from_people_is_escaped(client: TestClient[Any, Any], db: Storage) -> None:
    db.customers.create_customer(
        CustomerInput(customer_id="c-x", attributes={"last_name": "<script>alert(1)</script>"}),
        "test",
        T0,
    )
    await _sign_in(client, "olga")
    status, html = await _page(client, "/console/customers/c-x")
    assert status == 200 and "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_the_json_api_with_a_session_cookie_still_needs_the_csrf_header(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "olga")
    _, html = await _page(client, "/console")
    refused = await client.post(f"/v1/cards/{CARD}/block", json={"reason": "lost"})
    assert refused.status == 403
    done = await client.post(
        f"/v1/cards/{CARD}/block", json={"reason": "lost"}, headers={"X-CSRF-Token": _token(html)}
    )
    assert done.status == 200 and (await done.json())["status"] == "blocked"


async def test_nodes_page_shows_the_silent_store_first(
    client: TestClient[Any, Any], db: Storage, clock: Clock
) -> None:
    from sync_protocol import Heartbeat

    for node_id, store_id, ago in (("store-1", "1", 30), ("store-2", "2", 7200)):
        at = T0 - timedelta(seconds=ago)
        db.nodes.record_heartbeat(
            Heartbeat(node_id=node_id, role="store", store_id=store_id, sent_at=at, queue_depth=3),
            at,
        )
    await _sign_in(client, "root")
    status, html = await _page(client, "/console/nodes")
    assert status == 200
    rows = re.findall(r'id="node-([^"]+)" data-status="([a-z]+)"', html)
    assert rows == [("store-2", "silent"), ("store-1", "ok")]


async def test_a_program_gets_json_errors_from_a_page_and_a_browser_gets_pages(
    client: TestClient[Any, Any],
) -> None:
    program = await client.get(
        "/console/customers", headers={"Accept": "application/json"}, allow_redirects=False
    )
    assert program.status == 401 and (await program.json())["error"] == "unauthorized"
    browser = await client.get("/console/customers", allow_redirects=False)
    assert browser.status == 303 and browser.headers["Location"] == "/"


async def test_search_as_you_type_answers_only_the_results_to_htmx(
    client: TestClient[Any, Any],
) -> None:
    await _sign_in(client, "olga")
    headers = {"HX-Request": "true", "HX-Target": "results"}
    response = await client.get("/console/customers?q=ivan", headers=headers)
    html = await response.text()
    assert response.status == 200 and "<html" not in html
    assert 'href="/console/customers/c-1"' in html
    short = await client.get("/console/customers?q=12", headers=headers)
    assert 'id="q-error"' in await short.text()  # fewer than 3 digits: said by the field
    full = await client.get("/console/customers?q=ivan")
    assert "<html" in await full.text()


async def test_a_blocked_card_is_unblocked_from_the_page(
    client: TestClient[Any, Any], db: Storage
) -> None:
    db.customers.block_card(CARD, "lost", "test", T0)
    await _sign_in(client, "olga")
    _, html = await _page(client, "/console/customers/c-1")
    assert "/unblock" in html and 'class="block-card"' not in html
    response = await client.post(
        f"/console/cards/{CARD}/unblock",
        data={"csrf_token": _token(html), "customer_id": "c-1"},
        allow_redirects=False,
    )
    assert response.status == 303
    view = db.customers.customer_view("c-1", T0)
    assert view is not None and view["cards"][0]["status"] == "active"


async def test_reports_dashboard_shows_the_periods_figures_and_its_charts(
    client: TestClient[Any, Any], db: Storage
) -> None:
    from tests.center.center_factories import make_sale

    db.sales.ingest([make_sale(1, card_no=CARD, amounts=(123456,))], T0)
    await _sign_in(client, "ann")  # data analyst
    status, html = await _page(client, "/console/reports?from=2024-02-20&to=2024-03-05")
    assert status == 200
    assert re.search(r'id="receipts">1<', html) and "1,234.56" in html
    charts = re.findall(r'<img class="chart" id="chart-\w+" src="([^"]+)"', html)
    assert len(charts) == 3
    for src in charts:  # the API's own SVG routes, reached with the session cookie
        response = await client.get(src.replace("&amp;", "&"))
        assert response.status == 200 and response.content_type == "image/svg+xml"
    status, html = await _page(client, "/console/reports?from=2024-03-05&to=2024-02-20")
    assert status == 200 and 'id="from-error"' in html  # a reversed period, said by the field
    client.session.cookie_jar.clear()
    await _sign_in(client, "olga")  # call center: no reports
    status, html = await _page(client, "/console")
    assert "/console/reports" not in html
    assert (await _page(client, "/console/reports"))[0] == 403
