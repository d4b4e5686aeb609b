"""Every Center route has a permission, and every role and the store nodes get exactly theirs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from center.access.nodes import issue_token
from center.access.permissions import (
    AUTHENTICATED,
    MEMBER,
    PERMISSIONS,
    PUBLIC,
    READ_PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    allows,
    requirement_names,
)
from center.config import Config, load_config
from center.portal import pages as portal_pages
from center.storage import Storage
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from center.web.routes import route_permissions
from sync_protocol import canonical_query, sign_headers
from tests.center.center_factories import CARD, T0, master_tables, write_config
from tests.center.staff import StaffApi, staff_token

WRITES = frozenset(p for p in PERMISSIONS if not p.endswith(".read"))


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        assert route.resource is not None
        routes.add(("GET" if route.method == "HEAD" else route.method, route.resource.canonical))
    return routes


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


def test_every_route_of_the_center_has_a_permission(config: Config) -> None:
    app = create_app(config)
    table = route_permissions(app)
    missing = sorted(served_routes(app) - set(table))
    assert missing == [], f"routes without a PERMISSIONS entry: {missing}"
    for key, requirement in table.items():
        for name in requirement_names(requirement):
            assert name in PERMISSIONS or name in (PUBLIC, AUTHENTICATED, MEMBER), (key, name)
    # Member routes take member tokens only; only they do; the sign-in steps are public.
    member = sorted(key for key, requirement in table.items() if requirement == MEMBER)
    assert member and all(path.startswith("/v1/member/") for _, path in member)
    public = sorted(key for key, requirement in table.items() if requirement == PUBLIC)
    # The customer's portal: public to the staff middleware, every page authenticates the
    # member from its session itself (tests/center/test_portal.py: no session, no page).
    portal = [key for key in public if key[1].startswith("/portal")]
    assert portal and sorted(portal) == sorted(portal_pages.PERMISSIONS)
    public = [key for key in public if not key[1].startswith("/portal")]
    # The console's sign-in form and its static files are public too (tests/center/test_console*);
    # so are RFC 8058 one-click unsubscribe and the open pixel: the message's token is the
    # credential; and the aggregator's status webhooks, signed with its own secret.
    assert public == [
        ("GET", "/"),
        ("GET", "/health"),
        ("GET", "/static"),
        ("GET", "/v1/communications/opened/{token}"),
        ("GET", "/v1/communications/unsubscribe/{token}"),
        ("GET", "/v1/member/openapi.json"),
        ("POST", "/sign-in"),
        ("POST", "/v1/communications/callbacks/vonage"),
        ("POST", "/v1/communications/unsubscribe/{token}"),
        ("POST", "/v1/enrol"),
        ("POST", "/v1/member/auth/code"),
        ("POST", "/v1/member/auth/refresh"),
        ("POST", "/v1/member/auth/verify"),
    ]
    assert table[("POST", "/v1/ingest")] == "node"
    assert table[("GET", "/v1/master")] == "node"
    assert table[("POST", "/v1/heartbeat")] == "node"
    assert set(requirement_names(table[("GET", "/v1/customers/{card_no}/balance")])) == {
        "node",
        "ledger.read",
    }
    assert table[("GET", "/v1/audit")] == "audit.read"
    assert table[("POST", "/v1/cards/{card_no}/block")] == "cards.write"


def test_the_role_matrix() -> None:
    assert set(ROLES) == {
        "administrator",
        "marketer",
        "loyalty_manager",
        "data_analyst",
        "call_center",
        "sales_director",
        "marketing_director",
        "supplier",
        "supplier_manager",
    }
    # A supplier's person reads nothing of a customer: only its own cabinet.
    assert ROLE_PERMISSIONS["supplier"] == {"suppliers.cabinet"}
    assert ROLE_PERMISSIONS["supplier_manager"] == {"suppliers.admin", "reports.read"}
    assert ROLE_PERMISSIONS["administrator"] == frozenset(PERMISSIONS) - {"node"}
    for role, granted in ROLE_PERMISSIONS.items():
        assert "node" not in granted, role
        assert granted <= set(PERMISSIONS), role
    assert not ROLE_PERMISSIONS["data_analyst"] & WRITES
    assert ROLE_PERMISSIONS["data_analyst"] == READ_PERMISSIONS
    assert ROLE_PERMISSIONS["sales_director"] == READ_PERMISSIONS
    assert ROLE_PERMISSIONS["marketing_director"] == READ_PERMISSIONS | {"promotions.publish"}
    assert ROLE_PERMISSIONS["call_center"] == {
        "customers.read",
        "customers.write",
        "cards.write",
        "ledger.read",
        "coupons.read",
        "consents.write",  # a caller's consent or withdrawal, with the call as evidence
        "certificates.read",  # a customer asking what is left on a gift certificate
    }
    marketer = ROLE_PERMISSIONS["marketer"]
    assert {"promotions.write", "promotions.publish", "coupons.write", "segments.write"} <= marketer
    assert not marketer & {"cards.write", "customers.write", "ledger.adjust", "users.admin"}
    manager = ROLE_PERMISSIONS["loyalty_manager"]
    assert {"cards.write", "ledger.adjust", "audit.read", "coupons.write"} <= manager
    assert {"certificates.read", "certificates.write"} <= manager
    assert not manager & {"promotions.write", "promotions.publish", "users.admin"}
    assert allows(frozenset({"ledger.read"}), ("node", "ledger.read"))
    assert not allows(frozenset({"reports.read"}), "node")


# -- the matrix over HTTP -------------------------------------------------------------------------


@pytest.fixture
def sqlite_storage(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = SqliteStorage(tmp_path / "perm.db")
    storage.migrate()
    storage.feed.upsert_master(master_tables())
    yield storage
    storage.close()


@pytest.fixture
async def client(config: Config, sqlite_storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(config, sqlite_storage, clock=lambda: T0))) as c:
        yield c


def concrete(path: str) -> str:
    """A canonical route path with every {placeholder} filled in."""
    return re.sub(r"\{[^}]+\}", "x1", path)


def sweep(app: web.Application) -> list[tuple[str, str, Any]]:
    return sorted(
        (method, path, requirement)
        for (method, path), requirement in route_permissions(app).items()
        # Member routes take no staff or node credentials at all (401, not a missing
        # permission): tests/center/test_center_members_*.py.
        if requirement not in (PUBLIC, AUTHENTICATED, MEMBER)
    )


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_is_refused_every_route_it_lacks_the_permission_for(
    role: str, client: TestClient[Any, Any], sqlite_storage: Storage
) -> None:
    api = StaffApi(client, staff_token(sqlite_storage, role))
    granted = ROLE_PERMISSIONS[role]
    refused = allowed = 0
    for method, path, requirement in sweep(client.app):
        status, body = await api.call(method, concrete(path))
        detail = body.get("detail", "") if isinstance(body, dict) else ""
        if allows(granted, requirement):
            allowed += 1
            assert status not in (401, 403) or not detail.startswith("permission:"), (
                method,
                path,
                body,
            )
        else:
            refused += 1
            assert status == 403, (role, method, path, body)
            assert detail.startswith("permission:") and repr(role) in detail, body
    assert (
        refused > 0
        if role != "administrator"
        else refused == sum(1 for *_, r in sweep(client.app) if requirement_names(r) == ("node",))
    )
    assert allowed > 0


async def test_representative_refusals_and_grants(
    client: TestClient[Any, Any], sqlite_storage: Storage
) -> None:
    def api(role: str) -> StaffApi:
        return StaffApi(client, staff_token(sqlite_storage, role))

    status, body = await api("marketer").call("POST", f"/v1/cards/{CARD}/block", {"reason": "x"})
    assert status == 403 and "needs cards.write" in body["detail"]
    status, body = await api("call_center").call("POST", f"/v1/cards/{CARD}/block", {"reason": "x"})
    assert status == 200 and body["status"] == "blocked"
    status, body = await api("call_center").call(
        "GET", "/v1/audit", query={"kind": "card", "id": CARD}
    )
    assert status == 403 and "needs audit.read" in body["detail"]
    status, body = await api("data_analyst").call("GET", f"/v1/customers/{CARD}/balance")
    assert status == 200 and body["card_no"] == CARD
    status, body = await api("data_analyst").call("POST", "/v1/customers", {"last_name": "X"})
    assert status == 403 and "needs customers.write" in body["detail"]
    status, body = await api("sales_director").call(
        "GET", "/v1/reconciliation", query={"store_id": "367"}
    )
    assert status == 200 and "registers" in body
    status, body = await api("administrator").call("POST", "/v1/ingest")
    assert status == 403 and "needs node" in body["detail"]


# -- store nodes ----------------------------------------------------------------------------------


async def test_a_signed_node_may_call_node_routes_only(
    client: TestClient[Any, Any], sqlite_storage: Storage
) -> None:
    token = issue_token(sqlite_storage, "367", T0, 24)
    node = await (await client.post("/v1/enrol", json={"token": token})).json()
    checked = 0
    for method, path, requirement in sweep(client.app):
        if "node" in requirement_names(requirement):
            continue
        url = concrete(path)
        headers = sign_headers(
            node["node_id"], node["secret"], method=method, path=url, query=canonical_query({}),
            body=b"", now_s=T0.timestamp(),
        )  # fmt: skip
        response = await client.request(method, url, headers=headers)
        body = await response.json()
        assert response.status == 403, (method, path, body)
        assert body["detail"].startswith(f"permission: {method} {path} needs"), body
        assert node["node_id"] in body["detail"]
        checked += 1
    assert checked > 5
    url = f"/v1/customers/{CARD}/balance"
    headers = sign_headers(
        node["node_id"], node["secret"], method="GET", path=url, query=canonical_query({}),
        body=b"", now_s=T0.timestamp(),
    )  # fmt: skip
    response = await client.get(url, headers=headers)
    assert response.status == 200, await response.text()


async def test_human_routes_need_a_token_even_when_signatures_are_optional(
    tmp_path: Path, sqlite_storage: Storage
) -> None:
    config = load_config(write_config(tmp_path, signatures=False))
    async with TestClient(TestServer(create_app(config, sqlite_storage, clock=lambda: T0))) as c:
        for method, path, requirement in sweep(c.app):
            response = await c.request(method, concrete(path))
            body = await response.json()
            if "node" in requirement_names(requirement):
                assert response.status != 401, (method, path, body)  # unsigned node calls pass
            else:
                assert response.status == 401, (method, path, body)
                assert body["error"] == "unauthorized"


async def test_a_route_without_a_permission_is_refused(
    config: Config, sqlite_storage: Storage
) -> None:
    app = create_app(config, sqlite_storage, clock=lambda: T0)

    async def secret(request: web.Request) -> web.Response:
        return web.json_response({"leaked": True})

    app.router.add_get("/v1/secret", secret)
    async with TestClient(TestServer(app)) as client:
        api = StaffApi(client, staff_token(sqlite_storage, "administrator"))
        status, body = await api.call("GET", "/v1/secret")
    assert status == 403 and body == {
        "error": "forbidden",
        "detail": "path: route has no permission: GET /v1/secret is refused",
    }
