"""Benchmark of the Center on PostgreSQL: batch ingest vs raw COPY, and call-center search.

Starts a throwaway PostgreSQL 15 cluster (initdb/pg_ctl in a temp dir, as `postgres` when run
as root), then:
1. ingest: synthetic store batches of 500 receipts (about 10 lines each, 60 % with a card,
   bonus accruals active from the next day, 10 % of card receipts spending bonuses
   out of the active balance) through `PostgresStorage.ingest` (ledger and lots
   included): receipts/s and lines/s;
2. raw binary COPY of the very same rows (sale_ids, sales, sale_lines, ledger, lots), same
   batches of 500, one transaction each, into a fresh
   schema: receipts/s, and the ratio ingest / COPY;
2b. ingest with verification on (center/ingest/verify.py), beside it in the same run: receipts
   priced by the engine as a register would (the demo chain's rules, a welcome reward and a
   daily-capped goods discount that read the customer state; each card's state folded from its
   earlier receipts, named in `state_seen`), every one re-priced at ingest against the state the
   Center rebuilds; one and N workers, and a cProfile of one worker's verified ingest;
3. search: N customers (names from a Zipf-weighted generator, phones, e-mails, cards) loaded
   with COPY, then a few thousand mixed call-center queries (last name prefix, misspelt last
   name, phone suffix, e-mail prefix, card prefix) through `search_customers`: p50 / p99 ms.
Progress goes to stderr; one JSON object to stdout.

Usage: .venv/bin/python bench/center_ingest.py [--receipts 100000] [--customers 1000000]
       [--queries 3000] [--workers 2] [--seed 7] [--cards N] [--quick] [--no-verify] [--no-copy]

--customers 0 skips the search part; --workers 1 times only the single-worker ingest.

--workers N: the ingest is also timed with N Center worker processes (each its own connection,
a share of the batches) on one database, as a chain would run several behind a load balancer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from center.crm.model import new_card_no, parse_search, search_keys
from center.ingest.sales import ledger_movements
from center.ingest.store import SalesRepository
from center.ingest.verify import VerifyPolicy
from center.promotions.recompute import reprice_sale
from center.storage.owners import sale_owner
from center.storage.postgres import PostgresStorage
from center.storage.postgres_database import COPY_TYPES
from demo.postgres import PostgresNotInstalled, ThrowawayPostgres
from loyalty_engine import (
    CustomerState,
    PromotionSet,
    default_promotions,
    default_settings,
    load_promotion_set,
)
from pos_agent.sales import sale_promotions
from sync_protocol import (
    CardState,
    LineDiscount,
    LoyaltyMovement,
    Payment,
    Sale,
    SaleLine,
    SeenSeq,
    chain_hash,
    encode_sale,
    fold_sale,
    sale_fingerprint,
    state_view,
)

BATCH = 500
T0 = datetime.now(UTC).replace(day=1, hour=8, minute=0, second=0, microsecond=0)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- cluster ---------------------------------------------------------------------------------


# The test fixture's settings (durability off) plus room for a bulk load.
PG_SETTINGS = {
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
}


def _database(pg: ThrowawayPostgres, name: str) -> str:
    import psycopg

    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return pg.dsn(name)


# -- receipts --------------------------------------------------------------------------------


def make_sales(n: int, rng: random.Random, cards: list[str]) -> list[Sale]:
    """n receipts over 60 days: 40 stores x 5 registers, 1..30 lines (mean ~10)."""
    registers = [(f"{300 + s}", f"{300 + s}-{r}") for s in range(40) for r in range(1, 6)]
    seqs = dict.fromkeys((r for _, r in registers), 0)
    sales: list[Sale] = []
    balance: dict[str, int] = {}
    pending: dict[str, list[tuple[datetime, int]]] = {}
    for i in range(n):
        store_id, register_id = registers[rng.randrange(len(registers))]
        seqs[register_id] += 1
        closed = T0 + timedelta(seconds=int(i * 60 * 86400 / max(n, 1)))
        lines = []
        count = min(30, max(1, int(rng.expovariate(1 / 10))))
        subtotal = discount = 0
        for line_no in range(1, count + 1):
            qty = rng.choice((1000, 1000, 1000, 2000, 3000, rng.randrange(100, 2500)))
            price = rng.randrange(29, 2500)
            amount = qty * price // 1000
            off = amount // 10 if rng.random() < 0.15 else 0
            lines.append(
                SaleLine(
                    line_no=line_no,
                    product_id=str(rng.randrange(25_000, 125_000)),
                    qty_milli=qty,
                    unit_price_minor=price,
                    amount_minor=amount,
                    discounts=(LineDiscount("promo-10", off),) if off else (),
                    weighed=qty % 1000 != 0,
                )
            )
            subtotal += amount
            discount += off
        total = subtotal - discount
        card = rng.choice(cards) if rng.random() < 0.6 else None
        loyalty: list[LoyaltyMovement] = []
        payments: list[Payment] = []
        if card is not None:
            # Like a register: bonuses are spent only out of the card's active balance.
            waiting = pending.setdefault(card, [])
            while waiting and waiting[0][0] <= closed:
                balance[card] = balance.get(card, 0) + waiting.pop(0)[1]
            spend = min(total // 5, balance.get(card, 0)) if rng.random() < 0.1 else 0
            balance[card] = balance.get(card, 0) - spend
            if spend:
                loyalty.append(LoyaltyMovement("bonus", "spend", spend))
                payments.append(Payment("bonus", spend))
            accrue = (total - spend) * 3 // 100
            if accrue:
                waiting.append((closed + timedelta(days=1), accrue))
                loyalty.append(
                    LoyaltyMovement(
                        "bonus",
                        "accrue",
                        accrue,
                        "base-accrual-3",
                        closed + timedelta(days=1),
                        closed + timedelta(days=365),
                    )
                )
            total_cash = total - spend
        else:
            total_cash = total
        payments.append(Payment("card" if rng.random() < 0.7 else "cash", total_cash))
        sales.append(
            Sale(
                sale_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                store_id=store_id,
                register_id=register_id,
                seq=seqs[register_id],
                opened_at=closed - timedelta(seconds=rng.randrange(30, 400)),
                closed_at=closed,
                card_no=card,
                lines=tuple(lines),
                payments=tuple(payments),
                loyalty=tuple(loyalty),
                subtotal_minor=subtotal,
                discount_minor=discount,
                total_minor=total,
                promo_version=1,
            )
        )
    return sales


# -- receipts priced by the engine, as registers make them (for verification on) ---------------

VERIFY_PROMOTIONS: list[dict[str, Any]] = [
    *default_promotions(),
    {
        "promotion_id": "welcome",
        "kind": "counter_reward",
        "status": "active",
        "counter": "purchases",
        "at": 1,
        "points": 100,
    },
    {
        "promotion_id": "capped-10",
        "kind": "goods_discount",
        "status": "active",
        "goods": {"products": [str(i) for i in range(25_000, 27_000)]},
        "percent": "10",
        "limits": {"max_qty_per_day_milli": 3000},
    },
]
VERIFY_SETTINGS = default_settings()
VERIFY_VERSION = 1
"""The master version of the bench database after its one master upsert."""


def verify_promotions() -> PromotionSet:
    return load_promotion_set(VERIFY_PROMOTIONS, version=VERIFY_VERSION, settings=VERIFY_SETTINGS)


def priced_sales(n: int, rng: random.Random, cards: list[str]) -> list[Sale]:
    """n receipts like make_sales, each priced by the engine with its card's state."""
    from zoneinfo import ZoneInfo

    promotions = verify_promotions()
    tz = ZoneInfo(VERIFY_SETTINGS["timezone"])
    registers = [(f"{300 + s}", f"{300 + s}-{r}") for s in range(40) for r in range(1, 6)]
    seqs = dict.fromkeys((r for _, r in registers), 0)
    states: dict[str, CardState] = {}
    sales: list[Sale] = []
    start = VERIFY_T0
    for i in range(n):
        store_id, register_id = registers[rng.randrange(len(registers))]
        seqs[register_id] += 1
        closed = start + timedelta(seconds=int(i * 60 * 86400 / max(n, 1)))
        lines = []
        for line_no in range(1, min(30, max(1, int(rng.expovariate(1 / 10)))) + 1):
            qty = rng.choice((1000, 1000, 1000, 2000, 3000, rng.randrange(100, 2500)))
            price = rng.randrange(29, 2500)
            lines.append(
                SaleLine(
                    line_no=line_no,
                    product_id=str(rng.randrange(25_000, 125_000)),
                    qty_milli=qty,
                    unit_price_minor=price,
                    amount_minor=qty * price // 1000,
                    weighed=qty % 1000 != 0,
                )
            )
        subtotal = sum(line.amount_minor for line in lines)
        card = rng.choice(cards) if rng.random() < 0.6 else None
        state = states.get(card, CardState()) if card else CardState()
        wallet = state.wallets.get("bonus", 0)
        spend = min(subtotal // 5, wallet) if card and rng.random() < 0.1 else 0
        method = "card" if rng.random() < 0.7 else "cash"
        draft = Sale(
            sale_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            store_id=store_id,
            register_id=register_id,
            seq=seqs[register_id],
            opened_at=closed - timedelta(seconds=rng.randrange(30, 400)),
            closed_at=closed,
            card_no=card,
            lines=tuple(lines),
            payments=((Payment("bonus", spend),) if spend else ()) + (Payment(method, 0),),
            loyalty=(LoyaltyMovement("bonus", "spend", spend),) if spend else (),
            subtotal_minor=subtotal,
            discount_minor=0,
            total_minor=subtotal,
            promo_version=VERIFY_VERSION,
            state_seen=tuple(SeenSeq(r, q) for r, q in sorted(state.seen.items())),
        )
        customer = None
        if card:
            view = state_view(state, closed.astimezone(tz).date())
            customer = CustomerState(
                counters=dict(view.counters),
                fired_day=dict(view.fired_day),
                fired_month=dict(view.fired_month),
                fired_total=dict(view.fired_total),
                qty_day_milli=dict(view.qty_day_milli),
                qty_month_milli=dict(view.qty_month_milli),
            )
        calc = reprice_sale(draft, promotions, products={}, customer=customer)
        by_line = {r.line_no: r for r in calc.lines}
        priced_lines = tuple(
            SaleLine(
                line.line_no,
                line.product_id,
                line.qty_milli,
                line.unit_price_minor,
                line.amount_minor,
                tuple(
                    LineDiscount(d.rule_id, d.amount_minor) for d in by_line[line.line_no].discounts
                ),
                line.weighed,
            )
            for line in lines
        )
        accruals = (
            tuple(
                LoyaltyMovement(
                    "bonus" if not a.wallet else a.wallet,
                    "accrue",
                    a.amount,
                    a.rule_id,
                    a.active_from,
                    a.expires_at,
                )
                for a in calc.accruals
                if a.amount > 0
            )
            if card
            else ()
        )
        sale = dataclasses.replace(
            draft,
            lines=priced_lines,
            payments=((Payment("bonus", spend),) if spend else ())
            + (Payment(method, calc.total_minor - spend),),
            loyalty=accruals + draft.loyalty,
            discount_minor=calc.discount_minor,
            total_minor=calc.total_minor,
            coupons_issued=tuple(c.code for c in calc.coupons_issued),
            promotions=sale_promotions(calc),
        )
        if card:
            # The register's view of the wallet: what was active when it sold.
            folded = fold_sale(state, sale, tz)
            states[card] = folded
        sales.append(sale)
    return sales


VERIFY_T0 = T0 - timedelta(days=62)
"""Verified receipts lie in the past (a future one is quarantined): the 60 days before
VERIFY_NOW, the Center's clock while it ingests them."""
VERIFY_NOW = VERIFY_T0 + timedelta(days=61)


def _ingest_slice(
    dsn: str, batches: list[list[Sale]], worker: int, start: Any, verify: bool = False
) -> None:
    """One Center worker process: its own connection, its share of the batches."""
    storage = PostgresStorage(dsn)
    try:
        storage.verifier.configure(VerifyPolicy() if verify else None)
        start.wait(60)
        received = VERIFY_NOW if verify else datetime.now(UTC)
        for n, batch in enumerate(batches, start=1):
            ack = storage.sales.ingest(batch, received)
            assert not ack.rejected, ack.rejected[:3]
            if n % 20 == 0:
                _log(f"ingest: worker {worker}: {n}/{len(batches)} batches")
    finally:
        storage.close()


def bench_ingest(
    dsn: str,
    sales: list[Sale],
    workers: int = 1,
    *,
    verify: bool = False,
    profile: bool = False,
) -> dict[str, Any]:
    storage = PostgresStorage(dsn)
    try:
        storage.migrate()
        if verify:
            storage.feed.upsert_master(
                {
                    "promotions": [
                        {"promotion_id": d["promotion_id"], "doc": d} for d in VERIFY_PROMOTIONS
                    ],
                    "settings": [{"name": k, "value": v} for k, v in VERIFY_SETTINGS.items()],
                }
            )
            assert storage.versions.current() >= VERIFY_VERSION
        batches = [sales[i : i + BATCH] for i in range(0, len(sales), BATCH)]
        started, cpu = time.perf_counter(), time.process_time()
        top: list[str] = []
        if workers == 1 and profile:
            import cProfile
            import io
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            _ingest_slice(dsn, batches, 0, _Go(), verify)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(15)
            _log(out.getvalue())
            total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
            ranked = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
            top = [
                f"{name[2]} ({Path(name[0]).name}:{name[1]}): {row[2]:.2f}s own, "
                f"{100 * row[2] / total:.0f}%"
                for name, row in ranked[:12]
            ]
        elif workers == 1:
            _ingest_slice(dsn, batches, 0, _Go(), verify)
        else:
            # Forked worker processes (the sales are already in memory), started together.
            context = multiprocessing.get_context("fork")
            go = context.Event()
            procs = [
                context.Process(
                    target=_ingest_slice, args=(dsn, batches[w::workers], w, go, verify)
                )
                for w in range(workers)
            ]
            for proc in procs:
                proc.start()
            started = time.perf_counter()
            go.set()
            for proc in procs:
                proc.join()
            if any(proc.exitcode for proc in procs):
                raise SystemExit("bench/center_ingest.py: an ingest worker failed")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        counts = storage.counts()
        assert counts.sales == len(sales), counts
        cases = storage.reviews.list_cases(limit=1000)
        _log(
            f"ingest ({workers} worker(s), verification {'on' if verify else 'off'}): "
            f"{len(sales) / elapsed:,.0f} receipts/s, {len(cases)} review cases"
        )
        if cases:
            _log(f"first case: {cases[-1]['reason'][:600]}")
        return {
            "seconds": elapsed,
            "client_cpu_s": cpu,
            "ledger_entries": counts.ledger_entries,
            "review_cases": len(cases),
            "profile_top": top,
        }
    finally:
        storage.close()


class _Go:
    def wait(self, timeout: float) -> bool:
        return True


_MORE_TYPES = {  # sale_ids, register_seqs and ledger, which ingest fills with INSERT
    **dict.fromkeys(("sale_id", "register_id", "fingerprint", "card_no", "wallet"), "text"),
    "customer_id": "text",
    **dict.fromkeys(("kind", "rule_id", "source"), "text"),
    **dict.fromkeys(("seq", "amount"), "int8"),
    **dict.fromkeys(("closed_at", "active_from", "expires_at", "created_at"), "timestamptz"),
}


def bench_copy(dsn: str, sales: list[Sale], owners: dict[str, str] | None = None) -> dict[str, Any]:
    """The same rows written with nothing but binary COPY, in the same batches: the floor.

    `owners` (card -> customer id) puts each card's receipts with its customer (bench/console.py
    loads the customers too); without it every card is unknown."""
    import psycopg

    storage = PostgresStorage(dsn)
    storage.migrate()
    storage.close()
    received = datetime.now(UTC)
    batches: list[tuple[list[Any], ...]] = []
    entry_id = 0
    for index, sale in enumerate(sales):
        if index % BATCH == 0:
            batches.append(([], [], [], [], [], []))
        keys, seqs, sale_rows, line_rows, ledger_rows, lot_rows = batches[-1]
        payload, fingerprint = encode_sale(sale), sale_fingerprint(sale)
        owner = sale_owner(sale.card_no, sale.store_id, owners or {})
        keys.append((sale.sale_id, sale.register_id, sale.seq, fingerprint, sale.closed_at))
        seqs.append((sale.register_id, sale.seq, sale.sale_id))
        sale_rows.append(
            (
                sale.sale_id,
                sale.store_id,
                sale.register_id,
                sale.seq,
                sale.opened_at,
                sale.closed_at,
                sale.card_no,
                sale.subtotal_minor,
                sale.discount_minor,
                sale.total_minor,
                len(sale.lines),
                sale.promo_version,
                fingerprint,
                payload,
                received,
                sale.prev_hash,
                chain_hash(sale),
                owner,
            )
        )
        for line in sale.lines:
            line_rows.append(
                (
                    sale.sale_id,
                    line.line_no,
                    line.product_id,
                    line.qty_milli,
                    line.unit_price_minor,
                    line.amount_minor,
                    sum(d.amount_minor for d in line.discounts),
                    int(line.weighed),
                    1,
                    owner,
                )
            )
        if sale.card_no:
            for m in ledger_movements(sale):
                entry_id += 1
                ledger_rows.append(
                    (
                        owner,
                        sale.card_no,
                        m.wallet,
                        m.kind,
                        m.amount,
                        m.rule_id,
                        sale.sale_id,
                        m.active_from,
                        m.expires_at,
                        sale.closed_at,
                    )
                )
                if m.amount > 0:
                    lot_rows.append(
                        (
                            owner,
                            entry_id,
                            sale.card_no,
                            m.wallet,
                            m.kind,
                            m.rule_id,
                            sale.sale_id,
                            m.amount,
                            m.amount,
                            m.active_from,
                            m.expires_at,
                            sale.closed_at,
                        )
                    )
    tables = [
        ("sale_ids", "sale_id, register_id, seq, fingerprint, closed_at"),
        ("register_seqs", "register_id, seq, sale_id"),
        ("sales", ", ".join(SalesRepository.SALE_COLUMNS)),
        (
            "sale_lines",
            "sale_id, line_no, product_id, qty_milli, unit_price_minor, amount_minor, "
            "discount_minor, weighed, known_product, owner_id",
        ),
        (
            "ledger",
            "customer_id, card_no, wallet, kind, amount, rule_id, source, active_from, "
            "expires_at, created_at",
        ),
        (
            "lots",
            "customer_id, entry_id, card_no, wallet, kind, rule_id, source, amount, remaining, "
            "active_from, expires_at, created_at",
        ),
    ]
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        for batch in batches:  # the same batches, one transaction each, as the ingest
            with conn.transaction(), conn.cursor() as cur:
                for (name, columns), rows in zip(tables, batch, strict=True):
                    if not rows:
                        continue
                    known = {**COPY_TYPES.get(name, {}), **_MORE_TYPES}
                    with cur.copy(f"COPY {name} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types([known[c.strip()] for c in columns.split(",")])
                        for row in rows:
                            copy.write_row(row)
        elapsed = time.perf_counter() - started
    _log(f"copy: {len(sales)} receipts in {elapsed:.1f}s")
    return {"seconds": elapsed}


# -- customers -------------------------------------------------------------------------------

_ROOTS = [
    "ivan",
    "petr",
    "sidor",
    "smirn",
    "kuzn",
    "popov",
    "vasil",
    "sokol",
    "mikhayl",
    "novik",
    "fedor",
    "morozov",
    "volk",
    "alekse",
    "lebed",
    "semen",
    "egor",
    "pavl",
    "kozl",
    "stepan",
    "nikolae",
    "orl",
    "andree",
    "makar",
    "nikit",
    "zakhar",
    "zaits",
    "solovy",
    "borisov",
    "yakovl",
    "grigor",
    "roman",
    "vorobyov",
    "serge",
    "kuzmin",
    "frolov",
    "aleksandr",
    "dmitri",
    "korolev",
    "gusev",
    "kiselev",
    "ilyin",
    "maksim",
    "polyakov",
    "sorokin",
    "vinogradov",
    "kovalev",
    "belov",
    "medvedev",
    "antonov",
    "tarasov",
    "zhukov",
    "baranov",
    "filippov",
    "komarov",
    "davydov",
    "belyaev",
    "gerasimov",
    "bogdanov",
    "osipov",
    "sidorov",
    "matveev",
    "titov",
    "markov",
    "mironov",
    "krylov",
    "kulikov",
    "karpov",
    "vlasov",
    "melnikov",
    "denisov",
    "gavrilov",
    "tikhonov",
    "kazakov",
    "afanasyev",
    "danilov",
    "savelyev",
    "timofeev",
    "fomin",
    "chernov",
    "abramov",
    "martynov",
    "efimov",
    "fedotov",
    "shcherbakov",
    "nazarov",
    "kalinin",
    "isaev",
    "chernyshev",
    "bykov",
    "maslov",
    "rodionov",
    "konovalov",
    "lazarev",
    "voronin",
    "klimov",
    "filatov",
    "ponomarev",
    "golubev",
    "kudryavtsev",
    "prokhorov",
    "naumov",
    "potapov",
    "zhuravlev",
    "ovchinnikov",
    "trofimov",
    "leonov",
    "sobolev",
    "ermakov",
    "kolesnikov",
    "goncharov",
    "emelyanov",
    "nikiforov",
    "grachev",
    "kotov",
    "grishin",
    "efremov",
    "arkhipov",
    "gromov",
    "kirillov",
    "malyshev",
    "panov",
    "moiseev",
    "rumyantsev",
    "akimov",
    "kondratyev",
    "biryukov",
    "gorbunov",
    "anisimov",
    "eremin",
    "tikhomirov",
    "galkin",
    "lukyanov",
    "mikheev",
    "skvortsov",
    "yudin",
    "belousov",
    "nesterov",
    "simonov",
    "prokofyev",
    "kharitonov",
    "knyazev",
    "tsvetkov",
    "levin",
    "mitrofanov",
    "voronov",
    "aksenov",
    "sofronov",
    "maltsev",
    "loginov",
    "gorshkov",
    "savin",
    "krasnov",
    "mayorov",
    "demidov",
    "eliseev",
    "rybakov",
    "safonov",
    "plotnikov",
    "demin",
    "khokhlov",
    "fadeev",
    "molchanov",
    "ignatov",
    "litvinov",
    "ershov",
    "ushakov",
    "dementyev",
    "ryabov",
    "mukhin",
    "kalashnikov",
    "leontyev",
    "lobanov",
    "kuzin",
    "korneev",
    "evdokimov",
    "borodin",
    "platonov",
    "nekrasov",
    "balashov",
    "bobrov",
    "zhdanov",
    "blinov",
    "ignatyev",
    "korotkov",
    "muravyov",
    "kryukov",
    "belyakov",
    "bogomolov",
    "drozdov",
    "lavrov",
    "zuev",
    "petukhov",
    "larin",
    "nikulin",
    "serov",
    "terentyev",
    "zotov",
    "ustinov",
    "fokin",
    "samoylov",
    "konstantinov",
    "lapin",
    "sharov",
]
_FIRST = [
    "aleksandr",
    "sergey",
    "dmitriy",
    "andrey",
    "aleksey",
    "maksim",
    "evgeniy",
    "ivan",
    "mikhail",
    "artem",
    "nikolay",
    "igor",
    "roman",
    "vladimir",
    "pavel",
    "oleg",
    "denis",
    "anton",
    "yuriy",
    "vitaliy",
    "elena",
    "olga",
    "tatyana",
    "natalya",
    "irina",
    "svetlana",
    "anna",
    "mariya",
    "ekaterina",
    "yuliya",
    "anastasiya",
    "marina",
    "galina",
    "lyudmila",
    "valentina",
    "daria",
    "polina",
    "viktoriya",
    "kseniya",
    "alina",
    "vera",
    "nadezhda",
    "larisa",
    "sofya",
    "alisa",
]
_MIDDLE = [
    "aleksandrovich",
    "sergeevich",
    "dmitrievich",
    "andreevich",
    "alekseevich",
    "ivanovich",
    "mikhaylovich",
    "nikolaevich",
    "vladimirovich",
    "pavlovich",
    "olegovich",
    "yuryevich",
    "aleksandrovna",
    "sergeevna",
    "dmitrievna",
    "andreevna",
    "alekseevna",
    "ivanovna",
    "mikhaylovna",
    "nikolaevna",
    "vladimirovna",
    "pavlovna",
]
_DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru", "rambler.ru", "list.ru")


def _zipf_weights(n: int, shift: float) -> list[float]:
    # 1/(rank + shift): a long-tailed mix where the commonest name is about 1-3 % of people.
    total = 0.0
    cumulative = []
    for rank in range(n):
        total += 1 / (rank + shift)
        cumulative.append(total)
    return cumulative


def make_customers(n: int, rng: random.Random) -> list[tuple[str, dict[str, str], str]]:
    """(customer_id, profile, card_no): a Zipf-ish mix of surnames, first and middle names."""
    suffixes = ("", "ov", "ova", "in", "ina", "ev", "eva", "enko", "sky", "skaya")
    customers = []
    cards = [_card_no(body) for body in rng.sample(range(10**10), n)]
    roots = rng.choices(_ROOTS, cum_weights=_zipf_weights(len(_ROOTS), 10), k=n)
    firsts = rng.choices(_FIRST, cum_weights=_zipf_weights(len(_FIRST), 3), k=n)
    for i in range(n):
        last = roots[i] + (rng.choice(suffixes) if rng.random() < 0.5 else "")
        first = firsts[i]
        profile = {
            "last_name": last.capitalize(),
            "first_name": first.capitalize(),
            "middle_name": rng.choice(_MIDDLE).capitalize(),
            "phone": f"+79{rng.randrange(10**9):09d}",
            "email": f"{first[:1]}.{last}{rng.randrange(10_000)}@{rng.choice(_DOMAINS)}",
        }
        customers.append((f"c{i:07d}", profile, cards[i]))
    return customers


def _card_no(body: int) -> str:
    digits = f"29{body:010d}"
    weighted = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return digits + str((10 - weighted % 10) % 10)


def load_customers(
    storage: PostgresStorage, customers: list[tuple[str, dict[str, str], str]]
) -> None:
    now = datetime.now(UTC)
    storage.db.bulk_insert(
        "customers",
        ("customer_id", "attributes", "version"),
        [(cid, json.dumps(p, ensure_ascii=False), 1) for cid, p, _ in customers],
    )
    storage.db.bulk_insert(
        "customer_index",
        ("customer_id", "last_name", "first_name", "middle_name", "phone_rev", "email"),
        [(cid, *search_keys(p)) for cid, p, _ in customers],
    )
    storage.db.bulk_insert(
        "cards",
        ("card_no", "customer_id", "status", "version", "issued_at"),
        [(card, cid, "active", 1, now) for cid, _, card in customers],
    )
    storage.db.bulk_insert(
        "card_directory", ("card_no", "customer_id"), [(card, cid) for cid, _, card in customers]
    )


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word))
    kind = rng.randrange(3)
    if kind == 0 and i < len(word) - 1:  # swap two letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # a wrong letter
        return word[:i] + rng.choice("aeiouklmnrst") + word[i + 1 :]
    return word[:i] + word[i + 1 :]  # a missing letter


