"""People's sign-in state on both backends, the add-person command, and the node monitoring
rules (pure)."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest

from center.access.monitoring import limits_of, node_contacts, sort_contacts
from center.access.people import (
    MAX_FAILURES,
    add_person,
    session_hash,
    sign_in,
    verify_password,
)
from center.cli import main
from center.errors import InvalidRequest, Unauthorized
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from tests.center.center_factories import T0, write_config

PASSWORD = "correct horse battery"


def test_sign_in_state_on_both_backends(storage: Storage) -> None:
    add_person(storage, "olga", "call_center", PASSWORD, "test", T0)
    held = storage.people.credentials("olga")
    assert held is not None and held.password_hash and held.password_hash.startswith("$argon2id$")
    assert PASSWORD not in held.password_hash and verify_password(held.password_hash, PASSWORD)
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(Unauthorized):
            sign_in(storage, "olga", "wrong", "", T0, page="/sign-in")
    # A success resets the count: MAX_FAILURES - 1 more failures do not lock.
    done = sign_in(storage, "olga", PASSWORD, "", T0, page="/sign-in")
    assert storage.people.session(session_hash(done.session), T0) is not None
    assert storage.people.session(done.session, T0) is None  # only the hash is a key
    for _ in range(MAX_FAILURES):
        with pytest.raises(Unauthorized):
            sign_in(storage, "olga", "wrong", "", T0, page="/sign-in")
    # Locked: the right password is refused with the answer of a wrong one.
    assert storage.people.credentials("olga").locked_until is not None  # type: ignore[union-attr]
    with pytest.raises(Unauthorized, match=r"^password: wrong user name, password or code$"):
        sign_in(storage, "olga", PASSWORD, "", T0 + timedelta(minutes=1), page="/sign-in")
    # The session ends at its expiry, and at sign-out.
    assert storage.people.session(session_hash(done.session), T0 + timedelta(days=1)) is None
    storage.people.close_session(session_hash(done.session), T0, page="/sign-out")
    assert storage.people.session(session_hash(done.session), T0) is None
    storage.people.set_language("olga", "en", T0, page="/console/language")
    assert storage.people.credentials("olga").language == "en"  # type: ignore[union-attr]
    actions = [row["action"] for row in storage.audit.audit_history("user", "olga")]
    assert actions[:3] == ["create", "set_password", "sign_in_failed"]
    assert "lock" in actions and actions[-2:] == ["sign_out", "set_language"]


def test_a_totp_code_is_good_once_on_both_backends(storage: Storage) -> None:
    secret = add_person(storage, "root", "administrator", PASSWORD, "test", T0, totp=True)
    assert secret is not None
    code = pyotp.TOTP(secret).at(T0)
    sign_in(storage, "root", PASSWORD, code, T0, page="/sign-in")
    with pytest.raises(Unauthorized, match="already used"):
        sign_in(storage, "root", PASSWORD, code, T0 + timedelta(seconds=20), page="/sign-in")
    assert storage.people.credentials("root").failed_attempts == 1  # type: ignore[union-attr]
    later = T0 + timedelta(seconds=30)
    sign_in(storage, "root", PASSWORD, pyotp.TOTP(secret).at(later), later, page="/sign-in")


def test_a_revoked_user_cannot_sign_in_nor_keep_a_session(storage: Storage) -> None:
    add_person(storage, "olga", "call_center", PASSWORD, "test", T0)
    done = sign_in(storage, "olga", PASSWORD, "", T0, page="/sign-in")
    storage.users.revoke_user("olga", "test", T0)
    assert storage.people.session(session_hash(done.session), T0) is None
    with pytest.raises(Unauthorized):
        sign_in(storage, "olga", PASSWORD, "", T0, page="/sign-in")


def test_a_short_password_is_refused(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "c.db")
    storage.migrate()
    with pytest.raises(InvalidRequest, match="password"):
        add_person(storage, "olga", "call_center", "short", "test", T0)
    storage.close()


def test_add_person_command_reads_the_password_and_prints_the_totp_uri(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--config", str(write_config(tmp_path))]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["add-person", "root", "--role", "administrator", "--totp", *args]) == 0
    uri = capsys.readouterr().out.strip()
    assert uri.startswith("otpauth://totp/") and "root" in uri
    secret = pyotp.parse_uri(uri).secret
    storage = SqliteStorage(tmp_path / "data" / "center.db")
    try:
        with pytest.raises(Unauthorized):
            sign_in(storage, "root", PASSWORD, "", T0, page="/sign-in")
        code = pyotp.TOTP(secret).at(T0)
        assert sign_in(storage, "root", PASSWORD, code, T0, page="/sign-in").person.role == (
            "administrator"
        )
    finally:
        storage.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["add-person", "kim", "--role", "marketer", *args]) == 2
    assert "password" in capsys.readouterr().err


def test_node_contacts_put_the_silent_first_and_list_each_register() -> None:
    beats = [
        {
            "node_id": "store-1",
            "store_id": "1",
            "received_at": T0 - timedelta(seconds=20),
            "queue_depth": 0,
            "oldest_queued_at": None,
            "devices": {
                "register:1-1": (T0 - timedelta(hours=2)).isoformat(),
                "register:1-2": (T0 - timedelta(seconds=5)).isoformat(),
                "1-2:printer": "error",
            },
        },
        {
            "node_id": "store-2",
            "store_id": "2",
            "received_at": T0 - timedelta(seconds=30),
            "queue_depth": 7,
            "oldest_queued_at": T0 - timedelta(hours=30),
            "devices": {},
        },
    ]
    found = node_contacts(beats, T0)
    assert [(c.node_id, c.status, c.alerts) for c in found] == [
        ("1-1", "silent", ("register_silent",)),
        # beats, but its sales have waited 30 h for the Center
        ("store-2", "late", ("center_unsynced",)),
        ("1-2", "late", ("printer_error",)),  # in touch, but its printer needs someone
        ("store-1", "ok", ()),
    ]
    assert found[2].devices == (("printer", "error"),) and found[1].sync_lag_s == 30 * 3600
    by_queue = sort_contacts(found, "queue", descending=True)
    assert by_queue[0].node_id == "store-2"
    assert [c.node_id for c in sort_contacts(found, "store")] == [
        "store-1",
        "1-1",
        "1-2",
        "store-2",
    ]


def test_node_contacts_follow_the_configured_limits_and_report_paper_out() -> None:
    beats = [
        {
            "node_id": "store-1",
            "store_id": "1",
            "received_at": T0 - timedelta(seconds=8),
            "queue_depth": 0,
            "oldest_queued_at": None,
            "devices": {
                "register:1-1": (T0 - timedelta(seconds=1)).isoformat(),
                "1-1:printer": "ok",
                "1-1:printer_paper": "out",
            },
        }
    ]
    tight = limits_of(2, 6, 600, 3600)
    store, register = node_contacts(beats, T0, tight)
    assert (store.status, store.alerts) == ("silent", ("store_silent",))
    assert (register.status, register.alerts) == ("late", ("printer_paper_out",))
    assert node_contacts(beats, T0)[1].status == "ok"  # the default limits: 8 s is in touch


def test_the_session_cookie_is_secure_under_tls_only() -> None:
    import ssl

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from center.access.people_session import SESSION_COOKIE, set_session_cookie

    for context, secure in ((ssl.create_default_context(), True), (None, False)):
        request = make_mocked_request("POST", "/sign-in", sslcontext=context)
        response = web.Response()
        set_session_cookie(response, request, "value")
        cookie = response.cookies[SESSION_COOKIE]
        assert bool(cookie["secure"]) is secure
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
