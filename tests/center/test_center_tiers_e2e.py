"""A tier upgrade through the real tiers: Center app -> store node app -> register (real
uploader, real feed), on both backends.

Programme: silver at 10.00 spent within 30 days (no grace). Rules for silver only:
- silver-milk: milk (1000) 10 % off;
- silver-points: 50 bonus points (0.50) per whole 1.00 of the receipt.
Receipt 1 (no level yet): milk 2.50 + juice 10.00 = 12.50, nothing off, nothing accrued; it
brings the window to 12.50, so the register upgrades the card to silver at once. Receipt 2 at the
same register: milk 2.50 - 0.25 = 2.25, two whole 1.00 steps: 100 points. The Center then books
the two sales, its ledger holds exactly the 100 points, and its review records the upgrade.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from center.config import load_config
from center.storage import Storage
from center.web.app import create_app as create_center
from tests.center.center_factories import CARD, master_tables, write_config
from tests.pos_agent.pos_fakes import make_config as make_pos_config
from tests.pos_agent.pos_fakes import running_agent
from tests.store_node.store_fakes import free_port, running_node
from tests.store_node.store_fakes import make_config as make_node_config

PROGRAMME: dict[str, Any] = {
    "period_days": 30,
    "grace_days": 0,
    "levels": [
        {
            "code": "silver",
            "title": {"ru": "Серебро", "en": "Silver"},
            "rank": 1,
            "spend_minor": 1_000,
        }
    ],
}
RULES: list[dict[str, Any]] = [
    {
        "promotion_id": "silver-milk",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": ["1000"]},
        "percent": "10",
        "tiers": ["silver"],
    },
    {
        "promotion_id": "silver-points",
        "kind": "accrual_per_amount",
        "status": "active",
        "per_amount_minor": 100,
        "points": 50,
        "tiers": ["silver"],
    },
]
MILK = {"product_id": "1000", "qty_milli": 1000, "unit_price_minor": 250}
JUICE = {"product_id": "2000", "qty_milli": 1000, "unit_price_minor": 1000}


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)


async def _ring(
    pos: TestClient[Any, Any], lines: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One receipt with CARD paid by card; (what identifying the card answered, the calculation)."""
    receipt_id = (await (await pos.post("/v1/receipts", json={})).json())["receipt_id"]
    resp = await pos.post(f"/v1/receipts/{receipt_id}/lines", json={"lines": lines})
    assert resp.status == 200, await resp.text()
    resp = await pos.post(f"/v1/receipts/{receipt_id}/card", json={"card_no": CARD})
    card = await resp.json()
    assert resp.status == 200 and card["known"] is True
    resp = await pos.post(f"/v1/receipts/{receipt_id}/calculate", json={})
    assert resp.status == 200, await resp.text()
    calc: dict[str, Any] = await resp.json()
    paid = [{"method": "card", "amount_minor": calc["total_minor"]}]
    resp = await pos.post(f"/v1/receipts/{receipt_id}/confirm", json={"payments": paid})
    assert resp.status == 200, await resp.text()
    return card, calc


@asynccontextmanager
async def _center(tmp_path: Path, storage: Storage) -> AsyncIterator[str]:
    (tmp_path / "center").mkdir()
    config = load_config(
        write_config(tmp_path / "center", verify=True, extra="[master]\nchecksum_every_s = 0\n")
    )
    runner = web.AppRunner(create_center(config, storage))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _discounts(calc: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in calc["lines"]:
        for d in line["discounts"]:
            out[d["rule_id"]] = out.get(d["rule_id"], 0) + d["amount_minor"]
    return out


async def test_tier_upgrade_on_the_qualifying_receipt_privilege_on_the_next(
    tmp_path: Path, storage: Storage
) -> None:
    tables = master_tables()
    tables["promotions"] = [{"promotion_id": d["promotion_id"], "doc": d} for d in RULES]
    storage.feed.upsert_master(tables)
    storage.tiers.set_programme(PROGRAMME, actor="test", now=datetime.now(UTC))
    node_port = free_port()
    clock = lambda: datetime.now(UTC)  # noqa: E731
    async with _center(tmp_path, storage) as center:
        node_config = make_node_config(tmp_path / "n367", center_url=center, port=node_port)
        pos_config = make_pos_config(tmp_path / "pos", f"http://127.0.0.1:{node_port}")
        async with running_node(node_config), running_agent(pos_config, clock=clock) as pos:

            async def ready() -> bool:
                return bool((await (await pos.get("/health")).json())["master_version"])

            await _until(ready, "master data at register 367-1")
            card_first, first = await _ring(pos, [MILK, JUICE])
            card_second, second = await _ring(pos, [MILK])

            async def at_center() -> bool:
                (count,) = storage.db.execute(
                    "SELECT COUNT(*) FROM sales WHERE card_no = ?", (CARD,)
                ).fetchone()
                return int(count) == 2

            await _until(at_center, "both sales at the Center")

    # At the register: no level on the first receipt, silver's privileges on the second.
    assert card_first["tier"] == "" and card_first["tier_progress"]["next"]["tier"] == "silver"
    assert card_first["tier_progress"]["next"]["spend_minor_needed"] == 1_000
    assert card_second["tier"] == "silver"
    progress = card_second["tier_progress"]
    assert (progress["spend_minor"], progress["next"]) == (1_250, None)
    today = datetime.now(UTC).date()  # the chain's zone is UTC; kept 30 days from today
    assert progress["kept_until"] in {
        (today + timedelta(days=29)).isoformat(),
        (today + timedelta(days=28)).isoformat(),  # upgraded just before midnight
    }
    assert (_discounts(first), first["accrual"]) == ({}, [])
    assert _discounts(second) == {"silver-milk": 25}  # 10 % of 2.50
    assert [(a["rule_id"], a["amount"]) for a in second["accrual"]] == [("silver-points", 100)]
    # At the Center: the sales as hand-computed, the ledger holds the 100 points only.
    totals = storage.db.execute(
        "SELECT total_minor, discount_minor FROM sales WHERE card_no = ? ORDER BY closed_at",
        (CARD,),
    ).fetchall()
    assert [(int(t), int(d)) for t, d in totals] == [(1_250, 0), (225, 25)]
    # Verified at ingest with the tier the register was entitled to: no case, the claim booked.
    assert storage.db.execute("SELECT COUNT(*) FROM review_cases").fetchone()[0] == 0
    history = storage.ledger.history(CARD)
    assert history is not None
    assert [(e.wallet, e.kind, e.amount, e.rule_id) for e in history] == [
        ("bonus", "accrue", 100, "silver-points")
    ]
    # The Center's review records the upgrade of that day; its card state agrees.
    now = datetime.now(UTC)
    assert storage.tiers.review(now) == {"reviewed": 1, "changed": 1}
    view = storage.tiers.customer_tier("hh-1", now)
    assert view is not None and view["tier"] == "silver"
    assert [(h["to"], h["reason"]) for h in view["history"]] == [("silver", "upgrade")]
    days = {
        storage.db.dt(r[0]).date()
        for r in storage.db.execute(
            "SELECT closed_at FROM sales WHERE card_no = ?", (CARD,)
        ).fetchall()
    }
    assert (view["spend_minor"], view["visits"]) == (1_475, len(days))  # 1 unless at midnight
    state = storage.states.derive([(CARD, "hh-1")], now)[CARD].state
    assert (state.tier, state.tier_spend_minor) == ("silver", 1_475)
