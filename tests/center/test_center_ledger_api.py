"""Balance and history routes, the expiry job and its config key, through a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.errors import ConfigError
from center.storage import LedgerEntry, Storage
from center.web.app import create_app
from center.web.keys import STORAGE_KEY
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config

NOW = T0 + timedelta(days=1)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


@pytest.fixture
async def client(config: Config, storage: Storage) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    app = create_app(config, storage, clock=lambda: NOW)
    async with TestClient(TestServer(app)) as client:
        yield client


def _entry(source: str, amount: int, **dates: Any) -> LedgerEntry:
    kind = "accrue" if amount > 0 else "spend"
    return LedgerEntry(CARD, "bonus", kind, amount, "base", source, T0, **dates)


async def test_balance_shows_pending_burning_and_debt(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    storage.ledger.add_ledger_entries(
        [
            _entry("soon", 30, expires_at=NOW + timedelta(days=5)),
            _entry("later", 40, active_from=NOW + timedelta(days=3)),
        ]
    )
    response = await client.get(f"/v1/customers/{CARD}/balance")
    assert response.status == 200
    assert await response.json() == {
        "card_no": CARD,
        "customer_id": "hh-1",
        "wallets": {"bonus": 30},
        "pending": [
            {"wallet": "bonus", "amount": 40, "active_from": (NOW + timedelta(days=3)).isoformat()}
        ],
        "burning": [
            {"wallet": "bonus", "amount": 30, "expires_at": (NOW + timedelta(days=5)).isoformat()}
        ],
        "debt": {"bonus": 0},
    }
    narrow = await client.get(f"/v1/customers/{CARD}/balance", params={"burning_days": "2"})
    assert (await narrow.json())["burning"] == []
    storage.sales.ingest([make_sale(1, card_no=CARD, spend=50)], NOW)
    overdrawn = await (await client.get(f"/v1/customers/{CARD}/balance")).json()
    assert overdrawn["wallets"] == {"bonus": -20} and overdrawn["debt"] == {"bonus": 20}
    bad = await client.get(f"/v1/customers/{CARD}/balance", params={"burning_days": "9999"})
    assert bad.status == 400 and (await bad.json())["detail"].startswith("burning_days:")


async def test_history_route(client: TestClient[Any, Any], storage: Storage) -> None:
    sale = make_sale(1, card_no=CARD, accrue=12, expires_at=NOW + timedelta(days=90))
    storage.sales.ingest([sale], NOW)
    response = await client.get(f"/v1/customers/{CARD}/history")
    assert response.status == 200
    assert await response.json() == {
        "card_no": CARD,
        "movements": [
            {
                "at": sale.closed_at.isoformat(),
                "wallet": "bonus",
                "kind": "accrue",
                "amount": 12,
                "rule_id": "base-accrual-3",
                "source": sale.sale_id,
                "active_from": None,
                "expires_at": (NOW + timedelta(days=90)).isoformat(),
            }
        ],
    }
    missing = await client.get("/v1/customers/2999999999999/history")
    assert missing.status == 404 and (await missing.json())["detail"].startswith("card_no:")
    for limit in ("0", "1001", "x"):
        bad = await client.get(f"/v1/customers/{CARD}/history", params={"limit": limit})
        assert bad.status == 400 and (await bad.json())["detail"].startswith("limit:")


async def test_the_scheduled_job_burns_expired_lots(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, extra="\n[ledger]\nexpire_interval_s = 1\n"))
    assert config.ledger.expire_interval_s == 1
    async with TestClient(TestServer(create_app(config))) as client:
        storage = client.server.app[STORAGE_KEY]
        storage.feed.upsert_master(master_tables())
        past = datetime.now(UTC) - timedelta(days=1)
        storage.ledger.add_ledger_entries([_entry("old", 25, expires_at=past)])
        deadline = asyncio.get_running_loop().time() + 15
        kinds: list[str] = []
        while asyncio.get_running_loop().time() < deadline:
            body = await (await client.get(f"/v1/customers/{CARD}/history")).json()
            kinds = [m["kind"] for m in body["movements"]]
            if "expire" in kinds:
                break
            await asyncio.sleep(0.2)
        assert kinds == ["expire", "accrue"]


def test_expire_interval_is_validated(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path)).ledger.expire_interval_s == 3600
    path = write_config(tmp_path, extra='\n[ledger]\nexpire_interval_s = 0\nspeed = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "ledger.expire_interval_s: must be between 1 and 604800, got 0" in text
    assert "ledger.speed: unknown key" in text
