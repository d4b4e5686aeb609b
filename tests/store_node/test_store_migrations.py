"""The store node's SQLite files of the release before migrations are upgraded in place."""

from __future__ import annotations

import gzip
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from store_node.auth import RegisterAuth, StoredNonces
from store_node.errors import StorageError
from store_node.reservations import ReservationBook
from store_node.salesbox import SalesBox
from tests.store_node.fixtures import build_previous_release as old
from tests.store_node.fixtures.build_previous_release import CARD, SALE_IDS, STORE_ID, T0

FIXTURES = Path(__file__).parent / "fixtures"


def _previous_release(name: str, folder: Path) -> Path:
    path = folder / name
    path.write_bytes(gzip.decompress((FIXTURES / f"{name}.gz").read_bytes()))
    return path


def _open_store(path: Path, *, book_first: bool = False) -> None:
    # The app opens the sales box, then the reservation book; each must cope alone.
    openers = [lambda: SalesBox(path, store_id=STORE_ID), lambda: ReservationBook(path, ttl_s=60)]
    for opener in reversed(openers) if book_first else openers:
        opener().close()


def _open_auth(path: Path) -> None:
    nonces = StoredNonces(path.parent)
    try:
        nonces.count()
    finally:
        nonces.close()
    RegisterAuth(path.parent).credential("nobody")


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


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


@pytest.mark.parametrize("book_first", [False, True], ids=["app_order", "book_first"])
def test_a_store_db_of_the_previous_release_is_upgraded_in_place(
    tmp_path: Path, book_first: bool
) -> None:
    upgraded = _previous_release("store.db", tmp_path)
    before = _rows(upgraded)

    _open_store(upgraded, book_first=book_first)

    after = _rows(upgraded)
    # Adopted without touching a row; the file gets an identity and the recovery tables.
    (db_id,) = [value for key, value in after["meta"] if key == "db_id"]
    assert len(db_id) == 32
    after["meta"].remove(("db_id", db_id))
    assert after.pop("register_journals") == [] and after.pop("center_coverage") == []
    # m002 of the reservations adds a column (0: no Center hold) and new tables.
    assert after.pop("reservations") == [(*row, 0) for row in before.pop("reservations")]
    tables = ("reservation_issued_codes", "center_coupon_ops", "coupon_policies")
    # m003 of the reservations adds the spending leases, empty.
    for table in (*tables, "spending_leases", "lease_support"):
        assert after.pop(table) == []
    # m005 of the reservations adds the supplier budget leases, empty.
    budget_tables = ("budget_leases", "budget_promotions", "budget_holds")
    for table in (*budget_tables, "reservation_sale_budgets"):
        assert after.pop(table) == []
    # m003 of the sales box only gave each sale its card (read from its payload).
    assert [row[:-1] for row in after.pop("sales")] == before.pop("sales")
    assert after == before
    cards = _query(upgraded, "SELECT DISTINCT card_no FROM sales")
    assert set(cards) <= {(CARD,), (None,)} and (CARD,) in cards
    assert sorted(_query(upgraded, "SELECT migration_set, name FROM _migrations")) == [
        ("reservations", "m001_baseline"),
        ("reservations", "m002_single_use_codes"),
        ("reservations", "m003_spending_leases"),
        ("reservations", "m005_budget_leases"),
        ("salesbox", "m001_baseline"),
        ("salesbox", "m002_recovery"),
        ("salesbox", "m003_sales_card_no"),
    ]
    fresh = tmp_path / "fresh" / "store.db"
    fresh.parent.mkdir()
    _open_store(fresh)
    assert _schema(upgraded) == _schema(fresh)  # the same as a file this release creates
    assert _query(upgraded, "PRAGMA journal_mode") == [("wal",)]


