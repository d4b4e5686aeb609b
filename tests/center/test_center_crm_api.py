"""Call-center routes called by a staff user: customers, cards, search, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import CARD, T0, master_tables, write_config
from tests.center.staff import StaffApi, staff_token


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


MANAGER = "manager-1"


@pytest.fixture
def api(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "loyalty_manager", username=MANAGER))


async def test_customer_card_lifecycle_over_http(api: StaffApi) -> None:
    status, created = await api.call(
        "POST",
        "/v1/customers",
        {"last_name": "Petrov", "first_name": "Ivan", "phone": "+7 912 000 11 22",
         "email": "ivan@example.com", "attributes": {"city": "Kazan"}},
    )  # fmt: skip
    assert status == 201, created
    customer_id = created["customer_id"]
    assert created["attributes"]["city"] == "Kazan" and created["cards"] == []
    status, card = await api.call(
        "POST", "/v1/cards", {"customer_id": customer_id, "type": "electronic"}
    )
    assert status == 201 and card["status"] == "active"
    card_no = card["card_no"]
    status, blocked = await api.call("POST", f"/v1/cards/{card_no}/block", {"reason": "stolen"})
    assert status == 200 and blocked["status"] == "blocked"
    status, _ = await api.call("POST", f"/v1/cards/{card_no}/unblock")
    assert status == 200
    status, done = await api.call("POST", f"/v1/cards/{card_no}/replace", {})
    assert status == 200 and done["old"]["block_reason"] == "replaced"
    status, view = await api.call("GET", f"/v1/customers/{customer_id}")
    assert status == 200 and len(view["cards"]) == 2 and view["wallets"] == {"bonus": 0}
    status, found = await api.call("GET", "/v1/customers/search", query={"q": "0001122"})
    assert status == 200 and [c["customer_id"] for c in found["customers"]] == [customer_id]
    status, history = await api.call("GET", "/v1/audit", query={"kind": "card", "id": card_no})
    assert status == 200
    assert [c["action"] for c in history["changes"]] == ["issue", "block", "unblock", "replace"]
    assert {c["actor"] for c in history["changes"]} == {MANAGER}
    status, history = await api.call(
        "GET", "/v1/audit", query={"kind": "customer", "id": customer_id}
    )
    assert [c["action"] for c in history["changes"]] == ["create"]


async def test_bad_input_is_refused_naming_the_field(api: StaffApi, storage: Storage) -> None:
    version = storage.feed.master_version()
    cases = [
        ("POST", "/v1/customers", {"first_name": "X"}, None, 400, "body.last_name"),
        ("POST", "/v1/cards", {"customer_id": "hh-1", "type": "plastic"}, None, 400, "body.type"),
        ("POST", "/v1/cards", {"customer_id": "hh-404"}, None, 404, "body.customer_id"),
        ("POST", f"/v1/cards/{CARD}/block", {}, None, 400, "body.reason"),
        ("POST", "/v1/cards/2999999999999/block", {"reason": "x"}, None, 404, "card_no"),
        ("POST", f"/v1/cards/{CARD}/replace", {"new_card_no": CARD}, None, 409, "card_no"),
        ("GET", "/v1/customers/search", None, {"q": "1"}, 400, "q"),
        ("GET", "/v1/customers/hh-404", None, None, 404, "customer_id"),
        ("GET", "/v1/audit", None, {"kind": "promo", "id": "x"}, 422, "kind"),
    ]
    for method, path, body, query, status, field in cases:
        got, answer = await api.call(method, path, body, query)
        assert got == status, (path, answer)
        assert answer["detail"].startswith(f"{field}:"), (path, answer)
    assert storage.feed.master_version() == version
    assert storage.audit.audit_history("card", CARD) == []


async def test_unsigned_call_center_requests_are_refused(client: TestClient[Any, Any]) -> None:
    response = await client.post("/v1/customers", json={"last_name": "X"})
    assert response.status == 401
    response = await client.get("/v1/customers/search", params={"q": "x"})
    assert response.status == 401
