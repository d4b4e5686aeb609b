"""Card numbers through the real tiers (processes, HTTP, signatures required): one rule at every
tier, a clean 4xx for an invalid number, and signatures that survive any percent-encoding."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from demo.baskets import load_baskets
from demo.chaos import ring_up, wait_synced
from demo.chaos.cards import dataset_card_number
from demo.cluster import Cluster
from sync_protocol import canonical_query, sign_headers

# What a cashier or a scanner may send, as raw path segments and as JSON strings.
HOSTILE = {
    "12%2034": "12 34",
    "1%272": "1'2",
    "%22": '"',
    "%C3%A9": "é",
    "a%2Fb": "a/b",
    "50%25": "50%",
    "%EF%BC%91%EF%BC%92": "１２",
    "abc": "abc",
    "-1": "-1",
}


def _register_get(cluster: Cluster, path: str) -> requests.Response:
    """GET from the store node signed as register 367-1 (as its StoreLink would)."""
    creds = json.loads((cluster.root / "pos-367-1" / "credentials.json").read_text())
    headers = sign_headers(
        creds["node_id"],
        creds["secret"],
        method="GET",
        path=path,
        query=canonical_query({}),
        body=b"",
        now_s=time.time(),
    )
    return requests.get(cluster.store_nodes["367"].url + path, headers=headers, timeout=30)


@pytest.mark.timeout(300)
def test_card_numbers_are_one_rule_at_every_tier_and_never_a_5xx(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", ["367"], 1, require_signatures=True)
    register = cluster.registers["367-1"]
    with cluster:
        cluster.write_configs()
        cluster.run_tool(
            "loyalty-center",
            "import-dataset",
            "--config",
            str(cluster.center.config),
            "--stores",
            "367",
        )
        cluster.enrol_all()
        for node in (cluster.center, cluster.store_nodes["367"], register):
            cluster.start(node)
        assert cluster.wait_for_master() == []
        # A household's card the store does not hold yet: the register looks it up online
        # through the store node, which asks the Center (signed).
        basket = next(
            b
            for b in load_baskets(["367"], 1)
            if b.household_id.isdigit()
            and cluster.center_get(
                "367", f"/v1/customers/{dataset_card_number(b.household_id)}/balance"
            ).status_code
            == 200
        )
        card = dataset_card_number(basket.household_id)

        # The register trims a scanner's trailing space: the sale books to the real card.
        session = requests.Session()
        opened = session.post(f"{register.url}/v1/receipts", json={}, timeout=10).json()
        answer = session.post(
            f"{register.url}/v1/receipts/{opened['receipt_id']}/card",
            json={"card_no": card + " "},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["card_no"] == card and answer.json()["known"] is True
        sale_id, _ = ring_up(session, register.url, basket, card + " ", False, threading.Event())
        assert wait_synced(cluster, 60) is not None
        history = cluster.center_get("367", f"/v1/customers/{card}/history", {"limit": "1000"})
        assert history.status_code == 200, history.text
        booked = [m for m in history.json()["movements"] if sale_id in str(m["source"])]
        assert booked and all(m["amount"] for m in booked), history.json()
        assert all(row["status"] != "rejected" for row in _rejected(register.url))

        # Every other tier answers an invalid number with a 4xx naming it, never a 503.
        for raw, text in HOSTILE.items():
            answer = session.post(
                f"{register.url}/v1/receipts/{opened['receipt_id']}/card",
                json={"card_no": text},
                timeout=10,
            )
            assert answer.status_code == 422, (text, answer.text)
            assert answer.json()["detail"].startswith("card_no: expected 1..32 digits")
            at_store = _register_get(cluster, f"/v1/cards/{raw}")
            assert 400 <= at_store.status_code < 500, (raw, at_store.status_code, at_store.text)
            assert at_store.status_code != 401, at_store.text  # the signature held
            at_center = cluster.center_get("367", f"/v1/cards/{raw}/lookup", {"store_id": "367"})
            assert 400 <= at_center.status_code < 500, (raw, at_center.text)
            assert at_center.status_code != 401, at_center.text  # the signature held
            if "/" not in text:
                assert at_store.status_code == 400 and "card_no" in at_store.json()["detail"]
                assert at_center.status_code == 400 and "card_no" in at_center.json()["detail"]

        # A valid number however a client percent-encodes it: same signature, same card.
        encoded = "".join(f"%{ord(ch):02X}" for ch in card)
        at_center = cluster.center_get("367", f"/v1/cards/{encoded}/lookup", {"store_id": "367"})
        assert at_center.status_code == 200 and at_center.json()["card_no"] == card
        at_store = _register_get(cluster, f"/v1/cards/{encoded}")
        assert at_store.status_code == 200 and at_store.json()["card_no"] == card
        spaced = _register_get(cluster, f"/v1/cards/{card}%20")
        assert spaced.status_code == 200 and spaced.json()["card_no"] == card


def _rejected(url: str) -> list[dict[str, str]]:
    health = requests.get(url + "/health", timeout=10).json()
    return [{"status": "rejected", **r} for r in health["rejected"]]
