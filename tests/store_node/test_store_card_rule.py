"""The store node's side of the one card rule and of the checked readers: lookups,
reservations and sales refuse what the rule refuses, with a 4xx naming the field."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from store_node.app import WORKER_KEY
from sync_protocol import Ack, MasterSnapshot, decode, encode
from tests.store_node.store_fakes import (
    T0,
    Clock,
    FakeCenter,
    RunningNode,
    batch_body,
    make_config,
    make_sale,
    running_node,
)

CARD = "2000000000017"


@pytest.fixture
async def center() -> AsyncIterator[FakeCenter]:
    fake = FakeCenter()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def node(tmp_path: Path, center: FakeCenter) -> AsyncIterator[RunningNode]:
    config = make_config(tmp_path, center_url=center.url)
    async with running_node(config, run_jobs=False, clock=Clock(T0)) as running:
        snapshot = MasterSnapshot(
            version=7,
            tables={"cards": ({"card_no": CARD, "customer_id": "c1", "bonus_balance": 500},)},
        )
        payload = encode(snapshot, sender="center")
        await running.app[WORKER_KEY].run(lambda box: box.save_master(7, payload, now=T0))
        yield running


async def _get(node: RunningNode, raw_path: str) -> tuple[int, Any]:
    from yarl import URL

    async with node.session.get(URL(node.url + raw_path, encoded=True)) as response:
        return response.status, await response.json()


async def _post_json(node: RunningNode, path: str, body: Any) -> tuple[int, Any]:
    data = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
    async with node.session.post(
        node.url + path, data=data, headers={"Content-Type": "application/json"}
    ) as response:
        return response.status, await response.json()


async def test_a_lookup_is_trimmed_and_a_bad_number_is_400_before_the_center_is_asked(
    node: RunningNode, center: FakeCenter
) -> None:
    status, row = await _get(node, f"/v1/cards/{CARD}%20")
    assert status == 200 and row["card_no"] == CARD
    for raw in ("12%2034", "1%272", "%C3%A9", "50%25", "abc", "-1", "%EF%BC%91", "%00"):
        status, body = await _get(node, f"/v1/cards/{raw}")
        assert status == 400, (raw, body)
        assert body["error"] == "malformed" and "card_no" in body["detail"], body
    assert center.requests == 0  # nothing refused here cost the Center a request


async def test_a_reservation_names_a_bad_card_and_holds_nothing(node: RunningNode) -> None:
    body = {"receipt_id": "r1", "register_id": "367-1", "amount": 10}
    for bad in ("12 34", "abc", "１２", 17):
        status, answer = await _post_json(node, "/v1/reservations", {**body, "card_no": bad})
        assert status == 400, answer
        assert answer["detail"].startswith("body.card_no: expected"), answer
    status, answer = await _post_json(node, "/v1/reservations", {**body, "card_no": CARD + " "})
    assert status == 201 and answer["amount"] == 10, answer
    status, answer = await _post_json(
        node, "/v1/reservations", b'{"receipt_id": "r2", "register_id": "367-1", "amount": 1e999}'
    )
    assert status == 400 and answer["detail"].startswith("body: number 1e999"), answer
    deep = b'{"receipt_id": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    status, answer = await _post_json(node, "/v1/reservations", deep)
    assert status == 400 and answer["detail"].startswith("body.receipt_id[0][0]"), answer


async def test_a_sale_with_a_card_not_normalised_is_rejected_and_quarantined(
    node: RunningNode,
) -> None:
    spaced = make_sale(1, card_no=CARD + " ")
    good = make_sale(2, card_no=CARD)
    ack = await node.send(spaced, good)
    assert ack.accepted == (good.sale_id,)
    assert [(r.sale_id, r.reason) for r in ack.rejected] == [
        (spaced.sale_id, f"card_no: not normalised (surrounding whitespace), got '{CARD} '")
    ]
    counts = await node.app[WORKER_KEY].run(lambda box: box.counts())
    assert (counts["sales"], counts["quarantine"]) == (1, 1)


async def test_a_sale_beyond_64_bits_is_refused_alone_naming_it(node: RunningNode) -> None:
    good, bad = make_sale(1), make_sale(2)
    raw = msgpack.unpackb(batch_body(good, bad), timestamp=3)
    raw["body"]["sales"][1]["seq"] = 2**63
    status, _, answer = await node.post("/v1/sales", msgpack.packb(raw, datetime=True))
    assert status == 200, answer  # named by its sale_id: refused in the ack, the rest stored
    ack = decode(answer, expect=Ack).message
    assert isinstance(ack, Ack) and ack.accepted == (good.sale_id,)
    assert [(r.sale_id, r.reason) for r in ack.rejected] == [
        (bad.sale_id, "does not decode: body.sales[1].seq: integer out of the signed 64-bit range")
    ]
    counts = await node.app[WORKER_KEY].run(lambda box: box.counts())
    assert (counts["sales"], counts["quarantine"]) == (1, 1)
