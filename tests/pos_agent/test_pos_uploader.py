"""The uploader against a real fake store node: delivery, acks, failures, master data."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from pathlib import Path

import pytest

from pos_agent import Config, Uploader
from sync_protocol import chain_hash, decode, encode_sale, encode_sale_batch
from tests.pos_agent.pos_fakes import (
    BREAD,
    CARD,
    FakeStoreNode,
    demo_snapshot,
    health_until,
    make_config,
    open_journal,
    outbox_sales,
    running_agent,
    seed_replica,
    sell,
)


def _config(tmp_path: Path, node: FakeStoreNode, **timers: float) -> Config:
    config = make_config(tmp_path / "pos", url=node.url, **timers)
    seed_replica(config)
    return config


async def test_an_online_sale_reaches_the_store_node_within_a_second(
    tmp_path: Path, store_node: FakeStoreNode
) -> None:
    # Long intervals: only the wake-up after confirm can deliver this fast.
    config = _config(tmp_path, store_node, upload_interval_s=30, master_poll_s=30)
    async with running_agent(config) as client:
        await store_node.wait_until(lambda: len(store_node.heartbeats) == 1)
        started = time.monotonic()
        answer = await sell(client, [BREAD])
        await store_node.wait_until(lambda: answer["sale_id"] in store_node.committed)
        elapsed = time.monotonic() - started
        health = await health_until(client, lambda h: h["queue_depth"] == 0)
    assert elapsed < 1.0
    assert health["store_url"] == store_node.url
    assert health["last_upload_at"] is not None
    assert health["last_error"] is None
    assert store_node.committed[answer["sale_id"]].seq == 1


async def test_sales_queue_while_the_store_node_is_down_and_arrive_exactly_once(
    tmp_path: Path,
) -> None:
    node = FakeStoreNode()  # not started: connection refused
    config = _config(tmp_path, node, upload_interval_s=30, backoff_max_s=0.2, batch_size=2)
    try:
        async with running_agent(config) as client:
            answers = [await sell(client, [BREAD]) for _ in range(5)]
            health = await health_until(client, lambda h: h["last_error"] is not None)
            assert health["queue_depth"] == 5
            assert "Connection" in health["last_error"]
            assert len(outbox_sales(config)) == 5

            await node.start()
            await node.wait_until(lambda: len(node.committed) == 5)
            health = await health_until(client, lambda h: h["queue_depth"] == 0)
            summary = await (await client.get("/v1/sales/summary")).json()
    finally:
        await node.stop()
    assert health["last_error"] is None
    assert set(node.sends().values()) == {1}
    assert [sale.seq for batch in node.batches for sale in batch.sales] == [1, 2, 3, 4, 5]
    assert max(len(batch.sales) for batch in node.batches) == 2
    assert set(node.committed) == {a["sale_id"] for a in answers}
    assert outbox_sales(config) == []
    # The register keeps its sales after delivery; only the outbox rows are gone.
    assert (summary["receipts"], summary["queued"], summary["max_seq"]) == (5, 0, 5)


async def test_nothing_is_deleted_before_the_store_node_acknowledges(
    tmp_path: Path, store_node: FakeStoreNode
) -> None:
    store_node.fail_sales = True
    config = _config(tmp_path, store_node, backoff_max_s=0.1)
    async with running_agent(config) as client:
        await sell(client, [BREAD])
        await sell(client, [BREAD])
        await store_node.wait_until(lambda: len(store_node.batches) >= 2)
        health = await health_until(client, lambda h: h["last_error"] is not None)
        assert "HTTP 500" in health["last_error"]
        assert [sale.seq for sale in outbox_sales(config)] == [1, 2]

        store_node.fail_sales = False
        await store_node.wait_until(lambda: len(store_node.committed) == 2)
        await health_until(client, lambda h: h["queue_depth"] == 0 and h["last_error"] is None)
    assert outbox_sales(config) == []


async def test_a_lost_ack_is_resent_and_settled_as_a_duplicate(
    tmp_path: Path, store_node: FakeStoreNode
) -> None:
    store_node.lose_acks = 1
    config = _config(tmp_path, store_node, backoff_max_s=0.1)
    async with running_agent(config) as client:
        answer = await sell(client, [BREAD])
        await store_node.wait_until(lambda: len(store_node.batches) >= 2)
        await health_until(client, lambda h: h["queue_depth"] == 0)
    assert store_node.sends()[answer["sale_id"]] == 2
    assert list(store_node.committed) == [answer["sale_id"]]
    assert outbox_sales(config) == []


async def test_a_rejected_sale_is_kept_reported_and_not_resent(
    tmp_path: Path, store_node: FakeStoreNode
) -> None:
    store_node.reject_seqs = {1: "store_id 999 is not this store"}
    config = _config(tmp_path, store_node)
    async with running_agent(config) as client:
        first = await sell(client, [BREAD])
        await sell(client, [BREAD])
        health = await health_until(client, lambda h: h["rejected"] and h["queue_depth"] == 0)
        third = await sell(client, [BREAD])
        await store_node.wait_until(lambda: third["sale_id"] in store_node.committed)
        summary = await (await client.get("/v1/sales/summary")).json()
    assert health["rejected"] == [
        {"seq": 1, "sale_id": first["sale_id"], "reason": "store_id 999 is not this store"}
    ]
    assert store_node.sends()[first["sale_id"]] == 1
    assert summary["receipts"] == 3
    assert outbox_sales(config) == []  # pending rows only; the rejected one stays in journal.db


async def test_master_data_is_polled_applied_and_used_for_pricing(
    tmp_path: Path, store_node: FakeStoreNode
) -> None:
    config = make_config(tmp_path / "pos", url=store_node.url)  # empty replica
    store_node.snapshot = demo_snapshot(version=7)
    async with running_agent(config) as client:
        await health_until(client, lambda h: h["master_version"] == 7)
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(
            f"/v1/receipts/{rid}/lines",
            json={"product_id": "milk", "qty_milli": 2000, "unit_price_minor": 3000},
        )
        calc = await (await client.post(f"/v1/receipts/{rid}/calculate", json={})).json()
        assert calc["promo_version"] == 7
        assert calc["discount_minor"] == 300
        assert calc["lines"][0]["known_product"] is True

        # Rules the engine refuses never reach the replica.
        store_node.snapshot = demo_snapshot(
            version=8, promotions=[{"promotion_id": "broken", "kind": "accrual_percent"}]
        )
        health = await health_until(client, lambda h: "promotions" in (h["last_error"] or ""))
        calc = await (await client.post(f"/v1/receipts/{rid}/calculate", json={})).json()
    assert health["master_version"] == 7
    assert calc["promo_version"] == 7
    assert store_node.master_polls[0] == "0"


async def test_heartbeats_report_the_queue(tmp_path: Path) -> None:
    node = FakeStoreNode()
    config = _config(tmp_path, node, backoff_max_s=0.1)
    try:
        async with running_agent(config) as client:
            await sell(client, [BREAD])
            await sell(client, [BREAD])
            await health_until(client, lambda h: h["last_error"] is not None)
            node.fail_sales = True
            await node.start()
            await node.wait_until(lambda: bool(node.heartbeats))
    finally:
        await node.stop()
    beat = node.heartbeats[0]
    assert (beat.node_id, beat.role, beat.store_id) == ("367-1", "register", "367")
    assert (beat.queue_depth, beat.last_seq, beat.master_version) == (2, 2, 1)
    assert beat.oldest_queued_at is not None


async def test_spends_acknowledged_before_a_newer_master_version_stop_counting(
    tmp_path: Path, store_node: FakeStoreNode
) -> None:
    config = _config(tmp_path, store_node, master_poll_s=0.1)
    big = {"product_id": "milk", "qty_milli": 10_000, "unit_price_minor": 3000}
    async with running_agent(config) as client:
        await sell(client, [big], card_no=CARD, bonus_to_spend=700)
        await health_until(client, lambda h: h["queue_depth"] == 0)
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        card = await (await client.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})).json()
        assert card["bonus_balance"] == 300  # 1000 in the replica, 700 spent here

        # The Center has booked the spend: its balance is 300 now, and must not drop to 0.
        store_node.snapshot = demo_snapshot(version=2, card_balance=300)
        await health_until(client, lambda h: h["master_version"] == 2)
        card = await (await client.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})).json()
    assert card["bonus_balance"] == 300


async def test_stop_is_prompt_while_backing_off(tmp_path: Path) -> None:
    node = FakeStoreNode()  # never started
    config = _config(tmp_path, node, upload_interval_s=10, backoff_max_s=30)
    uploader = Uploader(config)
    uploader.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while uploader.status().last_error is None:
        assert loop.time() < deadline, "the uploader never tried the store node"
        await asyncio.sleep(0.02)
    started = time.monotonic()
    await asyncio.to_thread(uploader.stop)
    assert time.monotonic() - started < 1.0


class RecordingUploader(Uploader):
    """The real uploader, noting every wait it makes; `backed_off` is set after `enough` of
    the uninterruptible (backoff) ones, `recovered` when it waits normally after those."""

    def __init__(self, config: Config, *, enough: int, rng: random.Random) -> None:
        super().__init__(config, rng=rng)
        self.waits: list[tuple[float, bool]] = []
        self.enough = enough
        self.backed_off = threading.Event()
        self.recovered = threading.Event()

    def _sleep(self, seconds: float, *, interruptible: bool = True) -> None:
        self.waits.append((seconds, interruptible))
        backoffs = [w for w in self.waits if not w[1]]
        if len(backoffs) >= self.enough:
            self.backed_off.set()
            if interruptible:
                self.recovered.set()
        super()._sleep(seconds, interruptible=interruptible)


async def test_failures_back_off_by_the_shared_rule_and_warn_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = FakeStoreNode()  # not started yet: every cycle fails
    base, cap, enough = 0.02, 0.16, 6
    # master_poll_s tiny: every cycle reaches the node, even with no sale queued.
    config = _config(tmp_path, node, upload_interval_s=base, backoff_max_s=cap, master_poll_s=0.001)
    caplog.set_level(logging.DEBUG, logger="pos_agent.uploader")
    uploader = RecordingUploader(config, enough=enough, rng=random.Random(3))
    uploader.start()
    try:
        assert await asyncio.to_thread(uploader.backed_off.wait, 10)
        await node.start()
        assert await asyncio.to_thread(uploader.recovered.wait, 10)
    finally:
        await asyncio.to_thread(uploader.stop)
        await node.stop()
    backoffs = [seconds for seconds, interruptible in uploader.waits if not interruptible]
    assert len(backoffs) >= enough
    for n, delay in enumerate(backoffs):
        # sync_protocol.backoff_delay: equal jitter in [step / 2, step].
        step = min(cap, base * 2**n)
        assert step / 2 <= delay <= step
    assert len(set(backoffs)) > 1  # jittered
    said = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if "syncing with the store node" in r.getMessage()
    ]
    levels = [level for level, _ in said]
    assert levels == ["WARNING"] + ["DEBUG"] * (len(backoffs) - 1) + ["INFO"]
    assert all(text.startswith("store 367, register 367-1: ") for _, text in said)
    assert "selling goes on" in said[0][1]
    assert f"store node {node.url}" in said[-1][1]


async def test_the_uploader_sends_the_bytes_the_journal_committed(
    tmp_path: Path, store_node: FakeStoreNode
) -> None:
    store_node.fail_sales = True  # queue both sales, then deliver them in one batch
    config = _config(tmp_path, store_node, backoff_max_s=0.1)
    async with running_agent(config) as client:
        first = await sell(client, [BREAD])
        second = await sell(client, [BREAD])
        await store_node.wait_until(lambda: len(store_node.batches) >= 1)
        store_node.fail_sales = False
        await store_node.wait_until(lambda: second["sale_id"] in store_node.committed)
    journal = open_journal(config)
    try:
        committed = [
            bytes(row[0]) for row in journal.conn.execute("SELECT payload FROM sales ORDER BY seq")
        ]
        assert journal.verify_chain() == []
    finally:
        journal.close()
    body = store_node.bodies[-1]
    envelope = decode(body)
    assert [s.sale_id for s in envelope.message.sales] == [first["sale_id"], second["sale_id"]]  # type: ignore[union-attr]
    assert committed == [encode_sale(s) for s in envelope.message.sales]  # type: ignore[union-attr]
    # The committed bytes are spliced in as they are: nothing decoded and encoded again.
    assert body == encode_sale_batch(committed, sender=envelope.sender, sent_at=envelope.sent_at)
    # The link written at confirm (hashed from the committed bytes) is the sale's chain_hash.
    assert envelope.message.sales[1].prev_hash == chain_hash(envelope.message.sales[0])  # type: ignore[union-attr]


async def test_acknowledged_sales_stay_in_the_journal_and_are_resent_when_the_node_asks(
    tmp_path: Path, store_node: FakeStoreNode
) -> None:
    config = _config(tmp_path, store_node, master_poll_s=0.1)
    async with running_agent(config) as client:
        answers = [await sell(client, [BREAD]) for _ in range(4)]
        await store_node.wait_until(lambda: len(store_node.committed) == 4)
        await health_until(client, lambda h: h["queue_depth"] == 0)
        await store_node.wait_until(
            lambda: bool(store_node.reports) and store_node.reports[-1]["acked_seq"] == 4
        )
        assert outbox_sales(config) == []
        # The node lost seqs 2..3 with its database and asks for them at the next report.
        lost = {answers[1]["sale_id"], answers[2]["sale_id"]}
        for sale_id in lost:
            del store_node.committed[sale_id]
        store_node.resend = [[2, 3]]
        await store_node.wait_until(lambda: lost <= set(store_node.committed))
    assert store_node.reports[-1] == {"register_id": "367-1", "last_seq": 4, "acked_seq": 4}
    sends = store_node.sends()
    assert [sends[a["sale_id"]] for a in answers] == [1, 2, 2, 1]
    assert outbox_sales(config) == []  # a re-send never touches the outbox
    journal = open_journal(config)
    try:
        assert [sale.seq for sale in journal.sales()] == [1, 2, 3, 4]
    finally:
        journal.close()


async def test_a_store_node_without_recovery_still_gets_every_sale(tmp_path: Path) -> None:
    node = FakeStoreNode(recovery=False)
    config = _config(tmp_path, node, master_poll_s=0.1)
    await node.start()
    try:
        async with running_agent(config) as client:
            answer = await sell(client, [BREAD])
            await node.wait_until(lambda: answer["sale_id"] in node.committed)
            await node.wait_until(lambda: len(node.master_polls) >= 3)
            health = await health_until(client, lambda h: h["queue_depth"] == 0)
    finally:
        await node.stop()
    assert health["last_error"] is None
    assert node.reports == []
