"""Verification prices a supplier-funded promotion with the budget the sale's store was entitled
to (its budget lease at the Center): an honest budgeted sale verifies clean, a register giving
more than its store's lease is a case; on both backends, over HTTP."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import load_config
from center.promotions.budgets import BudgetLeaseRequest
from center.storage import Storage
from center.web.app import create_app
from sync_protocol import LineDiscount, Payment, Sale
from tests.center.center_factories import T0, make_sale, master_tables, write_config
from tests.center.test_center_verify import NOW, Clock, at, cases, ingest

ACME: dict[str, Any] = {
    "promotion_id": "acme",
    "kind": "goods_discount",
    "status": "active",
    "priority": 90,
    "requires_card": False,
    "goods": {"products": ["1000"]},
    "percent": "10",
    "funding": {"by": "supplier:acme", "budget_minor": 1000},
}


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW + timedelta(minutes=10))


@pytest.fixture
async def client(
    tmp_path: Path, storage: Storage, clock: Clock
) -> AsyncIterator[TestClient[Any, Any]]:
    tables = master_tables()
    tables["promotions"] = [{"promotion_id": "acme", "doc": ACME}]
    storage.feed.upsert_master(tables)
    config = load_config(write_config(tmp_path, verify=True))
    async with TestClient(TestServer(create_app(config, storage, clock=clock))) as client:
        yield client


def _acme_sale(storage: Storage, seq: int, *, store_id: str = "367", gave: int = 50) -> Sale:
    """A 5.00 line of product 1000 with `gave` off it by the acme promotion."""
    sale = at(
        make_sale(seq, store_id=store_id, register_id=f"{store_id}-1", amounts=(500,)),
        NOW + timedelta(minutes=seq),
    )
    line = dataclasses.replace(sale.lines[0], discounts=(LineDiscount("acme", gave),))
    return dataclasses.replace(
        sale,
        lines=(line,),
        discount_minor=gave,
        total_minor=500 - gave,
        payments=(Payment("cash", 500 - gave),),
        promo_version=storage.versions.current(),
    )


async def test_a_sale_within_its_stores_lease_verifies_clean_and_one_beyond_is_a_case(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    lease = storage.budgets.grant(BudgetLeaseRequest("367", "acme", 0, 100), T0)
    assert lease["amount"] == 100
    first, second = _acme_sale(storage, 1), _acme_sale(storage, 2)
    ack = await ingest(client, [first, second])
    assert set(ack.accepted) == {first.sale_id, second.sale_id}
    assert await cases(storage, client) == []  # the lease covered both: clean

    # The lease is used up: a register giving 0.50 more gave what its store did not hold.
    third = _acme_sale(storage, 3)
    assert (await ingest(client, [third])).accepted == (third.sale_id,)
    [case] = await cases(storage, client, state="open")
    assert case["sale_id"] == third.sale_id
    assert "budget: promotion acme gave 50, more than the 0 left of store 367" in case["reason"]

    # A store with no lease at all: the same.
    other = _acme_sale(storage, 4, store_id="406")
    await ingest(client, [other])
    found = {c["sale_id"]: c for c in await cases(storage, client, state="open")}
    assert other.sale_id in found
    assert "more than the 0 left of store 406" in found[other.sale_id]["reason"]

    # What the tills gave is booked (the supplier's money left the till), beyond the leases.
    account = storage.budgets.budget("acme", NOW)
    assert account is not None and account["spent_minor"] == 200


async def test_a_register_capped_by_its_lease_verifies_clean(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    # The node let the receipt give only 0.30 of the 0.50 the rule would give (the rest of its
    # lease held by other receipts): priced with what the sale gave, it comes out the same.
    storage.budgets.grant(BudgetLeaseRequest("367", "acme", 0, 30), T0)
    capped = _acme_sale(storage, 1, gave=30)
    await ingest(client, [capped])
    assert await cases(storage, client) == []
