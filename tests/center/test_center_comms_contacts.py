"""The bulk load of contacts and consents: JSON rows and a CSV file, every bad line named,
nothing half-loaded; the customer's own time zone decides quiet hours."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app
from tests.center.center_factories import write_config
from tests.center.comms_factories import NOW, seed
from tests.center.staff import StaffApi, staff_token


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[SqliteStorage]:
    storage = SqliteStorage(tmp_path / "center.db")
    storage.migrate()
    seed(storage)
    yield storage
    storage.close()


@pytest.fixture
async def client(tmp_path: Path, shop: SqliteStorage) -> AsyncIterator[TestClient[Any, Any]]:
    config: Config = load_config(write_config(tmp_path, signatures=True))
    async with TestClient(TestServer(create_app(config, shop, clock=lambda: NOW))) as client:
        yield client


def _attributes(shop: SqliteStorage, customer_id: str) -> dict[str, Any]:
    (raw,) = shop.db.execute(
        "SELECT attributes FROM customers WHERE customer_id = ?", (customer_id,)
    ).fetchone()
    return dict(json.loads(raw))


async def test_json_load_sets_contacts_and_consents_or_names_every_bad_row(
    client: TestClient[Any, Any], shop: SqliteStorage
) -> None:
    manager = StaffApi(client, staff_token(shop, "loyalty_manager"))
    before_c3 = _attributes(shop, "c3")
    status, body = await manager.call(
        "POST",
        "/v1/communications/contacts",
        {
            "rows": [
                {"customer_id": "c3", "email": "vera@new.example", "timezone": "Asia/Tokyo",
                 "consents": {"email": {"advertising": True, "personal_data": True}}},
                {"customer_id": "c1", "phone": "call me"},
                {"customer_id": "nobody", "lang": "de"},
                {"customer_id": "c3"},
            ]
        },
    )  # fmt: skip
    assert status == 422, body
    wheres = [p["where"] for p in body["problems"]]
    assert wheres == ["rows[1].phone", "rows[2].lang", "rows[3].customer_id"]
    assert body["detail"].startswith("rows[1].phone: expected a phone number")
    # Nothing of the good first row was written.
    assert _attributes(shop, "c3") == before_c3
    assert ("email", "advertising") not in shop.communications.current_consents(["c3"]).get(
        "c3", {}
    )
    status, body = await manager.call(
        "POST",
        "/v1/communications/contacts",
        {"rows": [{"customer_id": "c3", "email": "vera@new.example"},
                  {"customer_id": "ghost", "email": "g@example.org"}]},
    )  # fmt: skip
    assert status == 422 and [p["where"] for p in body["problems"]] == ["rows[1].customer_id"]
    assert _attributes(shop, "c3") == before_c3
    version = shop.versions.current()

    status, body = await manager.call(
        "POST",
        "/v1/communications/contacts",
        {
            "rows": [
                {"customer_id": "c3", "email": "vera@new.example", "timezone": "Asia/Tokyo",
                 "consents": {"email": {"advertising": True, "personal_data": True}}},
                {"customer_id": "c4", "email": ""},
            ],
            "source": "crm export 2026-12",
        },
    )  # fmt: skip
    assert status == 200, body
    assert body == {"customers": 2, "changed": 2, "consents": 2}
    assert _attributes(shop, "c3")["email"] == "vera@new.example"
    assert "email" not in _attributes(shop, "c4"), "an empty value clears the attribute"
    assert shop.communications.current_consents(["c3"])["c3"][("email", "advertising")] is True
    history = shop.communications.consent_history("c3")
    assert {h["source"] for h in history} == {"crm export 2026-12"}
    # Quiet hours follow the customer's own zone: 16:00 UTC is 01:00 in Tokyo.
    assert shop.communications.contacts(["c3"])["c3"]["zone"] == "Asia/Tokyo"
    # Search finds the customer by the new address.
    status, found = await manager.call(
        "GET", "/v1/customers/search", query={"q": "vera@new.example"}
    )
    assert status == 200 and [c["customer_id"] for c in found["customers"]] == ["c3"]
    assert shop.versions.current() > version, "store nodes receive the new contacts"
    marketer = StaffApi(client, staff_token(shop, "marketer"))
    status, _ = await marketer.call(
        "POST", "/v1/communications/contacts", {"rows": [{"customer_id": "c3"}]}
    )
    assert status == 403, "a marketer does not edit customers' contacts"


async def test_csv_load_names_lines_and_loads_all_or_nothing(
    client: TestClient[Any, Any], shop: SqliteStorage
) -> None:
    token = staff_token(shop, "call_center")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    bad = (
        "customer_id,email,phone,sms_advertising,sms_personal_data\n"
        "c3,vera@csv.example,79160000003,yes,yes\n"
        "c1,anna@csv.example,+7 916 123-45-67,maybe,yes\n"
        "c2,broken,79990000000,yes,yes\n"
    )
    answer = await client.post(
        "/v1/communications/contacts", data=bad.encode(), headers=headers, params={"source": "x"}
    )
    body = await answer.json()
    assert answer.status == 422
    assert [p["where"] for p in body["problems"]] == ["line 3.sms_advertising", "line 4.email"]
    assert _attributes(shop, "c3")["email"] == "vera@example.org"
    good = bad.replace("maybe", "no").replace("broken", "boris@csv.example")
    answer = await client.post(
        "/v1/communications/contacts",
        data=good.encode(),
        headers=headers,
        params={"source": "signup-forms.csv"},
    )
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["consents"] == 6
    consents = shop.communications.current_consents(["c1", "c3"])
    assert consents["c3"][("sms", "advertising")] is True
    assert consents["c1"][("sms", "advertising")] is False, "a 'no' withdraws"
    assert _attributes(shop, "c2")["email"] == "boris@csv.example"
    answer = await client.post(
        "/v1/communications/contacts",
        data=b"id,email\nc1,a@b.example\n",
        headers=headers,
    )
    assert answer.status == 400 and "customer_id" in (await answer.json())["detail"]
