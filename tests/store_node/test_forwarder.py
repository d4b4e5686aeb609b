"""Forwarding to a real fake Center: batches, acks, rejections, failures, backoff, master poll."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from store_node import Config
from store_node.app import FORWARDER_KEY, WORKER_KEY
from sync_protocol import (
    Heartbeat,
    MasterSnapshot,
    SaleBatch,
    decode,
    decode_sale_batch,
    encode_sale,
    encode_sale_batch,
)
from tests.store_node.store_fakes import (
    Clock,
    FakeCenter,
    RunningNode,
    eventually,
    make_config,
    make_sale,
    running_node,
)


class TopRandom(random.Random):
    """Always draws the top of the range, so the step itself can be observed."""

    def uniform(self, a: float, b: float) -> float:
        return b


# -- forwarding against a real fake Center -------------------------------------------------


@pytest.fixture
async def center() -> AsyncIterator[FakeCenter]:
    fake = FakeCenter()
    await fake.start()
    yield fake
    await fake.stop()


def _node_config(tmp_path: Path, center: FakeCenter, **overrides: Any) -> Config:
    return make_config(tmp_path, center_url=center.url, **overrides)


async def test_pending_sales_are_drained_in_full_batches(
    tmp_path: Path, center: FakeCenter
) -> None:
    config = _node_config(tmp_path, center, batch_size=3)
    async with running_node(config, run_jobs=False) as node:
        sales = [make_sale(n) for n in range(1, 8)]
        await node.send(*sales)
        settled = await node.app[FORWARDER_KEY].forward_once()
        assert settled == 7
        assert [len(b) for b in center.batches] == [3, 3, 1]
        assert [s for b in center.batches for s in b] == [s.sale_id for s in sales]
        assert await node.app[FORWARDER_KEY].forward_once() == 0  # nothing left to send
        assert len(center.batches) == 3
        health = await node.get_json("/health")
        assert health["pending_to_center"] == 0 and health["center_lag_s"] == 0
        assert health["last_center_ok_at"] is not None


async def test_center_failure_keeps_sales_and_backs_off(tmp_path: Path, center: FakeCenter) -> None:
    ticks = [0.0]
    config = _node_config(tmp_path, center, backoff_initial_s=5.0, backoff_max_s=5.0)
    options = {"run_jobs": False, "monotonic": lambda: ticks[0], "rng": TopRandom()}
    async with running_node(config, **options) as node:
        forwarder = node.app[FORWARDER_KEY]
        sale = make_sale(1)
        await node.send(sale)
        center.fail_status = 500
        assert await forwarder.forward_once() == 0
        assert center.requests == 1
        health = await node.get_json("/health")
        assert health["pending_to_center"] == 1
        assert "HTTP 500" in health["last_center_error"]
        # Inside the backoff window nothing is sent, even when the Center is back.
        center.fail_status = None
        ticks[0] += 4.9
        assert await forwarder.forward_once() == 0
        assert center.requests == 1
        ticks[0] += 0.2
        assert await forwarder.forward_once() == 1
        assert center.received == {sale.sale_id: 1}


async def test_center_down_is_a_retryable_failure(tmp_path: Path) -> None:
    gone = FakeCenter()  # never started: connections are refused
    config = make_config(tmp_path, center_url=gone.url)
    async with running_node(config, run_jobs=False) as node:
        await node.send(make_sale(1))
        assert await node.app[FORWARDER_KEY].forward_once() == 0
        assert node.app[FORWARDER_KEY].backoff.failures == 1
        health = await node.get_json("/health")
        assert health["pending_to_center"] == 1
        assert "ClientConnectorError" in health["last_center_error"]


async def test_repeated_center_failures_back_off_by_the_shared_rule_and_warn_once(
    tmp_path: Path, center: FakeCenter, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = [0.0]
    base, cap, failures = 0.5, 4.0, 6
    config = _node_config(tmp_path, center, backoff_initial_s=base, backoff_max_s=cap)
    options = {"run_jobs": False, "monotonic": lambda: ticks[0], "rng": random.Random(11)}
    caplog.set_level(logging.DEBUG, logger="store_node.forwarder")
    async with running_node(config, **options) as node:
        forwarder = node.app[FORWARDER_KEY]
        await node.send(make_sale(1))
        center.fail_status = 503
        for n in range(failures):
            assert await forwarder.forward_once() == 0
            assert center.requests == n + 1
            # sync_protocol.backoff_delay: equal jitter in [step / 2, step].
            step = min(cap, base * 2**n)
            ticks[0] += step / 2 - 1e-6
            assert not forwarder.backoff.ready()
            assert await forwarder.forward_once() == 0  # gated: nothing sent
            assert center.requests == n + 1
            ticks[0] += step / 2 + 2e-6
            assert forwarder.backoff.ready()
        center.fail_status = None
        assert await forwarder.forward_once() == 1
    said = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if "sending sales to the Center" in r.getMessage()
    ]
    assert [level for level, _ in said] == ["WARNING"] + ["DEBUG"] * (failures - 1) + ["INFO"]
    assert all(text.startswith("store 367, node store-367: ") for _, text in said)
    assert "HTTP 503" in said[0][1]


async def test_center_rejection_is_flagged_and_not_resent(
    tmp_path: Path, center: FakeCenter
) -> None:
    config = _node_config(tmp_path, center)
    async with running_node(config, run_jobs=False) as node:
        good, bad = make_sale(1), make_sale(2)
        center.reject[bad.sale_id] = "card_no: blocked card"
        await node.send(good, bad)
        assert await node.app[FORWARDER_KEY].forward_once() == 2
        await node.send(make_sale(3))
        await node.app[FORWARDER_KEY].forward_once()
        assert [bad.sale_id in batch for batch in center.batches] == [True, False]
        health = await node.get_json("/health")
        assert health["rejected_by_center"] == 1
        assert health["pending_to_center"] == 0


async def test_unacknowledged_sales_are_resent_later_not_in_a_loop(
    tmp_path: Path, center: FakeCenter
) -> None:
    config = _node_config(tmp_path, center, batch_size=2)
    async with running_node(config, run_jobs=False) as node:
        sales = [make_sale(n) for n in (1, 2, 3)]
        center.ignore.add(sales[0].sale_id)
        await node.send(*sales)
        assert await node.app[FORWARDER_KEY].forward_once() == 1
        assert len(center.batches) == 1  # stopped draining instead of spinning
        center.ignore.clear()
        await node.app[FORWARDER_KEY].forward_once()
        assert center.stored == {s.sale_id for s in sales}


async def test_batch_too_large_for_the_center_is_split(tmp_path: Path, center: FakeCenter) -> None:
    center.max_batch = 2
    config = _node_config(tmp_path, center, batch_size=8)
    async with running_node(config, run_jobs=False) as node:
        sales = [make_sale(n) for n in range(1, 6)]
        await node.send(*sales)
        assert await node.app[FORWARDER_KEY].forward_once() == 5
        assert center.stored == {s.sale_id for s in sales}
        assert node.app[FORWARDER_KEY].batch_size == 2


async def test_master_data_is_fetched_cached_and_served(tmp_path: Path, center: FakeCenter) -> None:
    center.master = MasterSnapshot(
        version=4, tables={"products": ({"product_id": "4600001", "name": "Milk"},)}
    )
    config = _node_config(tmp_path, center)
    async with running_node(config, run_jobs=False) as node:
        forwarder = node.app[FORWARDER_KEY]
        assert await forwarder.poll_master_once() == 4
        assert center.master_queries[-1] == {"store_id": "367", "since": "0"}
        assert await forwarder.poll_master_once() is None  # unchanged: not rewritten
        assert center.master_queries[-1]["since"] == "4"
        snapshot = await _get_master(node, since=0)
        assert (snapshot.version, snapshot.tables) == (4, center.master.tables)
        assert (await node.get_json("/health"))["master_version"] == 4
    # The cache is durable: a restarted node serves it before reaching the Center.
    await center.stop()
    async with running_node(config, run_jobs=False) as node:
        assert (await _get_master(node, since=0)).tables == center.master.tables


async def _get_master(node: RunningNode, since: int) -> MasterSnapshot:
    async with node.session.get(f"{node.url}/v1/master?since={since}") as response:
        assert response.status == 200
        assert response.content_type == "application/x-msgpack"
        message = decode(await response.read(), expect=MasterSnapshot).message
    assert isinstance(message, MasterSnapshot)
    return message


async def test_heartbeat_reports_the_store_queue(tmp_path: Path, center: FakeCenter) -> None:
    clock = Clock()
    config = _node_config(tmp_path, center)
    async with running_node(config, run_jobs=False, clock=clock) as node:
        await node.send(make_sale(1), make_sale(2))
        assert await node.app[FORWARDER_KEY].heartbeat_once()
        (beat,) = center.heartbeats
        assert isinstance(beat, Heartbeat)
        assert (beat.node_id, beat.role, beat.store_id) == ("store-367", "store", "367")
        assert (beat.queue_depth, beat.oldest_queued_at) == (2, clock.now)
        assert "register:367-1" in beat.devices


async def test_scheduled_jobs_forward_poll_and_beat(tmp_path: Path, center: FakeCenter) -> None:
    center.master = MasterSnapshot(version=1, tables={})
    config = _node_config(tmp_path, center)
    async with running_node(config) as node:
        sale = make_sale(1)
        await node.send(sale)
        await center.wait_until(
            lambda: (
                sale.sale_id in center.received
                and bool(center.heartbeats)
                and bool(center.master_queries)
            )
        )
        await eventually(
            lambda: node.app[WORKER_KEY].run(lambda box: not box.pending(10)),
            what="the Center's ack to be applied",
        )


async def test_sales_reach_the_center_as_the_canonical_bytes_the_node_stored(
    tmp_path: Path, center: FakeCenter
) -> None:
    config = _node_config(tmp_path, center)
    async with running_node(config, run_jobs=False) as node:
        canonical = [make_sale(1), make_sale(2)]
        spliced = encode_sale_batch([encode_sale(s) for s in canonical], sender="367-1")
        status, _, answer = await node.post("/v1/sales", spliced)
        assert status == 200, answer
        # A register that sends every field (encode) gets its sale stored in canonical form.
        late = make_sale(3)
        await node.send(late)
        pending = await node.app[WORKER_KEY].run(lambda box: box.pending(10))
        stored = [p.payload for p in pending]
        assert stored == [encode_sale(s) for s in (*canonical, late)]
        assert await node.app[FORWARDER_KEY].forward_once() == 3
    (body,) = center.bodies
    envelope = decode(body)
    assert envelope.message == SaleBatch((*canonical, late))
    # The stored bytes themselves travel, spliced into the envelope, not re-encoded.
    assert body == encode_sale_batch(stored, sender=envelope.sender, sent_at=envelope.sent_at)
    assert decode_sale_batch(body)[1] == tuple(stored)


# -- recovering a lost store.db -------------------------------------------------------------


async def test_a_recovery_asks_the_center_once_and_ends_when_caught_up(
    tmp_path: Path, center: FakeCenter
) -> None:
    import json

    config = _node_config(tmp_path, center)
    async with running_node(config, run_jobs=False) as node:
        forwarder = node.app[FORWARDER_KEY]
        await node.send(make_sale(1), make_sale(2))
        assert await forwarder.recover_once() is False  # nothing to recover: no Center call
        assert center.reconciliations == []
        report = json.dumps({"register_id": "367-1", "last_seq": 6, "acked_seq": 5}).encode()
        status, _, body = await node.post("/v1/recovery", report, "application/json")
        assert (status, json.loads(body)["resend"]) == (200, [])  # the Center was not asked yet

        center.fail_status = 503
        assert await forwarder.recover_once() is False
        health = await node.get_json("/health")
        assert health["recovery"]["center_checked"] is False
        assert "HTTP 503" in health["last_center_error"]

        center.fail_status = None
        center.coverage = {"367-1": (3, [[2, 2]])}  # it has 1 and 3; 2 is held here
        assert await forwarder.recover_once() is False  # 4..5 are nowhere yet
        assert center.reconciliations[-1] == {"store_id": "367"}
        assert await forwarder.heartbeat_once() is True
        (alert,) = [v for k, v in center.heartbeats[-1].devices.items() if k.startswith("alert:")]
        assert alert.startswith("store_db_recovery: register 367-1 had sales up to seq 5")
        status, _, body = await node.post("/v1/recovery", report, "application/json")
        assert json.loads(body) == {
            "db_id": health["db_id"],
            "recovering": True,
            "resend": [[4, 5]],
        }

        await node.send(make_sale(4), make_sale(5))
        asked = len(center.reconciliations)
        assert await forwarder.recover_once() is True
        assert len(center.reconciliations) == asked  # asked once per recovery
        health = await node.get_json("/health")
        assert health["recovery"] is None and health["alerts"] == []
        assert await forwarder.heartbeat_once() is True
        assert not [k for k in center.heartbeats[-1].devices if k.startswith("alert:")]
