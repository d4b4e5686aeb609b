"""Adjustment, head-office return and ledger report routes called by staff users."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_returns import make_return

MANAGER = "manager-r"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


@pytest.fixture
def api(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "loyalty_manager", username=MANAGER))


async def test_adjustment_over_http_is_idempotent_and_audited(
    api: StaffApi, storage: Storage
) -> None:
    body = {"amount": 150, "reason": "complaint #42", "idempotency_key": "c42"}
    status, done = await api.call("POST", f"/v1/cards/{CARD}/adjustments", body)
    assert status == 201, done
    assert done["balance"] == {"bonus": 150} and done["actor"] == MANAGER
    status, again = await api.call("POST", f"/v1/cards/{CARD}/adjustments", body)
    assert status == 200 and again["replayed"] is True and again["balance"] == {"bonus": 150}
    status, history = await api.call("GET", "/v1/audit", query={"kind": "card", "id": CARD})
    assert [(c["action"], c["actor"]) for c in history["changes"]] == [("adjust", MANAGER)]
    status, taken = await api.call(
        "POST",
        f"/v1/cards/{CARD}/adjustments",
        {"amount": -200, "reason": "clawback", "idempotency_key": "c43"},
    )
    assert status == 201 and taken["balance"] == {"bonus": -50}
    status, report = await api.call("GET", "/v1/reports/overdrafts")
    assert status == 200
    assert report["total"] == {"bonus": 50}
    assert [(r["card_no"], r["customer_id"], r["debt"]) for r in report["cards"]] == [
        (CARD, "hh-1", 50)
    ]


async def test_bad_adjustments_name_the_field(api: StaffApi, storage: Storage) -> None:
    cases = [
        ({"amount": 5, "idempotency_key": "x"}, 422, "body.reason"),
        ({"amount": 5, "reason": "  ", "idempotency_key": "x"}, 422, "body.reason"),
        ({"amount": "5", "reason": "r", "idempotency_key": "x"}, 400, "body.amount"),
        ({"amount": 0, "reason": "r", "idempotency_key": "x"}, 422, "amount"),
        ({"amount": 5, "reason": "r"}, 400, "body.idempotency_key"),
        ({"amount": 5, "reason": "r", "idempotency_key": "x", "who": 1}, 400, "body.who"),
        (
            {"amount": 5, "reason": "r", "idempotency_key": "x", "expires_at": "2024-05-01"},
            400,
            "body.expires_at",
        ),
    ]
    for body, status, field in cases:
        got, answer = await api.call("POST", f"/v1/cards/{CARD}/adjustments", body)
        assert got == status, (body, answer)
        assert answer["detail"].startswith(f"{field}:"), (body, answer)
    got, answer = await api.call(
        "POST", "/v1/cards/2999/adjustments", {"amount": 5, "reason": "r", "idempotency_key": "y"}
    )
    assert got == 404 and answer["detail"].startswith("card_no:")
    assert storage.audit.audit_history("card", CARD) == []


async def test_head_office_return_reverses_like_a_register_return(
    api: StaffApi, storage: Storage
) -> None:
    original = make_sale(1, card_no=CARD, amounts=(300, 700), accrue=50)
    storage.sales.ingest([original], T0)
    return_id = str(uuid.uuid4())
    body = {
        "sale_id": original.sale_id,
        "return_id": return_id,
        "lines": [{"line_no": 2, "qty_milli": 1000}],
    }
    status, done = await api.call("POST", "/v1/returns", body)
    assert status == 201, done
    assert done["status"] == "applied" and done["refund_minor"] == 700
    balance = storage.ledger.balance(CARD, T0)
    assert balance is not None and balance.wallets["bonus"] == 15
    status, again = await api.call("POST", "/v1/returns", body)
    assert status == 200 and again["replayed"] is True
    balance = storage.ledger.balance(CARD, T0)
    assert balance is not None and balance.wallets["bonus"] == 15
    status, answer = await api.call(
        "POST",
        "/v1/returns",
        {**body, "return_id": str(uuid.uuid4())},
    )
    assert status == 422 and answer["detail"].startswith("body.lines[2].qty_milli:")
    status, answer = await api.call(
        "POST",
        "/v1/returns",
        {**body, "sale_id": str(uuid.uuid4()), "return_id": str(uuid.uuid4())},
    )
    assert status == 404 and answer["detail"].startswith("body.sale_id:")


async def test_returns_exceptions_report(api: StaffApi, storage: Storage) -> None:
    original = make_sale(1, card_no=CARD, accrue=10)
    waiting = make_return(2, original, {1: 1000})
    storage.sales.ingest([waiting], T0)
    status, report = await api.call("GET", "/v1/reports/returns-exceptions")
    assert status == 200
    assert [(r["return_id"], r["status"]) for r in report["returns"]] == [
        (waiting.sale_id, "pending")
    ]


async def test_roles_without_the_permission_are_refused(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    marketer = StaffApi(client, staff_token(storage, "marketer"))
    status, _ = await marketer.call(
        "POST",
        f"/v1/cards/{CARD}/adjustments",
        {"amount": 5, "reason": "r", "idempotency_key": "z"},
    )
    assert status == 403
    call_center = StaffApi(client, staff_token(storage, "call_center"))
    status, _ = await call_center.call("GET", "/v1/reports/returns-exceptions")
    assert status == 403
    status, _ = await call_center.call("GET", "/v1/reports/overdrafts")
    assert status == 200  # ledger.read is enough
    assert storage.audit.audit_history("card", CARD) == []
    response = await client.post(
        f"/v1/cards/{CARD}/adjustments", json={"amount": 5, "reason": "r", "idempotency_key": "z"}
    )
    assert response.status == 401
    response = await client.get("/v1/reports/overdrafts")
    assert response.status == 401