def make_queries(
    rng: random.Random, customers: list[tuple[str, dict[str, str], str]], n: int
) -> list[tuple[str, str]]:
    queries = []
    for _ in range(n):
        _, profile, card = customers[rng.randrange(len(customers))]
        kind = rng.choice(("last_prefix", "last_typo", "phone_suffix", "email_prefix", "card"))
        last = profile["last_name"]
        if kind == "last_prefix":
            q = last[: rng.randrange(3, len(last) + 1)]
            if rng.random() < 0.5:
                q += " " + profile["first_name"][:3]
        elif kind == "last_typo":
            q = _typo(rng, last) if len(last) > 3 else last
        elif kind == "phone_suffix":
            q = profile["phone"][-rng.randrange(4, 8) :]
        elif kind == "email_prefix":
            q = profile["email"].split("@")[0] + "@"
        else:
            q = card[: rng.randrange(8, 14)]
        queries.append((kind, q))
    return queries


def bench_search(dsn: str, customers_n: int, queries_n: int, rng: random.Random) -> dict[str, Any]:
    storage = PostgresStorage(dsn)
    try:
        storage.migrate()
        started = time.perf_counter()
        customers = make_customers(customers_n, rng)
        _log(f"search: generated {customers_n} customers in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        with storage.db.transaction():
            load_customers(storage, customers)
        storage.db.execute("VACUUM ANALYZE customers")
        storage.db.execute("VACUUM ANALYZE customer_index")
        storage.db.execute("VACUUM ANALYZE cards")
        load_s = time.perf_counter() - started
        _log(f"search: loaded (COPY, indexes kept) in {load_s:.1f}s")
        queries = make_queries(rng, customers, queries_n)
        for _, q in queries[:200]:  # warm the caches, as a running Center's are
            storage.customers.search_customers(parse_search(q))
        by_kind: dict[str, list[float]] = {}
        hits = 0
        for i, (kind, q) in enumerate(queries):
            t = time.perf_counter()
            found = storage.customers.search_customers(parse_search(q))
            by_kind.setdefault(kind, []).append((time.perf_counter() - t) * 1000)
            hits += bool(found)
            if i % 1000 == 999:
                _log(f"search: {i + 1}/{len(queries)} queries")
        every = sorted(ms for values in by_kind.values() for ms in values)
        return {
            "customers": customers_n,
            "queries": len(queries),
            "load_s": round(load_s, 1),
            "found_share": round(hits / len(queries), 3),
            "p50_ms": round(_pct(every, 50), 2),
            "p99_ms": round(_pct(every, 99), 2),
            "max_ms": round(every[-1], 2),
            "p99_ms_by_kind": {
                k: round(_pct(sorted(v), 99), 2) for k, v in sorted(by_kind.items())
            },
        }
    finally:
        storage.close()


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/center_ingest.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--receipts", type=int, default=100_000, help="receipts to ingest")
    parser.add_argument(
        "--customers", type=int, default=1_000_000, help="customers to search (0: no search)"
    )
    parser.add_argument("--queries", type=int, default=3000, help="search queries to time")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--cards",
        type=int,
        default=0,
        help="loyalty cards the receipts use (0: receipts / 5; fewer: longer card histories)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="also ingest with this many worker processes"
    )
    parser.add_argument("--quick", action="store_true", help="5 000 receipts, 50 000 customers")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the ingest with verification on"
    )
    parser.add_argument("--no-copy", action="store_true", help="skip the raw COPY floor")
    args = parser.parse_args(argv)
    if args.quick:
        args.receipts, args.customers, args.queries = 5000, 50_000, 1000
    rng = random.Random(args.seed)
    cards = [new_card_no() for _ in range(args.cards or max(100, args.receipts // 5))]
    sales = make_sales(args.receipts, rng, cards)
    lines = sum(len(s.lines) for s in sales)
    _log(f"generated {len(sales)} receipts, {lines} lines")
    priced = [] if args.no_verify else priced_sales(args.receipts, rng, cards)
    if priced:
        _log(f"priced {len(priced)} receipts with the engine and their cards' states")
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    pg = ThrowawayPostgres(prefix="center-bench-pg-", settings=PG_SETTINGS)
    try:
        pg.start()
    except PostgresNotInstalled as exc:
        raise SystemExit(f"bench/center_ingest.py: {exc}") from exc
    with pg:
        ingest = bench_ingest(_database(pg, "bench_ingest"), sales)
        parallel = (
            bench_ingest(_database(pg, "bench_ingest_n"), sales, args.workers)
            if args.workers > 1
            else None
        )
        verified = verified_n = None
        if priced:
            verified = bench_ingest(_database(pg, "bench_verify"), priced, verify=True)
            # Profiled apart (cProfile slows it down): where a verified ingest spends its time.
            profiled = bench_ingest(
                _database(pg, "bench_verify_profile"),
                priced[: min(len(priced), 5000)],
                verify=True,
                profile=True,
            )
            off_priced = bench_ingest(_database(pg, "bench_verify_off"), priced)
            verified_n = (
                bench_ingest(_database(pg, "bench_verify_n"), priced, args.workers, verify=True)
                if args.workers > 1
                else None
            )
        copy = (
            {"seconds": float("nan")}
            if args.no_copy
            else bench_copy(_database(pg, "bench_copy"), sales)
        )
        search = (
            bench_search(_database(pg, "bench_search"), args.customers, args.queries, rng)
            if args.customers > 0
            else None
        )
    result = {
        "cpus": os.cpu_count(),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "receipts": len(sales),
        "cards": len(cards),
        "lines": lines,
        "batch": BATCH,
        "ledger_entries": ingest["ledger_entries"],
        "ingest_receipts_per_s": round(len(sales) / ingest["seconds"]),
        "ingest_lines_per_s": round(lines / ingest["seconds"]),
        # This process's CPU per receipt (encoding, checks, driver): the part a second
        # Center worker process would run in parallel.
        "ingest_client_cpu_us_per_receipt": round(ingest["client_cpu_s"] * 1e6 / len(sales)),
        "ingest_workers": args.workers,
        "ingest_n_workers_receipts_per_s": (
            round(len(sales) / parallel["seconds"]) if parallel else None
        ),
        "copy_receipts_per_s": None if args.no_copy else round(len(sales) / copy["seconds"]),
        "copy_lines_per_s": None if args.no_copy else round(lines / copy["seconds"]),
        "ingest_to_copy_ratio": None
        if args.no_copy
        else round(copy["seconds"] / ingest["seconds"], 3),
        "verification": None
        if verified is None
        else {
            "receipts": len(priced),
            "promotions": len(VERIFY_PROMOTIONS),
            "off_receipts_per_s": round(len(priced) / off_priced["seconds"]),
            "on_receipts_per_s": round(len(priced) / verified["seconds"]),
            "on_client_cpu_us_per_receipt": round(verified["client_cpu_s"] * 1e6 / len(priced)),
            "off_client_cpu_us_per_receipt": round(off_priced["client_cpu_s"] * 1e6 / len(priced)),
            "on_n_workers_receipts_per_s": (
                round(len(priced) / verified_n["seconds"]) if verified_n else None
            ),
            "on_n_workers_per_worker_receipts_per_s": (
                round(len(priced) / verified_n["seconds"] / args.workers) if verified_n else None
            ),
            "review_cases_one_worker": verified["review_cases"],
            "review_cases_n_workers": verified_n["review_cases"] if verified_n else None,
            "profile_receipts": min(len(priced), 5000),
            "profile_top_own_time": profiled["profile_top"],
        },
        "search": search,
        "targets_met": {
            "ingest_10k_receipts_per_s_one_worker": len(sales) / ingest["seconds"] >= 10_000,
            "ingest_10k_receipts_per_s_n_workers": bool(
                parallel and len(sales) / parallel["seconds"] >= 10_000
            ),
            "ratio_0_3": not args.no_copy and copy["seconds"] / ingest["seconds"] >= 0.3,
            "search_p99_50ms": bool(search and search["p99_ms"] <= 50),
            "ingest_verified_10k_receipts_per_s_n_workers": bool(
                verified_n and len(priced) / verified_n["seconds"] >= 10_000
            ),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
