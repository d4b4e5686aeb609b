"""Seeded random dense cases (every kind, stacking mode, limit and condition over a small
catalogue, baskets with a full customer state) priced by whichever ``loyalty_engine`` is first
on the path; only its public API is used, so an older engine extracted from git runs it too.

``python dense_cases.py SEED BASKETS`` prints one JSON list: per basket, its ``to_dict()`` or
the error it raised.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from loyalty_engine import (
    ComplimentPass,
    CustomerState,
    EngineError,
    PersonalOffer,
    Receipt,
    ReceiptLine,
    calculate,
    default_promotions,
    default_settings,
    load_promotion_set,
)

CATEGORIES = 12
PRODUCTS = 240
STORES = ("S1", "S2", "S3", "S4")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def product(k: int) -> dict[str, str]:
    """The catalogue's product ``k``: its line keys."""
    return {
        "product_id": f"P{k:03d}",
        "department": f"DEP{k % CATEGORIES // 3}",
        "category": f"C{k % CATEGORIES:02d}",
        "brand": f"B{k % 17:02d}",
        "type": f"T{k % 9}",
    }


def _goods(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    goods: dict[str, Any]
    if roll < 0.35:
        goods = {"products": [f"P{rng.randrange(PRODUCTS):03d}" for _ in range(rng.randint(1, 8))]}
    elif roll < 0.65:
        goods = {
            "categories": [f"C{c:02d}" for c in rng.sample(range(CATEGORIES), rng.randint(1, 3))]
        }
    elif roll < 0.72:
        goods = {"brands": [f"B{rng.randrange(17):02d}"]}
    elif roll < 0.78:
        goods = {"types": [f"T{rng.randrange(9)}"]}
    elif roll < 0.84:
        goods = {"departments": [f"DEP{rng.randrange(4)}"]}
    elif roll < 0.92:
        goods = {
            "categories": [f"C{c:02d}" for c in range(CATEGORIES)],
            "products": [f"P{rng.randrange(PRODUCTS):03d}"],
        }
    else:
        goods = {}
    if rng.random() < 0.3:
        name = rng.choice(
            ["exclude_products", "exclude_brands", "exclude_categories", "exclude_types"]
        )
        value = {
            "exclude_products": f"P{rng.randrange(PRODUCTS):03d}",
            "exclude_brands": f"B{rng.randrange(17):02d}",
            "exclude_categories": f"C{rng.randrange(CATEGORIES):02d}",
            "exclude_types": f"T{rng.randrange(9)}",
        }[name]
        goods[name] = [value]
    return goods


def _narrow(rng: random.Random) -> dict[str, Any]:
    goods = _goods(rng)
    return goods if any(not k.startswith("exclude") for k in goods) else {"brands": ["B03"]}


def _kind(n: int, rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    pct = str(rng.choice([1, 3, 5, 7.5, 10, 15, 20, 33.333, 50, 100]))
    if roll < 0.30:
        which = rng.choice(["percent", "percent", "amount_off_minor", "fixed_price_minor"])
        value: Any = pct if which == "percent" else rng.choice([5, 10, 20, 50, 150])
        doc = {"kind": "goods_discount", "goods": _goods(rng), which: value}
        if rng.random() < 0.15:
            doc["min_qty_milli"] = rng.choice([2000, 3000])
        return doc
    if roll < 0.38:
        steps = rng.choice([["0", "10", "20", "30"], ["0", "50"], ["5", "12.5"]])
        return {
            "kind": "ladder",
            "goods": _goods(rng),
            "steps": steps,
            "repeat_last": rng.random() < 0.7,
        }
    if roll < 0.46:
        return {
            "kind": "buy_get",
            "goods": _goods(rng),
            "buy": rng.randint(1, 3),
            "get": rng.randint(1, 2),
            "percent": rng.choice(["100", "50"]),
            "per_product": rng.random() < 0.5,
        }
    if roll < 0.50:
        return {
            "kind": "set_price",
            "components": [
                {"goods": _narrow(rng), "qty": rng.randint(1, 2)},
                {"goods": _narrow(rng), "qty": 1},
            ],
            "price_minor": rng.randint(100, 900),
        }
    if roll < 0.54:
        return {
            "kind": "price_floor",
            "goods": _goods(rng),
            "max_discount_percent": rng.choice(["20", "40"]),
            "min_unit_price_minor": rng.choice([0, 30]),
        }
    if roll < 0.58:
        return {
            "kind": "threshold_discount",
            "steps": [
                {"min_total_minor": 1000, "percent": "3"},
                rng.choice(
                    [
                        {"min_total_minor": 5000, "percent": "5"},
                        {"min_total_minor": 5000, "amount_minor": 150},
                    ]
                ),
            ],
        }
    if roll < 0.61:
        return {
            "kind": "coupon",
            "codes": [f"CODE{n % 7}"],
            "percent": "10",
            "goods": _goods(rng),
            "multi_use": rng.random() < 0.5,
        }
    if roll < 0.63:
        return {"kind": "personal_offers", "goods": _goods(rng), "max_percent": "15"}
    if roll < 0.65:
        return {
            "kind": "compliment_redeem",
            "goods": _narrow(rng),
            "default_cap": rng.randint(1, 5),
            "max_discount_percent": "50",
        }
    if roll < 0.67:
        return {
            "kind": "wallet_exchange",
            "goods": _goods(rng),
            "wallet": "stickers",
            "value_minor": rng.choice([30, 100]),
        }
    if roll < 0.69:
        return {
            "kind": "restriction",
            "promotions": [f"R{rng.randrange(n + 1):03d}" for _ in range(4)],
            "max_discount_minor": rng.choice([50, 200]),
        }
    if roll < 0.78:
        doc = {
            "kind": "accrual_percent",
            "goods": _goods(rng),
            "percent": rng.choice(["1", "2.5", "5"]),
            "requires_card": True,
        }
        if rng.random() < 0.3:
            doc["lifetime_days"] = 30
        return doc
    if roll < 0.84:
        return {
            "kind": "accrual_per_amount",
            "goods": _goods(rng),
            "per_amount_minor": rng.choice([500, 2000]),
            "points": 1,
            "wallet": "chips",
        }
    if roll < 0.88:
        return {
            "kind": "accrual_per_unit",
            "goods": _narrow(rng),
            "points": rng.randint(1, 3),
            "wallet": "stickers",
        }
    if roll < 0.90:
        return {
            "kind": "counter_reward",
            "counter": "purchases",
            "every": rng.choice([2, 3]),
            "points": 500,
        }
    if roll < 0.92:
        return {
            "kind": "favourite_categories",
            "percent": "4",
            "choices": {"*": [f"C{c:02d}" for c in range(6)]},
        }
    if roll < 0.94:
        return {"kind": "compliment_accrual", "per_amount_minor": 3000, "weekly_cap": 3}
    which = rng.choice(["percent", "amount_off_minor"])
    return {
        "kind": "goods_discount",
        "goods": _goods(rng),
        which: "6" if which == "percent" else 15,
        "stacking": "best",
    }


def promotion_docs(seed: int, count: int = 160) -> list[dict[str, Any]]:
    """``count`` active (mostly) rules of every kind over the catalogue, with the demo chain's."""
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []
    for n in range(count):
        doc: dict[str, Any] = {
            "promotion_id": f"R{n:03d}",
            "status": "active",
            "priority": rng.randint(1, 60),
        }
        doc.update(_kind(n, rng))
        if rng.random() < 0.03:
            doc["status"] = "draft"
        if rng.random() < 0.12 and doc["kind"] not in ("restriction",):
            doc["stacking"] = rng.choice(["additive", "best", "exclusive", "compound"])
        if rng.random() < 0.15:
            start = T0.date() + timedelta(days=rng.randint(-20, 5))
            doc["schedule"] = {
                "from": start.isoformat(),
                "to": (start + timedelta(days=rng.randint(0, 30))).isoformat(),
            }
        if rng.random() < 0.08:
            doc["place"] = {"stores": rng.sample(STORES, 2)}
        if rng.random() < 0.05:
            doc["tiers"] = ["gold"]
        if rng.random() < 0.04:
            doc["segments"] = ["students"]
        if rng.random() < 0.04:
            doc["min_subtotal_minor"] = 3000
        if rng.random() < 0.10 and doc["kind"] != "restriction":
            doc["limits"] = rng.choice(
                [
                    {"max_discount_minor": rng.choice([40, 120])},
                    {"max_fires_per_day": 1},
                    {"max_qty_per_day_milli": rng.choice([1000, 3000])},
                    {"max_qty_per_month_milli": 5000, "max_discount_minor": 300},
                    {"max_accrual_minor": 50},
                ]
            )
        if rng.random() < 0.04 and doc["kind"] != "restriction":
            doc["funding"] = {"by": "supplier:acme", "budget_minor": 10_000}
        if rng.random() < 0.08:
            doc["messages"] = {"slip": "{promotion_id}: {amount} ({percent}) {total}"}
        docs.append(doc)
    # Every stacking mode at least once in every set.
    for n, mode in enumerate(("additive", "best", "exclusive")):
        docs.append(
            {
                "promotion_id": f"M{n}",
                "kind": "goods_discount",
                "status": "active",
                "priority": 30,
                "goods": {"categories": [f"C{c:02d}" for c in range(n, CATEGORIES, 3)]},
                "percent": ("4", "9", "25")[n],
                "stacking": mode,
            }
        )
    docs.extend(default_promotions())
    return docs


def _state(rng: random.Random, ids: list[str]) -> CustomerState:
    some = rng.sample(ids, len(ids) // 3)
    return CustomerState(
        tier=rng.choice(["", "gold", "silver"]),
        attributes={"city": "Moscow"},
        favourite_categories=tuple(f"C{c:02d}" for c in rng.sample(range(CATEGORIES), 3)),
        personal_offers=tuple(
            PersonalOffer(
                f"po{k}",
                tuple(f"P{rng.randrange(PRODUCTS):03d}" for _ in range(15)),
                Decimal(rng.choice([5, 7, 12])),
            )
            for k in range(3)
        ),
        wallets={
            "bonus": rng.choice([0, 5000, 125_000]),
            "stickers": rng.randint(0, 12),
            "chips": 30,
            "compliment": rng.randint(0, 2),
        },
        counters={"purchases": rng.randint(0, 9), "compliment_week": rng.randint(0, 3)},
        fired_day={pid: 1 for pid in some[:10]},
        fired_month={pid: 2 for pid in some[:20]},
        fired_total={pid: 3 for pid in some},
        qty_day_milli={pid: rng.choice([0, 1000, 2500]) for pid in some[:15]},
        qty_month_milli={pid: 4000 for pid in some[:25]},
        used_coupons=frozenset({"CODE1", "CODE2"}),
        compliment_passes=tuple(
            ComplimentPass(
                f"R{rng.randrange(len(ids)):03d}",
                f"P{rng.randrange(PRODUCTS):03d}",
                T0 - timedelta(days=2),
                T0 + timedelta(days=5),
                4,
                rng.randint(0, 3),
            )
            for _ in range(2)
        ),
    )


def cases(seed: int, baskets: int) -> Iterator[tuple[Receipt, dict[str, Any]]]:
    """``baskets`` random receipts for the seed's promotion set, each with its ``calculate``
    keyword arguments (bonus and wallet spends, budgets left, pass products)."""
    rng = random.Random(seed * 7919 + 1)
    ids = [d["promotion_id"] for d in promotion_docs(seed)]
    for k in range(baskets):
        size = rng.choice([1, 3, 10, 25, 50, 50])
        chosen = [rng.randrange(PRODUCTS) for _ in range(size)]
        lines = []
        for i, p in enumerate(chosen):
            keys = product(p)
            price = rng.randint(20, 900)
            qty = rng.choice([1000, 1000, 2000, 3000, 5000, 1500, 250])
            lines.append(
                ReceiptLine(
                    i + 1,
                    keys["product_id"],
                    qty,
                    price,
                    (qty * price + 500) // 1000,
                    department=keys["department"],
                    category=keys["category"],
                    brand=keys["brand"],
                    type=keys["type"],
                    cost_minor=rng.choice([None, None, price // 2]),
                )
            )
        card = rng.random() < 0.8
        state = _state(rng, ids) if card else None
        receipt = Receipt(
            tuple(lines),
            T0 + timedelta(hours=rng.randint(-48, 48)),
            rng.choice(STORES),
            rng.choice(["supermarket", "discounter"]),
            "2000000000011" if card else None,
            rng.choice(["", "students"]),
            state.wallets["bonus"] if state else 0,
            receipt_id=f"r{k}",
            coupon_codes=tuple(rng.sample(["CODE0", "CODE1", "CODE3", "CODE5"], rng.randint(0, 2))),
            customer=state,
        )
        spend = None
        if state is not None:
            wanted = {"compliment": rng.randint(0, 2), "stickers": rng.randint(0, 3)}
            spend = {w: min(u, state.wallets[w]) for w, u in wanted.items()}
        yield (
            receipt,
            {
                "bonus_to_spend": rng.choice([0, 0, 100])
                if state and state.wallets["bonus"]
                else 0,
                "spend": spend,
                "budgets_left": {ids[j]: rng.choice([0, 50, 5000]) for j in range(0, len(ids), 5)},
                "pass_products": tuple(line.product_id for line in lines[-2:]),
            },
        )


def receipts(seed: int, baskets: int) -> list[Receipt]:
    """The receipts of ``cases`` alone."""
    return [receipt for receipt, _ in cases(seed, baskets)]


def settings_for(seed: int) -> dict[str, str]:
    """The chain settings of the seed: no cap, a discount share cap or an accrual cap."""
    settings = {**default_settings(), "currency": "RUB"}
    if seed % 3 == 1:
        settings["max_discount_share"] = "0.2"
    if seed % 3 == 2:
        settings["max_accrual_minor"] = "300"
    return settings


def price_all(seed: int, baskets: int) -> list[Any]:
    """Price the seed's cases; per basket its ``to_dict()`` or the error it raised."""
    promotions = load_promotion_set(promotion_docs(seed), version=seed, settings=settings_for(seed))
    out: list[Any] = []
    for receipt, kwargs in cases(seed, baskets):
        try:
            out.append(calculate(receipt, promotions, **kwargs).to_dict())
        except EngineError as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return out


if __name__ == "__main__":
    print(json.dumps(price_all(int(sys.argv[1]), int(sys.argv[2]))))
