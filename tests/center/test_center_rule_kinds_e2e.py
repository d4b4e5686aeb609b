"""Every rule kind the other end-to-end tests do not ring, proven through the real tiers:
receipts rung at registers' HTTP APIs, synced through store nodes to a Center that verifies
every sale (verification on), the registers' answers and the Center's sales and ledger checked
against hand-computed figures, over several receipts and two stores.

Kinds rung elsewhere: accrual_per_amount, counter_reward, goods_discount, wallet_exchange
(test_center_state_e2e); accrual_percent, threshold_discount (certificates, verify);
coupon (coupon_holds); personal_offers (offers). Here: ladder, buy_get, set_price,
price_floor, restriction (discount kinds), accrual_per_unit, favourite_categories,
referral_reward, compliment_accrual, compliment_redeem, prize_draw, issue_coupon.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from center.storage import Storage
from tests.center.center_factories import CARD, OTHER_CARD, master_tables
from tests.center.till import accrued, center, discounts, line, ring, store, until, uploaded

DISCOUNT_RULES: list[dict[str, Any]] = [
    {
        "promotion_id": "ladder",
        "kind": "ladder",
        "status": "active",
        "goods": {"products": ["4200"]},
        "steps": ["0", "10", "20"],
    },
    {
        "promotion_id": "b2g1",
        "kind": "buy_get",
        "status": "active",
        "goods": {"products": ["4100"]},
        "buy": 2,
        "get": 1,
    },
    {
        "promotion_id": "set",
        "kind": "set_price",
        "status": "active",
        "components": [
            {"goods": {"products": ["4300"]}, "qty": 1},
            {"goods": {"products": ["4301"]}, "qty": 1},
        ],
        "price_minor": 250,
    },
    {
        "promotion_id": "half",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": ["4400"]},
        "percent": "50",
    },
    {
        "promotion_id": "floor",
        "kind": "price_floor",
        "status": "active",
        "goods": {"products": ["4400"]},
        "min_unit_price_minor": 400,
    },
    {
        "promotion_id": "big",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": ["4500"]},
        "percent": "30",
    },
    {
        "promotion_id": "cap",
        "kind": "restriction",
        "status": "active",
        "promotions": ["big"],
        "max_discount_minor": 100,
        "max_grants_per_day": 1,
    },
]

WATER, YOGURT, CHIPS, BEER = "4200", "4100", "4300", "4301"
TOBACCO, TV = "4400", "4500"


def _tables(rules: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    tables = master_tables()
    tables["products"] += [
        {"product_id": "4000", "name": "Chocolate", "category": "SWEETS", "price_minor": 100},
        {"product_id": WATER, "name": "Water", "price_minor": 50},
        {"product_id": YOGURT, "name": "Yogurt", "price_minor": 80},
        {"product_id": CHIPS, "name": "Chips", "price_minor": 120},
        {"product_id": BEER, "name": "Beer", "price_minor": 200},
        {"product_id": TOBACCO, "name": "Tobacco", "price_minor": 500},
        {"product_id": TV, "name": "Kettle", "price_minor": 1000},
    ]
    tables["store_products"] = []  # every store sells everything
    tables["promotions"] = [{"promotion_id": d["promotion_id"], "doc": d} for d in rules]
    tables["settings"].append({"name": "coupon_key", "value": "rule-kinds-test-key"})
    return tables


def _card_sales(storage: Storage) -> list[tuple[str, int, int]]:
    rows = storage.db.execute(
        "SELECT store_id, total_minor, discount_minor FROM sales WHERE card_no = ? "
        "ORDER BY closed_at",
        (CARD,),
    ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]


def _cases(storage: Storage) -> int:
    return int(storage.db.execute("SELECT COUNT(*) FROM review_cases").fetchone()[0])


async def _at_center(storage: Storage, count: int) -> None:
    async def arrived() -> bool:
        return len(_card_sales(storage)) == count

    await until(arrived, f"{count} sales of the card at the Center")


async def test_ladder_buy_get_set_floor_and_restriction_across_receipts_and_stores(
    tmp_path: Path, storage: Storage
) -> None:
    storage.feed.upsert_master(_tables(DISCOUNT_RULES))
    async with center(tmp_path, storage) as url:
        async with store(tmp_path, url, "367") as register:
            first = await ring(
                register,
                [
                    line(WATER, 50, 3),
                    line(YOGURT, 80, 3),
                    line(CHIPS, 120),
                    line(BEER, 200),
                    line(TOBACCO, 500),
                    line(TV, 1000),
                ],
            )
            second = await ring(register, [line(TV, 1000), line(WATER, 50)])
            await uploaded(register)
            await _at_center(storage, 2)
        async with store(tmp_path, url, "406") as register:
            third = await ring(register, [line(TV, 1000), line(YOGURT, 80, 3)])
            await uploaded(register)
            await _at_center(storage, 3)

    # ladder: units at 0/10/20 % of 0.50, rates added and rounded once: 0.15; buy 2 get 1:
    # the third yogurt free (0.80); the set 1.20 + 2.00 for 2.50 (0.70 split by unit price,
    # largest remainder: 0.26 + 0.44); 50 % off tobacco stopped by its floor of 4.00 (1.00);
    # 30 % off the kettle (3.00) cut to 1.00 by the restriction, which grants once a day.
    assert discounts(first) == {"ladder": 15, "b2g1": 80, "set": 70, "half": 100, "big": 100}
    by_line = {row["product_id"]: row["discount_minor"] for row in first["lines"]}
    assert (by_line[CHIPS], by_line[BEER]) == (26, 44)
    assert discounts(second) == {}  # one water: step 0 %; the day's grant is used
    assert any(e.startswith("cap:") for e in second["explanation"]), second["explanation"]
    # Store 406 knows from the Center that the restriction granted today: no kettle discount.
    assert discounts(third) == {"b2g1": 80}
    assert _card_sales(storage) == [
        ("367", 2210 - 365, 365),
        ("367", 1050, 0),
        ("406", 1240 - 80, 80),
    ]
    assert _cases(storage) == 0


LOYALTY_RULES: list[dict[str, Any]] = [
    {
        "promotion_id": "stickers",
        "kind": "accrual_per_unit",
        "status": "active",
        "goods": {"products": ["4000"]},
        "points": 1,
        "wallet": "stickers",
    },
    {
        "promotion_id": "fav",
        "kind": "favourite_categories",
        "status": "active",
        "percent": "10",
        "choices": {"*": ["SWEETS"]},
    },
    {
        "promotion_id": "ref",
        "kind": "referral_reward",
        "status": "active",
        "points": 500,
    },
    {
        "promotion_id": "compl",
        "kind": "compliment_accrual",
        "status": "active",
        "per_amount_minor": 100,
        "weekly_cap": 3,
        "wallet": "compliment",
    },
    {
        "promotion_id": "compl-use",
        "kind": "compliment_redeem",
        "status": "active",
        "goods": {"products": ["1000"]},
        "wallet": "compliment",
        "default_cap": 3,
        "min_unit_price_minor": 100,
    },
    {
        "promotion_id": "draw",
        "kind": "prize_draw",
        "status": "active",
        "draw_id": "d1",
        "per_amount_minor": 100,
        "max_entries": 2,
    },
    {
        "promotion_id": "next",
        "kind": "issue_coupon",
        "status": "active",
        "prefix": "NEXT",
        "valid_days": 7,
    },
    {
        "promotion_id": "next-use",
        "kind": "coupon",
        "status": "active",
        "signed_prefix": "NEXT",
        "goods": {"products": ["1000"]},
        "amount_minor": 50,
    },
]

CHOCOLATE, MILK = "4000", "1000"


async def test_stickers_favourites_referral_compliments_draw_and_issued_coupon(
    tmp_path: Path, storage: Storage
) -> None:
    tables = _tables(LOYALTY_RULES)
    tables["customers"][0]["attributes"] = {
        "favourite_categories": "SWEETS",
        "referrer": OTHER_CARD,
    }
    storage.feed.upsert_master(tables)
    now = datetime.now(UTC)
    storage.returns.adjust(
        CARD, "compliment", 1, "given by the call center", "test", now, idempotency_key="c1"
    )
    async with center(tmp_path, storage) as url:
        async with store(tmp_path, url, "367") as register:
            first = await ring(
                register, [line(CHOCOLATE, 100, 3), line(MILK, 250, 2)], spend={"compliment": 1}
            )
            (code,) = first["confirmed"]["coupons_issued"]
            second = await ring(
                register, [line(CHOCOLATE, 100), line(MILK, 250, 2)], coupons=(code,)
            )
            await uploaded(register)
            await _at_center(storage, 2)
        async with store(tmp_path, url, "406") as register:
            rid = (await (await register.post("/v1/receipts", json={})).json())["receipt_id"]
            await register.post(f"/v1/receipts/{rid}/lines", json={"lines": [line(MILK, 250)]})
            await register.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
            again = await register.post(f"/v1/receipts/{rid}/coupons", json={"code": code})

    # Receipt 1: the compliment opens a weekly pass on milk (2 units at their floor 1.00: 3.00
    # off); total 5.00. Stickers 1 a chocolate (3); 10 % on the favourite category SWEETS
    # (0.30); the referred customer's first purchase (5.00); compliments 1 per 1.00 capped at
    # 3 a week; draw entries 1 per 1.00 capped at 2; a next-visit coupon issued.
    assert discounts(first) == {"compl-use": 300}
    assert accrued(first) == {
        "stickers": 3,
        "fav": 30,
        "ref": 500,
        "compl": 3,
        "draw": 2,
    }
    assert code.startswith("NEXT-")
    # Receipt 2: the pass has 1 unit of its cap of 3 left (1.50) and the coupon takes 0.50 off
    # milk; no referral (second purchase), no compliment (the week's 3 are earned).
    assert discounts(second) == {"compl-use": 150, "next-use": 50}
    assert accrued(second) == {"stickers": 1, "fav": 10, "draw": 2}
    # The code was redeemed at 367: store 406 refuses it.
    assert again.status in (404, 409, 422), await again.text()

    assert _card_sales(storage) == [("367", 500, 300), ("367", 400, 200)]
    history = storage.ledger.history(CARD)
    assert history is not None
    assert sorted((e.wallet, e.kind, e.amount, e.rule_id or "") for e in history) == sorted(
        [
            ("compliment", "adjustment", 1, ""),
            ("compliment", "spend", -1, "compl-use"),
            ("compliment", "accrue", 3, "compl"),
            ("stickers", "accrue", 3, "stickers"),
            ("stickers", "accrue", 1, "stickers"),
            ("bonus", "accrue", 30, "fav"),
            ("bonus", "accrue", 10, "fav"),
            ("bonus", "accrue", 500, "ref"),
            ("draw_entries", "accrue", 2, "draw"),
            ("draw_entries", "accrue", 2, "draw"),
        ]
    )
    assert _cases(storage) == 0
