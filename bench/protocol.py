"""Benchmark of sync_protocol's canonical sale codec; prints one JSON object.

For realistic sales of 10 and 50 lines (a third of the lines discounted, two payments, a bonus
spend and a dated accrual, card, slip messages, chain hash): p50 microseconds per sale of
`encode_sale`, `decode_sale`, and of `encode` / `decode` of a SaleBatch (per sale in the
batch), plus sales per second at those p50s, on one core.

Usage: .venv/bin/python bench/protocol.py [--samples 200] [--batch 100] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sync_protocol import (
    LineDiscount,
    LoyaltyMovement,
    Payment,
    Sale,
    SaleBatch,
    SaleLine,
    decode,
    decode_sale,
    encode,
    encode_sale,
)

T0 = datetime(2024, 5, 17, 9, 30, 15, 250000, tzinfo=UTC)


def make_sale(rng: random.Random, n_lines: int, seq: int) -> Sale:
    """A consistent sale shaped like the registers' (see tests/sync_protocol/conftest.py)."""
    lines = []
    for no in range(1, n_lines + 1):
        weighed = rng.random() < 0.2
        qty = rng.randint(150, 2500) if weighed else 1000 * rng.randint(1, 3)
        price = rng.randint(49, 99_900)
        amount = qty * price // 1000
        discounts: tuple[LineDiscount, ...] = ()
        if rng.random() < 0.33:
            discounts = (LineDiscount("promo-10pct", amount // 10),)
            if rng.random() < 0.3:
                discounts += (LineDiscount("card-5pct", amount // 20),)
        lines.append(
            SaleLine(
                no,
                str(4_600_000 + rng.randint(0, 90_000)),
                qty,
                price,
                amount,
                discounts,
                weighed=weighed,
                known_product=rng.random() > 0.02,
            )
        )
    subtotal = sum(line.amount_minor for line in lines)
    discount = sum(d.amount_minor for line in lines for d in line.discounts)
    total = subtotal - discount
    spend = min(total, 5000)
    closed = T0 + timedelta(minutes=seq)
    return Sale(
        sale_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        store_id="367",
        register_id="367-1",
        seq=seq,
        opened_at=closed - timedelta(seconds=95),
        closed_at=closed,
        card_no="2770000012345",
        lines=tuple(lines),
        payments=(Payment("bonus", spend), Payment("card", total - spend)),
        loyalty=(
            LoyaltyMovement("bonus", "spend", spend),
            LoyaltyMovement(
                "bonus",
                "accrue",
                total // 100,
                "accrual-1pct",
                active_from=closed + timedelta(days=1),
                expires_at=closed + timedelta(days=365),
            ),
        ),
        subtotal_minor=subtotal,
        discount_minor=discount,
        total_minor=total,
        promo_version=7,
        prev_hash=f"{rng.getrandbits(256):064x}",
        messages=("You saved 17.98", "Bonus balance: 1 234"),
    )


def _p50_us(call: Callable[[], Any], per_call: int, samples: int) -> float:
    """Median over `samples` timings of `call`, in microseconds per item (per_call items/call)."""
    call()
    times = []
    for _ in range(samples):
        start = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - start) / 1000 / per_call)
    return round(statistics.median(times), 2)


def bench_size(rng: random.Random, n_lines: int, samples: int, batch: int) -> dict[str, Any]:
    """Figures for sales of n_lines lines."""
    sales = [make_sale(rng, n_lines, seq) for seq in range(1, 51)]
    payloads = [encode_sale(sale) for sale in sales]
    message = SaleBatch(tuple(sales[i % len(sales)] for i in range(batch)))
    wire = encode(message, sender="367", sent_at=T0)

    def enc() -> None:
        for sale in sales:
            encode_sale(sale)

    def dec() -> None:
        for payload in payloads:
            decode_sale(payload)

    result = {
        "encode_sale_us": _p50_us(enc, len(sales), samples),
        "decode_sale_us": _p50_us(dec, len(payloads), samples),
        "encode_batch_us_per_sale": _p50_us(
            lambda: encode(message, sender="367", sent_at=T0), batch, max(samples // 4, 5)
        ),
        "decode_batch_us_per_sale": _p50_us(
            lambda: decode(wire, expect=SaleBatch), batch, max(samples // 4, 5)
        ),
        "bytes_per_sale": round(statistics.mean(len(p) for p in payloads)),
    }
    result["encode_sales_per_s"] = round(1e6 / result["encode_sale_us"])
    result["decode_sales_per_s"] = round(1e6 / result["decode_sale_us"])
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    gc.collect()
    out = {
        "python": sys.version.split()[0],
        "lines_10": bench_size(rng, 10, args.samples, args.batch),
        "lines_50": bench_size(rng, 50, args.samples // 2, args.batch),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
