"""Store-node enrolment and request signatures at the Center, on both storage backends."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.access.nodes import NonceCache, issue_token, token_hash
from center.cli import main
from center.config import Config, load_config
from center.storage import Storage, open_storage
from center.web.app import create_app
from sync_protocol import (
    CONTENT_TYPE,
    Ack,
    Heartbeat,
    MasterSnapshot,
    SaleBatch,
    canonical_query,
    decode,
    encode,
    sign_headers,
)
from tests.center.center_factories import T0, make_sale, master_tables, write_config


class Clock:
    """A settable clock for the Center (the window and token expiry are checked against it)."""

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
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=clock))) as client:
        yield client


async def enrol(client: TestClient[Any, Any], storage: Storage, store_id: str) -> dict[str, str]:
    token = issue_token(storage, store_id, T0, 24)
    response = await client.post("/v1/enrol", json={"token": token, "store_id": store_id})
    assert response.status == 200, await response.text()
    return dict(await response.json())


def signed(
    node: dict[str, str],
    method: str,
    path: str,
    body: bytes = b"",
    query: dict[str, str] | None = None,
    *,
    at: Any = T0,
    nonce: str | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    headers = sign_headers(
        node["node_id"],
        secret or node["secret"],
        method=method,
        path=path,
        query=canonical_query(query or {}),
        body=body,
        now_s=at.timestamp(),
        nonce=nonce,
    )
    if method == "POST":
        headers["Content-Type"] = CONTENT_TYPE
    return headers


def sales_body(*sales: Any) -> bytes:
    return encode(SaleBatch(sales=tuple(sales)), sender="store-367")


async def refusal(response: Any, status: int, kind: str) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"] == kind, body
    return str(body["detail"])


async def test_signed_ingest_heartbeat_and_master_of_own_store_pass(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    node = await enrol(client, storage, "367")
    body = sales_body(make_sale(1))
    response = await client.post(
        "/v1/ingest", data=io.BytesIO(body), headers=signed(node, "POST", "/v1/ingest", body)
    )
    assert response.status == 200, await response.text()
    ack = decode(await response.read(), expect=Ack).message
    assert isinstance(ack, Ack) and len(ack.accepted) == 1

    beat = encode(
        Heartbeat(node_id="store-367", role="store", store_id="367", sent_at=T0), sender="s"
    )
    response = await client.post(
        "/v1/heartbeat", data=beat, headers=signed(node, "POST", "/v1/heartbeat", beat)
    )
    assert response.status == 200, await response.text()

    query = {"store_id": "367", "since": "0"}
    response = await client.get(
        "/v1/master", params=query, headers=signed(node, "GET", "/v1/master", query=query)
    )
    assert response.status == 200, await response.text()
    snapshot = decode(await response.read(), expect=MasterSnapshot).message
    assert isinstance(snapshot, MasterSnapshot) and snapshot.version >= 1


async def test_sales_of_another_store_are_forbidden_and_nothing_is_written(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    node = await enrol(client, storage, "367")
    body = sales_body(make_sale(1), make_sale(2, store_id="406", register_id="406-1"))
    response = await client.post(
        "/v1/ingest", data=io.BytesIO(body), headers=signed(node, "POST", "/v1/ingest", body)
    )
    detail = await refusal(response, 403, "forbidden")
    assert "'406'" in detail
    assert storage.counts().sales == 0


async def test_heartbeat_and_master_of_another_store_are_forbidden(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    node = await enrol(client, storage, "367")
    beat = encode(Heartbeat(node_id="x", role="store", store_id="406", sent_at=T0), sender="s")
    response = await client.post(
        "/v1/heartbeat", data=beat, headers=signed(node, "POST", "/v1/heartbeat", beat)
    )
    await refusal(response, 403, "forbidden")
    query = {"store_id": "406"}
    response = await client.get(
        "/v1/master", params=query, headers=signed(node, "GET", "/v1/master", query=query)
    )
    await refusal(response, 403, "forbidden")


async def test_replayed_request_is_refused(client: TestClient[Any, Any], storage: Storage) -> None:
    node = await enrol(client, storage, "367")
    body = sales_body(make_sale(1))
    headers = signed(node, "POST", "/v1/ingest", body)
    first = await client.post("/v1/ingest", data=body, headers=headers)
    assert first.status == 200
    again = await client.post("/v1/ingest", data=body, headers=headers)
    assert "replay" in await refusal(again, 401, "unauthorized")


@pytest.mark.parametrize("skew_s", [-301, 301])
async def test_stale_or_future_timestamp_is_refused(
    client: TestClient[Any, Any], storage: Storage, skew_s: int
) -> None:
    node = await enrol(client, storage, "367")
    body = sales_body(make_sale(1))
    headers = signed(node, "POST", "/v1/ingest", body, at=T0 + timedelta(seconds=skew_s))
    response = await client.post("/v1/ingest", data=body, headers=headers)
    assert "clock" in await refusal(response, 401, "unauthorized")
    assert storage.counts().sales == 0


async def test_bad_signature_and_tampered_body_are_refused(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    node = await enrol(client, storage, "367")
    body = sales_body(make_sale(1))
    wrong_key = signed(node, "POST", "/v1/ingest", body, secret="not-the-secret")
    response = await client.post("/v1/ingest", data=body, headers=wrong_key)
    assert "does not match" in await refusal(response, 401, "unauthorized")
    tampered = signed(node, "POST", "/v1/ingest", body)
    response = await client.post("/v1/ingest", data=sales_body(make_sale(2)), headers=tampered)
    await refusal(response, 401, "unauthorized")
    query = {"store_id": "367"}
    other_query = signed(node, "GET", "/v1/master", query={"store_id": "406"})
    response = await client.get("/v1/master", params=query, headers=other_query)
    await refusal(response, 401, "unauthorized")
    assert storage.counts().sales == 0


async def test_missing_credentials_are_refused_on_every_node_route(
    client: TestClient[Any, Any],
) -> None:
    body = sales_body(make_sale(1))
    for method, path, data in (
        ("POST", "/v1/ingest", body),
        ("POST", "/v1/heartbeat", body),
        ("GET", "/v1/master?store_id=367", None),
        ("GET", "/v1/reconciliation?store_id=367", None),
        ("GET", "/v1/customers/2900000000013/balance", None),
    ):
        response = await client.request(
            method, path, data=data, headers={"Content-Type": CONTENT_TYPE}
        )
        assert "not signed" in await refusal(response, 401, "unauthorized"), path
    health = await client.get("/health")
    assert health.status == 200


async def test_rogue_node_id_is_refused(client: TestClient[Any, Any]) -> None:
    rogue = {"node_id": "node-0000000000000000", "secret": "guessed"}
    body = sales_body(make_sale(1))
    response = await client.post(
        "/v1/ingest", data=body, headers=signed(rogue, "POST", "/v1/ingest", body)
    )
    assert "unknown node" in await refusal(response, 401, "unauthorized")


async def test_partial_signature_headers_are_refused(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    node = await enrol(client, storage, "367")
    headers = signed(node, "GET", "/v1/master", query={"store_id": "367"})
    del headers["X-Loyalty-Nonce"]
    response = await client.get("/v1/master", params={"store_id": "367"}, headers=headers)
    assert "X-Loyalty-Nonce" in await refusal(response, 401, "unauthorized")


async def test_a_token_enrols_once(client: TestClient[Any, Any], storage: Storage) -> None:
    token = issue_token(storage, "367", T0, 24)
    first = await client.post("/v1/enrol", json={"token": token})
    assert first.status == 200
    node = await first.json()
    assert node["store_id"] == "367" and len(node["secret"]) >= 40
    again = await client.post("/v1/enrol", json={"token": token})
    await refusal(again, 403, "token_used")


async def test_an_expired_token_is_refused(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    token = issue_token(storage, "367", T0, 1)
    clock.now = T0 + timedelta(hours=1, seconds=1)
    response = await client.post("/v1/enrol", json={"token": token})
    assert "expired" in await refusal(response, 403, "token_expired")


async def test_an_unknown_token_and_a_token_of_another_store_are_refused(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    response = await client.post("/v1/enrol", json={"token": "lt1_made-up"})
    await refusal(response, 401, "invalid_token")
    token = issue_token(storage, "406", T0, 24)
    response = await client.post("/v1/enrol", json={"token": token, "store_id": "367"})
    await refusal(response, 403, "forbidden")
    response = await client.post("/v1/enrol", json={"token": token})
    await refusal(response, 403, "token_used")


async def test_enrol_bodies_are_bounded_and_checked(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/v1/enrol", data=b"{" + b" " * 5000 + b"}", headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    response = await client.post(
        "/v1/enrol", data=b"not json", headers={"Content-Type": "application/json"}
    )
    await refusal(response, 400, "malformed")
    response = await client.post("/v1/enrol", data=b"x", headers={"Content-Type": "text/plain"})
    assert response.status == 415


async def test_tokens_are_stored_hashed(storage: Storage) -> None:
    token = issue_token(storage, "367", T0, 24)
    status, store_id = storage.nodes.redeem_enrolment_token(token, "n1", "s", T0)
    assert status == "unknown" and store_id is None  # the raw token is not a key
    assert storage.nodes.redeem_enrolment_token(token_hash(token), "n1", "s", T0) == (
        "enrolled",
        "367",
    )
    assert storage.nodes.node_credential("n1") == ("367", "s")


def test_nonce_cache_forgets_after_twice_the_window() -> None:
    cache = NonceCache(window_s=300)
    assert cache.add("n", "a" * 16, 1000.0)
    assert not cache.add("n", "a" * 16, 1100.0)
    assert cache.add("other", "a" * 16, 1100.0)
    assert cache.add("n", "a" * 16, 1000.0 + 601)


async def test_unsigned_requests_pass_when_signatures_are_not_required(
    tmp_path: Path, storage: Storage
) -> None:
    config = load_config(write_config(tmp_path, signatures=False))
    async with TestClient(TestServer(create_app(config, storage))) as client:
        body = sales_body(make_sale(1))
        response = await client.post(
            "/v1/ingest", data=body, headers={"Content-Type": CONTENT_TYPE}
        )
        assert response.status == 200
        # A signed request is still verified and bound to its store.
        now = datetime.fromtimestamp(time.time(), UTC)
        token = issue_token(storage, "406", now, 1)
        node = await (await client.post("/v1/enrol", json={"token": token})).json()
        body = sales_body(make_sale(2))
        response = await client.post(
            "/v1/ingest", data=body, headers=signed(node, "POST", "/v1/ingest", body, at=now)
        )
        await refusal(response, 403, "forbidden")


def test_enrol_store_command_prints_a_working_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    assert main(["enrol-store", "--config", str(path), "--store-id", "367", "--ttl-h", "2"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("lt1_")
    storage = open_storage(load_config(path).storage)
    try:
        status, store_id = storage.nodes.redeem_enrolment_token(
            token_hash(token), "n", "s", datetime.now(UTC)
        )
    finally:
        storage.close()
    assert (status, store_id) == ("enrolled", "367")
    assert main(["enrol-store", "--config", str(path), "--store-id", "367", "--ttl-h", "0"]) == 2


def test_security_and_tls_config_are_validated(tmp_path: Path) -> None:
    from center.errors import ConfigError

    assert load_config(write_config(tmp_path, signatures=True)).security.require_signatures
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[center]\ndata_dir = "data"\n[security]\nrequire_signatures = "yes"\n'
        '[tls]\ncert_file = "missing.pem"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    text = "\n".join(caught.value.problems)
    assert "security.require_signatures: expected true or false" in text
    assert "tls.cert_file:" in text and "not a readable file" in text
    assert "set both cert_file and key_file" in text
