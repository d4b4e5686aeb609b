"""Two Center workers ingesting the same batches into one PostgreSQL at once store each sale,
ledger movement and lot once, and end with the balances of a single worker."""

from __future__ import annotations

import multiprocessing
import random
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg

from center.storage import Storage
from center.storage.postgres import PostgresStorage
from center.storage.sqlite import SqliteStorage
from sync_protocol import Sale, chain_hash, encode_sale, sale_fingerprint
from tests.center.center_factories import T0, make_sale
from tests.center.conftest import PgCluster

NOW = T0 + timedelta(days=1)
CARDS = [f"29000000{n:05d}" for n in range(12)]


def _sales() -> list[Sale]:
    rng = random.Random(3)
    sales = []
    for seq in range(1, 401):
        card = rng.choice(CARDS) if rng.random() < 0.8 else None
        spend = rng.choice((0, 0, 0, 40)) if card else 0
        accrue = rng.randrange(1, 60) if card else 0
        register = f"367-{seq % 3 + 1}"
        sale_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # the same in each worker
        sale = make_sale(
            seq, register_id=register, sale_id=sale_id, card_no=card, accrue=accrue, spend=spend
        )
        sales.append(sale)
    return sales


def _batches(sales: list[Sale], seed: int) -> list[list[Sale]]:
    """Overlapping, shuffled batches: every sale at least once, many twice."""
    rng = random.Random(seed)
    picked = sales + rng.sample(sales, len(sales) // 2)
    rng.shuffle(picked)
    return [picked[i : i + 37] for i in range(0, len(picked), 37)]


def _worker(dsn: str, seed: int, start: Any, done: Any) -> None:
    storage = PostgresStorage(dsn)
    try:
        start.wait(30)
        accepted = 0
        for batch in _batches(_sales(), seed):
            ack = storage.sales.ingest(batch, NOW)
            assert not ack.rejected, ack.rejected
            accepted += len(ack.accepted)
        done.put(("ok", accepted))
    except BaseException as exc:  # the parent asserts on it
        done.put(("error", repr(exc)))
    finally:
        storage.close()


def _state(storage: PostgresStorage) -> dict[str, Any]:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in storage.db.execute(sql).fetchall()]

    return {
        "sales": rows("SELECT sale_id, fingerprint FROM sales ORDER BY sale_id"),
        "keys": rows("SELECT COUNT(*) FROM sale_ids"),
        "lines": rows("SELECT COUNT(*) FROM sale_lines"),
        "ledger": rows(
            "SELECT source, wallet, kind, rule_id, card_no, amount FROM ledger "
            "ORDER BY source, wallet, kind, rule_id"
        ),
        "lots": rows("SELECT source, card_no, amount FROM lots ORDER BY source"),
        "balances": {c: storage.ledger.balance(c, NOW) for c in CARDS},
        "totals": storage.ledger.lot_totals(),
    }


def _fresh(pg_cluster: PgCluster, name: str) -> str:
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return pg_cluster.dsn(name)


def test_two_workers_race_on_the_same_batches(pg_cluster: PgCluster, pg_dsn: str) -> None:
    setup = PostgresStorage(pg_dsn)
    setup.migrate()
    cards = [{"card_no": c, "customer_id": f"c{c}"} for c in CARDS]
    setup.feed.upsert_master({"cards": cards})
    setup.close()
    # fork: the workers run this module's code without importing the tests package anew.
    context = multiprocessing.get_context("fork")
    start, done = context.Event(), context.Queue()
    workers = [context.Process(target=_worker, args=(pg_dsn, seed, start, done)) for seed in (1, 2)]
    for worker in workers:
        worker.start()
    start.set()
    results = [done.get(timeout=90) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert [r[0] for r in results] == ["ok", "ok"], results
    assert sum(r[1] for r in results) == 400  # each sale accepted by exactly one worker

    reference_dsn = _fresh(pg_cluster, f"race_reference_{id(results)}")
    reference = PostgresStorage(reference_dsn)
    raced = PostgresStorage(pg_dsn)
    try:
        reference.migrate()
        reference.feed.upsert_master({"cards": cards})
        assert len(reference.sales.ingest(_sales(), NOW).accepted) == 400
        mine, theirs = _state(raced), _state(reference)
        assert len(mine["sales"]) == 400 and mine["keys"] == [(400,)]
        assert len(mine["ledger"]) == len({r[:4] for r in mine["ledger"]})
        assert mine == theirs
        journal, remaining, debt = mine["totals"]
        assert journal == remaining - debt
    finally:
        reference.close()
        raced.close()


def test_stored_hashes_are_the_protocol_ones(storage: Storage) -> None:
    sale = make_sale(1, card_no=CARDS[0], accrue=5)
    chained = replace(make_sale(2), prev_hash=chain_hash(sale))
    storage.sales.ingest([sale, chained], NOW)
    rows = storage.db.execute(  # type: ignore[attr-defined]
        "SELECT sale_id, fingerprint, chain_hash, payload FROM sales"
    ).fetchall()
    stored = {r[0]: (r[1], r[2], bytes(r[3])) for r in rows}
    for s in (sale, chained):
        assert stored[s.sale_id] == (sale_fingerprint(s), chain_hash(s), encode_sale(s))


def _ledger_state(storage: Any) -> dict[str, Any]:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(r) for r in storage.db.execute(sql).fetchall())

    return {
        "lots": rows("SELECT source, card_no, amount, remaining FROM lots"),
        "consumptions": rows(
            "SELECT e.source, c.kind, c.amount, COALESCE(l.source, '-') FROM lot_consumptions c "
            "JOIN ledger e ON e.entry_id = c.entry_id LEFT JOIN lots l ON l.lot_id = c.lot_id"
        ),
        "totals": storage.ledger.lot_totals(),
    }


def test_batched_ledger_matches_one_by_one(pg_dsn: str, tmp_path: Any) -> None:
    """PostgreSQL applies a batch's movements in set rounds; SQLite one by one: same lots."""
    rng = random.Random(11)
    sales = []
    for seq in range(1, 301):
        card = rng.choice(CARDS[:4])
        lag = rng.choice((0, 0, 30, 120))  # some accruals wait, so spends run into debt
        closed = T0 + timedelta(minutes=seq)
        sales.append(
            make_sale(
                seq,
                sale_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                card_no=card,
                accrue=rng.randrange(1, 50),
                spend=rng.choice((0, 0, 25, 60)),
                active_from=closed + timedelta(minutes=lag) if lag else None,
                expires_at=closed + timedelta(minutes=rng.choice((90, 600))),
            )
        )
    pg, lite = PostgresStorage(pg_dsn), SqliteStorage(tmp_path / "c.db")
    try:
        for storage in (pg, lite):
            storage.migrate()
            for start in range(0, len(sales), 100):
                storage.sales.ingest(sales[start : start + 100], NOW)
        assert _ledger_state(pg) == _ledger_state(lite)
        kinds = {r[1] for r in _ledger_state(pg)["consumptions"]}
        assert {"spend", "debt", "recover"} <= kinds  # every path was taken
    finally:
        pg.close()
        lite.close()
