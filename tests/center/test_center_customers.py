"""Customer merge, deactivation, questionnaires and the customer card view, on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from center.crm.model import CustomerInput, SearchQuery
from center.crm.store import CustomerRepository
from center.errors import Conflict, InvalidRequest, UnknownObject
from center.ledger.model import Balance
from center.storage import Storage
from tests.center.center_factories import CARD, T0, make_sale, master_tables
from tests.center.test_center_returns import make_return

NOW = T0 + timedelta(days=1)
A_CARD = "2900000000501"
B_CARD = "2900000000502"


@pytest.fixture
def two(storage: Storage) -> Storage:
    """Customers A (card A_CARD, 40 points) and B (card B_CARD, 25 points)."""
    storage.feed.upsert_master(master_tables())
    storage.customers.create_customer(
        CustomerInput("cust-a", {"last_name": "Ivanova", "phone": "+7 900 111", "city": "Kazan"}),
        "clerk",
        T0,
    )
    storage.customers.create_customer(
        CustomerInput("cust-b", {"last_name": "Ivanova", "city": "Perm", "pet": "cat"}),
        "clerk",
        T0,
    )
    storage.customers.issue_card("cust-a", A_CARD, "electronic", "clerk", T0)
    storage.customers.issue_card("cust-b", B_CARD, "electronic", "clerk", T0)
    storage.sales.ingest(
        [
            make_sale(1, card_no=A_CARD, accrue=40),
            make_sale(2, card_no=B_CARD, accrue=25),
        ],
        T0,
    )
    return storage


def test_merge_moves_cards_balances_and_attributes_and_is_audited(two: Storage) -> None:
    version = two.feed.master_version()
    done = two.customers.merge_customers("cust-a", "cust-b", "manager", NOW)
    assert done["cards"] == [B_CARD] and done["replayed"] is False
    assert two.feed.master_version() > version
    view = two.customers.customer_view("cust-a", NOW)
    assert view is not None
    assert [c["card_no"] for c in view["cards"]] == [A_CARD, B_CARD]
    assert view["wallets"] == {"bonus": 65}
    # The survivor's attributes win; the merged customer's extra ones are kept.
    assert view["attributes"] == {
        "last_name": "Ivanova",
        "phone": "+7 900 111",
        "city": "Kazan",
        "pet": "cat",
    }
    balance = two.ledger.balance(B_CARD, NOW)
    assert balance is not None and balance.customer_id == "cust-a"
    merged = two.customers.customer_card_view("cust-b", NOW)
    assert merged is not None
    assert (merged["status"], merged["merged_into"], merged["cards"]) == ("merged", "cust-a", [])
    assert [a["action"] for a in two.audit.audit_history("customer", "cust-a")] == [
        "create",
        "merge",
    ]
    assert [a["action"] for a in two.audit.audit_history("customer", "cust-b")] == [
        "create",
        "merged_into",
    ]
    moves = [a for a in two.audit.audit_history("card", B_CARD) if a["action"] == "move"]
    assert moves[0]["after"] == {"customer_id": "cust-a"} and moves[0]["actor"] == "manager"
    found = two.customers.search_customers(SearchQuery(words=("ivanova",)))
    assert [c["customer_id"] for c in found] == ["cust-a"]
    snapshot = two.feed.master_snapshot("367", NOW)
    assert snapshot is not None
    [card] = [c for c in snapshot[1]["cards"] if c["card_no"] == B_CARD]
    assert card["customer_id"] == "cust-a"


def test_merge_is_idempotent_and_refuses_nonsense(two: Storage) -> None:
    two.customers.merge_customers("cust-a", "cust-b", "manager", NOW)
    audits = len(two.audit.audit_history("customer", "cust-a"))
    again = two.customers.merge_customers("cust-a", "cust-b", "manager", NOW)
    assert again["replayed"] is True
    assert len(two.audit.audit_history("customer", "cust-a")) == audits
    with pytest.raises(InvalidRequest, match=r"body\.merged_id"):
        two.customers.merge_customers("cust-a", "cust-a", "manager", NOW)
    with pytest.raises(Conflict, match="customer_id: customer cust-b was merged into cust-a"):
        two.customers.merge_customers("cust-b", "hh-1", "manager", NOW)
    with pytest.raises(Conflict, match=r"body\.merged_id"):
        two.customers.merge_customers("hh-1", "cust-b", "manager", NOW)
    with pytest.raises(UnknownObject, match=r"body\.merged_id"):
        two.customers.merge_customers("cust-a", "nobody", "manager", NOW)


def test_deactivated_card_is_inactive_in_the_stores_snapshot(two: Storage) -> None:
    version = two.feed.master_version()
    card = two.customers.deactivate_card(A_CARD, "manager", NOW)
    assert card["status"] == "inactive"
    assert two.feed.master_version() == version + 1
    assert two.customers.deactivate_card(A_CARD, "manager", NOW)["status"] == "inactive"
    assert two.feed.master_version() == version + 1
    snapshot = two.feed.master_snapshot("367", NOW)
    assert snapshot is not None
    [row] = [c for c in snapshot[1]["cards"] if c["card_no"] == A_CARD]
    assert row["status"] == "inactive" and row["bonus_balance"] == 40
    assert [a["action"] for a in two.audit.audit_history("card", A_CARD)] == ["issue", "deactivate"]


def test_deactivated_customer_deactivates_its_cards(two: Storage) -> None:
    done = two.customers.deactivate_customer("cust-b", "manager", NOW)
    assert done == {"customer_id": "cust-b", "status": "inactive", "cards": [B_CARD]}
    view = two.customers.customer_card_view("cust-b", NOW)
    assert view is not None and view["status"] == "inactive"
    assert [c["status"] for c in view["cards"]] == ["inactive"]
    assert two.audit.audit_history("customer", "cust-b")[-1]["action"] == "deactivate"


def test_questionnaire_answers_keep_history(two: Storage) -> None:
    first = two.customers.set_answers(
        "cust-a", "pets-2024", {"has_pet": True, "kinds": ["cat"]}, "cc", NOW
    )
    assert first["changed"] is True
    same = two.customers.set_answers(
        "cust-a", "pets-2024", {"has_pet": True, "kinds": ["cat"]}, "cc", NOW
    )
    assert same["changed"] is False
    two.customers.set_answers(
        "cust-a", "pets-2024", {"has_pet": False}, "cc2", NOW + timedelta(hours=1)
    )
    view = two.customers.customer_card_view("cust-a", NOW)
    assert view is not None
    assert view["questionnaires"]["pets-2024"]["answers"] == {"has_pet": False}
    assert view["questionnaires"]["pets-2024"]["actor"] == "cc2"
    changes = [
        a for a in two.audit.audit_history("customer", "cust-a") if a["action"] == "questionnaire"
    ]
    assert [c["after"]["answers"] for c in changes] == [
        {"has_pet": True, "kinds": ["cat"]},
        {"has_pet": False},
    ]
    with pytest.raises(InvalidRequest, match=r"body\.answers"):
        two.customers.set_answers("cust-a", "pets-2024", {"x": {"nested": 1}}, "cc", NOW)
    with pytest.raises(UnknownObject, match="customer_id"):
        two.customers.set_answers("nobody", "pets-2024", {"x": 1}, "cc", NOW)


def test_merge_brings_the_merged_customers_questionnaires(two: Storage) -> None:
    two.customers.set_answers("cust-a", "q1", {"a": 1}, "cc", NOW)
    two.customers.set_answers("cust-b", "q1", {"a": 2}, "cc", NOW)
    two.customers.set_answers("cust-b", "q2", {"b": 3}, "cc", NOW)
    two.customers.merge_customers("cust-a", "cust-b", "manager", NOW)
    view = two.customers.customer_card_view("cust-a", NOW)
    assert view is not None
    answers = {k: v["answers"] for k, v in view["questionnaires"].items()}
    assert answers == {"q1": {"a": 1}, "q2": {"b": 3}}


def test_card_view_has_history_favourites_and_returns_count_against_them(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    # Products 1000 (DAIRY) and 1001 (PASTRY): 250 and 199 a receipt.
    first = make_sale(1, card_no=CARD, accrue=10)
    storage.sales.ingest([first, make_sale(2, card_no=CARD, amounts=(250, 199), accrue=5)], T0)
    view = storage.customers.customer_card_view("hh-1", NOW)
    assert view is not None
    assert view["favourite_categories"] == [
        {"category": "DAIRY", "spend_minor": 500, "receipts": 2},
        {"category": "PASTRY", "spend_minor": 398, "receipts": 2},
    ]
    assert [(h["kind"], h["amount"]) for h in view["history"]] == [("accrue", 5), ("accrue", 10)]
    assert view["wallets"] == {"bonus": 15}
    assert view["coupons"] == [] and view["status"] == "active"
    # Both dairy lines back: dairy drops below pastry.
    storage.sales.ingest([make_return(3, first, {1: 1000})], T0)
    second = storage.customers.customer_card_view("hh-1", NOW)
    assert second is not None
    assert [c["category"] for c in second["favourite_categories"]] == ["PASTRY", "DAIRY"]
    assert second["favourite_categories"][1]["spend_minor"] == 250
    assert second["history"][0]["kind"] == "return_accrual"
    assert [r["return_of"] for r in second["receipts"]] == [first.sale_id, None, None]
    # Older than a year: not a favourite any more.
    late = storage.customers.customer_card_view("hh-1", T0 + timedelta(days=400))
    assert late is not None and late["favourite_categories"] == []
    assert storage.customers.customer_card_view("nobody", NOW) is None


def _give_coupon(storage: Storage, code: str, customer_id: str) -> None:
    """A coupon row as the coupons feature stores it (its own API is not needed here)."""
    with storage.db.guard("test coupon"), storage.db.transaction():
        storage.db.execute(
            "INSERT INTO coupons (code, batch_id, customer_id, status) VALUES (?, ?, ?, ?)",
            (code, "B-1", customer_id, "issued"),
        )


def test_card_view_lists_coupons_and_merge_moves_them(two: Storage) -> None:
    _give_coupon(two, "SPRING-1", "cust-a")
    _give_coupon(two, "SPRING-2", "cust-b")
    view = two.customers.customer_card_view("cust-a", NOW)
    assert view is not None
    assert [(c["code"], c["batch_id"], c["status"]) for c in view["coupons"]] == [
        ("SPRING-1", "B-1", "issued")
    ]
    two.customers.merge_customers("cust-a", "cust-b", "manager", NOW)
    view = two.customers.customer_card_view("cust-a", NOW)
    assert view is not None
    assert [c["code"] for c in view["coupons"]] == ["SPRING-1", "SPRING-2"]


class _FixedLedger:
    """A ledger double: every card holds the same wallets; moving a balance is not expected."""

    def __init__(self, wallets: dict[str, int]) -> None:
        self.wallets = wallets
        self.asked: list[str] = []

    def balance(self, card_no: str, now: datetime) -> Balance | None:
        self.asked.append(card_no)
        return Balance(card_no, "", dict(self.wallets))

    def debt(self, card_no: str, wallet: str) -> int:
        raise AssertionError("not called by a view")

    def apply_entry(self, *args: Any) -> None:
        raise AssertionError("not called by a view")


def test_customer_view_sums_the_balances_of_the_ledger_it_is_given(two: Storage) -> None:
    two.customers.issue_card("cust-a", "2900000000599", "electronic", "clerk", T0)
    ledger = _FixedLedger({"bonus": 7, "cash": 3})
    customers = CustomerRepository(two.db, audit=two.audit, versions=two.versions, ledger=ledger)
    view = customers.customer_view("cust-a", NOW)
    assert view is not None
    assert sorted(ledger.asked) == [A_CARD, "2900000000599"]
    assert view["wallets"] == {"bonus": 14, "cash": 6}


def test_a_merge_keeps_its_reason_in_both_customers_audit(two: Storage) -> None:
    two.customers.merge_customers("cust-a", "cust-b", "operator", NOW, reason="same person")
    [survivor] = [
        a for a in two.audit.audit_history("customer", "cust-a") if a["action"] == "merge"
    ]
    [merged] = two.audit.audit_history("customer", "cust-b")[-1:]
    assert survivor["after"]["reason"] == merged["after"]["reason"] == "same person"
    assert merged["action"] == "merged_into"
