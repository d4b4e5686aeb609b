"""Printer and display at the register: slips after confirm, frames as items are added,
failures queued for reprint, and a sale never waits for a device."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import select
import threading
import time
import tty
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pos_agent import Config, create_app
from pos_agent.cli import main
from pos_agent.config import DisplayConfig, PrinterConfig
from pos_agent.devices import DeviceHub, PrintJob
from tests.pos_agent.pos_fakes import CARD, CARD_BALANCE, IdleUploader, TickClock, sell
from tests.printers.escpos_decoder import decode

LINES = [
    {"product_id": "milk", "qty_milli": 2000, "unit_price_minor": 3000},
    {"product_id": "bread", "qty_milli": 1000, "unit_price_minor": 500},
]


def with_devices(config: Config, tmp_path: Path, **printer: Any) -> Config:
    return dataclasses.replace(
        config,
        printer=PrinterConfig(uri=f"file://{tmp_path}/printer.bin", columns=42, **printer),
        display=DisplayConfig(uri=f"file://{tmp_path}/display.bin", protocol="cd5220"),
    )


@asynccontextmanager
async def agent(
    config: Config, hub: DeviceHub | None = None
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], DeviceHub]]:
    hub = hub or DeviceHub(config)
    app = create_app(config, clock=TickClock(), uploader=IdleUploader(), devices=hub)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, hub
    finally:
        await client.close()


async def test_a_confirmed_sale_prints_the_receipt_with_its_loyalty_section(
    config: Config, tmp_path: Path
) -> None:
    config = with_devices(config, tmp_path)
    async with agent(config) as (client, hub):
        answer = await sell(client, LINES, card_no=CARD, bonus_to_spend=100)
        assert await asyncio.to_thread(hub.drain)
        health = await (await client.get("/health")).json()

    lines = decode((tmp_path / "printer.bin").read_bytes()).text_lines()
    text = "\n".join(lines)
    assert f"Чек {answer['seq']}" in text
    assert "Программа лояльности" in text
    assert any(line.startswith("Карта") and line.endswith(CARD) for line in lines)

    def amount(label: str) -> str:
        found = [line.split()[-1] for line in lines if line.startswith(label)]
        assert found, label
        return found[0]

    assert amount("Баланс до") == "10.00"  # CARD_BALANCE, in bonus minor units
    assert amount("Списано") == "1.00"
    accrued = amount("Начислено")
    whole, cents = accrued.split(".")
    after = CARD_BALANCE - 100 + int(whole) * 100 + int(cents)
    assert amount("Баланс после") == f"{after // 100}.{after % 100:02d}"
    assert int(whole) * 100 + int(cents) > 0
    assert "Начислено" in text
    assert all(len(line) <= 42 for line in lines)
    assert health["devices"]["printer"]["ok"] is True
    assert health["devices"]["printer"]["reprint_queue"] == 0
    assert health["devices"]["display"]["ok"] is True


async def test_the_display_shows_items_as_added_then_the_total_and_loyalty(
    config: Config, tmp_path: Path
) -> None:
    config = with_devices(config, tmp_path)
    async with agent(config) as (client, hub):
        answer = await sell(client, LINES, card_no=CARD)
        assert await asyncio.to_thread(hub.drain)

    data = (tmp_path / "display.bin").read_bytes()
    assert data.startswith(b"\x1b@\x1bt\x11\x1b*\x04")  # init, code table, brightness
    frames = data.split(b"\x1bQA")[1:]
    shown = [f.split(b"\r")[0].decode("cp866").strip() for f in frames]
    assert shown[:2] == ["milk", "bread"]
    assert "2x30.00" in frames[0].decode("cp866")
    assert shown[2] == "ИТОГО"
    total = answer["total_minor"]
    assert f"{total // 100}.{total % 100:02d}".encode() in frames[2]
    assert "Начислено".encode("cp866") in data


async def test_a_broken_printer_never_fails_a_sale_and_queues_a_reprint(
    config: Config, tmp_path: Path
) -> None:
    missing = tmp_path / "not-yet"
    config = dataclasses.replace(
        with_devices(config, tmp_path), printer=PrinterConfig(uri=f"file://{missing}/p.bin")
    )
    async with agent(config) as (client, hub):
        await sell(client, LINES, card_no=CARD)
        await sell(client, LINES)
        assert await asyncio.to_thread(hub.drain)
        health = await (await client.get("/health")).json()

    printer = health["devices"]["printer"]
    assert printer["ok"] is False
    # Two receipts, each with the demo chain's NEXT5 coupon (totals >= 60.00).
    assert printer["reprint_queue"] == 4
    assert str(missing) in printer["last_error"]

    config_path = tmp_path / "pos.toml"
    config_path.write_text(
        '[register]\nregister_id = "367-1"\nstore_id = "367"\n'
        f'data_dir = "{config.register.data_dir}"\n'
        f'[printer]\nuri = "file://{missing}/p.bin"\n'
    )
    assert main(["reprint", "--config", str(config_path)]) == 1  # still broken: kept
    missing.mkdir()
    assert main(["reprint", "--config", str(config_path)]) == 0
    data = (missing / "p.bin").read_bytes()
    assert data.count(b"\x1b@\x1bt\x11") == 4
    assert "Программа лояльности" in "\n".join(decode(data).text_lines())
    assert main(["reprint", "--config", str(config_path)]) == 0
    assert (missing / "p.bin").read_bytes() == data  # queue empty: nothing printed twice


class StuckPrinterHub(DeviceHub):
    """A printer whose every job blocks until released."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.release = threading.Event()
        self.jobs: list[PrintJob] = []

    def _print(self, job: PrintJob | tuple[str, str, Any]) -> None:
        self.release.wait(30)
        assert isinstance(job, tuple)
        self.jobs.append(PrintJob(job[0], job[1], b""))


