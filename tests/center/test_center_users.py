"""Center users on both backends: tokens kept hashed, validation, audit, and the users routes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.nodes import token_hash
from center.access.permissions import ROLE_PERMISSIONS, ROLES
from center.access.users import authenticate, create_user
from center.cli import main
from center.config import Config, load_config
from center.errors import Conflict, InvalidRequest, Unauthorized, UnknownObject
from center.storage import Storage, open_storage
from center.storage.sql import SqlStorage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import T0, write_config
from tests.center.staff import StaffApi, staff_token


def audit_rows(storage: Storage, username: str) -> list[tuple[Any, ...]]:
    assert isinstance(storage, SqlStorage)
    rows = storage.db.execute(
        "SELECT action, before, after, actor FROM audit WHERE kind = 'user' AND object_id = ? "
        "ORDER BY audit_id",
        (username,),
    ).fetchall()
    return [tuple(r) for r in rows]


def every_stored_text(storage: Storage) -> str:
    """All rows of the users and audit tables as text."""
    assert isinstance(storage, SqlStorage)
    parts = []
    for table in ("users", "audit"):
        parts.extend(
            repr(tuple(r)) for r in storage.db.execute(f"SELECT * FROM {table}").fetchall()
        )
    return "\n".join(parts)


# -- storage and domain ---------------------------------------------------------------------------


def test_a_token_is_returned_once_and_only_its_hash_is_stored(storage: Storage) -> None:
    token = create_user(storage, "anna", "marketer", "admin", T0, ttl_days=30)
    assert token.startswith("lu1_") and len(token) > 40
    user = storage.users.user_by_token_hash(token_hash(token))
    assert user is not None and (user.username, user.role, user.created_by) == (
        "anna",
        "marketer",
        "admin",
    )
    assert user.created_at == T0 and user.expires_at == T0 + timedelta(days=30)
    assert storage.users.user_by_token_hash(token) is None  # the raw token is no key
    stored = every_stored_text(storage)
    assert "anna" in stored and token not in stored and token[4:] not in stored
    assert token_hash(token) not in "\n".join(repr(r) for r in audit_rows(storage, "anna"))
    if isinstance(storage, SqliteStorage):
        storage.close()
        for path in storage.path.parent.glob(storage.path.name + "*"):
            assert token.encode() not in path.read_bytes(), path
    assert authenticate_ok(token, storage)


def authenticate_ok(token: str, storage: Storage) -> bool:
    if isinstance(storage, SqliteStorage) and storage.db._conn is None:
        reopened = SqliteStorage(storage.path)
        try:
            return authenticate(reopened, token, T0).username == "anna"
        finally:
            reopened.close()
    return authenticate(storage, token, T0).username == "anna"


def test_user_changes_are_audited_with_their_actor(storage: Storage) -> None:
    create_user(storage, "boris", "call_center", "root", T0)
    storage.users.set_role("boris", "loyalty_manager", "root", T0 + timedelta(minutes=1))
    storage.users.set_role(
        "boris", "loyalty_manager", "root", T0 + timedelta(minutes=2)
    )  # no change
    storage.users.revoke_user("boris", "auditor", T0 + timedelta(minutes=3))
    again = storage.users.revoke_user("boris", "auditor", T0 + timedelta(minutes=4))  # idempotent
    assert again.revoked_at == T0 + timedelta(minutes=3)
    rows = audit_rows(storage, "boris")
    assert [(r[0], r[3]) for r in rows] == [
        ("create", "root"),
        ("set_role", "root"),
        ("revoke", "auditor"),
    ]
    create, role, revoke = rows
    assert create[1] is None and json.loads(create[2])["role"] == "call_center"
    assert json.loads(role[1])["role"] == "call_center"
    assert json.loads(role[2])["role"] == "loyalty_manager"
    assert json.loads(revoke[1])["revoked_at"] is None
    assert json.loads(revoke[2])["revoked_at"] is not None
    assert [u.username for u in storage.users.list_users()] == ["boris"]


def test_bad_users_are_refused_naming_the_field(storage: Storage) -> None:
    with pytest.raises(InvalidRequest, match=r"^role: unknown role 'cashier' \(known: ") as bad:
        create_user(storage, "x", "cashier", "root", T0)
    assert all(role in str(bad.value) for role in ROLES)
    with pytest.raises(InvalidRequest, match=r"^username: "):
        create_user(storage, "no spaces", "marketer", "root", T0)
    with pytest.raises(InvalidRequest, match=r"^username: "):
        create_user(storage, "x" * 65, "marketer", "root", T0)
    with pytest.raises(InvalidRequest, match=r"^ttl_days: expected 1..3650"):
        create_user(storage, "x", "marketer", "root", T0, ttl_days=0)
    create_user(storage, "x", "marketer", "root", T0)
    with pytest.raises(Conflict, match=r"^username: user 'x' already exists"):
        create_user(storage, "x", "administrator", "root", T0)
    with pytest.raises(UnknownObject, match=r"^username: unknown user 'ghost'"):
        storage.users.revoke_user("ghost", "root", T0)
    with pytest.raises(UnknownObject, match=r"^username: "):
        storage.users.set_role("ghost", "marketer", "root", T0)
    assert [(u.username, u.role) for u in storage.users.list_users()] == [("x", "marketer")]
    assert len(audit_rows(storage, "x")) == 1


def test_authentication_refuses_unknown_revoked_and_expired_tokens(storage: Storage) -> None:
    token = create_user(storage, "carla", "data_analyst", "root", T0, ttl_days=1)
    assert authenticate(storage, token, T0 + timedelta(hours=23)).role == "data_analyst"
    with pytest.raises(Unauthorized, match="expired"):
        authenticate(storage, token, T0 + timedelta(days=1))
    with pytest.raises(Unauthorized, match="unknown bearer token"):
        authenticate(storage, token + "x", T0)
    forever = create_user(storage, "dan", "administrator", "root", T0)
    assert authenticate(storage, forever, T0 + timedelta(days=9000)).username == "dan"
    storage.users.revoke_user("dan", "root", T0)
    with pytest.raises(Unauthorized, match="'dan' was revoked"):
        authenticate(storage, forever, T0)


# -- HTTP ------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> Any:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(
    config: Config, storage: Storage, clock: Clock
) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(config, storage, clock=clock))) as client:
        yield client


@pytest.fixture
def admin(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "administrator", username="root"))


async def test_an_administrator_manages_users_over_http(
    admin: StaffApi, client: TestClient[Any, Any], storage: Storage
) -> None:
    status, created = await admin.call(
        "POST", "/v1/users", {"username": "eva", "role": "call_center", "ttl_days": 7}
    )
    assert status == 201, created
    assert created["role"] == "call_center" and created["created_by"] == "root"
    assert created["expires_at"] == (T0 + timedelta(days=7)).isoformat()
    eva = StaffApi(client, created["token"])
    status, me = await eva.call("GET", "/v1/me")
    assert status == 200
    assert me == {
        "username": "eva",
        "kind": "user",
        "role": "call_center",
        "permissions": sorted(ROLE_PERMISSIONS["call_center"]),
    }
    status, listed = await admin.call("GET", "/v1/users")
    assert status == 200
    assert [(u["username"], u["role"]) for u in listed["users"]] == [
        ("eva", "call_center"),
        ("root", "administrator"),
    ]
    assert "token" not in json.dumps(listed)
    status, changed = await admin.call("POST", "/v1/users/eva/role", {"role": "loyalty_manager"})
    assert status == 200 and changed["role"] == "loyalty_manager"
    assert (await eva.call("GET", "/v1/me"))[1]["role"] == "loyalty_manager"
    status, revoked = await admin.call("POST", "/v1/users/eva/revoke")
    assert status == 200 and revoked["revoked_at"] == T0.isoformat()
    status, refused = await eva.call("GET", "/v1/me")
    assert status == 401 and "revoked" in refused["detail"], refused
    assert [r[0] for r in audit_rows(storage, "eva")] == ["create", "set_role", "revoke"]
    assert {r[3] for r in audit_rows(storage, "eva")} == {"root"}
    assert created["token"] not in every_stored_text(storage)


async def test_users_routes_refuse_bad_input_naming_the_field(admin: StaffApi) -> None:
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/v1/users", {"username": "f", "role": "boss"}, 422, "body.role"),
        ("POST", "/v1/users", {"username": "f f", "role": "marketer"}, 422, "body.username"),
        ("POST", "/v1/users", {"role": "marketer"}, 422, "body.username"),
        ("POST", "/v1/users", {"username": "f", "role": "marketer", "ttl_days": 0}, 422,
         "body.ttl_days"),
        ("POST", "/v1/users", {"username": "f", "role": "marketer", "x": 1}, 400, "body.x"),
        ("POST", "/v1/users", [1], 400, "body"),
        ("POST", "/v1/users", {"username": "root", "role": "marketer"}, 409, "username"),
        ("POST", "/v1/users/ghost/revoke", None, 404, "username"),
        ("POST", "/v1/users/ghost/role", {"role": "marketer"}, 404, "username"),
        ("POST", "/v1/users/root/role", {"role": "king"}, 422, "body.role"),
    ]  # fmt: skip
    for method, path, body, status, field in cases:
        got, answer = await admin.call(method, path, body)
        assert got == status, (path, body, answer)
        assert answer["detail"].startswith(f"{field}:"), (path, answer)
    status, answer = await admin.call("POST", "/v1/users", {"username": "f", "role": "boss"})
    assert all(role in answer["detail"] for role in ROLES)


async def test_missing_unknown_and_expired_tokens_get_401(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    response = await client.get("/v1/me")
    assert response.status == 401
    assert "missing credentials" in (await response.json())["detail"]
    response = await client.get("/v1/users", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert response.status == 401 and "Bearer" in (await response.json())["detail"]
    status, body = await StaffApi(client, "lu1_not-a-token").call("GET", "/v1/me")
    assert status == 401 and body["detail"] == "authorization: unknown bearer token"
    token = create_user(storage, "gil", "administrator", "root", T0, ttl_days=1)
    assert (await StaffApi(client, token).call("GET", "/v1/users"))[0] == 200
    clock.now = T0 + timedelta(days=2)
    status, body = await StaffApi(client, token).call("GET", "/v1/users")
    assert status == 401 and "expired" in body["detail"], body


async def test_only_users_admin_manages_users(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    for role in ROLES:
        api = StaffApi(client, staff_token(storage, role))
        status, body = await api.call("POST", "/v1/users", {"username": "h", "role": "marketer"})
        if "users.admin" in ROLE_PERMISSIONS[role]:
            assert status == 201, (role, body)
            assert (await api.call("POST", "/v1/users/h/revoke"))[0] == 200
        else:
            assert status == 403, (role, body)
            assert "needs users.admin" in body["detail"] and repr(role) in body["detail"]
            assert (await api.call("GET", "/v1/users"))[0] == 403
            assert (await api.call("GET", "/v1/me"))[0] == 200
    assert [u.username for u in storage.users.list_users() if u.username == "h"] == ["h"]


async def test_default_token_ttl_comes_from_the_config(tmp_path: Path, storage: Storage) -> None:
    config = load_config(write_config(tmp_path, extra="\n[auth]\ntoken_ttl_days = 3\n"))
    assert config.auth.token_ttl_days == 3
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        admin = StaffApi(client, staff_token(storage, "administrator"))
        status, created = await admin.call(
            "POST", "/v1/users", {"username": "ivy", "role": "marketer"}
        )
    assert status == 201 and created["expires_at"] == (T0 + timedelta(days=3)).isoformat()


def test_auth_config_is_validated(tmp_path: Path) -> None:
    from center.errors import ConfigError

    with pytest.raises(ConfigError) as bad:
        load_config(write_config(tmp_path, extra="\n[auth]\ntoken_ttl_days = -1\nx = 1\n"))
    text = str(bad.value)
    assert "auth.token_ttl_days: must be between 0 and 3650" in text
    assert "auth.x: unknown key" in text


# -- CLI -------------------------------------------------------------------------------------------


def test_user_commands_add_list_and_revoke(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, extra="\n[auth]\ntoken_ttl_days = 30\n")
    args = ["--config", str(path)]
    assert main(["add-user", "jo", "--role", "data_analyst", *args]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("lu1_") and "\n" not in token
    assert main(["add-user", "kim", "--role", "marketer", "--ttl-days", "2", *args]) == 0
    capsys.readouterr()
    assert main(["add-user", "lee", "--role", "boss", *args]) == 2
    assert "role: unknown role 'boss' (known: administrator" in capsys.readouterr().err
    assert main(["add-user", "jo", "--role", "marketer", *args]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["list-users", *args]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(u["username"], u["role"], u["created_by"]) for u in listed] == [
        ("jo", "data_analyst", "cli"),
        ("kim", "marketer", "cli"),
    ]
    assert token not in json.dumps(listed)
    assert main(["revoke-user", "jo", *args]) == 0
    assert json.loads(capsys.readouterr().out)["revoked_at"] is not None
    assert main(["revoke-user", "nobody", *args]) == 2
    assert "unknown user 'nobody'" in capsys.readouterr().err
    storage = open_storage(load_config(path).storage)
    try:
        jo = storage.users.user_by_token_hash(token_hash(token))
        assert jo is not None and jo.revoked_at is not None and jo.expires_at is not None
        assert (jo.expires_at - jo.created_at) == timedelta(days=30)
        kim = next(u for u in storage.users.list_users() if u.username == "kim")
        assert kim.expires_at is not None
        assert kim.expires_at - kim.created_at == timedelta(days=2)
        with pytest.raises(Unauthorized, match="revoked"):
            authenticate(storage, token, kim.created_at)
    finally:
        storage.close()
