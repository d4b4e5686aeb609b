"""The register's SQLite files of the release before migrations are upgraded in place."""

from __future__ import annotations

import gzip
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pos_agent.devices import PrintJob, ReprintQueue
from pos_agent.errors import JournalError, ReplicaError, ReprintQueueError
from pos_agent.journal import Journal, ReservationOp
from pos_agent.replica import Replica
from tests.pos_agent.fixtures import build_previous_release as old
from tests.pos_agent.fixtures.build_previous_release import CARD, SALE_IDS, T0

FIXTURES = Path(__file__).parent / "fixtures"


def _open_journal(path: Path) -> Any:
    return Journal(path, register_id=old.REGISTER_ID, store_id=old.STORE_ID)


# File name -> (how the current release opens it, its migration set, its error class).
OPENERS: dict[str, tuple[Callable[[Path], Any], str, type[Exception]]] = {
    "journal.db": (_open_journal, "journal", JournalError),
    "replica.db": (Replica, "replica", ReplicaError),
    "devices.db": (ReprintQueue, "reprints", ReprintQueueError),
}
LATER = {
    "journal.db": ["m001_baseline", "m002_sales_card_index"],
    "replica.db": ["m001_baseline", "m002_card_states"],
    "devices.db": ["m001_baseline"],
}
"""The migrations a file of the release before migrations goes through, in order."""


def _previous_release(name: str, folder: Path) -> Path:
    path = folder / name
    path.write_bytes(gzip.decompress((FIXTURES / f"{name}.gz").read_bytes()))
    return path


def _open(name: str, path: Path) -> None:
    OPENERS[name][0](path).close()


def _schema(path: Path) -> list[tuple[str, str, str, str | None]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    finally:
        conn.close()


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the migration records, in a stable order."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            str(name)
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name != "_migrations"
        ]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
    finally:
        conn.close()


def _pragmas(path: Path) -> tuple[str, int]:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA user_version").fetchone()[0],
        )
    finally:
        conn.close()


def _migrations(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute("SELECT migration_set, name, applied_at FROM _migrations"))
    finally:
        conn.close()


@pytest.mark.parametrize("name", sorted(OPENERS))
def test_a_file_of_the_previous_release_is_upgraded_in_place(tmp_path: Path, name: str) -> None:
    upgraded = _previous_release(name, tmp_path)
    before = _rows(upgraded)
    assert "_migrations" not in {row[1] for row in _schema(upgraded)}

    _open(name, upgraded)

    after = _rows(upgraded)
    # Adopted without touching a row; later migrations only add (empty) tables and indexes.
    assert {t: rows for t, rows in after.items() if t in before} == before
    assert all(not rows for t, rows in after.items() if t not in before)
    assert [(s, n) for s, n, _ in _migrations(upgraded)] == [
        (OPENERS[name][1], migration) for migration in LATER[name]
    ]
    # The same data written by this release into a fresh file: the same schema, rows, pragmas.
    fresh = tmp_path / "fresh" / name
    fresh.parent.mkdir()
    old.BUILDERS[name](fresh)
    assert _schema(upgraded) == _schema(fresh)
    assert _rows(upgraded) == _rows(fresh)
    assert _pragmas(upgraded) == _pragmas(fresh)
    assert _pragmas(upgraded)[0] == "wal"


@pytest.mark.parametrize("name", sorted(OPENERS))
def test_opening_again_changes_nothing(tmp_path: Path, name: str) -> None:
    path = _previous_release(name, tmp_path)
    _open(name, path)
    recorded, rows, schema = _migrations(path), _rows(path), _schema(path)
    _open(name, path)
    assert (_migrations(path), _rows(path), _schema(path)) == (recorded, rows, schema)


@pytest.mark.parametrize("name", sorted(OPENERS))
def test_a_file_of_a_newer_release_is_refused_untouched(tmp_path: Path, name: str) -> None:
    path = _previous_release(name, tmp_path)
    _open(name, path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO _migrations VALUES (?, 'm002_from_the_future', '2030-01-01T00:00:00')",
            [OPENERS[name][1]],
        )
    conn.close()
    rows, schema = _rows(path), _schema(path)

    opener, migration_set, error = OPENERS[name]
    with pytest.raises(error, match=f"{migration_set} migration m002_from_the_future") as caught:
        opener(path)
    assert "newer release" in str(caught.value)
    assert (_rows(path), _schema(path)) == (rows, schema)


def test_an_upgraded_journal_keeps_selling_where_it_stopped(tmp_path: Path) -> None:
    journal = _open_journal(_previous_release("journal.db", tmp_path))
    try:
        stats = journal.stats()
        assert (stats.queue_depth, stats.last_seq) == (1, 4)
        assert [r.sale_id for r in stats.rejected] == [SALE_IDS[3]]
        assert journal.verify_chain() == []
        assert journal.offline_spent(CARD, "2024-05-17") == 50
        assert journal.coupon_used_by("SPRING-1") == SALE_IDS[1]
        assert journal.open_receipt_ids() == ["r5"]
        held = journal.reservation("r5")
        assert held is not None and held.amount == 20
        assert journal.reservation_ops() == [
            ReservationOp("res-3", "commit", SALE_IDS[2]),
            ReservationOp("res-6", "release", None),
        ]

        journal.create_receipt("r7", "{}", T0)
        sale = journal.confirm(
            "r7",
            lambda seq: old._sale(seq, "00000000-0000-4000-8000-000000000007"),
            bonus_spent=0,
            bonus_balance=0,
        )
        assert sale.seq == 5
        assert sale.prev_hash and journal.verify_chain() == []
    finally:
        journal.close()


def test_an_upgraded_replica_keeps_its_master_data(tmp_path: Path) -> None:
    replica = Replica(_previous_release("replica.db", tmp_path))
    fresh_path = tmp_path / "fresh.db"
    old.build_replica(fresh_path)
    fresh = Replica(fresh_path)
    try:
        assert replica.master_version() == 8
        assert replica.checksum() == fresh.checksum()
        assert replica.product_names(["bread", "gum", "milk"]) == {
            "bread": "Rye bread",
            "gum": "Gum",
        }
        card = replica.card(CARD)
        assert card is not None and card.segments == ("regular", "pensioner")
        assert replica.synced_at() == T0 + timedelta(minutes=4)
    finally:
        replica.close()
        fresh.close()


def test_an_upgraded_reprint_queue_still_holds_its_jobs(tmp_path: Path) -> None:
    queue = ReprintQueue(_previous_release("devices.db", tmp_path))
    try:
        assert queue.pending() == [
            (1, PrintJob("receipt", SALE_IDS[0], b"\x1b@receipt one\n")),
            (2, PrintJob("slip", "r2", b"\x1b@slip\n")),
        ]
        queue.add(PrintJob("slip", "r9", b"x"), "offline", T0)
        assert [job_id for job_id, _ in queue.pending()] == [1, 2, 3]
    finally:
        queue.close()


def test_the_journal_still_refuses_a_newer_user_version(tmp_path: Path) -> None:
    path = _previous_release("journal.db", tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with pytest.raises(JournalError, match="schema version 2 is newer than 1; upgrade the agent"):
        _open_journal(path)
    assert "_migrations" not in {row[1] for row in _schema(path)}


def test_a_journal_missing_columns_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, sale_id TEXT NOT NULL)")
    conn.close()
    with pytest.raises(JournalError, match="table outbox lacks column"):
        _open_journal(path)
    assert [row[1] for row in _schema(path)] == ["outbox"]
