"""journal.db and replica.db on real files: atomic confirms, restarts, master data swaps."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from pos_agent import Config
from pos_agent.errors import JournalError, ReceiptClosed, ReplicaError
from pos_agent.journal import Journal
from pos_agent.replica import Replica
from sync_protocol import MasterDelta, Payment, Sale, SaleLine, chain_hash, encode_sale
from tests.pos_agent.pos_fakes import (
    BREAD,
    CARD,
    T0,
    FakeStoreNode,
    IdleUploader,
    demo_snapshot,
    health_until,
    make_config,
    open_journal,
    outbox_sales,
    running_agent,
    sell,
)


def _sale(seq: int, sale_id: str | None = None) -> Sale:
    line = SaleLine(
        line_no=1, product_id="bread", qty_milli=1000, unit_price_minor=250, amount_minor=250
    )
    return Sale(
        sale_id=sale_id or str(uuid.uuid4()),
        store_id="367",
        register_id="367-1",
        seq=seq,
        opened_at=T0,
        closed_at=T0 + timedelta(seconds=30),
        card_no=None,
        lines=(line,),
        payments=(Payment("cash", 250),),
        loyalty=(),
        subtotal_minor=250,
        discount_minor=0,
        total_minor=250,
        promo_version=1,
    )


def _counts(path: Path) -> tuple[int, int, int, int]:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("SELECT COUNT(*) FROM sales").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM open_receipts").fetchone()[0],
            conn.execute("SELECT value FROM counter").fetchone()[0],
        )
    finally:
        conn.close()


def test_confirm_writes_everything_or_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    journal = open_journal(config)
    try:
        journal.create_receipt("r1", "{}", T0)
        journal.create_receipt("r2", "{}", T0)
        first = journal.confirm("r1", _sale, bonus_spent=0, bonus_balance=0)
        assert _counts(config.register.journal_path) == (1, 1, 1, 1)

        # A failure after the seq was taken (here: a duplicate sale_id) rolls it all back.
        with pytest.raises(sqlite3.IntegrityError):
            journal.confirm(
                "r2", lambda seq: _sale(seq, first.sale_id), bonus_spent=0, bonus_balance=0
            )
        assert _counts(config.register.journal_path) == (1, 1, 1, 1)

        def explode(seq: int) -> Sale:
            raise RuntimeError("power cut while building the sale")

        with pytest.raises(RuntimeError):
            journal.confirm("r2", explode, bonus_spent=0, bonus_balance=0)
        assert _counts(config.register.journal_path) == (1, 1, 1, 1)

        second = journal.confirm("r2", _sale, bonus_spent=0, bonus_balance=0)
        assert second.seq == 2  # no gap left by the failed attempts
        with pytest.raises(ReceiptClosed):
            journal.confirm("r2", _sale, bonus_spent=0, bonus_balance=0)
        assert [row.seq for row in journal.outbox_batch(10)] == [1, 2]
    finally:
        journal.close()


def test_a_journal_belongs_to_one_register(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    open_journal(config).close()
    with pytest.raises(JournalError, match="367-1"):
        Journal(config.register.journal_path, register_id="367-2", store_id="367")


def test_journal_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    journal = open_journal(make_config(tmp_path))
    try:
        assert journal.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        journal.close()


async def test_open_receipts_and_the_outbox_survive_a_restart(
    config: Config, tmp_path: Path
) -> None:
    async with running_agent(config, uploader=IdleUploader()) as client:
        sold = await sell(client, [BREAD], card_no=CARD)
        rid = (await (await client.post("/v1/receipts", json={})).json())["receipt_id"]
        await client.post(f"/v1/receipts/{rid}/lines", json={"lines": [BREAD, BREAD]})
        await client.delete(f"/v1/receipts/{rid}/lines/2")
        await client.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})

    node = FakeStoreNode()
    restarted = replace(config, store_node=replace(config.store_node, url=node.url))
    try:
        async with running_agent(restarted) as client:
            receipt = await (await client.get(f"/v1/receipts/{rid}")).json()
            assert receipt["card_no"] == CARD
            assert [line["line_no"] for line in receipt["lines"]] == [1]
            resp = await client.post(f"/v1/receipts/{rid}/lines", json=BREAD)
            assert (await resp.json())["line_nos"] == [3]  # numbers are never reused
            calc = await (await client.post(f"/v1/receipts/{rid}/calculate", json={})).json()
            resp = await client.post(
                f"/v1/receipts/{rid}/confirm",
                json={"payments": [{"method": "cash", "amount_minor": calc["total_minor"]}]},
            )
            assert (await resp.json())["seq"] == 2
            assert [s.seq for s in outbox_sales(restarted)] == [1, 2]

            await node.start()
            await node.wait_until(lambda: len(node.committed) == 2)
            await health_until(client, lambda h: h["queue_depth"] == 0)
    finally:
        await node.stop()
    assert sold["sale_id"] in node.committed


def test_a_snapshot_replaces_the_replica_in_one_transaction(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "replica.db")
    try:
        assert replica.apply_snapshot(demo_snapshot(version=3))
        assert replica.product("milk") is not None
        bad = demo_snapshot(version=4)
        tables = dict(bad.tables)
        tables["products"] = ({"product_id": "new"},)
        tables["settings"] = ({"nope": 1},)  # no key column: the whole snapshot is refused
        with pytest.raises(ReplicaError, match=r"tables\.settings\[0\]\.name"):
            replica.apply_snapshot(replace(bad, tables=tables))
        assert replica.master_version() == 3
        assert replica.product("new") is None and replica.product("milk") is not None

        assert not replica.apply_snapshot(demo_snapshot(version=3))  # not newer: ignored
        card = replica.card(CARD)
        assert card is not None and card.bonus_balance == 1000 and card.segment == "regular"
        assert replica.store_format("367") == "supermarket"
        version, docs, settings = replica.promotion_source()
        assert version == 3
        assert {d["promotion_id"] for d in docs} == {
            "threshold-5-10",
            "base-accrual-3",
            "small-basket-1",
            "next-visit-coupon",
            "next-visit-redeem",
        }
        assert settings["bonus_max_share"] == "0.5"
    finally:
        replica.close()


def test_a_delta_applies_only_on_top_of_its_base_version(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "replica.db")
    try:
        replica.apply_snapshot(demo_snapshot(version=3))
        delta = MasterDelta(
            from_version=3,
            to_version=4,
            upserts={"products": ({"product_id": "tea", "department": "GROCERY"},)},
            deletes={"products": ("gum",)},
        )
        with pytest.raises(ReplicaError, match="from_version"):
            replica.apply_delta(replace(delta, from_version=2, to_version=5))
        assert replica.apply_delta(delta)
        tea = replica.product("tea")
        assert tea is not None and tea.department == "GROCERY"
        assert replica.product("gum") is None
        assert replica.master_version() == 4
    finally:
        replica.close()


def test_each_confirmed_sale_links_to_the_previous_one_and_survives_a_reopen(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path)
    journal = open_journal(config)
    try:
        for n in range(3):
            journal.create_receipt(f"r{n}", "{}", T0)
        first = journal.confirm("r0", _sale, bonus_spent=0, bonus_balance=0)
        second = journal.confirm("r1", _sale, bonus_spent=0, bonus_balance=0)
    finally:
        journal.close()
    assert first.prev_hash == ""
    assert second.prev_hash == chain_hash(first)
    journal = open_journal(config)
    try:
        third = journal.confirm("r2", _sale, bonus_spent=0, bonus_balance=0)
        assert third.prev_hash == chain_hash(second)
        # What was committed (and will be uploaded) carries the links, not just the return value.
        assert [s.prev_hash for s in journal.sales()] == ["", chain_hash(first), chain_hash(second)]
        assert journal.verify_chain() == []
    finally:
        journal.close()


def test_a_tampered_sale_breaks_the_chain_at_its_successor(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    journal = open_journal(config)
    try:
        for n in range(3):
            journal.create_receipt(f"r{n}", "{}", T0)
            journal.confirm(f"r{n}", _sale, bonus_spent=0, bonus_balance=0)
        second = journal.sales()[1]
        forged = replace(second, payments=(Payment("card", 250),))
        journal.conn.execute("UPDATE sales SET payload = ? WHERE seq = 2", [encode_sale(forged)])
        assert journal.verify_chain() == [3]
    finally:
        journal.close()


def test_a_journal_written_before_the_chain_links_onto_its_last_sale(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    journal = open_journal(config)
    try:
        journal.create_receipt("r0", "{}", T0)
        old = journal.confirm("r0", _sale, bonus_spent=0, bonus_balance=0)
        journal.conn.execute("DELETE FROM meta WHERE key = 'chain_head'")
        journal.create_receipt("r1", "{}", T0)
        new = journal.confirm("r1", _sale, bonus_spent=0, bonus_balance=0)
        assert new.prev_hash == chain_hash(old)
    finally:
        journal.close()
