"""Customers and cards for the call center: lifecycle, search, audit, on both backends."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from center.crm.model import parse_customer, parse_search
from center.errors import Conflict, MalformedRequest, UnknownObject
from center.storage import LedgerEntry, Storage
from tests.center.center_factories import CARD, T0, make_sale, master_tables

NOW = T0 + timedelta(days=1)
ACTOR = "node-1"


def _customer(storage: Storage, **fields: Any) -> str:
    body = {"last_name": "Ivanova", "first_name": "Anna", **fields}
    return storage.customers.create_customer(parse_customer(body), ACTOR, NOW)


def _snapshot_card(storage: Storage, card_no: str) -> dict[str, Any]:
    snapshot = storage.feed.master_snapshot("367", NOW)
    assert snapshot is not None
    return next(c for c in snapshot[1]["cards"] if c["card_no"] == card_no)


def _counts(storage: Storage) -> tuple[int, ...]:
    sql = storage  # the shared SQL class has the plain helpers
    rows = []
    for table in ("customers", "cards", "audit", "customer_index", "ledger"):
        rows.append(sql.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # type: ignore[attr-defined]
    rows.append(storage.feed.master_version())
    return tuple(int(r) for r in rows)


@pytest.fixture
def seeded(storage: Storage) -> Storage:
    storage.feed.upsert_master(master_tables())
    return storage


def test_block_shows_in_the_snapshot_and_unblock_lifts_it(seeded: Storage) -> None:
    version = seeded.feed.master_version()
    card = seeded.customers.block_card(CARD, "lost", ACTOR, NOW)
    assert card["status"] == "blocked" and card["block_reason"] == "lost"
    assert seeded.feed.master_version() == version + 1
    assert _snapshot_card(seeded, CARD)["status"] == "blocked"
    assert seeded.customers.unblock_card(CARD, ACTOR, NOW)["status"] == "active"
    assert _snapshot_card(seeded, CARD)["status"] == "active"
    actions = [(r["action"], r["actor"]) for r in seeded.audit.audit_history("card", CARD)]
    assert actions == [("block", ACTOR), ("unblock", ACTOR)]
    first = seeded.audit.audit_history("card", CARD)[0]
    assert first["before"]["status"] == "active" and first["after"]["status"] == "blocked"


def test_issue_and_activate(seeded: Storage) -> None:
    customer_id = _customer(seeded)
    physical = seeded.customers.issue_card(customer_id, "2900000000099", "physical", ACTOR, NOW)
    assert physical["status"] == "issued" and physical["type"] == "physical"
    assert seeded.customers.activate_card("2900000000099", ACTOR, NOW)["status"] == "active"
    electronic = seeded.customers.issue_card(customer_id, None, "electronic", ACTOR, NOW)
    assert electronic["status"] == "active" and len(electronic["card_no"]) == 13
    with pytest.raises(Conflict, match="card_no"):
        seeded.customers.issue_card(customer_id, "2900000000099", "physical", ACTOR, NOW)
    with pytest.raises(UnknownObject, match="customer_id"):
        seeded.customers.issue_card("nobody", None, "physical", ACTOR, NOW)
    view = seeded.customers.customer_view(customer_id, NOW)
    assert view is not None
    assert {c["card_no"] for c in view["cards"]} == {"2900000000099", electronic["card_no"]}
    assert view["attributes"] == {"first_name": "Anna", "last_name": "Ivanova"}


def test_replace_moves_the_balance_exactly_once(seeded: Storage) -> None:
    seeded.ledger.add_ledger_entries(
        [
            LedgerEntry(
                CARD, "bonus", "accrue", 70, "base", "a", T0, expires_at=NOW + timedelta(days=9)
            ),
            LedgerEntry(
                CARD, "bonus", "accrue", 40, "base", "b", T0, active_from=NOW + timedelta(days=2)
            ),
            LedgerEntry(CARD, "bonus", "spend", -20, "", "c", T0 + timedelta(hours=1)),
        ]
    )
    before = seeded.ledger.balance(CARD, NOW)
    assert before is not None and before.wallets == {"bonus": 50}
    done = seeded.customers.replace_card(CARD, "2900000000105", ACTOR, NOW)
    assert done["moved"] == {"bonus": 90}
    assert done["old"]["status"] == "blocked" and done["old"]["block_reason"] == "replaced"
    assert done["old"]["replaced_by"] == "2900000000105"
    again = seeded.customers.replace_card(CARD, None, ACTOR, NOW)
    assert again["new"]["card_no"] == "2900000000105" and again["moved"] == {}
    # A re-run of the move itself (e.g. a retried transaction) finds nothing left to move.
    assert seeded.customers._move_balance(CARD, "2900000000105", seeded.db.ts(NOW)) == {}
    old = seeded.ledger.balance(CARD, NOW)
    new = seeded.ledger.balance("2900000000105", NOW)
    assert old is not None and new is not None
    assert old.wallets == {"bonus": 0} and new.wallets == {"bonus": 50}
    assert [p.amount for p in new.pending] == [40]
    assert [b.amount for b in new.burning] == [50]
    journal, remaining, debt = seeded.ledger.lot_totals()  # type: ignore[attr-defined]
    assert journal == remaining - debt == 90
    assert _snapshot_card(seeded, CARD)["status"] == "blocked"  # still listed
    assert _snapshot_card(seeded, "2900000000105")["bonus_balance"] == 50
    view = seeded.customers.customer_view("hh-1", NOW)
    assert view is not None and view["wallets"] == {"bonus": 50}
    with pytest.raises(Conflict, match="replaced"):
        seeded.customers.unblock_card(CARD, ACTOR, NOW)
    actions = [r["action"] for r in seeded.audit.audit_history("card", CARD)]
    assert actions == ["replace"]
    assert [r["action"] for r in seeded.audit.audit_history("card", "2900000000105")] == ["issue"]


def test_replace_moves_a_debt(seeded: Storage) -> None:
    seeded.sales.ingest([make_sale(1, card_no=CARD, spend=30)], NOW)
    done = seeded.customers.replace_card(CARD, "2900000000112", ACTOR, NOW)
    assert done["moved"] == {"bonus": -30}
    new = seeded.ledger.balance("2900000000112", NOW)
    old = seeded.ledger.balance(CARD, NOW)
    assert new is not None and new.wallets == {"bonus": -30} and new.debt == {"bonus": 30}
    assert old is not None and old.wallets == {"bonus": 0}


def test_customer_view_lists_receipts(seeded: Storage) -> None:
    seeded.sales.ingest([make_sale(i, card_no=CARD, accrue=5) for i in range(1, 23)], NOW)
    view = seeded.customers.customer_view("hh-1", NOW)
    assert view is not None
    assert len(view["receipts"]) == 20 and view["wallets"] == {"bonus": 110}
    closed = [r["closed_at"] for r in view["receipts"]]
    assert closed == sorted(closed, reverse=True)
    assert seeded.customers.customer_view("hh-404", NOW) is None


def test_search(seeded: Storage) -> None:
    anna = _customer(
        seeded, middle_name="Petrovna", phone="+7 (912) 345-67-89", email="Anna@Example.COM"
    )
    _customer(seeded, last_name="Ivanov", first_name="Boris", phone="+7 900 000 11 22")
    seeded.customers.issue_card(anna, "2911112222333", "electronic", ACTOR, NOW)

    def ids(q: str) -> set[str]:
        return {c["customer_id"] for c in seeded.customers.search_customers(parse_search(q))}

    assert len(ids("ivanov")) == 2
    assert ids("ivanova") == {anna}
    assert ids("Ivan Pet") == {anna}
    assert ids("anna@example") == {anna}
    assert ids("ANNA@EXAMPLE.COM") == {anna}
    assert ids("45-67-89") == {anna}
    assert ids("29111") == {anna}
    assert ids(CARD[:6]) >= {"hh-1"}
    assert ids("nobody") == set()
    assert ids("iv%") == ids("iv")  # wildcards are not patterns
    hit = seeded.customers.search_customers(parse_search("petrovna"))[0]
    assert hit["cards"] == [{"card_no": "2911112222333", "status": "active"}]
    assert hit["attributes"]["email"] == "Anna@Example.COM"
    for i in range(25):
        _customer(seeded, last_name=f"Smith{i:02d}")
    assert len(seeded.customers.search_customers(parse_search("smith"))) == 20


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.last_name"),
        ({"last_name": "X", "phone": "12ab"}, "body.phone"),
        ({"last_name": "X", "email": "no-at"}, "body.email"),
        ({"last_name": "X", "attributes": {"phone": "1"}}, "body.attributes.phone"),
        ({"last_name": "X", "attributes": {"a": [1]}}, "body.attributes.a"),
        ({"last_name": "X", "shoe": 1}, "body.shoe"),
        ({"last_name": "X", "customer_id": "bad id"}, "body.customer_id"),
        ([], "body"),
    ],
)
def test_bad_customer_names_the_field(body: Any, field: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        parse_customer(body)
    assert caught.value.field == field


def test_refusals_write_nothing(seeded: Storage) -> None:
    customer_id = _customer(seeded, customer_id="c-1")
    seeded.customers.issue_card(customer_id, "2900000000129", "physical", ACTOR, NOW)
    before = _counts(seeded)
    with pytest.raises(Conflict):
        _customer(seeded, customer_id="c-1")
    with pytest.raises(Conflict):
        seeded.customers.issue_card(customer_id, "2900000000129", "physical", ACTOR, NOW)
    with pytest.raises(UnknownObject):
        seeded.customers.block_card("2999999999999", "lost", ACTOR, NOW)
    with pytest.raises(Conflict):
        seeded.customers.replace_card(CARD, "2900000000129", ACTOR, NOW)
    assert _counts(seeded) == before
    assert json.dumps(seeded.audit.audit_history("customer", "c-1"))  # the create is audited once
    assert len(seeded.audit.audit_history("customer", "c-1")) == 1
