"""The chain's own master data through the real tiers, as processes: CSV files loaded at the
Center with its console script reach a running store node and register, which price receipts
with the new shelf price and store format; the sales come back to the Center."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from demo.cluster import Cluster

STORE = "501"
REGISTER = "501-1"
DISCOUNTER_ONLY = {
    "promotion_id": "discounter-10",
    "title": "10 % off in Discounter stores",
    "kind": "threshold_discount",
    "priority": 10,
    "requires_card": False,
    "steps": [{"min_total_minor": 1, "percent": "10"}],
    "place": {"formats": ["Discounter"]},
}


def _center(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("loyalty-center")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _load(cluster: Cluster, kind: str, text: str) -> dict[str, Any]:
    path = cluster.root / f"{kind}.csv"
    path.write_text(text, encoding="utf-8")
    done = _center("load-master", "--config", str(cluster.center.config), kind, str(path))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def _ring(pos: str, *, expect_price: int) -> dict[str, Any] | None:
    """A receipt of 2 units of P1 sent without a price; its calculation once the register
    prices P1 at `expect_price` (None before: the receipt is cancelled)."""
    receipt_id = requests.post(f"{pos}/v1/receipts", json={}, timeout=10).json()["receipt_id"]
    added = requests.post(
        f"{pos}/v1/receipts/{receipt_id}/lines",
        json={"product_id": "P1", "qty_milli": 2000},
        timeout=10,
    )
    if added.status_code == 200:
        receipt = requests.get(f"{pos}/v1/receipts/{receipt_id}", timeout=10).json()
        if receipt["lines"][0]["unit_price_minor"] == expect_price:
            calc = requests.post(f"{pos}/v1/receipts/{receipt_id}/calculate", json={}, timeout=10)
            assert calc.status_code == 200, calc.text
            return {**calc.json(), "receipt_id": receipt_id}
    else:
        assert added.status_code == 422, added.text  # no price at the register yet
    requests.post(f"{pos}/v1/receipts/{receipt_id}/cancel", json={}, timeout=10)
    return None


def _confirm(pos: str, calc: dict[str, Any]) -> None:
    done = requests.post(
        f"{pos}/v1/receipts/{calc['receipt_id']}/confirm",
        json={"payments": [{"method": "cash", "amount_minor": calc["total_minor"]}]},
        timeout=10,
    )
    assert done.status_code == 200, done.text


@pytest.mark.timeout(300)
def test_csv_master_data_reaches_the_register_and_prices_its_receipts(tmp_path: Path) -> None:
    with Cluster(tmp_path / "cluster", [STORE], 1) as cluster:
        cluster.write_configs()
        cluster.enrol_all()
        config = str(cluster.center.config)
        _load(cluster, "formats", "name\nDiscounter\nHypermarket\n")
        _load(cluster, "regions", "name\nMoscow\n")
        stores = (
            "store_id,name,format,region,timezone,address\n"
            "{0},Tverskaya,{1},moscow,Europe/Moscow,Tverskaya 1\n"
        )
        first = _load(cluster, "stores", stores.format(STORE, "discounter"))
        assert first["changed"] == 1
        _load(cluster, "registers", f"register_id,store_id\n{REGISTER},{STORE}\n")
        report = _load(
            cluster,
            "products",
            "product_id,name,category_path,brand,price,cost,weighed\n"
            "P1,Молоко 3.2%,Dairy > Milk,Farm,89.90,61.00,no\n",
        )
        assert report["changed"] == 1
        # A bad file is refused whole, naming the line and the column.
        path = cluster.root / "bad.csv"
        path.write_text("product_id,name,price\nP1,Milk,79.90\nP2,Bread,1.234\n")
        refused = _center("load-master", "--config", config, "products", str(path))
        assert refused.returncode == 1
        assert f"{path}:3: price: at most 2 decimals" in refused.stderr
        # A promotion for the Discounter format only, through the Center's API.
        token = _center("add-user", "--config", config, "ada", "--role", "administrator")
        assert token.returncode == 0, token.stderr
        auth = {"Authorization": f"Bearer {token.stdout.strip()}"}
        cluster.start(cluster.center)
        center = cluster.center.url
        created = requests.post(
            f"{center}/v1/promotions", json=DISCOUNTER_ONLY, headers=auth, timeout=10
        )
        assert created.status_code == 201, created.text
        activated = requests.post(
            f"{center}/v1/promotions/discounter-10/activate", headers=auth, timeout=10
        )
        assert activated.status_code == 200, activated.text
        cluster.start(cluster.store_nodes[STORE])
        cluster.start(cluster.registers[REGISTER])
        pos = cluster.registers[REGISTER].url

        # The register prices P1 at 89.90 and the store is a Discounter: 10 % off.
        calc = _until(lambda: _ring(pos, expect_price=8990), "P1 at 89.90 at the register")
        assert calc["subtotal_minor"] == 17980
        assert calc["discount_minor"] == 1798
        _confirm(pos, calc)

        # A price change due now and the store's new format, loaded at the Center.
        due = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        change = _load(cluster, "prices", f"product_id,price,effective_from\nP1,79.90,{due}\n")
        assert change["prices_applied"] == 1
        _load(cluster, "stores", stores.format(STORE, "HYPERMARKET"))
        settings = _center("set-settings", "--config", config, "max_discount_share=0.3")
        assert settings.returncode == 0, settings.stderr

        def repriced() -> dict[str, Any] | None:
            found = _ring(pos, expect_price=7990)
            if found is not None and found["discount_minor"] != 0:
                requests.post(
                    f"{pos}/v1/receipts/{found['receipt_id']}/cancel", json={}, timeout=10
                )
                return None  # the price arrived before the format: ask again
            return found

        calc = _until(repriced, "P1 at 79.90 in a Hypermarket at the register")
        assert (calc["subtotal_minor"], calc["total_minor"]) == (15980, 15980)
        _confirm(pos, calc)

        # Both sales reach the Center with the amounts the register computed.
        def reconciled() -> dict[str, Any] | None:
            answer = requests.get(
                f"{center}/v1/reconciliation", params={"store_id": STORE}, headers=auth, timeout=10
            ).json()
            registers = answer.get("registers", [])
            return registers[0] if registers and registers[0]["receipts"] == 2 else None

        register = _until(reconciled, "both sales at the Center")
        assert register["register_id"] == REGISTER
        assert register["total_minor"] == 17980 - 1798 + 15980
        assert register["discount_minor"] == 1798
