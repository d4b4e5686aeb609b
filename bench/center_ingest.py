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
3. search: N customers (names from a Zipf-weighted generator, phones, e-mails, cards) loaded
   with COPY, then a few thousand mixed call-center queries (last name prefix, misspelt last
   name, phone suffix, e-mail prefix, card prefix) through `search_customers`: p50 / p99 ms.
Progress goes to stderr; one JSON object to stdout.

Usage: .venv/bin/python bench/center_ingest.py [--receipts 100000] [--customers 1000000]
       [--queries 3000] [--workers 2] [--seed 7] [--quick]

--customers 0 skips the search part; --workers 1 times only the single-worker ingest.

--workers N: the ingest is also timed with N Center worker processes (each its own connection,
a share of the batches) on one database, as a chain would run several behind a load balancer.
"""

from __future__ import annotations

import argparse
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
from center.storage.owners import sale_owner
from center.storage.postgres import PostgresStorage
from center.storage.postgres_database import COPY_TYPES
from demo.postgres import PostgresNotInstalled, ThrowawayPostgres
from sync_protocol import (
    LineDiscount,
    LoyaltyMovement,
    Payment,
    Sale,
    SaleLine,
    chain_hash,
    encode_sale,
    sale_fingerprint,
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


def _ingest_slice(dsn: str, batches: list[list[Sale]], worker: int, start: Any) -> None:
    """One Center worker process: its own connection, its share of the batches."""
    storage = PostgresStorage(dsn)
    try:
        start.wait(60)
        received = datetime.now(UTC)
        for n, batch in enumerate(batches, start=1):
            ack = storage.sales.ingest(batch, received)
            assert not ack.rejected, ack.rejected[:3]
            if n % 20 == 0:
                _log(f"ingest: worker {worker}: {n}/{len(batches)} batches")
    finally:
        storage.close()


def bench_ingest(dsn: str, sales: list[Sale], workers: int = 1) -> dict[str, Any]:
    storage = PostgresStorage(dsn)
    try:
        storage.migrate()
        batches = [sales[i : i + BATCH] for i in range(0, len(sales), BATCH)]
        started, cpu = time.perf_counter(), time.process_time()
        if workers == 1:
            _ingest_slice(dsn, batches, 0, _Go())
        else:
            # Forked worker processes (the sales are already in memory), started together.
            context = multiprocessing.get_context("fork")
            go = context.Event()
            procs = [
                context.Process(target=_ingest_slice, args=(dsn, batches[w::workers], w, go))
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
        _log(f"ingest ({workers} worker(s)): {len(sales) / elapsed:,.0f} receipts/s")
        return {"seconds": elapsed, "client_cpu_s": cpu, "ledger_entries": counts.ledger_entries}
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


def bench_copy(dsn: str, sales: list[Sale]) -> dict[str, Any]:
    """The same rows written with nothing but binary COPY, in the same batches: the floor."""
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
        owner = sale_owner(sale.card_no, sale.store_id, {})  # the bench's cards are unknown
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
        "--workers", type=int, default=2, help="also ingest with this many worker processes"
    )
    parser.add_argument("--quick", action="store_true", help="5 000 receipts, 50 000 customers")
    args = parser.parse_args(argv)
    if args.quick:
        args.receipts, args.customers, args.queries = 5000, 50_000, 1000
    rng = random.Random(args.seed)
    cards = [new_card_no() for _ in range(max(100, args.receipts // 5))]
    sales = make_sales(args.receipts, rng, cards)
    lines = sum(len(s.lines) for s in sales)
    _log(f"generated {len(sales)} receipts, {lines} lines")
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
        copy = bench_copy(_database(pg, "bench_copy"), sales)
        search = (
            bench_search(_database(pg, "bench_search"), args.customers, args.queries, rng)
            if args.customers > 0
            else None
        )
    result = {
        "cpus": os.cpu_count(),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "receipts": len(sales),
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
        "copy_receipts_per_s": round(len(sales) / copy["seconds"]),
        "copy_lines_per_s": round(lines / copy["seconds"]),
        "ingest_to_copy_ratio": round(copy["seconds"] / ingest["seconds"], 3),
        "search": search,
        "targets_met": {
            "ingest_10k_receipts_per_s_one_worker": len(sales) / ingest["seconds"] >= 10_000,
            "ingest_10k_receipts_per_s_n_workers": bool(
                parallel and len(sales) / parallel["seconds"] >= 10_000
            ),
            "ratio_0_3": copy["seconds"] / ingest["seconds"] >= 0.3,
            "search_p99_50ms": bool(search and search["p99_ms"] <= 50),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
