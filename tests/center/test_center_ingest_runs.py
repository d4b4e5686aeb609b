"""PostgreSQL claims a batch run by run in one pipeline (center/ingest/store_postgres.py): every
verdict, row and ledger movement is still the one SQLite's sale-by-sale reference gives, even
when a duplicate, a changed payload or a (register, seq) clash straddles two runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from center.ingest import store_postgres
from center.storage.postgres import PostgresStorage
from center.storage.sqlite import SqliteStorage
from sync_protocol import Ack, Sale
from tests.center import test_center_ingest_race as race
from tests.center.center_factories import CARD, OTHER_CARD, T0, make_sale
from tests.center.conftest import PgCluster

NOW = T0 + timedelta(days=1)


def _batches() -> tuple[list[Sale], list[Sale]]:
    """An earlier batch, and a big one holding every kind of verdict next to a plain sale."""
    earlier = [make_sale(seq, card_no=CARD, accrue=seq % 7 + 1) for seq in range(1, 41)]
    batch = [
        make_sale(
            seq,
            card_no=(CARD, OTHER_CARD, None)[seq % 3],
            accrue=seq % 5 + 1 if seq % 3 != 2 else 0,
            spend=20 if seq % 11 == 0 and seq % 3 != 2 else 0,
            discount=7 if seq % 4 == 0 else 0,
        )
        for seq in range(41, 300)
    ]
    batch += [
        batch[10],  # the same sale twice in one batch: one copy accepted, one duplicate
        replace(batch[20], opened_at=batch[20].opened_at - timedelta(seconds=1)),  # same id
        make_sale(batch[30].seq),  # another sale on a held (register, seq)
        earlier[5],  # stored by the earlier batch: a duplicate
        replace(earlier[6], opened_at=earlier[6].opened_at - timedelta(seconds=1)),
        replace(make_sale(400), store_id="3" * 65),  # refused by check_sale
    ]
    return earlier, batch[::-1]  # ingest sorts: any order in, one order stored


def _state(storage: Any) -> dict[str, Any]:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(r) for r in storage.db.execute(sql).fetchall())

    return {
        "sales": rows(
            "SELECT sale_id, register_id, seq, fingerprint, chain_hash, line_count, total_minor "
            "FROM sales"
        ),
        "lines": rows(
            "SELECT sale_id, line_no, product_id, amount_minor, discount_minor FROM sale_lines"
        ),
        "ledger": rows("SELECT source, card_no, wallet, kind, rule_id, amount FROM ledger"),
        "lots": rows("SELECT source, card_no, amount, remaining FROM lots"),
        "consumptions": rows("SELECT card_no, kind, amount FROM lot_consumptions"),
        "quarantine": rows("SELECT sale_id, reason, fingerprint FROM quarantine"),
        "totals": storage.ledger.lot_totals(),
    }


def _verdicts(ack: Ack) -> tuple[Any, ...]:
    return ack.accepted, ack.duplicates, tuple((r.sale_id, r.reason) for r in ack.rejected)


@pytest.mark.parametrize("run", [2, 7, 100])
def test_claim_runs_give_the_reference_verdicts(
    pg_dsn: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, run: int
) -> None:
    monkeypatch.setattr(store_postgres, "_CLAIM_RUN", run)
    earlier, batch = _batches()
    pg, lite = PostgresStorage(pg_dsn), SqliteStorage(tmp_path / "c.db")
    try:
        acks: dict[str, list[tuple[Any, ...]]] = {}
        for name, storage in (("pg", pg), ("lite", lite)):
            storage.migrate()
            acks[name] = [_verdicts(storage.sales.ingest(b, NOW)) for b in (earlier, batch, batch)]
        assert acks["pg"] == acks["lite"]
        first, again = acks["pg"][1], acks["pg"][2]
        accepted, duplicates, rejected = first
        assert len(accepted) == 259 and len(set(accepted)) == 259
        assert sorted(duplicates) == sorted([batch[-11].sale_id, earlier[5].sale_id])
        reasons = dict(rejected)
        assert len(rejected) == 4
        assert reasons[batch[-21].sale_id].startswith("sale_id:")
        assert reasons[earlier[6].sale_id].startswith("sale_id:")
        assert any(r.startswith("seq:") for r in reasons.values())
        assert any(r.startswith("store_id:") for r in reasons.values())
        # A replay changes nothing: every stored sale is a duplicate, the rest quarantined again.
        assert not again[0] and len(again[1]) == 259 + 2
        mine, theirs = _state(pg), _state(lite)
        assert len(mine["sales"]) == 40 + 259
        assert len(mine["lines"]) == 2 * (40 + 259)
        assert mine == theirs
        journal, remaining, debt = mine["totals"]
        assert journal == remaining - debt
    finally:
        pg.close()
        lite.close()


def test_two_workers_race_with_many_claim_runs(
    pg_cluster: PgCluster, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race test's workers (forked, so they inherit it) claim their batches 5 at a time."""
    monkeypatch.setattr(store_postgres, "_CLAIM_RUN", 5)
    race.test_two_workers_race_on_the_same_batches(pg_cluster, pg_dsn)
