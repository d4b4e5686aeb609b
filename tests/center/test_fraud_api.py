"""Fraud signals end to end over HTTP, on both backends: the issue's own case (a promotion
revision that makes grants jump to 60,000 over 6 receipts) published through the constructor
routes, sales sent through the real ingest route, the scan, the signal, its review."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from loyalty_engine import Receipt, ReceiptLine, calculate, load_promotion_set
from sync_protocol import CONTENT_TYPE, LoyaltyMovement, Sale, SaleBatch, encode
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config
from tests.center.staff import StaffApi, staff_token
from tests.center.test_center_promotions import accrual

NOW = T0 + timedelta(days=10)


class Clock:
    """The app's clock, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW - timedelta(days=5))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
async def client(
    config: Config, storage: Storage, clock: Clock
) -> AsyncIterator[TestClient[Any, Any]]:
    tables = master_tables()
    tables["settings"] = [{"name": "currency", "value": "RUB"}]
    storage.feed.upsert_master(tables)
    async with TestClient(TestServer(create_app(config, storage, clock=clock))) as client:
        yield client


def priced(seq: int, at: datetime, doc: dict[str, Any], version: int) -> Sale:
    """A 100.00 sale with card CARD whose accrual is what the engine grants under `doc`."""
    promotions = load_promotion_set([{**doc, "status": "active"}], version=version)
    line = ReceiptLine(1, "1000", 1000, 10_000, 10_000)
    calc = calculate(Receipt(lines=(line,), now=at, card_no=CARD), promotions)
    movements = tuple(
        LoyaltyMovement(a.wallet, "accrue", a.amount, a.rule_id) for a in calc.accruals
    )
    made = make_sale(seq, card_no=CARD, amounts=(10_000,))
    return dataclasses.replace(
        made,
        opened_at=at - timedelta(minutes=1),
        closed_at=at,
        loyalty=movements,
        promo_version=version,
    )


async def ingest(client: TestClient[Any, Any], sales: list[Sale]) -> None:
    body = encode(SaleBatch(sales=tuple(sales)), sender="store-367")
    response = await client.post("/v1/ingest", data=body, headers={"Content-Type": CONTENT_TYPE})
    assert response.status == 200, await response.text()


async def test_a_revision_that_makes_grants_jump_is_a_signal_with_its_sales(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    maria = StaffApi(client, staff_token(storage, "marketer", username="maria"))
    olga = StaffApi(client, staff_token(storage, "marketing_director", username="olga"))
    lena = StaffApi(client, staff_token(storage, "loyalty_manager", username="lena"))
    analyst = StaffApi(client, staff_token(storage, "data_analyst"))

    good = accrual("A3")
    status, _ = await maria.call("POST", "/v1/promotions", good)
    assert status == 201
    status, live = await olga.call("POST", "/v1/promotions/A3/activate")
    assert status == 200, live
    v1 = live["master_version"]
    await ingest(
        client, [priced(i, NOW - timedelta(days=4, hours=i), good, v1) for i in range(1, 11)]
    )

    # The misconfiguration: 100 % instead of 3 %, published as revision 2.
    clock.at = NOW - timedelta(hours=6)
    bad = {**good, "percent": "100"}
    status, _ = await maria.call("PUT", "/v1/promotions/A3", bad)
    assert status == 200
    status, live = await olga.call("POST", "/v1/promotions/A3/activate")
    assert status == 200, live
    v2 = live["master_version"]
    jumped = [priced(20 + i, NOW - timedelta(hours=5 - i), bad, v2) for i in range(6)]
    assert sum(m.amount for s in jumped for m in s.loyalty) == 60_000
    await ingest(client, jumped)

    clock.at = NOW
    status, scanned = await lena.call("POST", "/v1/fraud/scan")
    assert status == 200 and scanned["new"] >= 1, scanned
    status, listed = await analyst.call(
        "GET", "/v1/fraud/signals", query={"detector": "revision_jump"}
    )
    assert status == 200
    [signal] = listed["signals"]
    assert (signal["subject"], signal["window"], signal["status"]) == ("A3", "revision 2", "open")
    assert "promotion A3 revision 2" in signal["reason"] and "by maria" in signal["reason"]
    assert "600.00 RUB over 6 receipts" in signal["reason"]
    assert set(signal["sale_ids"]) == {s.sale_id for s in jumped}

    status, detail = await analyst.call("GET", f"/v1/fraud/signals/{signal['signal_id']}")
    assert status == 200
    assert sorted(s["accrued_minor"] for s in detail["sales"]) == [10_000] * 6
    assert {s["promo_version"] for s in detail["sales"]} == {v2}

    # A re-scan keeps the one case.
    status, again = await lena.call("POST", "/v1/fraud/scan")
    assert (status, again["new"]) == (200, 0)

    path = f"/v1/fraud/signals/{signal['signal_id']}/review"
    status, refused = await analyst.call("POST", path, {"status": "confirmed"})
    assert status == 403, refused
    status, refused = await maria.call("GET", "/v1/fraud/signals")
    assert status == 403, refused
    status, reviewed = await lena.call("POST", path, {"status": "confirmed", "note": "typo"})
    assert status == 200, reviewed
    assert (reviewed["status"], reviewed["reviewed_by"]) == ("confirmed", "lena")
    assert [(h["action"], h["actor"]) for h in reviewed["history"]] == [("review", "lena")]


@pytest.mark.parametrize("open_storage", ["sqlite"], indirect=True)  # no backend SQL to test
@pytest.mark.parametrize(
    ("method", "path", "body", "query", "field"),
    [
        ("GET", "/v1/fraud/signals", None, {"status": "maybe"}, "status"),
        ("GET", "/v1/fraud/signals", None, {"limit": "-1"}, "limit"),
        ("GET", "/v1/fraud/signals", None, {"subject": "x" * 65}, "subject"),
        ("GET", "/v1/fraud/signals/abc", None, None, "signal_id"),
        ("POST", "/v1/fraud/signals/1/review", {"status": 1}, None, "body.status"),
        ("POST", "/v1/fraud/signals/1/review", {"status": "x", "why": 1}, None, "body.why"),
        ("POST", "/v1/fraud/signals/1/review", {"status": "nope"}, None, "status"),
        ("GET", "/v1/fraud/signals/999", None, None, "signal_id"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    client: TestClient[Any, Any],
    storage: Storage,
    method: str,
    path: str,
    body: Any,
    query: dict[str, str] | None,
    field: str,
) -> None:
    lena = StaffApi(client, staff_token(storage, "loyalty_manager"))
    status, answer = await lena.call(method, path, body, query)
    assert 400 <= status < 500, answer
    assert answer["detail"].startswith(f"{field}: ") or field in answer["detail"], answer


def test_fraud_scan_command_prints_counts_and_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from center.cli import main
    from center.storage.sqlite import SqliteStorage

    path = write_config(tmp_path)
    storage = SqliteStorage(tmp_path / "data" / "center.db")
    storage.migrate()
    storage.feed.upsert_master(master_tables())
    now = datetime.now(UTC)
    for i in range(5):
        storage.returns.adjust(
            CARD,
            "bonus",
            100,
            "goodwill",
            "mallory",
            now - timedelta(minutes=i),
            idempotency_key=f"k{i}",
        )
    storage.close()
    assert main(["fraud", "scan", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["new"] == 2  # mallory's burst, and the card's
    assert "read: 1/1" in err and "record: 2/2" in err
    assert main(["fraud", "scan", "--config", str(path), "--hours", "0"]) == 2
    assert "--hours" in capsys.readouterr().err
