"""A short seeded chaos run: real processes, kill -9 and faults on every hop, invariants at 0."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from demo.chaos import ChaosOptions, integrity, postgres_integrity, reference_balances, run_chaos
from demo.postgres import ThrowawayPostgres
from sync_protocol import LoyaltyMovement, Payment, Sale, SaleLine

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_seeded_chaos_run_loses_duplicates_and_invents_nothing(
    tmp_path: Path, backend: str
) -> None:
    options = ChaosOptions(
        root=tmp_path / "chaos",
        seed=4,
        days=2,
        minutes=0.2,
        mean_event_s=0.8,
        throughput_baskets=25,
        sync_timeout_s=90.0,
        clock_skew_s=120.0,
        backend=backend,
        overspend_s=10.0,  # at most: each register stops once its store's lease is spent
    )
    run = run_chaos(options, progress=lambda message: None)
    report = run.report
    assert run.ok, report
    for invariant in (
        "lost",
        "lost_at_register",
        "duplicated",
        "phantom",
        "sequence_gaps",
        "chain_breaks",
        "quarantined_at_center",
        "totals_mismatch",
        "balance_mismatch",
        "integrity_not_ok",
        "replicas_not_converged",
        "overspend_beyond_bound",
        "budget_overspend_beyond_bound",
    ):
        assert report[invariant] == 0, (invariant, report)
    assert report["acked_sales"] > 100
    assert report["acked_sales"] == report["journaled_sales"] == report["center_sales"]
    assert report["register_total_minor"] == report["center_total_minor"] > 0
    assert report["cards_checked"] > 0
    # The run was actually chaotic: processes died and faults were injected on the hops.
    assert sum(report["kills"].values()) >= 1, report
    assert sum(report["faults_applied"].values()) >= 1, report
    assert report["drain"]["drain_sales_per_s"] > 0
    assert report["seed"] == 4
    # The Center down, the card at every register: spent, within balance + ceiling, no more.
    assert 0 < report["overspend_spent_minor"] <= 1024 + report["overspend_ceiling_minor"]
    assert set(report["overspend_leases_before"]) == {"367", "406"}, report
    # The same receipts gave of one supplier campaign: within its budget, each store within
    # the lease it held when the Center went down.
    assert 0 < report["budget_given_minor"] <= report["budget_minor"], report
    assert report["budget_stores_beyond_lease"] == {}, report
    assert report["backend"] == backend
    # One register and its store node ran on clocks 60..120 s off, opposite ways, and the times
    # stamped on the sales show it; every other node kept the true time.
    skews = report["clock_skew_s"]
    assert len(skews) == 2 and sorted(n.split("-")[0] for n in skews) == ["pos", "store"]
    assert (
        all(60 <= abs(s) <= 120 for s in skews.values()) and sum(s > 0 for s in skews.values()) == 1
    )
    for node, seen in report["clock_ahead_seen_s"].items():
        assert abs(seen - skews.get(node, 0.0)) < 5, (node, report["clock_ahead_seen_s"])


def _sale(card: str, *moves: LoyaltyMovement) -> Sale:
    line = SaleLine(
        line_no=1, product_id="p", qty_milli=1000, unit_price_minor=100, amount_minor=100
    )
    return Sale(
        sale_id="2f0ab9f2-1a8e-4f43-9a40-0a6a3c1b7f10",
        store_id="367",
        register_id="367-1",
        seq=1,
        opened_at=T0,
        closed_at=T0,
        card_no=card,
        lines=(line,),
        payments=(Payment("cash", 100),),
        loyalty=moves,
        subtotal_minor=100,
        discount_minor=0,
        total_minor=100,
        promo_version=1,
    )


def test_reference_balances_sign_spends_and_skip_movements_not_active_yet() -> None:
    later = T0 + timedelta(days=30)
    sales = [
        _sale("c1", LoyaltyMovement("bonus", "accrue", 30, "base")),
        _sale("c1", LoyaltyMovement("bonus", "spend", 12)),
        _sale("c2", LoyaltyMovement("bonus", "accrue", 5, "base", active_from=later)),
        _sale("c2", LoyaltyMovement("bonus", "accrue", 7, "base", expires_at=T0)),
    ]
    assert reference_balances(sales, T0 + timedelta(days=1)) == {"c1": 18, "c2": 0}
    assert reference_balances(sales, later) == {"c1": 18, "c2": 5}


def test_integrity_reports_a_damaged_database(tmp_path: Path) -> None:
    good, bad = tmp_path / "good" / "a.db", tmp_path / "bad" / "b.db"
    for path in (good, bad):
        path.parent.mkdir()
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
        conn.commit()
        conn.close()
    data = bytearray(bad.read_bytes())
    data[4096 : 4096 + 64] = b"\xff" * 64  # scribble over the second page's b-tree header
    bad.write_bytes(bytes(data))
    result = integrity([good, bad])
    assert result["good/a.db"] == "ok"
    assert result["bad/b.db"] != "ok"


@pytest.mark.timeout(120)
def test_postgres_integrity_finds_an_index_that_lost_its_heap_rows() -> None:
    import psycopg

    with ThrowawayPostgres() as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE good (x INT PRIMARY KEY)")
            conn.execute("CREATE TABLE bad (x INT)")
            conn.execute("INSERT INTO good SELECT g FROM generate_series(1, 500) g")
            conn.execute("INSERT INTO bad SELECT g FROM generate_series(1, 500) g")
            # An index over a function that lies about being immutable: redefining it leaves the
            # index keyed by values the heap no longer produces, which amcheck must notice.
            conn.execute(
                "CREATE FUNCTION shift(v INT) RETURNS INT IMMUTABLE LANGUAGE sql AS 'SELECT v'"
            )
            conn.execute("CREATE INDEX bad_shift ON bad (shift(x))")
            assert postgres_integrity(pg.dsn()) == {
                "postgresql/bad_shift": "ok",
                "postgresql/good_pkey": "ok",
            }
            conn.execute(
                "CREATE OR REPLACE FUNCTION shift(v INT) RETURNS INT IMMUTABLE LANGUAGE sql "
                "AS 'SELECT v + 1000'"
            )
        result = postgres_integrity(pg.dsn())
    assert result["postgresql/good_pkey"] == "ok"
    assert result["postgresql/bad_shift"].startswith("amcheck:"), result
