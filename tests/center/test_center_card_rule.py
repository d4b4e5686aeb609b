"""The one card-number rule at the Center (paths, card API, ingest) and hostile input on both
backends: a 4xx naming the field, nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.feed.dataset import card_number
from center.storage import Storage
from center.web.app import create_app
from sync_protocol import CARD_RULE_SETTING, check_card_no, parse_card_rule
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config
from tests.center.staff import StaffApi, staff_token


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=True))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    storage.sales.ingest([make_sale(1, card_no=CARD, accrue=30)], T0)
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        yield client


@pytest.fixture
def api(client: TestClient[Any, Any], storage: Storage) -> StaffApi:
    return StaffApi(client, staff_token(storage, "administrator", username="admin-cards"))


async def test_a_card_in_a_path_is_trimmed_and_anything_else_is_400(api: StaffApi) -> None:
    status, body = await api.call("GET", f"/v1/customers/{CARD}%20/balance")
    assert status == 200 and body["card_no"] == CARD
    for raw in ("abc", "-1", "%EF%BC%91%EF%BC%92", "12%2034", "1'2", "%C3%A9", "50%25", "C1"):
        status, body = await api.call("GET", f"/v1/customers/{raw}/balance")
        assert status == 400, (raw, body)
        assert body["error"] == "malformed" and body["detail"].startswith("card_no: expected")


async def test_issuing_a_card_follows_the_chain_format(api: StaffApi, storage: Storage) -> None:
    status, body = await api.call(
        "POST", "/v1/cards", {"customer_id": "hh-2", "card_no": " 2900000000099 "}
    )
    assert status == 201 and body["card_no"] == "2900000000099", body
    for bad in ("１２３", "abc", "-1", "12 34", 12345):
        status, body = await api.call("POST", "/v1/cards", {"customer_id": "hh-2", "card_no": bad})
        assert status == 400 and body["detail"].startswith("body.card_no: expected"), body
    # The chain narrows the format: its own 13-digit EAN-13 cards, as the dataset numbers them.
    storage.feed.upsert_master({"settings": [{"name": CARD_RULE_SETTING, "value": "13-13:ean13"}]})
    status, body = await api.call(
        "POST", "/v1/cards", {"customer_id": "hh-2", "card_no": "2900000000030"}
    )
    assert status == 400 and "check digit wrong for 13 digits" in body["detail"], body
    status, body = await api.call("POST", "/v1/cards", {"customer_id": "hh-2", "card_no": "42"})
    assert status == 400 and "expected a card number of 13 digits" in body["detail"], body
    status, body = await api.call(
        "POST", "/v1/cards", {"customer_id": "hh-2", "card_no": card_number(7)}
    )
    assert status == 201, body
    status, body = await api.call("POST", f"/v1/cards/{card_number(7)}/replace", {})
    assert status == 200 and check_card_no(body["new"]["card_no"], parse_card_rule("13:ean13"))
    assert storage.customers.customer_view("hh-2", T0) is not None


def test_every_dataset_card_passes_the_chain_format() -> None:
    rule = parse_card_rule("13-13:ean13")
    for household in (0, 1, 42, 2500, 9_999_999_999):
        assert check_card_no(card_number(household), rule) == card_number(household)


def test_ingest_refuses_a_card_that_is_not_normalised(storage: Storage) -> None:
    storage.feed.upsert_master(master_tables())
    spaced = make_sale(2, card_no=CARD + " ", accrue=36)
    lettered = make_sale(3, card_no="C1", accrue=5)
    ack = storage.sales.ingest([spaced, lettered, make_sale(4, card_no=CARD, accrue=1)], T0)
    reasons = {r.sale_id: r.reason for r in ack.rejected}
    assert reasons[spaced.sale_id].startswith("card_no: not normalised")
    assert reasons[lettered.sale_id].startswith("card_no: expected 1..32 digits")
    assert len(ack.accepted) == 1
    balance = storage.ledger.balance(CARD, T0)
    assert balance is not None and balance.wallets == {"bonus": 1}
    assert storage.ledger.balance(CARD + " ", T0) is None


async def test_hostile_values_are_400_on_both_backends(api: StaffApi, storage: Storage) -> None:
    """NUL and lone surrogates reach no database (PostgreSQL refuses NUL, both refuse
    surrogates); a 64-bit overflow reaches no integer column."""
    before = storage.customers.customer_view("hh-1", T0)
    cases: list[tuple[str, str, Any, str]] = [
        ("GET", "/v1/customers/hh%00/card-view", None, "path.customer_id: contains a NUL"),
        ("GET", "/v1/customers/%ED%A0%80", None, "customer_id"),
        ("POST", "/v1/customers", {"last_name": "a\x00b"}, "body.last_name: contains a NUL"),
        ("POST", "/v1/customers", {"last_name": "a\ud800"}, "body.last_name: contains a lone"),
        (
            "POST",
            f"/v1/cards/{CARD}/adjustments",
            {"amount": 2**63, "reason": "x", "idempotency_key": "k"},
            "body.amount: integer out of the signed 64-bit range",
        ),
        (
            "POST",
            "/v1/customers/hh-1/questionnaires/q",
            {"answers": {"pets": "cat\ud800"}},
            "body.answers.pets: contains a lone surrogate",
        ),
    ]
    for method, path, body, detail in cases:
        status, answer = await api.call(method, path, body)
        assert 400 <= status < 500, (path, answer)
        assert detail in answer["detail"], (path, answer)
    status, answer = await api.call("GET", "/v1/customers/search", query={"q": "a\x00"})
    assert status == 400 and answer["detail"].startswith("query.q: contains a NUL"), answer
    assert storage.customers.customer_view("hh-1", T0) == before
    assert storage.audit.audit_history("card", CARD) == []


def test_a_sale_beyond_64_bits_never_reaches_the_database(storage: Storage) -> None:
    from sync_protocol import MalformedMessage, decode_sale, encode_sale

    sale = make_sale(5, card_no=CARD, accrue=1)
    with pytest.raises(MalformedMessage, match=r"^sale\.seq: integer out of the signed 64-bit"):
        encode_sale(replace(sale, seq=2**63))
    import msgpack

    raw = msgpack.unpackb(encode_sale(sale), timestamp=3)
    raw["loyalty"][0]["amount"] = 2**63
    with pytest.raises(MalformedMessage, match=r"^sale\.loyalty\[0\]\.amount: integer out"):
        decode_sale(msgpack.packb(raw, datetime=True))


async def test_a_sale_with_a_nul_in_a_string_is_refused_on_both_backends(
    tmp_path: Path, storage: Storage
) -> None:
    """PostgreSQL text cannot hold NUL: the wire decoder refuses it, naming the field."""
    from sync_protocol import SaleBatch, encode

    storage.feed.upsert_master(master_tables())
    import msgpack

    sale = make_sale(7, card_no=CARD, accrue=3)
    raw = msgpack.unpackb(encode(SaleBatch((sale,)), sender="367", sent_at=T0), timestamp=3)
    raw["body"]["sales"][0]["lines"][0]["product_id"] = "10\x0000"  # as an older sender could
    body = msgpack.packb(raw, datetime=True)
    (tmp_path / "open").mkdir()
    config = load_config(write_config(tmp_path / "open", signatures=False))
    async with TestClient(TestServer(create_app(config, storage, clock=lambda: T0))) as client:
        response = await client.post(
            "/v1/ingest", data=body, headers={"Content-Type": "application/x-msgpack"}
        )
        answer = await response.json()
    assert response.status == 400, answer
    assert answer["detail"].startswith("body.sales[0].lines[0].product_id: contains a NUL")
    assert storage.sales.load_sale(sale.sale_id) is None
