"""PostgreSQL: the feed never skips a committed change when transactions commit out of order."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from center.feed.store import FeedSettings
from center.storage.postgres import PostgresStorage
from sync_protocol import MasterDelta, MasterSnapshot
from tests.center.center_factories import CARD, OTHER_CARD, T0, make_sale, master_tables

NOW = T0 + timedelta(days=1)
FAST = FeedSettings(tick_every_s=0, checksum_every_s=0)


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[PostgresStorage]:
    storage = PostgresStorage(pg_dsn)
    storage.migrate()
    storage.feed.upsert_master(master_tables())
    sales = [
        make_sale(1, card_no=CARD, accrue=10),
        make_sale(2, card_no=OTHER_CARD, accrue=10),
    ]
    storage.sales.ingest(sales, NOW)
    yield storage
    storage.close()


def _cards(message: MasterSnapshot | MasterDelta | None) -> dict[str, int]:
    assert isinstance(message, MasterDelta)
    return {c["card_no"]: c["bonus_balance"] for c in message.upserts.get("cards", ())}


def test_ledger_commit_out_of_order_is_not_skipped(pg: PostgresStorage, pg_dsn: str) -> None:
    first = pg.feed.master_feed("367", 0, NOW, FAST)
    assert isinstance(first, MasterSnapshot)
    since = first.version
    with psycopg.connect(pg_dsn) as slow:
        # T1 starts first (older xid) and writes a balance change of CARD, but commits last.
        entry = slow.execute(
            "INSERT INTO ledger (card_no, wallet, kind, amount, rule_id, source, created_at, "
            "customer_id) VALUES (%s, 'bonus', 'adjust', 500, '', 'slow-1', %s, "
            "(SELECT customer_id FROM card_directory WHERE card_no = %s)) RETURNING entry_id",
            (CARD, NOW, CARD),
        ).fetchone()
        assert entry is not None
        slow.execute(
            "INSERT INTO lots (entry_id, card_no, wallet, kind, rule_id, source, amount, "
            "remaining, created_at, customer_id) VALUES (%s, %s, 'bonus', 'adjust', '', "
            "'slow-1', 500, 500, %s, (SELECT customer_id FROM card_directory WHERE card_no = %s))",
            (entry[0], CARD, NOW, CARD),
        )
        # T2 starts later (newer xid) and commits first: an ordinary ingest.
        pg.sales.ingest([make_sale(3, card_no=OTHER_CARD, accrue=7)], NOW)
        between = pg.feed.master_feed("367", since, NOW, FAST)
        assert _cards(between) == {OTHER_CARD: 17}  # T1 is not visible yet
        assert isinstance(between, MasterDelta)
        since = between.to_version
        slow.commit()
    after = pg.feed.master_feed("367", since, NOW, FAST)
    # A reader keeping "the highest position seen" would have skipped T1 for good.
    assert _cards(after).get(CARD) == 510


def test_master_writers_commit_in_version_order(pg: PostgresStorage, pg_dsn: str) -> None:
    first = pg.feed.master_feed("367", 0, NOW, FAST)
    assert isinstance(first, MasterSnapshot)
    other = PostgresStorage(pg_dsn)
    done = threading.Event()
    result: dict[str, Any] = {}
    try:
        with psycopg.connect(pg_dsn) as slow:
            # T1: a master writer holding the version lock (e.g. a long promotion publish).
            version = slow.execute(
                "UPDATE master_version SET version = version + 1 WHERE id = 1 RETURNING version"
            ).fetchone()
            assert version is not None
            slow.execute(
                "UPDATE settings SET value = '0.3', version = %s WHERE name = 'bonus_max_share'",
                (version[0],),
            )

            def second_writer() -> None:
                change = other.feed.upsert_master(
                    {"promotions": [{"promotion_id": "p-new", "doc": {"promotion_id": "p-new"}}]}
                )
                result["version"] = change.version
                done.set()

            thread = threading.Thread(target=second_writer)
            thread.start()
            # T2 cannot take a version while T1 holds the lock, so it cannot commit before T1.
            assert not done.wait(0.5)
            between = pg.feed.master_feed("367", first.version, NOW, FAST)
            assert isinstance(between, MasterDelta) and not between.upserts
            slow.commit()
        assert done.wait(10)
        thread.join()
    finally:
        other.close()
    assert result["version"] > version[0]
    after = pg.feed.master_feed("367", between.to_version, NOW, FAST)
    assert isinstance(after, MasterDelta)
    assert [s["value"] for s in after.upserts["settings"]] == ["0.3"]
    assert [p["promotion_id"] for p in after.upserts["promotions"]] == ["p-new"]
