"""Register enrolment and request signatures at the store node (register -> store node hop)."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest

from store_node.app import AUTH_KEY
from store_node.auth import NonceCache
from store_node.cli import main
from sync_protocol import CONTENT_TYPE, canonical_query, sign_headers
from tests.store_node.store_fakes import (
    T0,
    Clock,
    RunningNode,
    batch_body,
    heartbeat_body,
    make_config,
    make_sale,
    running_node,
)


def signed(
    node: dict[str, str],
    method: str,
    path: str,
    body: bytes = b"",
    query: dict[str, str] | None = None,
    *,
    at: Any = T0,
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
    )
    if method == "POST":
        headers["Content-Type"] = CONTENT_TYPE
    return headers


async def post(node: RunningNode, path: str, body: bytes, headers: dict[str, str]) -> Any:
    async with node.session.post(node.url + path, data=io.BytesIO(body), headers=headers) as r:
        return r.status, await r.json() if r.content_type == "application/json" else None


async def enrol(node: RunningNode, register_id: str) -> dict[str, str]:
    token = node.app[AUTH_KEY].issue_token(register_id, T0, 24)
    async with node.session.post(
        node.url + "/v1/enrol", json={"token": token, "register_id": register_id}
    ) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


@pytest.fixture
async def node(tmp_path: Path) -> Any:
    config = make_config(tmp_path, signatures=True)
    async with running_node(config, run_jobs=False, clock=Clock()) as running:
        yield running


async def test_a_signed_register_sells_and_beats_for_itself(node: RunningNode) -> None:
    creds = await enrol(node, "367-1")
    assert creds["store_id"] == "367" and creds["register_id"] == "367-1"
    body = batch_body(make_sale(1))
    status, _ = await post(node, "/v1/sales", body, signed(creds, "POST", "/v1/sales", body))
    assert status == 200
    beat = heartbeat_body()
    status, _ = await post(
        node, "/v1/heartbeat", beat, signed(creds, "POST", "/v1/heartbeat", beat)
    )
    assert status == 200
    summary = await node.get_json("/v1/sales/summary")
    assert summary["registers"][0]["receipts"] == 1


async def test_sales_of_another_register_are_forbidden(node: RunningNode) -> None:
    creds = await enrol(node, "367-2")
    body = batch_body(make_sale(1))  # register 367-1
    status, answer = await post(node, "/v1/sales", body, signed(creds, "POST", "/v1/sales", body))
    assert status == 403 and answer["error"] == "forbidden"
    beat = heartbeat_body()
    status, answer = await post(
        node, "/v1/heartbeat", beat, signed(creds, "POST", "/v1/heartbeat", beat)
    )
    assert status == 403
    assert (await node.get_json("/v1/sales/summary"))["registers"] == []


async def test_unsigned_replayed_stale_forged_and_rogue_requests_are_refused(
    node: RunningNode,
) -> None:
    creds = await enrol(node, "367-1")
    body = batch_body(make_sale(1))
    status, answer = await post(node, "/v1/sales", body, {"Content-Type": CONTENT_TYPE})
    assert status == 401 and "not signed" in answer["detail"]
    stale = signed(creds, "POST", "/v1/sales", body, at=T0 - timedelta(seconds=301))
    status, answer = await post(node, "/v1/sales", body, stale)
    assert status == 401 and "clock" in answer["detail"]
    forged = signed(creds, "POST", "/v1/sales", body, secret="guess")
    status, answer = await post(node, "/v1/sales", body, forged)
    assert status == 401 and "does not match" in answer["detail"]
    rogue = signed({"node_id": "reg-rogue", "secret": "x"}, "POST", "/v1/sales", body)
    status, answer = await post(node, "/v1/sales", body, rogue)
    assert status == 401 and "unknown node" in answer["detail"]
    headers = signed(creds, "POST", "/v1/sales", body)
    assert (await post(node, "/v1/sales", body, headers))[0] == 200
    status, answer = await post(node, "/v1/sales", body, headers)
    assert status == 401 and "replay" in answer["detail"]
    async with node.session.get(node.url + "/v1/master", params={"since": "0"}) as response:
        assert response.status == 401
    assert (await node.get_json("/health"))["store_id"] == "367"


async def test_tokens_are_single_use_and_expire(node: RunningNode, tmp_path: Path) -> None:
    auth = node.app[AUTH_KEY]
    token = auth.issue_token("367-1", T0, 24)
    url = node.url + "/v1/enrol"
    async with node.session.post(url, json={"token": token}) as response:
        assert response.status == 200
    async with node.session.post(url, json={"token": token}) as response:
        assert response.status == 403 and (await response.json())["error"] == "token_used"
    old = auth.issue_token("367-1", T0 - timedelta(hours=2), 1)
    async with node.session.post(url, json={"token": old}) as response:
        assert response.status == 403 and (await response.json())["error"] == "token_expired"
    async with node.session.post(url, json={"token": "lr1_nope"}) as response:
        assert response.status == 401 and (await response.json())["error"] == "invalid_token"
    other = auth.issue_token("367-2", T0, 1)
    async with node.session.post(url, json={"token": other, "register_id": "367-1"}) as response:
        assert response.status == 403 and (await response.json())["error"] == "forbidden"


def test_nonce_cache_remembers_for_twice_the_window() -> None:
    cache = NonceCache(window_s=300)
    assert cache.add("n", "b" * 16, 0.0)
    assert not cache.add("n", "b" * 16, 599.0)
    assert cache.add("n", "b" * 16, 601.0)


def test_enrol_register_command_prints_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "store.toml"
    path.write_text(
        '[store]\nstore_id = "367"\ndata_dir = "data"\nadvertise = false\n'
        '[center]\nurl = "http://127.0.0.1:9"\n'
    )
    assert main(["enrol-register", "--config", str(path), "--register-id", "367-1"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("lr1_")
    assert (tmp_path / "data" / "auth.db").exists()
    capsys.readouterr()
    assert main(["enrol-register", "--config", str(path), "--register-id", "bad id"]) == 2
    assert "--register-id: expected an id of 1..64 letters" in capsys.readouterr().err
    assert main(["enrol-register", "--config", str(path), "--register-id", "367-1\n"]) == 2


def test_security_table_is_validated(tmp_path: Path) -> None:
    from store_node.config import parse_config
    from store_node.errors import ConfigError

    doc = {
        "store": {"store_id": "367", "data_dir": "d", "advertise": False},
        "center": {"url": "http://127.0.0.1:9"},
        "security": {"require_signatures": 1, "other": True},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, base_dir=tmp_path)
    text = "\n".join(caught.value.problems)
    assert "security.require_signatures: expected true or false" in text
    assert "security.other: unknown key" in text
    del doc["security"]
    assert parse_config(doc, base_dir=tmp_path).security.require_signatures is True


async def test_a_sale_that_does_not_decode_is_forbidden_only_when_it_names_another_register(
    node: RunningNode,
) -> None:
    creds = await enrol(node, "367-1")

    def spoilt(register_id: object) -> bytes:
        raw = msgpack.unpackb(batch_body(make_sale(1), make_sale(2)), timestamp=3)
        raw["body"]["sales"][1].update(card_no="26\x00", register_id=register_id)
        return bytes(msgpack.packb(raw, datetime=True))

    body = spoilt("367-2")
    status, answer = await post(node, "/v1/sales", body, signed(creds, "POST", "/v1/sales", body))
    assert status == 403 and answer["error"] == "forbidden"
    body = spoilt(7)  # unreadable: it came from this register all the same
    status, _ = await post(node, "/v1/sales", body, signed(creds, "POST", "/v1/sales", body))
    assert status == 200
    health = await node.get_json("/health")
    assert [s["register_id"] for s in health["quarantined_sales"]] == [""]
    assert (await node.get_json("/v1/sales/summary"))["registers"][0]["receipts"] == 1
