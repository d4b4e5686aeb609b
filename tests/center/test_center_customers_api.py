"""Customer merge, deactivation, questionnaire and card-view routes called by staff users."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import (
    CARD,
    OTHER_CARD,
    T0,
    make_sale,
    master_tables,
    write_config,
)
from tests.center.staff import StaffApi, staff_token

MANAGER = "manager-c"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    storage.sales.ingest(
        [make_sale(1, card_no=CARD, accrue=30), make_sale(2, card_no=OTHER_CARD, accrue=12)], T0
    )
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


@pytest.fixture
def api(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "loyalty_manager", username=MANAGER))


async def test_merge_questionnaire_and_card_view_over_http(api: StaffApi) -> None:
    status, done = await api.call(
        "POST", "/v1/customers/hh-1/merge", {"merged_id": "hh-2", "reason": "one family"}
    )
    assert status == 200, done
    assert done["cards"] == [OTHER_CARD]
    status, answered = await api.call(
        "POST", "/v1/customers/hh-1/questionnaires/diet", {"answers": {"vegan": False}}
    )
    assert status == 201 and answered["actor"] == MANAGER
    status, view = await api.call("GET", "/v1/customers/hh-1/card-view")
    assert status == 200
    assert sorted(c["card_no"] for c in view["cards"]) == sorted([CARD, OTHER_CARD])
    assert view["wallets"] == {"bonus": 42}
    assert view["questionnaires"]["diet"]["answers"] == {"vegan": False}
    assert {h["amount"] for h in view["history"]} == {30, 12}
    assert [f["category"] for f in view["favourite_categories"]] == ["DAIRY", "PASTRY"]
    status, history = await api.call("GET", "/v1/audit", query={"kind": "customer", "id": "hh-2"})
    assert [(c["action"], c["actor"]) for c in history["changes"]] == [("merged_into", MANAGER)]
    assert history["changes"][0]["after"]["reason"] == "one family"
    status, card = await api.call("POST", f"/v1/cards/{CARD}/deactivate")
    assert status == 200 and card["status"] == "inactive"
    status, gone = await api.call("POST", "/v1/customers/hh-1/deactivate")
    assert status == 200 and gone["cards"] == [OTHER_CARD]


async def test_bad_requests_name_the_field(api: StaffApi, storage: Storage) -> None:
    version = storage.feed.master_version()
    cases = [
        ("POST", "/v1/customers/hh-1/merge", {}, 400, "body.merged_id"),
        ("POST", "/v1/customers/hh-1/merge", {"merged_id": "hh-1"}, 422, "body.merged_id"),
        (
            "POST",
            "/v1/customers/hh-1/merge",
            {"merged_id": "hh-2", "reason": 7},
            400,
            "body.reason",
        ),
        ("POST", "/v1/customers/hh-1/merge", {"merged_id": "hh-9"}, 404, "body.merged_id"),
        ("POST", "/v1/customers/hh-9/merge", {"merged_id": "hh-1"}, 404, "customer_id"),
        ("POST", "/v1/customers/hh-1/questionnaires/q", {"answers": [1]}, 422, "body.answers"),
        ("POST", "/v1/customers/hh-1/questionnaires/q", {}, 400, "body.answers"),
        ("POST", "/v1/cards/2999/deactivate", None, 404, "card_no"),
        ("GET", "/v1/customers/hh-9/card-view", None, 404, "customer_id"),
    ]
    for method, path, body, status, field in cases:
        got, answer = await api.call(method, path, body)
        assert got == status, (path, answer)
        assert answer["detail"].startswith(f"{field}:"), (path, answer)
    assert storage.feed.master_version() == version


async def test_roles_without_the_permission_are_refused(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    analyst = StaffApi(client, staff_token(storage, "data_analyst"))
    status, _ = await analyst.call("POST", "/v1/customers/hh-1/merge", {"merged_id": "hh-2"})
    assert status == 403
    status, _ = await analyst.call("POST", f"/v1/cards/{CARD}/deactivate")
    assert status == 403
    status, view = await analyst.call("GET", "/v1/customers/hh-1/card-view")
    assert status == 200 and view["customer_id"] == "hh-1"
    view_only = storage.customers.customer_view("hh-2", T0)
    assert view_only is not None and [c["card_no"] for c in view_only["cards"]] == [OTHER_CARD]
    response = await client.post("/v1/customers/hh-1/merge", json={"merged_id": "hh-2"})
    assert response.status == 401
    response = await client.get("/v1/customers/hh-1/card-view")
    assert response.status == 401
