"""A register identifies a customer by the electronic card's rotating QR code, offline, with the
chain's member.ecard_key from its replica: accepted within one 30 s step, refused by name
otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pos_agent import Config
from sync_protocol import ECARD_KEY_SETTING, ecard_payload
from tests.pos_agent.pos_fakes import (
    CARD,
    IdleUploader,
    demo_snapshot,
    make_config,
    running_agent,
    seed_replica,
)

KEY = "k" * 32
NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _config(tmp_path: Path, key: str | None = KEY) -> Config:
    # No store node URL: the register is offline and checks the code against its replica only.
    config = make_config(tmp_path / "pos")
    snapshot = demo_snapshot()
    settings = tuple(snapshot.tables["settings"])
    if key is not None:
        settings += ({"name": ECARD_KEY_SETTING, "value": key},)
    seed_replica(
        config, type(snapshot)(version=1, tables={**snapshot.tables, "settings": settings})
    )
    return config


async def test_a_fresh_qr_identifies_the_card_and_a_stale_or_forged_one_is_refused(
    tmp_path: Path,
) -> None:
    clock = FixedClock()
    async with running_agent(_config(tmp_path), clock=clock, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        shown, _ = ecard_payload(KEY, CARD, NOW.timestamp())
        # The phone's clock a step ahead of the register's: still accepted.
        ahead, _ = ecard_payload(KEY, CARD, (NOW + timedelta(seconds=30)).timestamp())
        for payload in (shown, ahead):
            resp = await client.post(f"/v1/receipts/{rid}/card", json={"qr": payload})
            body = await resp.json()
            assert resp.status == 200, body
            assert body["card_no"] == CARD and body["identified_by"] == "qr" and body["known"]
        receipt = await (await client.get(f"/v1/receipts/{rid}")).json()
        assert receipt["card_no"] == CARD
        # A screenshot of that code, shown 2 minutes later.
        clock.now = NOW + timedelta(minutes=2)
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"qr": shown})
        body = await resp.json()
        assert resp.status == 422 and body["detail"].startswith("qr: the QR code expired"), body
        # Made with another key (not the chain's), or another card number under this mac.
        forged, _ = ecard_payload("x" * 32, CARD, clock.now.timestamp())
        fresh, _ = ecard_payload(KEY, CARD, clock.now.timestamp())
        swapped = fresh.replace(CARD, "2000000000028")
        for payload in (forged, swapped):
            resp = await client.post(f"/v1/receipts/{rid}/card", json={"qr": payload})
            body = await resp.json()
            assert resp.status == 422 and "signature does not match" in body["detail"], body
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"qr": "hello"})
        assert resp.status == 422 and (await resp.json())["detail"].startswith("qr: not an")


async def test_a_register_without_the_key_says_to_scan_the_barcode(tmp_path: Path) -> None:
    async with running_agent(
        _config(tmp_path, key=None), clock=FixedClock(), uploader=IdleUploader()
    ) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        payload, _ = ecard_payload(KEY, CARD, NOW.timestamp())
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"qr": payload})
        body = await resp.json()
        assert resp.status == 422 and "scan the barcode" in body["detail"], body
