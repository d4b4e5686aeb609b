"""The customer state through the real tiers: receipts rung at registers' HTTP APIs, synced
through store nodes to the Center, the Center's ledger and sales checked against hand-computed
expectations. Center app -> two store node apps -> their registers (real uploaders, real feed).

One card (customer hh-1, city Moscow) buys on one day (chain time zone UTC):
- welcome: counter_reward, purchases at 1 -> 100.00 bonus, paid on the first receipt only;
- once: bread (1001) 50 % off, ``limits.max_fires_total: 1``: the first receipt only;
- cap: milk (1000) 1.00 off a unit, at most 2 units a day per customer, across receipts;
- cash: juice (2000) 10 % off when a tender is cash;
- moscow: cheese (3000) 20 % off for customers whose attribute city is Moscow.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from center.promotions.recompute import ProductInfo, promotion_set_at, recompute_sale
from center.storage import Storage
from sync_protocol import decode_sale
from tests.center.center_factories import CARD, master_tables
from tests.center.till import accrued, discounts, line, ring, until, uploaded
from tests.center.till import center as center_app
from tests.pos_agent.pos_fakes import make_config as make_pos_config
from tests.pos_agent.pos_fakes import running_agent
from tests.store_node.store_fakes import free_port, running_node
from tests.store_node.store_fakes import make_config as make_node_config

PROMOTIONS: list[dict[str, Any]] = [
    {
        "promotion_id": "welcome",
        "kind": "counter_reward",
        "status": "active",
        "counter": "purchases",
        "at": 1,
        "points": 10_000,
    },
    {
        "promotion_id": "once",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": ["1001"]},
        "percent": "50",
        "limits": {"max_fires_total": 1},
    },
    {
        "promotion_id": "cap",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": ["1000"]},
        "amount_off_minor": 100,
        "limits": {"max_qty_per_day_milli": 2000},
    },
    {
        "promotion_id": "cash",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": ["2000"]},
        "percent": "10",
        "payment_types": ["cash"],
    },
    {
        "promotion_id": "moscow",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": ["3000"]},
        "percent": "20",
        "attributes": {"city": "Moscow"},
    },
]


BREAD, MILK = line("1001", 200), line("1000", 250)
JUICE, CHEESE = line("2000", 1000), line("3000", 500)


def _card_sales(storage: Storage) -> list[tuple[str, int, int]]:
    """(store, total, discount) of CARD's sales at the Center, in closing order."""
    rows = storage.db.execute(
        "SELECT store_id, total_minor, discount_minor FROM sales WHERE card_no = ? "
        "ORDER BY closed_at",
        (CARD,),
    ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]


