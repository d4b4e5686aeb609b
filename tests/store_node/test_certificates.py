"""Gift certificate holds at the store node: the offline single-holder rule, commits from the
sales that arrive, releases and expiry; bad bodies name the field."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from store_node.certificates import (
    CertificateBook,
    CertificateRefused,
    CertificateRequest,
    parse_hold,
    parse_release,
)
from store_node.errors import InvalidRequest
from store_node.salesbox import SalesBox
from sync_protocol import Payment, SaleLine
from tests.store_node.store_fakes import STORE_ID, T0, make_sale

CODE = "GC-123456789012"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SalesBox, CertificateBook]]:
    box = SalesBox(tmp_path / "store.db", store_id=STORE_ID)
    book = CertificateBook(tmp_path / "store.db", store_id=STORE_ID, ttl_s=300)
    yield box, book
    book.close()
    box.close()


def _want(amount: int, receipt: str = "r1", register: str = "367-1") -> CertificateRequest:
    return CertificateRequest(register, receipt, CODE, amount)


def _sold(seq: int, amount: int = 100_000) -> Any:
    return make_sale(seq, lines=(SaleLine(1, "GIFT", 1000, amount, amount, certificate_code=CODE),))


def _paid(seq: int, amount: int, register: str = "367-1") -> Any:
    sale = make_sale(
        seq, register_id=register, lines=(SaleLine(1, "4600001", 1000, amount, amount),)
    )
    return replace(sale, payments=(Payment("certificate", amount, code=CODE),))


def test_only_the_store_that_sold_it_redeems_offline_up_to_what_it_knows(
    stores: tuple[SalesBox, CertificateBook],
) -> None:
    box, book = stores
    with pytest.raises(CertificateRefused, match="held by another store"):
        book.grant_offline(_want(100), T0)
    box.accept([_sold(1)], now=T0)
    grant = book.grant_offline(_want(30_000), T0)
    assert (grant.online, grant.balance, grant.remaining) == (False, 100_000, 70_000)
    # Another receipt of the store: the live hold counts.
    with pytest.raises(CertificateRefused, match=r"700\.00 available offline here, 800\.00"):
        book.grant_offline(_want(80_000, receipt="r2"), T0)
    # The sale arrives: the hold is committed and the balance known here goes down.
    box.accept([_paid(2, 30_000)], now=T0)
    assert book.settle(T0) == 1
    assert book.known(CODE) == {"balance_minor": 70_000, "holder": True, "expires_at": None}
    book.grant_offline(_want(70_000, receipt="r2"), T0)
    # Released: free again; an expired hold too.
    assert book.release("367-1", "r2", None) == [CODE]
    book.grant_offline(_want(70_000, receipt="r3"), T0)
    book.grant_offline(_want(70_000, receipt="r4"), T0 + timedelta(seconds=301))


def test_an_online_answer_moves_the_holder(stores: tuple[SalesBox, CertificateBook]) -> None:
    box, book = stores
    answer = {"available_minor": 50_000, "holder_store_id": "406", "expires_at": None}
    grant = book.grant_online(_want(10_000), answer, T0)
    assert (grant.online, grant.remaining) == (True, 40_000)
    # Held elsewhere as far as the Center said: no offline right.
    with pytest.raises(CertificateRefused, match="held by another store"):
        book.grant_offline(_want(100, receipt="r2"), T0)
    # Its sale arrives: committed here, queued for the Center, and this store is the holder.
    box.accept([_paid(1, 10_000)], now=T0)
    book.settle(T0)
    assert book.center_ops() == [(f"r1:{CODE}", "commit", _sale_id(box))]
    assert book.known(CODE) == {"balance_minor": 40_000, "holder": True, "expires_at": None}
    book.center_op_done(f"r1:{CODE}", "commit")
    assert book.center_ops() == []
    book.forget_holder(CODE, T0)
    with pytest.raises(CertificateRefused):
        book.grant_offline(_want(100, receipt="r3"), T0)


def test_an_online_release_is_queued_for_the_center(
    stores: tuple[SalesBox, CertificateBook],
) -> None:
    _, book = stores
    book.grant_online(_want(10_000), {"available_minor": 50_000}, T0)
    assert book.release("367-1", "r1", CODE) == [CODE]
    assert book.center_ops() == [(f"r1:{CODE}", "release", None)]
    assert book.release("367-1", "r1", CODE) == []  # idempotent


def _sale_id(box: SalesBox) -> str:
    with sqlite3.connect(box.path) as conn:
        row = conn.execute("SELECT sale_id FROM sales ORDER BY received_no DESC LIMIT 1").fetchone()
    return str(row[0])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"register_id": "367-1", "receipt_id": "r1", "code": CODE, "amount_minor": 0},
            "amount_minor",
        ),
        (
            {"register_id": "367-1", "receipt_id": "r1", "code": CODE, "amount_minor": -1},
            "amount_minor",
        ),
        (
            {"register_id": "367-1", "receipt_id": "r1", "code": CODE, "amount_minor": True},
            "amount_minor",
        ),
        ({"register_id": "367-1", "receipt_id": "r1", "code": "x", "amount_minor": 5}, "code"),
        ({"register_id": "367-1", "receipt_id": "", "code": CODE, "amount_minor": 5}, "receipt_id"),
        ({"register_id": "367-1", "receipt_id": "r", "code": CODE, "amount_minor": 5, "y": 1}, "y"),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest, match=f"^body.{field}:"):
        parse_hold(body)


def test_release_body() -> None:
    assert parse_release({"register_id": "367-1", "receipt_id": "r1"}) == ("367-1", "r1", None)
    assert parse_release({"register_id": "367-1", "receipt_id": "r1", "code": "gc-1234"})[2] == (
        "GC-1234"
    )


def test_the_centers_list_of_holders_takes_rights_away_and_never_raises_a_balance(
    stores: tuple[SalesBox, CertificateBook],
) -> None:
    box, book = stores
    box.accept([_sold(1)], now=T0)
    book.grant_offline(_want(100), T0)  # sold here: this store holds it
    book.release("367-1", "r1", None)
    # Another store redeemed it online: the Center no longer lists it for this store.
    assert book.refresh_holders([], T0) == 0
    with pytest.raises(CertificateRefused, match="held by another store"):
        book.grant_offline(_want(100, receipt="r2"), T0)
    # Listed again with more than this store knows: the right comes back, the balance stays.
    book.refresh_holders([(CODE, 200_000, None)], T0)
    assert book.known(CODE) == {"balance_minor": 100_000, "holder": True, "expires_at": None}
    book.refresh_holders([(CODE, 40_000, "2099-01-01T00:00:00+00:00")], T0)
    assert book.known(CODE)["balance_minor"] == 40_000  # type: ignore[index]
