"""The call-center customer card: receipts and returns paged with totals, and search after a
merge finding the surviving customer by the merged one's name, phone or card (both backends)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import load_config
from center.crm.model import CustomerInput, parse_search
from center.errors import MalformedRequest
from center.storage import Storage
from center.web.app import create_app
from tests.center.center_factories import T0, make_sale, master_tables, write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_returns import make_return

NOW = T0 + timedelta(days=1)
A_CARD = "2900000000601"
B_CARD = "2900000000602"


@pytest.fixture
def shop(storage: Storage) -> dict[str, Any]:
    """Customer cust-a (card A_CARD): three receipts, the first partly returned."""
    storage.feed.upsert_master(master_tables())
    storage.customers.create_customer(CustomerInput("cust-a", {"last_name": "Orlova"}), "clerk", T0)
    storage.customers.issue_card("cust-a", A_CARD, "electronic", "clerk", T0)
    first = make_sale(1, card_no=A_CARD, accrue=40)
    second = make_sale(2, card_no=A_CARD, accrue=10)
    third = make_sale(3, card_no=A_CARD, amounts=(100,))
    storage.sales.ingest([first, second, third], T0)
    back = make_return(4, first, {1: 1000})  # line 1: 250 of the 449 paid
    storage.sales.ingest([back], T0)
    return {"first": first, "second": second, "third": third, "return": back}


def test_returns_show_as_returns_with_their_original_and_reversal(
    storage: Storage, shop: dict[str, Any]
) -> None:
    page = storage.customers.customer_receipts("cust-a", limit=10)
    assert page is not None
    by_id = {r["sale_id"]: r for r in page["receipts"]}
    back = by_id[shop["return"].sale_id]
    assert (back["kind"], back["return_of"], back["return_status"]) == (
        "return",
        shop["first"].sale_id,
        "applied",
    )
    assert (back["total_minor"], back["net_minor"]) == (250, -250)
    # 250 of 449 back: 40 * 250 / 449 = 22.27 -> 22 points taken back.
    assert [(m["kind"], m["amount"]) for m in back["loyalty"]] == [("return_accrual", -22)]
    original = by_id[shop["first"].sale_id]
    assert original["kind"] == "sale" and original["return_of"] is None
    assert original["returned_by"] == [shop["return"].sale_id]
    assert original["returned_minor"] == 250 and original["net_minor"] == 449
    assert [(m["kind"], m["amount"]) for m in original["loyalty"]] == [("accrue", 40)]
    assert page["totals"] == {
        "receipts": 3,
        "revenue_minor": 449 + 449 + 100,
        "discount_minor": 0,
        "returns": 1,
        "refund_minor": 250,
        "net_minor": 449 + 449 + 100 - 250,
    }
    view = storage.customers.customer_card_view("cust-a", NOW)
    assert view is not None
    assert view["receipt_totals"] == page["totals"]
    assert view["receipts"][0]["kind"] == "return"  # newest first
    assert view["receipts_next_cursor"] is None
    # The plain customer record says which of its recent receipts are returns too.
    plain = storage.customers.customer_view("cust-a", NOW)
    assert plain is not None
    kinds = {r["sale_id"]: (r["kind"], r["return_of"]) for r in plain["receipts"]}
    assert kinds[shop["return"].sale_id] == ("return", shop["first"].sale_id)
    assert kinds[shop["first"].sale_id] == ("sale", None)


def test_an_operator_pages_through_the_whole_history(
    storage: Storage, shop: dict[str, Any]
) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = storage.customers.customer_receipts("cust-a", limit=2, cursor=cursor)
        assert page is not None
        pages += 1
        seen += [r["sale_id"] for r in page["receipts"]]
        assert page["totals"]["receipts"] == 3  # the totals don't depend on the page
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert seen == [
        shop["return"].sale_id,
        shop["third"].sale_id,
        shop["second"].sale_id,
        shop["first"].sale_id,
    ]
    with pytest.raises(MalformedRequest, match=r"^cursor: "):
        storage.customers.customer_receipts("cust-a", cursor="not-a-cursor")
    with pytest.raises(MalformedRequest, match=r"^limit: "):
        storage.customers.customer_receipts("cust-a", limit=0)
    assert storage.customers.customer_receipts("nobody") is None


def test_search_after_a_merge_finds_the_survivor_by_the_merged_ones_keys(
    storage: Storage,
) -> None:
    storage.customers.create_customer(
        CustomerInput("keep", {"last_name": "Smirnova", "phone": "+7 900 555 11 22"}), "cc", T0
    )
    storage.customers.create_customer(
        CustomerInput(
            "gone",
            {"last_name": "Kuznetsova", "phone": "+7 911 777 33 44", "email": "k@example.org"},
        ),
        "cc",
        T0,
    )
    storage.customers.create_customer(CustomerInput("third", {"last_name": "Volkova"}), "cc", T0)
    storage.customers.issue_card("gone", B_CARD, "electronic", "cc", T0)
    storage.customers.merge_customers("keep", "gone", "cc", NOW)

    def ids(q: str) -> list[str]:
        return [c["customer_id"] for c in storage.customers.search_customers(parse_search(q))]

    assert ids("kuznetsova") == ["keep"]  # the merged customer's old last name
    assert ids("kuzentsova") == ["keep"]  # misspelt: pg_trgm / difflib, then resolved
    assert ids("777 33 44") == ["keep"]  # its old phone
    assert ids("k@example") == ["keep"]
    assert ids(B_CARD) == ["keep"]  # its old card, now the survivor's
    assert ids("smirnova") == ["keep"]
    found = storage.customers.search_customers(parse_search(B_CARD))
    assert [c["card_no"] for c in found[0]["cards"]] == [B_CARD]
    # A chain of merges resolves to the last survivor.
    storage.customers.merge_customers("third", "keep", "cc", NOW)
    assert ids("kuznetsova") == ["third"]
    assert ids("smirnova") == ["third"]
    balance = storage.ledger.balance(B_CARD, NOW)
    assert balance is not None and balance.customer_id == "third"


async def test_receipts_route_pages_and_names_bad_parameters(
    tmp_path: Path, storage: Storage, shop: dict[str, Any]
) -> None:
    config = load_config(write_config(tmp_path, signatures=True))
    app = create_app(config, storage, clock=lambda: NOW)
    async with TestClient(TestServer(app)) as client:
        api = StaffApi(client, staff_token(storage, "call_center"))
        status, page = await api.call("GET", "/v1/customers/cust-a/receipts", query={"limit": "3"})
        assert status == 200, page
        assert [r["kind"] for r in page["receipts"]] == ["return", "sale", "sale"]
        assert page["receipts"][0]["return_of"] == shop["first"].sale_id
        assert page["totals"]["refund_minor"] == 250
        status, rest = await api.call(
            "GET", "/v1/customers/cust-a/receipts", query={"cursor": page["next_cursor"]}
        )
        assert status == 200
        assert [r["sale_id"] for r in rest["receipts"]] == [shop["first"].sale_id]
        assert rest["next_cursor"] is None
        status, bad = await api.call(
            "GET", "/v1/customers/cust-a/receipts", query={"cursor": "xyz"}
        )
        assert status == 400 and bad["detail"].startswith("cursor: ")
        status, bad = await api.call("GET", "/v1/customers/cust-a/receipts", query={"limit": "500"})
        assert status == 400 and bad["detail"].startswith("limit: ")
        status, _ = await api.call("GET", "/v1/customers/nobody/receipts")
        assert status == 404