def _recomputed(storage: Storage, docs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The differences of each of CARD's sales at the Center when priced again there."""
    out = []
    for (payload,) in storage.db.execute(
        "SELECT payload FROM sales WHERE card_no = ? ORDER BY closed_at", (CARD,)
    ).fetchall():
        sale = decode_sale(bytes(payload))
        rows = [{"doc": d, "version": sale.promo_version} for d in docs]
        promotions = promotion_set_at(rows, {}, sale.promo_version)
        products = {p: ProductInfo() for p in ("1000", "1001", "2000", "3000")}
        out.append(recompute_sale(sale, promotions, products=products).differences)
    return out


def _rule_discounts(storage: Storage) -> dict[str, list[int]]:
    """Per line product of CARD's sales at the Center: the discount of each sale, in order."""
    out: dict[str, list[int]] = {}
    for product_id, discount in storage.db.execute(
        "SELECT l.product_id, l.discount_minor FROM sale_lines l JOIN sales s "
        "ON s.sale_id = l.sale_id WHERE s.card_no = ? ORDER BY s.closed_at, l.line_no",
        (CARD,),
    ).fetchall():
        out.setdefault(str(product_id), []).append(int(discount))
    return out


async def test_welcome_once_daily_cap_cash_and_attribute_rules_across_receipts_and_stores(
    tmp_path: Path, storage: Storage
) -> None:
    tables = master_tables()
    tables["customers"][0]["attributes"] = {"age": "65+", "city": "Moscow"}
    tables["promotions"] = [{"promotion_id": d["promotion_id"], "doc": d} for d in PROMOTIONS]
    storage.feed.upsert_master(tables)
    node_port, other_port = free_port(), free_port()

    async with center_app(tmp_path, storage) as center:
        node_config = make_node_config(tmp_path / "n367", center_url=center, port=node_port)
        pos_config = make_pos_config(tmp_path / "pos", f"http://127.0.0.1:{node_port}")
        clock = lambda: datetime.now(UTC)  # noqa: E731
        async with running_node(node_config):
            async with running_agent(pos_config, clock=clock) as pos:

                async def promotions_arrived() -> bool:
                    health = await (await pos.get("/health")).json()
                    return health["master_version"] > 0

                await until(promotions_arrived, "master data at register 367-1")
                first = await ring(pos, [BREAD, MILK], method="card")
                second = await ring(pos, [BREAD, line("1000", 250, 2)], method="card")
                await uploaded(pos)

            # The register restarts on the same files: its journal still counts its sales.
            async with running_agent(pos_config, clock=clock) as pos:
                third = await ring(pos, [MILK, JUICE, CHEESE], method="cash")
                await uploaded(pos)

            async def center_has_them() -> bool:
                return len(_card_sales(storage)) == 3

            await until(center_has_them, "three sales of store 367 at the Center")

        # Store 406, another node and register, learns the card from the Center (lookup).
        other_node = make_node_config(tmp_path / "n406", center_url=center, port=other_port)
        other_node = dataclasses.replace(
            other_node,
            store=dataclasses.replace(other_node.store, store_id="406", node_id="store-406"),
        )
        other_pos = make_pos_config(tmp_path / "pos406", f"http://127.0.0.1:{other_port}")
        other_pos = dataclasses.replace(
            other_pos,
            register=dataclasses.replace(other_pos.register, register_id="406-1", store_id="406"),
        )
        async with running_node(other_node), running_agent(other_pos, clock=clock) as pos:

            async def promotions_at_406() -> bool:
                health = await (await pos.get("/health")).json()
                return health["master_version"] > 0

            await until(promotions_at_406, "master data at register 406-1")
            fourth = await ring(pos, [BREAD, MILK, JUICE], method="card")
            await uploaded(pos)

            async def center_has_four() -> bool:
                return len(_card_sales(storage)) == 4

            await until(center_has_four, "the sale of store 406 at the Center")

    # At the registers: what each receipt was given.
    assert accrued(first) == {"welcome": 10_000}
    assert discounts(first) == {"once": 100, "cap": 100}  # 50 % of 2.00; 1 milk of 2 a day
    assert accrued(second) == {}  # purchases becomes 2: no welcome
    assert discounts(second) == {"cap": 100}  # once fired already; 1 milk unit left today
    assert accrued(third) == {}
    assert discounts(third) == {"cash": 100, "moscow": 100}  # cap used up; cash; Moscow
    assert accrued(fourth) == {}  # the Center's state: 3 purchases, once fired, cap used
    assert discounts(fourth) == {}  # juice paid by card: no cash discount
    # At the Center: the four sales as hand-computed, and the welcome credited once.
    assert _card_sales(storage) == [
        ("367", 200 + 250 - 200, 200),
        ("367", 200 + 500 - 100, 100),
        ("367", 250 + 1000 + 500 - 200, 200),
        ("406", 200 + 250 + 1000, 0),
    ]
    assert _rule_discounts(storage) == {
        "1001": [100, 0, 0],
        "1000": [100, 100, 0, 0],
        "2000": [100, 0],
        "3000": [100],
    }
    history = storage.ledger.history(CARD)
    assert history is not None
    assert [(e.wallet, e.kind, e.amount, e.rule_id) for e in history] == [
        ("bonus", "accrue", 10_000, "welcome")
    ]
    balance = storage.ledger.balance(CARD, datetime.now(UTC))
    assert balance is not None and balance.wallets["bonus"] == 10_000


STICKERS: list[dict[str, Any]] = [
    {
        "promotion_id": "stickers",
        "kind": "accrual_per_amount",
        "status": "active",
        "per_amount_minor": 100,
        "points": 1,
        "wallet": "stickers",
    },
    {
        "promotion_id": "swap",
        "kind": "wallet_exchange",
        "status": "active",
        "goods": {"products": ["1001"]},
        "wallet": "stickers",
        "value_minor": 10,
    },
]


async def test_stickers_earned_at_one_store_are_spent_at_another_and_debited_at_the_center(
    tmp_path: Path, storage: Storage
) -> None:
    tables = master_tables()
    tables["promotions"] = [{"promotion_id": d["promotion_id"], "doc": d} for d in STICKERS]
    storage.feed.upsert_master(tables)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    async with center_app(tmp_path, storage) as center:
        node_port = free_port()
        node_config = make_node_config(tmp_path / "n367", center_url=center, port=node_port)
        pos_config = make_pos_config(tmp_path / "pos", f"http://127.0.0.1:{node_port}")
        async with running_node(node_config), running_agent(pos_config, clock=clock) as pos:

            async def ready() -> bool:
                return bool((await (await pos.get("/health")).json())["master_version"])

            await until(ready, "master data at register 367-1")
            earned = await ring(pos, [line("1000", 1000)], method="card")  # 10.00: 10 stickers
            await uploaded(pos)

            async def at_center() -> bool:
                balance = storage.ledger.balance(CARD, datetime.now(UTC))
                return balance is not None and balance.wallets.get("stickers") == 10

            await until(at_center, "10 stickers at the Center")

        other_port = free_port()
        other_node = make_node_config(tmp_path / "n406", center_url=center, port=other_port)
        other_node = dataclasses.replace(
            other_node,
            store=dataclasses.replace(other_node.store, store_id="406", node_id="store-406"),
        )
        other_pos = make_pos_config(tmp_path / "pos406", f"http://127.0.0.1:{other_port}")
        other_pos = dataclasses.replace(
            other_pos,
            register=dataclasses.replace(other_pos.register, register_id="406-1", store_id="406"),
        )
        async with running_node(other_node), running_agent(other_pos, clock=clock) as pos:

            async def ready_406() -> bool:
                return bool((await (await pos.get("/health")).json())["master_version"])

            await until(ready_406, "master data at register 406-1")
            rid = (await (await pos.post("/v1/receipts", json={})).json())["receipt_id"]
            await pos.post(f"/v1/receipts/{rid}/lines", json={"lines": [BREAD]})
            await pos.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
            too_many = await pos.post(
                f"/v1/receipts/{rid}/calculate", json={"spend": {"stickers": 11}}
            )
            assert too_many.status == 422
            assert (await too_many.json())["field"] == "spend.stickers"
            spend = {"spend": {"stickers": 10}}
            calc = await (await pos.post(f"/v1/receipts/{rid}/calculate", json=spend)).json()
            resp = await pos.post(
                f"/v1/receipts/{rid}/confirm",
                json={**spend, "payments": [{"method": "cash", "amount_minor": 100}]},
            )
            assert resp.status == 200, await resp.text()
            await uploaded(pos)

            async def spent_at_center() -> bool:
                return len(_card_sales(storage)) == 2

            await until(spent_at_center, "the spend at the Center")

    assert accrued(earned) == {"stickers": 10}
    assert discounts(calc) == {"swap": 100}  # 10 stickers x 0.10 off bread (2.00)
    assert accrued(calc) == {"stickers": 1}  # 1.00 paid: 1 sticker
    assert _card_sales(storage) == [("367", 1000, 0), ("406", 100, 100)]
    history = storage.ledger.history(CARD)
    assert history is not None
    assert sorted((e.wallet, e.kind, e.amount, e.rule_id) for e in history) == [
        ("stickers", "accrue", 1, "stickers"),
        ("stickers", "accrue", 10, "stickers"),
        ("stickers", "spend", -10, "swap"),
    ]
    balance = storage.ledger.balance(CARD, datetime.now(UTC))
    assert balance is not None and balance.wallets.get("stickers") == 1
    # The Center prices both again as the registers did: the cash tender, the stickers spent.
    assert _recomputed(storage, STICKERS) == [(), ()]
