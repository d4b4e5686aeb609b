"""Gift certificate routes over HTTP: batches, look-up, block; who may call them; bad input is
a 4xx naming the field with nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import T0, master_tables, write_config
from tests.center.staff import StaffApi, staff_token

BATCH = {
    "batch_id": "gift-500",
    "title": "Gift 500.00",
    "product_id": "GIFT-500",
    "nominal_minor": 50_000,
    "count": 3,
    "valid_days": 180,
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=False))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


async def test_batches_lookup_block_and_who_may(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    manager = StaffApi(client, staff_token(storage, "loyalty_manager"))
    call_center = StaffApi(client, staff_token(storage, "call_center"))
    status, batch = await manager.call("POST", "/v1/certificate-batches", BATCH)
    assert status == 201, batch
    assert batch["states"] == {"issued": 3} and len(batch["certificates"]) == 3
    code = batch["certificates"][0]["code"]
    assert code.startswith("GC-")
    status, again = await manager.call("POST", "/v1/certificate-batches", BATCH)
    assert status == 409 and again["detail"].startswith("body.batch_id:"), again
    status, listed = await call_center.call("GET", "/v1/certificate-batches")
    assert status == 200 and [b["batch_id"] for b in listed["batches"]] == ["gift-500"]
    # The call center reads, but may not block.
    status, _ = await call_center.call("POST", f"/v1/certificates/{code}/block", {"reason": "x"})
    assert status == 403
    status, found = await call_center.call("GET", f"/v1/certificates/{code.lower()}")
    assert status == 200 and found["state"] == "issued"
    status, blocked = await manager.call(
        "POST", f"/v1/certificates/{code}/block", {"reason": "lost by the customer"}
    )
    assert status == 200 and blocked["state"] == "blocked"
    assert blocked["movements"][-1]["kind"] == "block"
    assert storage.audit.audit_history("certificate", code)[-1]["action"] == "block"
    status, missing = await manager.call("GET", "/v1/certificates/GC-000000000000")
    assert status == 404 and missing["detail"].startswith("code:")
    status, bad = await manager.call("GET", "/v1/certificates/%3F%3F")
    assert status == 422 and bad["detail"].startswith("code:")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"count": 0}, "body.count"),
        ({"nominal_minor": 0}, "body.nominal_minor"),
        ({"nominal_minor": 1.5}, "body.nominal_minor"),
        ({"product_id": ""}, "body.product_id"),
        ({"surprise": 1}, "body.surprise"),
    ],
)
async def test_a_bad_batch_names_the_field_and_writes_nothing(
    client: TestClient[Any, Any], storage: Storage, change: dict[str, Any], field: str
) -> None:
    manager = StaffApi(client, staff_token(storage, "loyalty_manager"))
    status, refused = await manager.call("POST", "/v1/certificate-batches", {**BATCH, **change})
    assert 400 <= status < 500 and refused["detail"].startswith(field + ":"), refused
    assert storage.certificates.batches() == []


async def test_hold_refusals_name_the_field(client: TestClient[Any, Any], storage: Storage) -> None:
    manager = StaffApi(client, staff_token(storage, "loyalty_manager"))
    _, batch = await manager.call("POST", "/v1/certificate-batches", BATCH)
    code = batch["certificates"][0]["code"]
    hold = {"store_id": "367", "hold_id": "h1", "amounts": {code: 100}}

    async def node(body: Any) -> tuple[int, Any]:
        # Unsigned node requests are allowed by this config.
        resp = await client.post("/v1/certificate-holds", json=body)
        return resp.status, await resp.json()

    status, refused = await node(hold)
    assert status == 409 and refused["error"] == "certificate_refused", refused
    assert "never sold" in refused["detail"]
    status, refused = await node({**hold, "amounts": {code: -1}})
    assert status == 422 and refused["detail"].startswith(f"body.amounts.{code}:"), refused
    status, refused = await node({**hold, "amounts": {"GC-000000000000": 1}})
    assert status == 404, refused
    assert storage.certificates.certificate(code, T0)["holds"] == []  # type: ignore[index]
