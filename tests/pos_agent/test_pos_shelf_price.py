"""A line sent without a price takes the product's shelf price from the replica (master data)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.pos_agent.pos_fakes import (
    IdleUploader,
    TickClock,
    demo_snapshot,
    make_config,
    running_agent,
    seed_replica,
)


async def test_a_line_without_a_price_takes_the_shelf_price(tmp_path: Path) -> None:
    base = demo_snapshot(promotions=[])
    milk, bread, gum = base.tables["products"]
    products = ({**milk, "price_minor": 8990}, {**bread, "price_minor": None}, gum)
    config = make_config(tmp_path / "pos")
    seed_replica(config, dataclasses.replace(base, tables={**base.tables, "products": products}))
    async with running_agent(config, clock=TickClock(), uploader=IdleUploader()) as client:
        receipt_id = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        lines = f"/v1/receipts/{receipt_id}/lines"
        resp = await client.post(lines, json={"product_id": "milk", "qty_milli": 2000})
        assert resp.status == 200, await resp.text()
        # The register software's own price still wins when it sends one.
        resp = await client.post(
            lines, json={"product_id": "milk", "qty_milli": 1000, "unit_price_minor": 100}
        )
        assert resp.status == 200
        # No shelf price (none published, or an unknown product): 422, nothing added.
        for product_id in ("bread", "nope"):
            resp = await client.post(
                lines,
                json={
                    "lines": [
                        {"product_id": "gum", "qty_milli": 1000, "unit_price_minor": 5},
                        {"product_id": product_id, "qty_milli": 1000},
                    ]
                },
            )
            assert resp.status == 422
            error = await resp.json()
            assert error["detail"].startswith("lines[1].unit_price_minor: no shelf price")
        receipt = await (await client.get(f"/v1/receipts/{receipt_id}")).json()
        assert [(line["unit_price_minor"], line["amount_minor"]) for line in receipt["lines"]] == [
            (8990, 17980),
            (100, 100),
        ]
