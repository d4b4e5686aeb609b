"""Every customer-owned row carries its owner (the Citus distribution column), on both backends:
written by every path, moved with its card, and filled by m018 for the rows of an older release."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from center.errors import Conflict
from center.promotions.coupons import BatchRequest
from center.storage import Storage
from center.storage.owners import CARD_OWNED, RECEIPT_OWNED
from center.storage.postgres import PostgresStorage
from center.storage.sql import SqlStorage
from center.storage.sqlite import SqliteStorage
from tests.center.center_factories import CARD, OTHER_CARD, T0, make_sale, master_tables

NOW = T0 + timedelta(days=1)
UNKNOWN = "2900000000777"
ACTOR = "clerk"
RETURN_ID = "00000000-0000-4000-8000-0000000000r1".replace("r", "e")
_RECEIPT_KEY = {"sale_lines": "sale_id", "coupon_redemptions": "sale_id", "returns": "return_id"}


def _one(storage: SqlStorage | Storage, sql: str, params: tuple[Any, ...] = ()) -> Any:
    return storage.db.execute(sql, params).fetchone()[0]


def _owners(storage: SqlStorage | Storage, table: str, column: str, key: str) -> dict[str, set]:
    rows = storage.db.execute(f"SELECT {key}, {column} FROM {table}").fetchall()
    found: dict[str, set] = {}
    for k, owner in rows:
        found.setdefault(str(k), set()).add(owner)
    return found


def assert_owners_consistent(storage: SqlStorage | Storage) -> None:
    """The owner rule (center/storage/owners.py) holds for every row of every owned table."""
    cards = _one(storage, "SELECT COUNT(*) FROM cards")
    assert _one(storage, "SELECT COUNT(*) FROM card_directory") == cards
    assert (
        _one(
            storage,
            "SELECT COUNT(*) FROM cards c JOIN card_directory d ON d.card_no = c.card_no "
            "AND d.customer_id = c.customer_id",
        )
        == cards
    )
    for table in CARD_OWNED:
        wrong = storage.db.execute(
            f"SELECT x.card_no, x.customer_id FROM {table} x LEFT JOIN card_directory d "
            "ON d.card_no = x.card_no WHERE x.customer_id <> COALESCE(d.customer_id, "
            "'card:' || x.card_no)"
        ).fetchall()
        assert wrong == [], table
    wrong = storage.db.execute(
        "SELECT s.sale_id, s.owner_id FROM sales s LEFT JOIN card_directory d "
        "ON d.card_no = s.card_no WHERE s.owner_id <> CASE WHEN s.card_no IS NULL "
        "THEN 'store:' || s.store_id ELSE COALESCE(d.customer_id, 'card:' || s.card_no) END"
    ).fetchall()
    assert wrong == [], "sales"
    for table in RECEIPT_OWNED:
        wrong = storage.db.execute(
            f"SELECT x.{_RECEIPT_KEY[table]}, x.owner_id FROM {table} x LEFT JOIN sales s "
            f"ON s.sale_id = x.{_RECEIPT_KEY[table]} "
            "WHERE s.owner_id IS NULL OR x.owner_id <> s.owner_id"
        ).fetchall()
        assert wrong == [], table


def _batch(storage: Storage) -> str:
    request = BatchRequest(
        promotion_id="base-accrual-3",
        name="Spring",
        prefix="SPR",
        count=2,
        single_use=True,
        valid_from=date(2024, 3, 1),
        valid_to=date(2024, 4, 30),
    )
    batch_id = storage.coupons.create_coupon_batch(request, "m", T0)["batch_id"]
    return str(storage.coupons.coupon_export_page(batch_id, "", 10)[0][0])


def test_every_write_path_fills_the_owner(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    code = _batch(storage)
    with_card = replace(make_sale(1, card_no=CARD, accrue=50), coupons_redeemed=(code,))
    cardless = make_sale(2, store_id="406", register_id="406-1")
    unknown = make_sale(3, card_no=UNKNOWN, accrue=5)
    spend = make_sale(4, card_no=CARD, spend=10)
    ack = storage.sales.ingest([with_card, cardless, unknown, spend], NOW)
    assert len(ack.accepted) == 4
    storage.returns.head_office_return(with_card.sale_id, {1: 1000}, RETURN_ID, ACTOR, NOW)
    storage.returns.adjust(CARD, "bonus", 5, "goodwill", ACTOR, NOW, idempotency_key="k1")
    storage.customers.set_answers("hh-1", "survey", {"pets": "cat"}, ACTOR, NOW)

    sales = _owners(storage, "sales", "owner_id", "sale_id")
    assert sales[with_card.sale_id] == sales[RETURN_ID] == {"hh-1"}
    assert sales[cardless.sale_id] == {"store:406"}  # card-less receipts spread by store
    assert sales[unknown.sale_id] == {f"card:{UNKNOWN}"}
    assert _owners(storage, "sale_lines", "owner_id", "sale_id")[cardless.sale_id] == {"store:406"}
    assert _owners(storage, "coupon_redemptions", "owner_id", "sale_id") == {
        with_card.sale_id: {"hh-1"}
    }
    assert _owners(storage, "returns", "owner_id", "return_id") == {RETURN_ID: {"hh-1"}}
    assert _owners(storage, "adjustments", "customer_id", "idempotency_key") == {"k1": {"hh-1"}}
    assert _owners(storage, "ledger", "customer_id", "card_no") == {
        CARD: {"hh-1"},
        UNKNOWN: {f"card:{UNKNOWN}"},
    }
    assert _owners(storage, "lots", "customer_id", "card_no")[CARD] == {"hh-1"}
    assert _owners(storage, "lot_consumptions", "customer_id", "card_no") == {CARD: {"hh-1"}}
    assert _owners(storage, "questionnaire_answers", "customer_id", "questionnaire_id") == {
        "survey": {"hh-1"}
    }
    assert_owners_consistent(storage)


def test_rows_follow_their_card_when_it_is_issued_merged_or_reassigned(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    early = make_sale(1, card_no=UNKNOWN, accrue=7)
    assert storage.sales.ingest([early], NOW).accepted == (early.sale_id,)
    assert _owners(storage, "lots", "customer_id", "card_no") == {UNKNOWN: {f"card:{UNKNOWN}"}}

    storage.customers.issue_card("hh-2", UNKNOWN, "electronic", ACTOR, NOW)
    assert _owners(storage, "sales", "owner_id", "sale_id")[early.sale_id] == {"hh-2"}
    assert _owners(storage, "lots", "customer_id", "card_no") == {UNKNOWN: {"hh-2"}}
    assert_owners_consistent(storage)

    storage.customers.merge_customers("hh-1", "hh-2", ACTOR, NOW)
    assert _owners(storage, "ledger", "customer_id", "card_no") == {UNKNOWN: {"hh-1"}}
    assert _owners(storage, "sale_lines", "owner_id", "sale_id")[early.sale_id] == {"hh-1"}
    assert_owners_consistent(storage)
    balance = storage.ledger.balance(UNKNOWN, NOW + timedelta(days=1))
    assert balance is not None and balance.wallets == {"bonus": 7}

    later = make_sale(2, card_no=CARD, accrue=3)
    storage.sales.ingest([later], NOW)
    moved = master_tables()["cards"]
    moved[0] = {"card_no": CARD, "customer_id": "hh-2"}
    storage.feed.upsert_master({"cards": moved})
    assert _owners(storage, "sales", "owner_id", "sale_id")[later.sale_id] == {"hh-2"}
    assert _owners(storage, "ledger", "customer_id", "card_no")[CARD] == {"hh-2"}
    assert_owners_consistent(storage)


def test_a_card_number_stays_unique(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    with pytest.raises(Conflict):
        storage.customers.issue_card("hh-2", CARD, "physical", ACTOR, NOW)
    assert _one(storage, "SELECT COUNT(*) FROM card_directory WHERE card_no = ?", (CARD,)) == 1


def test_a_sale_id_that_lost_its_register_seq_is_not_held(storage: Storage) -> None:
    # Two sale_ids on one (register, seq) in one batch: the first in ingest order (by
    # sale_id at equal seq) is stored.
    first, stolen = sorted([make_sale(1), make_sale(1)], key=lambda s: s.sale_id)
    ack = storage.sales.ingest([stolen, first], NOW)
    assert ack.accepted == (first.sale_id,)
    assert [r.sale_id for r in ack.rejected] == [stolen.sale_id]
    assert ack.rejected[0].reason.startswith("seq:")
    late = make_sale(1)  # and in a later batch
    assert storage.sales.ingest([late], NOW).rejected[0].reason.startswith("seq:")
    # Neither kept a claim on its sale_id: once at a free seq, each is stored.
    again = storage.sales.ingest([replace(make_sale(2), sale_id=stolen.sale_id)], NOW)
    assert again.accepted == (stolen.sale_id,)
    assert storage.sales.ingest([replace(make_sale(3), sale_id=late.sale_id)], NOW).accepted
    assert storage.sales.ingest([first], NOW).duplicates == (first.sale_id,)


def test_an_adjustment_key_is_unique_across_customers(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    storage.returns.adjust(CARD, "bonus", 5, "goodwill", ACTOR, NOW, idempotency_key="k1")
    with pytest.raises(Conflict, match="k1"):
        storage.returns.adjust(OTHER_CARD, "bonus", 5, "goodwill", ACTOR, NOW, idempotency_key="k1")
    replay = storage.returns.adjust(CARD, "bonus", 5, "goodwill", ACTOR, NOW, idempotency_key="k1")
    assert replay["replayed"] is True


# -- m018 on a database of m017 --------------------------------------------------------------


def _insert(storage: SqlStorage, table: str, row: dict[str, Any]) -> None:
    marks = ", ".join("?" for _ in row)
    storage.db.execute(
        f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values())
    )


def _fill_m017(storage: SqlStorage) -> None:
    """Rows of every owned table as the release of m017 wrote them (no owner columns)."""
    ts = storage.db.ts
    at = ts(T0)
    sales = [
        ("s-card", "367", "367-1", 1, CARD),
        ("s-none", "406", "406-1", 1, None),
        ("s-unknown", "367", "367-1", 2, UNKNOWN),
        ("r-card", "367", "367-HO", 1, CARD),
    ]
    with storage.db.transaction():
        _insert(storage, "customers", {"customer_id": "hh-1", "attributes": "{}", "version": 1})
        _insert(
            storage,
            "cards",
            {"card_no": CARD, "customer_id": "hh-1", "status": "active", "version": 1},
        )
        for sale_id, store, register, seq, card in sales:
            _insert(
                storage,
                "sales",
                {
                    "sale_id": sale_id, "store_id": store, "register_id": register, "seq": seq,
                    "opened_at": at, "closed_at": at, "card_no": card, "subtotal_minor": 100,
                    "discount_minor": 0, "total_minor": 100, "line_count": 1,
                    "promo_version": 1, "fingerprint": f"fp-{sale_id}",
                    "payload": b"payload", "received_at": at,
                },
            )  # fmt: skip
            if storage.db.dialect.partitions:
                _insert(
                    storage,
                    "sale_ids",
                    {"sale_id": sale_id, "register_id": register, "seq": seq,
                     "fingerprint": f"fp-{sale_id}", "closed_at": at},
                )  # fmt: skip
            _insert(
                storage,
                "sale_lines",
                {"sale_id": sale_id, "line_no": 1, "product_id": "1000", "qty_milli": 1000,
                 "unit_price_minor": 100, "amount_minor": 100, "discount_minor": 0,
                 "weighed": 0, "known_product": 1},
            )  # fmt: skip
        for entry_id, card, source in ((1, CARD, "s-card"), (2, UNKNOWN, "s-unknown")):
            _insert(
                storage,
                "ledger",
                {"card_no": card, "wallet": "bonus", "kind": "accrue", "amount": 10,
                 "rule_id": "base", "source": source, "created_at": at},
            )  # fmt: skip
            _insert(
                storage,
                "lots",
                {"entry_id": entry_id, "card_no": card, "wallet": "bonus", "kind": "accrue",
                 "rule_id": "base", "source": source, "amount": 10, "remaining": 10,
                 "created_at": at},
            )  # fmt: skip
        _insert(
            storage,
            "lot_consumptions",
            {"entry_id": 1, "lot_id": 1, "card_no": CARD, "wallet": "bonus", "kind": "expire",
             "amount": 1, "created_at": at},
        )  # fmt: skip
        _insert(
            storage,
            "coupon_redemptions",
            {"code": "SPR-1", "sale_id": "s-card", "store_id": "367", "at": at},
        )
        _insert(
            storage,
            "returns",
            {"return_id": "r-card", "original_id": "s-card", "store_id": "367",
             "card_no": CARD, "status": "applied", "returned_at": at},
        )  # fmt: skip
        _insert(
            storage,
            "adjustments",
            {"idempotency_key": "k1", "card_no": CARD, "wallet": "bonus", "amount": 5,
             "reason": "goodwill", "actor": ACTOR, "created_at": at},
        )  # fmt: skip
        _insert(
            storage,
            "questionnaire_answers",
            {"customer_id": "hh-1", "questionnaire_id": "survey", "answers": '{"pets":"cat"}',
             "actor": ACTOR, "answered_at": at},
        )  # fmt: skip


_TABLES = (
    "cards", "sales", "sale_lines", "ledger", "lots", "lot_consumptions", "coupon_redemptions",
    "returns", "adjustments", "questionnaire_answers",
)  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_m018_fills_the_owners_of_a_m017_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        storage: SqlStorage = PostgresStorage(request.getfixturevalue("pg_dsn"))
    else:
        storage = SqliteStorage(tmp_path / "center.db")
    try:
        full = storage.migrations
        storage.migrations = full.until("m017_coupon_jobs")
        storage.migrate()
        _fill_m017(storage)
        before = {
            t: sorted(map(tuple, storage.db.execute(f"SELECT * FROM {t}").fetchall()))
            for t in _TABLES
        }
        storage.migrations = full
        applied = storage.migrate()
        # m018 first; the later migrations add tables of their own and touch none of these rows.
        assert applied == full.names()[17:] and applied[0] == "m018_distribution_keys"

        for table, rows in before.items():  # every row kept, every old column as it was
            width = len(rows[0])
            after = sorted(
                tuple(r)[:width] for r in storage.db.execute(f"SELECT * FROM {table}").fetchall()
            )
            assert after == rows, table
        assert _owners(storage, "sales", "owner_id", "sale_id") == {
            "s-card": {"hh-1"},
            "s-none": {"store:406"},
            "s-unknown": {f"card:{UNKNOWN}"},
            "r-card": {"hh-1"},
        }
        assert _owners(storage, "sale_lines", "owner_id", "sale_id")["s-none"] == {"store:406"}
        assert _owners(storage, "ledger", "customer_id", "card_no") == {
            CARD: {"hh-1"},
            UNKNOWN: {f"card:{UNKNOWN}"},
        }
        assert _owners(storage, "coupon_redemptions", "owner_id", "code") == {"SPR-1": {"hh-1"}}
        assert _owners(storage, "returns", "owner_id", "return_id") == {"r-card": {"hh-1"}}
        assert _owners(storage, "adjustments", "customer_id", "card_no") == {CARD: {"hh-1"}}
        answers = storage.db.execute(
            "SELECT customer_id, questionnaire_id, answers FROM questionnaire_answers"
        ).fetchall()
        assert [tuple(r) for r in answers] == [("hh-1", "survey", '{"pets":"cat"}')]
        assert_owners_consistent(storage)
        if storage.db.dialect.partitions:
            seqs = storage.db.execute(
                "SELECT register_id, seq, sale_id FROM register_seqs ORDER BY register_id, seq"
            ).fetchall()
            assert [tuple(r) for r in seqs] == [
                ("367-1", 1, "s-card"),
                ("367-1", 2, "s-unknown"),
                ("367-HO", 1, "r-card"),
                ("406-1", 1, "s-none"),
            ]
        # The upgraded database keeps working: the claims hold, the balance is there.
        assert storage.ledger.balance(CARD, NOW) is not None
        clash = make_sale(1, register_id="406-1", store_id="406")
        assert storage.sales.ingest([clash], NOW).rejected[0].reason.startswith("seq:")
        storage.customers.issue_card("hh-1", UNKNOWN, "electronic", ACTOR, NOW)
        assert _owners(storage, "lots", "customer_id", "card_no")[UNKNOWN] == {"hh-1"}
        assert_owners_consistent(storage)
    finally:
        storage.close()