async def test_a_stuck_printer_does_not_slow_the_sale(config: Config, tmp_path: Path) -> None:
    config = with_devices(config, tmp_path)
    hub = StuckPrinterHub(config)
    async with agent(config, hub) as (client, _):
        started = time.monotonic()
        for _ in range(3):
            await sell(client, LINES, card_no=CARD)
        elapsed = time.monotonic() - started
        hub.release.set()
        assert await asyncio.to_thread(hub.drain)

    assert elapsed < 10  # the printer was blocked the whole time
    assert [job.kind for job in hub.jobs] == ["receipt", "coupon"] * 3


async def test_no_devices_configured_means_none_in_health(config: Config) -> None:
    async with agent(config) as (client, _):
        health = await (await client.get("/health")).json()

    assert health["devices"] == {}


def test_print_test_reaches_a_network_printer() -> None:
    import socket

    received = bytearray()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)
                if chunk.endswith(b"\x10\x04\x01"):
                    conn.sendall(b"\x12")  # online; then silence for DLE EOT 2 and 4

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        code = main(["print-test", "--printer", f"tcp://127.0.0.1:{port}?timeout=1"])
        thread.join(10)
    finally:
        server.close()

    assert code == 0
    decoded = decode(bytes(received).split(b"\x10\x04")[0])
    text = "\n".join(decoded.text_lines())
    assert "ТЕСТОВАЯ СТРАНИЦА" in text and "quick brown fox" in text
    assert [e.args["m"] for e in decoded.of("barcode")] == [2, 73]
    assert decoded.of("qr_store") and decoded.of("cut")


def test_display_test_through_a_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    try:
        path = os.ttyname(slave)
        assert main(["display-test", "--display", f"serial://{path}", "--protocol", "epson"]) == 0
        data = bytearray()
        deadline = time.monotonic() + 5
        while b"\x1f\x03" not in data and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                data += os.read(master, 4096)
    finally:
        os.close(slave)
        os.close(master)

    assert data.startswith(b"\x1b@\x1bt\x11")
    assert "Тест дисплея АБВГД".encode("cp866") in data


def test_print_test_to_an_unreachable_printer_fails_cleanly(capsys: Any) -> None:
    assert main(["print-test", "--printer", "tcp://127.0.0.1:1?timeout=1"]) == 1
    assert "print-test failed" in capsys.readouterr().err


async def test_heartbeats_carry_the_device_states(config: Config, tmp_path: Path) -> None:
    from tests.pos_agent.pos_fakes import FakeStoreNode, running_agent

    node = FakeStoreNode()
    await node.start()
    try:
        config = dataclasses.replace(
            with_devices(config, tmp_path),
            store_node=dataclasses.replace(config.store_node, url=node.url),
        )
        async with running_agent(config) as client:
            await sell(client, LINES)
            await node.wait_until(
                lambda: any(b.devices.get("printer") == "ok" for b in node.heartbeats)
            )
    finally:
        await node.stop()

    beat = next(b for b in node.heartbeats if b.devices.get("printer") == "ok")
    assert beat.devices["printer_reprints"] == "0"
    assert beat.devices["display"] in ("ok", "unknown")


async def test_an_issued_coupon_prints_its_own_slip(config: Config, tmp_path: Path) -> None:
    from loyalty_engine import default_promotions
    from sync_protocol import MasterSnapshot
    from tests.pos_agent.pos_fakes import demo_snapshot, seed_replica

    issue = {
        "promotion_id": "next-visit",
        "kind": "issue_coupon",
        "status": "active",
        "priority": 50,
        "prefix": "NEXT",
        "min_total_minor": 1000,
        "valid_days": 30,
    }
    # Only this test's coupon rule issues (not the demo chain's NEXT5 one).
    chain = [d for d in default_promotions() if d["kind"] != "issue_coupon"]
    snapshot = demo_snapshot(version=2, promotions=[*chain, issue])
    settings = (*snapshot.tables["settings"], {"name": "coupon_key", "value": "test-key"})
    seed_replica(config, MasterSnapshot(2, {**snapshot.tables, "settings": settings}))
    config = with_devices(config, tmp_path)
    async with agent(config) as (client, hub):
        await sell(client, LINES, card_no=CARD)
        assert await asyncio.to_thread(hub.drain)

    decoded = decode((tmp_path / "printer.bin").read_bytes())
    assert len(decoded.of("cut")) == 2  # the receipt, then the coupon
    # A signed code of 34 characters needs 363 modules with its quiet zones: 726 dots at 2 a
    # module, wider than 42 columns (504 dots). It is printed as text; the QR code carries it.
    assert decoded.of("barcode") == []
    (qr,) = decoded.of("qr_store")
    code = qr.args["data"]
    assert code.startswith("NEXT-")
    assert code in [line.strip() for line in decoded.text_lines()]
    text = "\n".join(decoded.text_lines())
    assert "КУПОН" in text and "Действует до" in text


async def test_a_discount_is_printed_under_its_promotions_title(
    config: Config, tmp_path: Path
) -> None:
    from loyalty_engine import default_promotions

    (rule,) = [d for d in default_promotions() if d["promotion_id"] == "threshold-5-10"]
    config = with_devices(config, tmp_path)
    async with agent(config) as (client, hub):
        answer = await sell(client, LINES, card_no=CARD)
        assert await asyncio.to_thread(hub.drain)

    assert answer["sale_id"]  # 65.00 of goods: the 5 % step of threshold-5-10 applies
    text = "\n".join(decode((tmp_path / "printer.bin").read_bytes()).text_lines())
    assert rule["title"][:20] in text  # the title (wrapped to the paper), not the rule id
    assert "threshold-5-10" not in text
