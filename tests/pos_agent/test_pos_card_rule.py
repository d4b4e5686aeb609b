"""The register's side of the one card rule, and the sale it never journals."""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from pos_agent import Config
from sync_protocol import (
    CARD_RULE_SETTING,
    MalformedMessage,
    MasterSnapshot,
    Payment,
    Sale,
    SaleLine,
)
from tests.pos_agent.pos_fakes import (
    BREAD,
    CARD,
    T0,
    IdleUploader,
    demo_snapshot,
    make_config,
    open_journal,
    outbox_sales,
    running_agent,
    seed_replica,
    sell,
)


async def test_the_card_is_trimmed_and_the_sale_carries_the_normal_number(
    config: Config,
) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(f"/v1/receipts/{rid}/lines", json=BREAD)
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": f" {CARD} \n"})
        view = await resp.json()
        assert resp.status == 200 and view["card_no"] == CARD and view["known"] is True
        sold = await sell(client, [BREAD], card_no=CARD + " ")
    sales = {sale.sale_id: sale for sale in outbox_sales(config)}
    assert sales[sold["sale_id"]].card_no == CARD


@pytest.mark.parametrize("bad", ["abc", "-1", "１２３", "12 34", "1'2", "a/b", "50%", "", 123])
async def test_anything_else_is_422_naming_card_no_and_nothing_is_attached(
    config: Config, bad: object
) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        resp = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": bad})
        answer = await resp.json()
        receipt = await (await client.get(f"/v1/receipts/{rid}")).json()
    assert resp.status == 422 and answer["field"] == "card_no", answer
    assert answer["detail"].startswith("card_no: expected"), answer
    assert receipt["card_no"] is None


def _with_rule(snapshot: MasterSnapshot, rule: str) -> MasterSnapshot:
    tables = dict(snapshot.tables)
    tables["settings"] = (*tables["settings"], {"name": CARD_RULE_SETTING, "value": rule})
    return dataclasses.replace(snapshot, tables=tables)


async def test_the_chain_rule_from_the_replica_settings_applies(tmp_path: Path) -> None:
    config = make_config(tmp_path / "pos")
    seed_replica(config, _with_rule(demo_snapshot(), "13-13:ean13"))
    async with running_agent(config, uploader=IdleUploader()) as client:
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        wrong = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
        assert wrong.status == 422 and "check digit wrong" in (await wrong.json())["detail"]
        short = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": "42"})
        assert short.status == 422 and "of 13 digits" in (await short.json())["detail"]
        good = await client.post(f"/v1/receipts/{rid}/card", json={"card_no": "2000000000015"})
        assert good.status == 200 and (await good.json())["known"] is False


def _sale(seq: int) -> Sale:
    line = SaleLine(1, "bread", 1000, 250, 250)
    return Sale(
        sale_id=str(uuid.uuid4()),
        store_id="367",
        register_id="367-1",
        seq=seq,
        opened_at=T0,
        closed_at=T0 + timedelta(seconds=30),
        card_no=CARD,
        lines=(line,),
        payments=(Payment("cash", 250),),
        loyalty=(),
        subtotal_minor=250,
        discount_minor=0,
        total_minor=250,
        promo_version=1,
    )


def test_a_sale_beyond_64_bits_is_never_journaled(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    journal = open_journal(config)
    try:
        journal.create_receipt("r1", "{}", T0)
        huge = 2**63  # what a store node's SQLite cannot store: refused before the commit
        line = SaleLine(1, "bread", 1000, huge, huge)

        def build(seq: int) -> Sale:
            return dataclasses.replace(
                _sale(seq),
                lines=(line,),
                payments=(Payment("cash", huge),),
                subtotal_minor=huge,
                total_minor=huge,
            )

        with pytest.raises(MalformedMessage, match="integer out of the signed 64-bit range"):
            journal.confirm("r1", build, bonus_spent=0, bonus_balance=0)
        sale = journal.confirm("r1", _sale, bonus_spent=0, bonus_balance=0)
    finally:
        journal.close()
    assert sale.seq == 1  # the refused attempt took no number and wrote nothing
    conn = sqlite3.connect(config.register.journal_path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM sales").fetchone()[0] == 1
    finally:
        conn.close()
