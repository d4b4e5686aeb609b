"""A customer signs up with a code received by the local SMTP server, shows the e-card's QR code
at a register, buys, and sees the receipt and its bonuses in the member API; the register checks
the QR offline with the key the master feed brought. Real HTTP through all three tiers (Center
app -> store node app -> POS agent app), both Center backends."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from center.communications.channels import EmailChannel
from center.communications.sender import send_due
from center.config import load_config as load_center_config
from center.storage import Storage
from center.web.app import create_app as create_center
from demo.message_sinks import SmtpSink
from loyalty_engine import default_promotions, default_settings
from sync_protocol import ECARD_KEY_SETTING, ecard_payload
from tests.center.center_factories import master_tables, write_config
from tests.pos_agent.pos_fakes import make_config as make_pos_config
from tests.pos_agent.pos_fakes import running_agent
from tests.store_node.store_fakes import free_port, running_node
from tests.store_node.store_fakes import make_config as make_node_config

MILK = {"product_id": "1000", "qty_milli": 1000, "unit_price_minor": 10000}


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)


async def test_sign_up_by_email_show_the_qr_at_a_register_and_see_the_receipt(
    tmp_path: Path, storage: Storage
) -> None:
    tables = master_tables()
    tables["promotions"] = [
        {"promotion_id": d["promotion_id"], "doc": d} for d in default_promotions()
    ]
    tables["settings"] = [{"name": k, "value": v} for k, v in default_settings().items()]
    storage.feed.upsert_master(tables)
    (tmp_path / "center").mkdir()
    config = load_center_config(
        write_config(tmp_path / "center", extra="[master]\nchecksum_every_s = 0\n")
    )
    runner = web.AppRunner(create_center(config, storage))
    await runner.setup()
    center_port, node_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", center_port).start()
    center = f"http://127.0.0.1:{center_port}"
    smtp = SmtpSink().start()
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{center}/v1/member/auth/code", json={"email": "oleg@example.org"}
            )
            assert resp.status == 202, await resp.text()
            challenge = await resp.json()
            # The communications sender delivers the outbox to the local SMTP server.
            channel = EmailChannel(
                "127.0.0.1", smtp.port, sender="bonus@shop.example", public_url=center
            )
            report = await send_due(
                storage.communications, {"email": channel}, clock=lambda: datetime.now(UTC)
            )
            await channel.close()
            assert report.by_channel.get("email") == 1, report
            (mail,) = smtp.mailbox.values()
            assert mail["To"] == "oleg@example.org"
            body = mail.get_body(("plain",))
            assert body is not None
            code = re.search(r"\b(\d{6})\b", body.get_content())
            assert code, body.get_content()
            resp = await http.post(
                f"{center}/v1/member/auth/verify",
                json={
                    "challenge_id": challenge["challenge_id"],
                    "code": code.group(1),
                    "consents": {"personal_data": True},
                },
            )
            assert resp.status == 201, await resp.text()
            tokens = await resp.json()
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            cards = await (await http.get(f"{center}/v1/member/cards", headers=auth)).json()
            card_no = cards["cards"][0]["card_no"]

            async def qr() -> str:
                resp = await http.get(f"{center}/v1/member/cards/{card_no}/qr", headers=auth)
                assert resp.status == 200, await resp.text()
                return str((await resp.json())["qr"])

            first = await qr()  # makes the chain's ecard_key, which the feed carries down
            node_config = make_node_config(tmp_path, center_url=center, port=node_port)
            pos_config = make_pos_config(tmp_path / "pos", f"http://127.0.0.1:{node_port}")
            async with running_agent(pos_config, clock=lambda: datetime.now(UTC)) as pos:
                async with running_node(node_config):

                    async def identified() -> dict[str, Any] | None:
                        receipt = await (await pos.post("/v1/receipts", json={})).json()
                        resp = await pos.post(
                            f"/v1/receipts/{receipt['receipt_id']}/card", json={"qr": await qr()}
                        )
                        if resp.status != 200:
                            return None
                        return {**await resp.json(), "receipt_id": receipt["receipt_id"]}

                    answer = await _until(identified, "the ecard_key at the register")
                    assert answer["card_no"] == card_no and answer["identified_by"] == "qr"
                    rid = answer["receipt_id"]
                    assert (await pos.post(f"/v1/receipts/{rid}/lines", json=MILK)).status == 200
                    calc = await (await pos.post(f"/v1/receipts/{rid}/calculate", json={})).json()
                    resp = await pos.post(
                        f"/v1/receipts/{rid}/confirm",
                        json={
                            "payments": [{"method": "cash", "amount_minor": calc["total_minor"]}]
                        },
                    )
                    assert resp.status == 200, await resp.text()
                    sale_id = (await resp.json())["sale_id"]

                    async def at_the_center() -> dict[str, Any] | None:
                        resp = await http.get(f"{center}/v1/member/history", headers=auth)
                        found = await resp.json()
                        return (
                            found
                            if any(h["sale_id"] == sale_id for h in found["history"])
                            else None
                        )

                    history = await _until(at_the_center, "the sale in the member's history")
                    accrued = [h for h in history["history"] if h["sale_id"] == sale_id]
                    assert accrued and accrued[0]["kind"] == "accrue" and accrued[0]["amount"] > 0

                # The store node is gone: the register still checks a fresh code from its replica,
                # and refuses the first one, minutes old only in this test's arithmetic.
                receipt = await (await pos.post("/v1/receipts", json={})).json()
                resp = await pos.post(
                    f"/v1/receipts/{receipt['receipt_id']}/card", json={"qr": await qr()}
                )
                assert resp.status == 200, await resp.text()
                key = storage.db.execute(
                    "SELECT value FROM settings WHERE name = ?", (ECARD_KEY_SETTING,)
                ).fetchone()[0]
                stale, _ = ecard_payload(key, card_no, time.time() - 120)
                resp = await pos.post(
                    f"/v1/receipts/{receipt['receipt_id']}/card", json={"qr": stale}
                )
                assert resp.status == 422 and "expired" in (await resp.json())["detail"]
                assert first.startswith(f"LQR1.{card_no}.")
            receipt = await (
                await http.get(f"{center}/v1/member/receipts/{sale_id}", headers=auth)
            ).json()
            assert receipt["lines"][0]["product_id"] == "1000"
            assert receipt["loyalty"] and receipt["loyalty"][0]["kind"] == "accrue"
            # Each movement and discount names the promotion that gave it, by its title.
            titles = {d["promotion_id"]: d["title"] for d in default_promotions()}
            movement = receipt["loyalty"][0]
            assert movement["promotion"] == titles[movement["rule_id"]]
    finally:
        smtp.stop()
        await runner.cleanup()
