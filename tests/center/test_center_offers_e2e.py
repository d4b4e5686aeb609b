"""A personal offer set at the Center prices a sale at a register offline; a coupon issued to
the customer is in the register's card answer. Real HTTP through all three tiers, both Center
backends: Center app -> store node app -> POS agent app (its real uploader polling the feed)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from center.config import load_config as load_center_config
from center.promotions.coupons import BatchRequest, IssueRequest
from center.storage import Storage
from center.web.app import create_app as create_center
from loyalty_engine import default_settings
from tests.center.center_factories import CARD, make_sale, master_tables, write_config
from tests.center.staff import staff_token
from tests.pos_agent.pos_fakes import make_config as make_pos_config
from tests.pos_agent.pos_fakes import running_agent
from tests.store_node.store_fakes import free_port, running_node
from tests.store_node.store_fakes import make_config as make_node_config

MILK = {"product_id": "1000", "qty_milli": 1000, "unit_price_minor": 1000}
PERSONAL = {"promotion_id": "personal", "kind": "personal_offers", "status": "active"}


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)


async def _card_answer(pos: TestClient[Any, Any]) -> dict[str, Any]:
    """Open a receipt with one milk and identify CARD; the card answer (receipt_id added)."""
    receipt_id = (await (await pos.post("/v1/receipts", json={})).json())["receipt_id"]
    assert (await pos.post(f"/v1/receipts/{receipt_id}/lines", json=MILK)).status == 200
    resp = await pos.post(f"/v1/receipts/{receipt_id}/card", json={"card_no": CARD})
    assert resp.status == 200, await resp.text()
    return {**await resp.json(), "receipt_id": receipt_id}


async def test_a_personal_offer_reaches_the_register_and_prices_offline(
    tmp_path: Path, storage: Storage
) -> None:
    tables = master_tables()
    tables["promotions"] = [{"promotion_id": "personal", "doc": PERSONAL}]
    tables["settings"] = [{"name": k, "value": v} for k, v in default_settings().items()]
    storage.feed.upsert_master(tables)
    now = datetime.now(UTC)
    sale = make_sale(1, card_no=CARD, accrue=40)  # CARD shopped at 367: in its scope
    storage.sales.ingest([dataclasses.replace(sale, opened_at=now, closed_at=now)], now)
    (tmp_path / "center").mkdir()
    config = load_center_config(
        write_config(tmp_path / "center", extra="[master]\nchecksum_every_s = 0\n")
    )
    runner = web.AppRunner(create_center(config, storage))
    await runner.setup()
    center_port, node_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", center_port).start()
    center = f"http://127.0.0.1:{center_port}"
    node_config = make_node_config(tmp_path, center_url=center, port=node_port)
    pos_config = make_pos_config(tmp_path / "pos", f"http://127.0.0.1:{node_port}")
    try:
        async with running_agent(pos_config, clock=lambda: datetime.now(UTC)) as pos:
            async with running_node(node_config):

                async def card_known() -> dict[str, Any] | None:
                    answer = await _card_answer(pos)
                    return answer if answer["known"] else None

                first = await _until(card_known, "CARD in the register's replica")
                assert first["personal_offers"] == [] and first["coupons"] == []

                token = staff_token(storage, "marketer")
                async with aiohttp.ClientSession() as http:
                    resp = await http.put(
                        f"{center}/v1/customers/hh-1/offers",
                        json={"offers": [{"product_id": "1000", "percent": 20}]},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert resp.status == 200, await resp.text()
                batch = storage.coupons.create_coupon_batch(
                    BatchRequest("personal", "e2e", "E2E", 2, True, None, None), "ann", now
                )
                issued = storage.coupons.issue_coupons(
                    batch["batch_id"], IssueRequest(customer_ids=("hh-1",)), "ann", now
                )
                (code,) = [c["code"] for c in issued["codes"]]

                async def offer_and_coupon_arrived() -> dict[str, Any] | None:
                    answer = await _card_answer(pos)
                    return answer if answer["personal_offers"] and answer["coupons"] else None

                answer = await _until(offer_and_coupon_arrived, "offer and coupon at the register")
                assert [(o["product_id"], o["percent"]) for o in answer["personal_offers"]] == [
                    ("1000", "20")
                ]
                assert [(c["code"], c["single_use"]) for c in answer["coupons"]] == [(code, True)]
                health = await (await pos.get("/health")).json()
                assert health["last_error"] in (None, ""), health  # every checksum agreed

            # The store node is gone: the register prices from its replica alone.
            answer = await _card_answer(pos)
            assert answer["personal_offers"] and answer["coupons"]
            receipt_id = answer["receipt_id"]
            resp = await pos.post(f"/v1/receipts/{receipt_id}/calculate", json={})
            assert resp.status == 200, await resp.text()
            calc = await resp.json()
            (line,) = calc["lines"]
            assert line["discounts"] == [{"rule_id": "personal", "amount_minor": 200}]
            resp = await pos.post(
                f"/v1/receipts/{receipt_id}/confirm",
                json={"payments": [{"method": "cash", "amount_minor": calc["total_minor"]}]},
            )
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["total_minor"] == 800
    finally:
        await runner.cleanup()
