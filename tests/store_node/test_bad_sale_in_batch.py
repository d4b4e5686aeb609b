"""One bad sale in a register's batch: the node takes the good ones, quarantines the bad one and
says so in a normal ack, which a register of the previous release already understands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from store_node.app import WORKER_KEY
from sync_protocol import Ack, decode
from tests.store_node.store_fakes import (
    FakeCenter,
    RunningNode,
    batch_body,
    make_config,
    make_sale,
    running_node,
)

Raw = dict[str, Any]


class PreviousReleaseRegister:
    """The upload loop of pos_agent/uploader.py before it halved refused batches (git show
    1bd72dd^:pos_agent/uploader.py): any answer but 200 is an error and the same batch is sent
    again; an ack drops the accepted and duplicate sales and flags the rejected ones."""

    def __init__(self, node: RunningNode, sales: list[Raw]) -> None:
        self.node = node
        self.pending = {sale["sale_id"]: sale for sale in sales}
        self.flagged: dict[str, str] = {}
        self.refusals: list[int] = []

    async def upload(self) -> None:
        envelope = msgpack.unpackb(batch_body(), timestamp=3)
        envelope["body"]["sales"] = list(self.pending.values())
        status, _, answer = await self.node.post(
            "/v1/sales", msgpack.packb(envelope, datetime=True)
        )
        if status != 200:
            self.refusals.append(status)
            return
        ack = decode(answer, expect=Ack).message
        assert isinstance(ack, Ack)
        for sale_id in (*ack.accepted, *ack.duplicates):
            self.pending.pop(sale_id, None)
        for rejection in ack.rejected:
            if self.pending.pop(rejection.sale_id, None) is not None:
                self.flagged[rejection.sale_id] = rejection.reason


def _raw_batch() -> list[Raw]:
    body = batch_body(make_sale(1), make_sale(2), make_sale(3))
    sales: list[Raw] = msgpack.unpackb(body, timestamp=3)["body"]["sales"]
    return sales


def _nul_in_card(sale: Raw) -> None:
    sale["card_no"] = "2600000\x00"  # the wire decoder refuses NUL in any string


def _trailing_space_in_card(sale: Raw) -> None:
    sale["card_no"] = "2600000000017 "  # decodes; the node's card check refuses it


def _total_off_by_one(sale: Raw) -> None:
    sale["total_minor"] += 1  # the decoder checks the money sums


def _seq_as_text(sale: Raw) -> None:
    sale["seq"] = "2"


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (_nul_in_card, "body.sales[1].card_no: contains a NUL"),
        (_trailing_space_in_card, "card_no"),
        (_total_off_by_one, "body.sales[1].total_minor"),
        (_seq_as_text, "body.sales[1].seq"),
    ],
)
async def test_the_good_sales_of_a_batch_are_stored_and_forwarded_the_bad_one_quarantined(
    tmp_path: Path, spoil: Callable[[Raw], None], reason: str
) -> None:
    sales = _raw_batch()
    spoil(sales[1])
    good = {sales[0]["sale_id"], sales[2]["sale_id"]}
    bad = sales[1]["sale_id"]
    center = FakeCenter()
    await center.start()
    try:
        async with running_node(make_config(tmp_path, center_url=center.url)) as node:
            register = PreviousReleaseRegister(node, sales)
            await register.upload()
            assert register.refusals == []  # a normal ack, not a 4xx the register would retry
            assert register.pending == {}
            assert list(register.flagged) == [bad]
            assert reason in register.flagged[bad]
            await center.wait_until(lambda: center.stored == good)
            counts = await node.app[WORKER_KEY].run(lambda box: box.counts())
            assert (counts["sales"], counts["quarantine"]) == (2, 1)
            health = await node.get_json("/health")
            # The same batch again (a register that missed the ack): nothing changes.
            again = PreviousReleaseRegister(node, sales)
            await again.upload()
            assert (again.pending, list(again.flagged)) == ({}, [bad])
            counts = await node.app[WORKER_KEY].run(lambda box: box.counts())
            assert (counts["sales"], counts["quarantine"]) == (2, 1)
    finally:
        await center.stop()
    assert bad not in center.received
    assert health["quarantined"] == 1
    [shown] = health["quarantined_sales"]
    assert (shown["sale_id"], shown["register_id"]) == (bad, "367-1")
    assert reason in shown["reason"]


async def test_a_bad_sale_without_a_readable_sale_id_still_refuses_the_batch(
    tmp_path: Path,
) -> None:
    sales = _raw_batch()
    _nul_in_card(sales[1])
    sales[1]["sale_id"] = "not-a-uuid"
    async with running_node(make_config(tmp_path), run_jobs=False) as node:
        register = PreviousReleaseRegister(node, sales)
        await register.upload()
        assert register.refusals == [400]
        counts = await node.app[WORKER_KEY].run(lambda box: box.counts())
    assert (counts["sales"], counts["quarantine"]) == (0, 0)


async def test_a_corrupt_envelope_around_good_sales_is_still_400(tmp_path: Path) -> None:
    envelope = msgpack.unpackb(batch_body(make_sale(1), make_sale(2)), timestamp=3)
    envelope["body"]["sales"][1]["card_no"] = "\x00"
    envelope["sender"] = ""
    async with running_node(make_config(tmp_path), run_jobs=False) as node:
        status, _, answer = await node.post("/v1/sales", msgpack.packb(envelope, datetime=True))
        assert status == 400, answer
        assert b"sender" in answer
        counts = await node.app[WORKER_KEY].run(lambda box: box.counts())
    assert (counts["sales"], counts["quarantine"]) == (0, 0)