def test_an_auth_db_of_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    upgraded = _previous_release("auth.db", tmp_path)
    before = _rows(upgraded)

    _open_auth(upgraded)

    assert _rows(upgraded) == before
    assert _query(upgraded, "SELECT migration_set, name FROM _migrations") == [
        ("auth", "m001_baseline")
    ]
    fresh = tmp_path / "fresh" / "auth.db"
    fresh.parent.mkdir()
    old.build_auth(fresh)
    assert _schema(upgraded) == _schema(fresh)
    assert _query(upgraded, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.parametrize("name", ["store.db", "auth.db"])
def test_opening_again_changes_nothing(tmp_path: Path, name: str) -> None:
    path = _previous_release(name, tmp_path)
    reopen = _open_store if name == "store.db" else _open_auth
    reopen(path)
    recorded = _query(path, "SELECT * FROM _migrations")
    rows, schema = _rows(path), _schema(path)
    reopen(path)
    assert (_query(path, "SELECT * FROM _migrations"), _rows(path), _schema(path)) == (
        recorded,
        rows,
        schema,
    )


@pytest.mark.parametrize(
    ("name", "migration_set"),
    [("store.db", "salesbox"), ("store.db", "reservations"), ("auth.db", "auth")],
)
def test_a_file_of_a_newer_release_is_refused_untouched(
    tmp_path: Path, name: str, migration_set: str
) -> None:
    path = _previous_release(name, tmp_path)
    reopen = _open_store if name == "store.db" else _open_auth
    reopen(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO _migrations VALUES (?, 'm002_from_the_future', '2030-01-01T00:00:00')",
            [migration_set],
        )
    conn.close()
    rows, schema = _rows(path), _schema(path)

    with pytest.raises(StorageError, match=f"{migration_set} migration m002_from_the_future"):
        reopen(path)
    assert (_rows(path), _schema(path)) == (rows, schema)


def test_an_upgraded_sales_box_keeps_its_sales_cache_and_holds(tmp_path: Path) -> None:
    path = _previous_release("store.db", tmp_path)
    box = SalesBox(path, store_id=STORE_ID)
    try:
        outbox = box.outbox()
        assert (outbox.pending, outbox.rejected_by_center, outbox.quarantined) == (1, 1, 2)
        assert [p.sale_id for p in box.pending(10)] == [SALE_IDS[1]]
        (register,) = box.registers()
        assert (register.register_id, register.last_seq, register.master_version) == ("367-1", 3, 8)
        state = box.master_state()
        assert state is not None and state.version == 8
        card = box.master_card(CARD)
        assert card is not None
        # The old Center sent no state: the store's own sale of the card (seq 2, 5.00, pending)
        # is all it counts, with the 1.00 bonus it spent; seq 3 was refused by the Center.
        assert card.pop("state") == {
            "v": 1,
            "wallets": {"bonus": -100},
            "purchases": 1,
            "visits": 1,
            "spend_minor": 500,
            "tier_spend_minor": 500,
            "tier_visits": 1,
            "seen": {"367-1": 2},
            "days": {"2024-05-17": {"purchases": 1, "spend_minor": 500}},
        }
        assert card == {"card_no": CARD, "customer_id": "c1", "bonus_balance": 1000}
        assert box.center_status().last_error == "center: timeout"
        ack = box.accept([old._sale(4, "00000000-0000-4000-8000-000000000005")], now=T0)
        assert ack.accepted == ("00000000-0000-4000-8000-000000000005",)
    finally:
        box.close()
    with pytest.raises(StorageError, match="belongs to store '367'"):
        SalesBox(path, store_id="368")
    book = ReservationBook(path, ttl_s=300)
    try:
        held = _query(path, "SELECT reservation_id FROM reservations WHERE receipt_id = 'r2'")
        reservation = book.get(held[0][0], now=T0 + timedelta(minutes=14), register_id="367-1")
        assert (reservation.state, reservation.amount) == ("held", 50)
    finally:
        book.close()


def test_upgraded_auth_keeps_credentials_and_refuses_replays(tmp_path: Path) -> None:
    path = _previous_release("auth.db", tmp_path)
    ((node_id, register_id),) = _query(path, "SELECT node_id, register_id FROM registers")
    credential = RegisterAuth(path.parent).credential(node_id)
    assert credential is not None and credential[0] == register_id == "367-1"
    nonces = StoredNonces(path.parent)
    try:
        now = T0 + timedelta(minutes=2, seconds=5)
        assert not nonces.claim("reg-0001", "nonce-1", now)  # seen before the upgrade
        assert nonces.claim("reg-0001", "nonce-9", now)
    finally:
        nonces.close()
