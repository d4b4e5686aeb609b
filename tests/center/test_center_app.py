"""The Center's HTTP API through a real aiohttp server, on both storage backends."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import LedgerEntry, Storage
from center.web.app import create_app
from center.web.request import MAX_BODY_BYTES
from sync_protocol import (
    CONTENT_TYPE,
    Ack,
    Heartbeat,
    MasterDelta,
    MasterSnapshot,
    SaleBatch,
    decode,
    encode,
    encode_sale,
    encode_sale_batch,
)
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config

MSGPACK = {"Content-Type": CONTENT_TYPE}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(config, storage))) as client:
        yield client


def batch(*sales: Any) -> bytes:
    return encode(SaleBatch(sales=tuple(sales)), sender="store-367")


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error", "detail"}
    return dict(body)


async def test_health(client: TestClient[Any, Any], storage: Storage) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {
        "status": "ok",
        "storage": storage.backend,
        "sales": 0,
        "quarantined": 0,
        "master_version": 0,
    }


async def test_ingest_acks_after_commit_and_is_idempotent(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    sales = [make_sale(1), make_sale(2)]
    response = await client.post("/v1/ingest", data=batch(*sales), headers=MSGPACK)
    assert response.status == 200
    assert response.content_type == CONTENT_TYPE
    envelope = decode(await response.read(), expect=Ack)
    assert envelope.sender == "center-test"
    assert envelope.message == Ack(accepted=(sales[0].sale_id, sales[1].sale_id))
    assert storage.counts().sales == 2  # visible as soon as the ack is out

    again = await client.post("/v1/ingest", data=batch(*sales), headers=MSGPACK)
    ack = decode(await again.read(), expect=Ack).message
    assert isinstance(ack, Ack)
    assert ack.accepted == () and set(ack.duplicates) == {s.sale_id for s in sales}
    health = await (await client.get("/health")).json()
    assert health["sales"] == 2


async def test_ingest_conflict_is_rejected_in_the_ack(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    first = make_sale(3)
    await client.post("/v1/ingest", data=batch(first), headers=MSGPACK)
    clash = make_sale(3)
    response = await client.post("/v1/ingest", data=batch(clash), headers=MSGPACK)
    ack = decode(await response.read(), expect=Ack).message
    assert isinstance(ack, Ack)
    assert [r.sale_id for r in ack.rejected] == [clash.sale_id]
    assert "seq 3" in ack.rejected[0].reason
    health = await (await client.get("/health")).json()
    assert (health["sales"], health["quarantined"]) == (1, 1)


async def test_ingest_garbage_is_400_and_writes_nothing(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    response = await client.post("/v1/ingest", data=b"\xc1\xff garbage", headers=MSGPACK)
    body = await error_of(response, 400)
    assert body["error"] == "malformed_message"
    assert body["detail"]
    assert storage.counts().sales == 0


async def test_ingest_wrong_field_type_names_the_field(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    raw = msgpack.unpackb(batch(make_sale(1), make_sale(2)), timestamp=3)
    raw["body"]["sales"][1]["seq"] = "two"
    data = msgpack.packb(raw, use_bin_type=True, datetime=True)
    response = await client.post("/v1/ingest", data=data, headers=MSGPACK)
    body = await error_of(response, 400)
    assert "body.sales[1].seq" in body["detail"]
    assert storage.counts().sales == 0  # the good first sale is not written either


async def test_ingest_wrong_message_type(client: TestClient[Any, Any]) -> None:
    beat = encode(Heartbeat(node_id="s", role="store", store_id="367", sent_at=T0), sender="s")
    body = await error_of(await client.post("/v1/ingest", data=beat, headers=MSGPACK), 400)
    assert body["error"] == "unexpected_message_type"
    assert "heartbeat" in body["detail"]


async def test_ingest_wrong_content_type_is_415(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    response = await client.post(
        "/v1/ingest", data=batch(make_sale(1)), headers={"Content-Type": "application/json"}
    )
    body = await error_of(response, 415)
    assert body["error"] == "unsupported_media_type"
    assert body["detail"].startswith("content-type:")
    assert storage.counts().sales == 0


async def test_ingest_oversize_is_413(client: TestClient[Any, Any], storage: Storage) -> None:
    data = io.BytesIO(b"\x00" * (MAX_BODY_BYTES + 1024))
    body = await error_of(await client.post("/v1/ingest", data=data, headers=MSGPACK), 413)
    assert body["error"] == "too_large"
    assert "body" in body["detail"]
    assert storage.counts().sales == 0


async def test_master_snapshot_and_since(client: TestClient[Any, Any], storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    storage.ledger.add_ledger_entries(
        [LedgerEntry(CARD, "bonus", "welcome", 1000, "welcome", f"welcome:{CARD}", T0)]
    )
    response = await client.get("/v1/master", params={"store_id": "367"})
    assert response.status == 200 and response.content_type == CONTENT_TYPE
    snapshot = decode(await response.read(), expect=MasterSnapshot).message
    assert isinstance(snapshot, MasterSnapshot)
    # The feed ticks the version when the ledger moved (center/feed/store.py).
    assert snapshot.version >= 1 and snapshot.checksum
    assert [p["product_id"] for p in snapshot.tables["products"]] == ["1000", "1002"]
    # A card with no sale at the store is outside its scope (tests/center/test_center_feed.py).
    assert "cards" not in snapshot.tables or not snapshot.tables["cards"]
    since = str(snapshot.version)
    current = await client.get("/v1/master", params={"store_id": "367", "since": since})
    same = decode(await current.read(), expect=MasterDelta).message
    assert same == MasterDelta(
        from_version=snapshot.version, to_version=snapshot.version, checksum=snapshot.checksum
    )


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({}, 400, "store_id"),
        ({"store_id": "367", "since": "abc"}, 400, "since"),
        ({"store_id": "367", "since": "-1"}, 400, "since"),
        ({"store_id": "bad id!"}, 400, "store_id"),
        ({"store_id": "999"}, 404, "store_id"),
    ],
)
async def test_master_bad_query(
    client: TestClient[Any, Any], storage: Storage, params: dict[str, str], status: int, field: str
) -> None:
    storage.feed.upsert_master(master_tables())
    body = await error_of(await client.get("/v1/master", params=params), status)
    assert body["detail"].startswith(f"{field}:")


async def test_heartbeat(client: TestClient[Any, Any], storage: Storage) -> None:
    beat = Heartbeat(
        node_id="store-367",
        role="store",
        store_id="367",
        sent_at=datetime.now(UTC),
        queue_depth=4,
        devices={"printer": "online"},
    )
    response = await client.post(
        "/v1/heartbeat", data=encode(beat, sender="store-367"), headers=MSGPACK
    )
    assert response.status == 200
    assert await response.json() == {"ok": True}
    from center.storage.sql import SqlStorage

    assert isinstance(storage, SqlStorage)
    assert [h["queue_depth"] for h in storage.nodes.heartbeats()] == [4]


async def test_nodes_health_shows_a_store_nodes_alerts(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    from tests.center.staff import StaffApi, staff_token

    alert = "store_db_recovery: store.db was created at this start; waiting for 367-1"
    beat = Heartbeat(
        node_id="store-367",
        role="store",
        store_id="367",
        sent_at=datetime.now(UTC),
        devices={"alert:store_db_recovery": alert, "register:367-1": "2024-05-17T09:30:00"},
    )
    response = await client.post(
        "/v1/heartbeat", data=encode(beat, sender="store-367"), headers=MSGPACK
    )
    assert response.status == 200
    status, answer = await StaffApi(client, staff_token(storage, "administrator")).call(
        "GET", "/v1/nodes/health"
    )
    assert status == 200, answer
    (node,) = answer["nodes"]
    assert node["alerts"] == [alert]
    assert node["devices"] == {"register:367-1": "2024-05-17T09:30:00"}
    assert (node["node_id"], node["role"], node["store_id"]) == ("store-367", "store", "367")
    # A store node reads no other node's health.
    await error_of(await client.get("/v1/nodes/health"), 401)


async def test_heartbeat_bad_input(client: TestClient[Any, Any], storage: Storage) -> None:
    raw = msgpack.unpackb(
        encode(Heartbeat(node_id="n", role="store", store_id="367", sent_at=T0), sender="n"),
        timestamp=3,
    )
    raw["body"]["role"] = "toaster"
    data = msgpack.packb(raw, use_bin_type=True, datetime=True)
    body = await error_of(await client.post("/v1/heartbeat", data=data, headers=MSGPACK), 400)
    assert "body.role" in body["detail"]
    text = await client.post("/v1/heartbeat", data=b"{}", headers={"Content-Type": "text/plain"})
    await error_of(text, 415)
    empty = Heartbeat(node_id="n", role="store", store_id="", sent_at=T0)
    response = await client.post("/v1/heartbeat", data=encode(empty, sender="n"), headers=MSGPACK)
    body = await error_of(response, 422)
    assert body["detail"].startswith("body.store_id:")
    from center.storage.sql import SqlStorage

    assert isinstance(storage, SqlStorage) and storage.nodes.heartbeats() == []


async def test_reconciliation(client: TestClient[Any, Any], storage: Storage) -> None:
    storage.sales.ingest([make_sale(s, amounts=(100,)) for s in (1, 2, 5)], T0)
    storage.sales.ingest([make_sale(2, register_id="367-2", amounts=(40,))], T0)
    response = await client.get("/v1/reconciliation", params={"store_id": "367"})
    assert response.status == 200
    assert await response.json() == {
        "registers": [
            {
                "store_id": "367",
                "register_id": "367-1",
                "receipts": 3,
                "lines": 3,
                "total_minor": 300,
                "discount_minor": 0,
                "min_seq": 1,
                "max_seq": 5,
                "gaps": [[3, 4]],
                "chain_breaks": [],
            },
            {
                "store_id": "367",
                "register_id": "367-2",
                "receipts": 1,
                "lines": 1,
                "total_minor": 40,
                "discount_minor": 0,
                "min_seq": 2,
                "max_seq": 2,
                "gaps": [[1, 1]],
                "chain_breaks": [],
            },
        ]
    }
    one = await client.get("/v1/reconciliation", params={"store_id": "367", "register_id": "367-2"})
    assert [r["register_id"] for r in (await one.json())["registers"]] == ["367-2"]
    body = await error_of(await client.get("/v1/reconciliation"), 400)
    assert body["detail"].startswith("store_id:")


async def test_balance(client: TestClient[Any, Any], storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    storage.sales.ingest([make_sale(1, card_no=CARD, accrue=42)], T0)
    response = await client.get(f"/v1/customers/{CARD}/balance")
    assert response.status == 200
    assert await response.json() == {
        "card_no": CARD,
        "customer_id": "hh-1",
        "wallets": {"bonus": 42},
        "pending": [],
        "burning": [],
        "debt": {"bonus": 0},
    }
    missing = await error_of(await client.get("/v1/customers/2999999999999/balance"), 404)
    assert missing["detail"].startswith("card_no:")
    bad = await error_of(await client.get("/v1/customers/%20%3B/balance"), 400)
    assert bad["detail"].startswith("card_no:")


async def test_unknown_route_and_method_are_json(client: TestClient[Any, Any]) -> None:
    body = await error_of(await client.get("/v1/nope"), 404)
    assert body == {"error": "not_found", "detail": "path: no route for '/v1/nope'"}
    body = await error_of(await client.get("/v1/ingest"), 405)
    assert body["error"] == "method_not_allowed"
    assert body["detail"] == "method: GET not allowed here (use POST)"


async def test_storage_failure_is_503(client: TestClient[Any, Any], storage: Storage) -> None:
    storage.close()
    response = await client.post("/v1/ingest", data=batch(make_sale(1)), headers=MSGPACK)
    body = await error_of(response, 503)
    assert body["error"] == "storage_unavailable"


async def test_app_opens_and_closes_configured_storage(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    async with TestClient(TestServer(create_app(config))) as client:
        response = await client.post("/v1/ingest", data=batch(make_sale(1)), headers=MSGPACK)
        assert response.status == 200
        health = await (await client.get("/health")).json()
        assert health["storage"] == "sqlite" and health["sales"] == 1
    assert config.storage.sqlite_path.exists()
    async with TestClient(TestServer(create_app(config))) as client:
        health = await (await client.get("/health")).json()
        assert health["sales"] == 1


async def test_ingest_stores_the_bytes_it_received_without_encoding_again(
    client: TestClient[Any, Any], storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One sale path: the Center decodes a batch once and keeps each sale's canonical bytes."""
    sales = [make_sale(1, card_no=CARD, accrue=10), make_sale(2)]

    def no_second_encoding(sale: Any) -> bytes:
        raise AssertionError(f"sale {sale.sale_id} encoded again at the Center")

    # As a store node sends them: the stored canonical bytes spliced into the envelope.
    body = encode_sale_batch([encode_sale(s) for s in sales], sender="store-367")
    monkeypatch.setattr("center.ingest.store.encode_sale", no_second_encoding)
    response = await client.post("/v1/ingest", data=body, headers=MSGPACK)
    assert response.status == 200
    ack = decode(await response.read(), expect=Ack).message
    assert isinstance(ack, Ack) and len(ack.accepted) == 2
    for sale in sales:
        assert storage.sales.load_sale(sale.sale_id) == encode_sale(sale)
