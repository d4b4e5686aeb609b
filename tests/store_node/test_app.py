"""The store node's HTTP API over real HTTP on loopback, with a real fake Center."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from store_node.app import WORKER_KEY
from sync_protocol import Ack, MasterDelta, MasterSnapshot, decode, encode, replica_checksum
from tests.store_node.store_fakes import (
    STORE_ID,
    T0,
    Clock,
    FakeCenter,
    RunningNode,
    batch_body,
    eventually,
    heartbeat_body,
    make_config,
    make_sale,
    running_node,
)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    async with running_node(make_config(tmp_path), run_jobs=False, clock=Clock()) as running:
        yield running


async def _counts(node: RunningNode) -> dict[str, int]:
    return await node.app[WORKER_KEY].run(lambda box: box.counts())


def _error(body: bytes) -> dict[str, Any]:
    answer = json.loads(body)
    assert set(answer) == {"error", "detail"}
    return dict(answer)


# -- POST /v1/sales ------------------------------------------------------------------------


async def test_sales_are_acknowledged_after_commit(node: RunningNode) -> None:
    sales = [make_sale(1), make_sale(2)]
    status, content_type, body = await node.post("/v1/sales", batch_body(*sales))
    assert (status, content_type) == (200, "application/x-msgpack")
    envelope = decode(body, expect=Ack)
    assert envelope.sender == "store-367"
    assert envelope.message == Ack(accepted=(sales[0].sale_id, sales[1].sale_id))
    assert (await _counts(node))["sales"] == 2


async def test_same_batch_twice_is_idempotent(node: RunningNode) -> None:
    sales = [make_sale(1), make_sale(2)]
    await node.send(*sales)
    again = await node.send(*sales)
    assert again == Ack(duplicates=(sales[0].sale_id, sales[1].sale_id))
    assert (await _counts(node))["sales"] == 2


async def test_conflicts_and_foreign_sales_are_rejected_and_quarantined(
    node: RunningNode,
) -> None:
    original = make_sale(1)
    await node.send(original)
    altered = dataclasses.replace(original, promo_version=99)
    reused_seq = make_sale(1)
    foreign = make_sale(2, store_id="406", register_id="406-1")
    ack = await node.send(altered, reused_seq, foreign)
    assert ack.accepted == () and ack.duplicates == ()
    reasons = {r.sale_id: r.reason for r in ack.rejected}
    assert reasons[original.sale_id].startswith("sale_id:")
    assert reasons[reused_seq.sale_id].startswith("seq: register 367-1 seq 1")
    assert reasons[foreign.sale_id].startswith("store_id:")
    assert await _counts(node) == {"sales": 1, "quarantine": 3, "registers": 1, "master": 0}
    health = await node.get_json("/health")
    assert health["quarantined"] == 3


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"\xc1 not msgpack at all", ""),
        (msgpack.packb([1, 2, 3]), "envelope"),
        (
            msgpack.packb({"v": 1, "type": "sale_batch", "sender": "367-1", "body": {}}),
            "sent_at",
        ),
    ],
)
async def test_garbage_is_400_and_writes_nothing(
    node: RunningNode, body: bytes, detail: str
) -> None:
    status, content_type, answer = await node.post("/v1/sales", body)
    assert (status, content_type) == (400, "application/json")
    error = _error(answer)
    assert error["error"] == "malformed"
    assert detail in error["detail"]
    assert await _counts(node) == {"sales": 0, "quarantine": 0, "registers": 0, "master": 0}


async def test_wrongly_typed_field_is_named(node: RunningNode) -> None:
    good, bad = make_sale(1), make_sale(2)
    raw = msgpack.unpackb(batch_body(good, bad), timestamp=3)
    raw["body"]["sales"][1]["seq"] = "2"
    status, _, answer = await node.post("/v1/sales", msgpack.packb(raw, datetime=True))
    assert status == 200  # the sale names its sale_id: refused alone, in the ack
    ack = decode(answer, expect=Ack).message
    assert isinstance(ack, Ack) and ack.accepted == (good.sale_id,)
    [rejection] = ack.rejected
    assert rejection.sale_id == bad.sale_id and "body.sales[1].seq" in rejection.reason
    assert (await _counts(node))["quarantine"] == 1
    raw["body"]["sales"][1]["sale_id"] = 2  # unnamed: the whole batch is refused
    status, _, answer = await node.post("/v1/sales", msgpack.packb(raw, datetime=True))
    assert status == 400
    assert "body.sales[1]" in _error(answer)["detail"]


async def test_wrong_message_type_is_422(node: RunningNode) -> None:
    status, _, answer = await node.post("/v1/sales", heartbeat_body())
    assert status == 422
    error = _error(answer)
    assert error["error"] == "unexpected_type"
    assert error["detail"].startswith("type: expected sale_batch, got 'heartbeat'")


async def test_oversized_body_is_413(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with running_node(config, run_jobs=False, max_body_bytes=2048) as small:
        big = batch_body(*[make_sale(n) for n in range(1, 40)])
        assert len(big) > 2048
        status, _, answer = await small.post("/v1/sales", big)
        assert status == 413
        error = _error(answer)
        assert error["error"] == "too_large" and "body" in error["detail"]
        assert (await _counts(small))["sales"] == 0


async def test_default_body_limit_is_explicit(node: RunningNode) -> None:
    status, _, answer = await node.post("/v1/sales", b"\x00" * (4 * 1024 * 1024 + 1))
    assert status == 413
    assert "4194304" in _error(answer)["detail"]


async def test_wrong_content_type_is_415(node: RunningNode) -> None:
    status, _, answer = await node.post(
        "/v1/sales", batch_body(make_sale(1)), content_type="application/json"
    )
    assert status == 415
    assert _error(answer)["detail"].startswith("Content-Type: expected application/x-msgpack")
    assert (await _counts(node))["sales"] == 0


async def test_unknown_route_and_method_are_json_errors(node: RunningNode) -> None:
    async with node.session.get(node.url + "/v2/nothing") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
    async with node.session.get(node.url + "/v1/sales") as response:
        assert response.status == 405
        assert (await response.json())["error"] == "method_not_allowed"


# -- master data ---------------------------------------------------------------------------


async def test_master_before_any_fetch_is_503(node: RunningNode) -> None:
    answer = await node.get_json("/v1/master?since=0", expect=503)
    assert answer == {
        "error": "unavailable",
        "detail": "no master data yet: the store node has not reached the Center",
    }


async def test_master_since_must_be_a_number(node: RunningNode) -> None:
    answer = await node.get_json("/v1/master?since=abc", expect=400)
    assert answer["detail"] == "since: expected a non-negative integer, got 'abc'"
    assert (await node.get_json("/v1/master?since=-1", expect=400))["error"] == "malformed"


async def test_master_is_served_from_cache_and_empty_when_current(node: RunningNode) -> None:
    snapshot = MasterSnapshot(version=5, tables={"settings": ({"name": "x", "value": "1"},)})
    payload = encode(snapshot, sender="store-367", sent_at=T0)
    await node.app[WORKER_KEY].run(lambda box: box.save_master(5, payload, now=T0))
    async with node.session.get(node.url + "/v1/master?since=0") as response:
        assert response.status == 200
        served = decode(await response.read(), expect=MasterSnapshot).message
    assert isinstance(served, MasterSnapshot) and served.version == 5
    assert served.tables == snapshot.tables and served.checksum == replica_checksum(served.tables)
    async with node.session.get(node.url + "/v1/master?since=5") as response:
        current = decode(await response.read(), expect=MasterDelta).message
    assert current == MasterDelta(from_version=5, to_version=5, checksum=served.checksum)


# -- heartbeat and health ------------------------------------------------------------------


async def test_heartbeat_and_sales_make_the_register_visible_in_health(tmp_path: Path) -> None:
    clock = Clock()
    async with running_node(make_config(tmp_path), run_jobs=False, clock=clock) as node:
        await node.send(make_sale(1), make_sale(2, register_id="367-2"))
        clock.advance(30)
        status, _, body = await node.post("/v1/heartbeat", heartbeat_body())
        assert (status, json.loads(body)) == (200, {"ok": True})
        clock.advance(15)
        health = await node.get_json("/health")
    assert health["store_id"] == STORE_ID
    registers = {r["register_id"]: r for r in health["registers"]}
    assert set(registers) == {"367-1", "367-2"}
    one = registers["367-1"]
    assert one["last_seen_at"] == "2024-05-17T09:30:30+00:00"
    assert (one["queue_depth"], one["last_seq"], one["master_version"]) == (2, 5, 3)
    assert one["devices"] == {"printer": "online", "display": "offline"}
    assert one["sync_lag_s"] == 45.0  # its oldest sale still waiting for the Center
    assert registers["367-2"]["sync_lag_s"] == 45.0
    assert health["pending_to_center"] == 2
    assert health["oldest_pending_at"] == "2024-05-17T09:30:00+00:00"
    assert health["center_lag_s"] == 45.0
    assert health["last_center_ok_at"] is None and health["master_version"] == 0
    assert health["alerts"] == []


async def test_health_alerts_when_sales_waited_longer_than_alert_unsynced_h(
    tmp_path: Path,
) -> None:
    clock = Clock()
    config = make_config(tmp_path, alert_unsynced_h=24)
    async with running_node(config, run_jobs=False, clock=clock) as node:
        await node.send(make_sale(1))
        clock.advance(23.9 * 3600)
        assert (await node.get_json("/health"))["alerts"] == []
        clock.advance(0.2 * 3600)
        health = await node.get_json("/health")
        # Days without the Center: every sale is still held, none was pruned.
        clock.advance(7 * 86400)
        later = await node.get_json("/health")
    (alert,) = health["alerts"]
    assert alert.startswith("center_unsynced: 1 sales") and "24.1 h" in alert
    assert later["pending_to_center"] == 1 and "192.1 h" in later["alerts"][0]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"store_id": "406"}, "body.store_id"), ({"role": "store"}, "body.role")],
)
async def test_heartbeat_from_elsewhere_is_422_and_not_recorded(
    node: RunningNode, overrides: dict[str, str], field: str
) -> None:
    status, _, answer = await node.post("/v1/heartbeat", heartbeat_body(**overrides))
    assert status == 422
    assert _error(answer)["detail"].startswith(field)
    assert (await _counts(node))["registers"] == 0


async def test_heartbeat_with_bad_field_is_400(node: RunningNode) -> None:
    raw = msgpack.unpackb(heartbeat_body(), timestamp=3)
    raw["body"]["queue_depth"] = -1
    status, _, answer = await node.post("/v1/heartbeat", msgpack.packb(raw, datetime=True))
    assert status == 400
    assert "body.queue_depth" in _error(answer)["detail"]


async def test_sales_summary_for_reconciliation(node: RunningNode) -> None:
    sales = [make_sale(1), make_sale(2), make_sale(1, register_id="367-2")]
    await node.send(*sales)
    summary = await node.get_json("/v1/sales/summary")
    assert summary["store_id"] == STORE_ID
    first = summary["registers"][0]
    assert first == {
        "register_id": "367-1",
        "receipts": 2,
        "lines": 4,
        "total_minor": 2 * sales[0].total_minor,
        "max_seq": 2,
        "pending_to_center": 2,
    }
    assert [r["register_id"] for r in summary["registers"]] == ["367-1", "367-2"]


# -- end to end with the scheduler ---------------------------------------------------------


async def test_accepts_while_center_is_down_then_forwards_each_sale_once(
    tmp_path: Path,
) -> None:
    center = FakeCenter()  # not started yet: the Center is down
    config = make_config(tmp_path, center_url=center.url, batch_size=4)
    async with running_node(config) as node:
        sales = [make_sale(n) for n in range(1, 11)]
        for sale in sales[:5]:
            assert (await node.send(sale)).accepted == (sale.sale_id,)
        await eventually(
            lambda: _has_center_error(node), what="a failed attempt to reach the Center"
        )
        await node.send(*sales[5:])
        await center.start()
        try:
            await center.wait_until(lambda: len(center.received) == len(sales))
            await eventually(lambda: _drained(node), what="every ack to be applied")
            # A few more cycles must not resend anything.
            beats = len(center.heartbeats)
            await center.wait_until(lambda: len(center.heartbeats) >= beats + 2)
        finally:
            await center.stop()
    assert center.received == {sale.sale_id: 1 for sale in sales}
    assert all(len(batch) <= 4 for batch in center.batches)


async def _has_center_error(node: RunningNode) -> bool:
    health = await node.get_json("/health")
    return health["last_center_error"] is not None


async def _drained(node: RunningNode) -> bool:
    health = await node.get_json("/health")
    return bool(health["pending_to_center"] == 0)


async def test_restart_loses_no_acknowledged_sale(tmp_path: Path) -> None:
    center = FakeCenter()
    config = make_config(tmp_path, center_url=center.url)
    sales = [make_sale(n) for n in range(1, 6)]
    async with running_node(config) as node:
        ack = await node.send(*sales)
        assert len(ack.accepted) == 5
    # Same files, new app: the Center is reachable now.
    await center.start()
    try:
        async with running_node(config) as node:
            await center.wait_until(lambda: center.stored == {s.sale_id for s in sales})
            await eventually(lambda: _drained(node), what="every ack to be applied")
            # Re-sent by a register that missed the first ack: still a duplicate after restart.
            assert (await node.send(sales[0])).duplicates == (sales[0].sale_id,)
    finally:
        await center.stop()
    assert set(center.received.values()) == {1}


# -- POST /v1/recovery ------------------------------------------------------------------------


async def _report(node: RunningNode, body: object) -> tuple[int, Any]:
    status, _, answer = await node.post(
        "/v1/recovery", json.dumps(body).encode(), "application/json"
    )
    return status, json.loads(answer)


async def test_a_register_report_of_lost_sales_raises_the_recovery_alert(
    node: RunningNode,
) -> None:
    await node.send(make_sale(1), make_sale(2))
    healthy = await node.get_json("/health")
    assert healthy["recovery"] is None and healthy["alerts"] == []
    status, answer = await _report(node, {"register_id": "367-1", "last_seq": 2, "acked_seq": 2})
    assert (status, answer) == (200, {"db_id": healthy["db_id"], "recovering": False, "resend": []})
    status, answer = await _report(node, {"register_id": "367-1", "last_seq": 5, "acked_seq": 4})
    assert (status, answer["recovering"], answer["resend"]) == (200, True, [])
    health = await node.get_json("/health")
    assert health["recovery"]["missing"] == {"367-1": [[3, 4]]}
    assert health["recovery"]["center_checked"] is False
    (alert,) = health["alerts"]
    assert alert.startswith("store_db_recovery: register 367-1 had sales up to seq 4")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"last_seq": 1, "acked_seq": 1}, "body.register_id"),
        ({"register_id": "367-1", "acked_seq": 1}, "body.last_seq"),
        ({"register_id": "367-1", "last_seq": 1, "acked_seq": -1}, "body.acked_seq"),
        ({"register_id": "367-1", "last_seq": 1, "acked_seq": True}, "body.acked_seq"),
        ({"register_id": "367-1", "last_seq": 1, "acked_seq": 2}, "body.acked_seq"),
    ],
)
async def test_a_bad_recovery_report_is_a_4xx_naming_the_field(
    node: RunningNode, body: object, field: str
) -> None:
    status, answer = await _report(node, body)
    assert status == 422 and answer["detail"].startswith(field + ":"), answer
    assert (await node.get_json("/health"))["recovery"] is None


async def test_an_emptied_store_db_with_enrolled_registers_starts_a_recovery(
    tmp_path: Path,
) -> None:
    from store_node.auth import RegisterAuth

    config = make_config(tmp_path)
    auth = RegisterAuth(config.store.data_dir)
    auth.enrol(auth.issue_token("367-1", T0, 1), T0)
    async with running_node(config, run_jobs=False, clock=Clock()) as node:
        health = await node.get_json("/health")
    assert health["recovery"]["waiting_for"] == ["367-1"]
    assert "store.db was created at this start although 1 registers" in health["alerts"][0]
    async with running_node(config, run_jobs=False, clock=Clock()) as node:
        again = await node.get_json("/health")
    assert again["recovery"]["since"] == health["recovery"]["since"]  # kept, not restarted
