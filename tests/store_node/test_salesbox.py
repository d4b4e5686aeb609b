"""SalesBox on real SQLite files: idempotent accept, quarantine, settle, persistence."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from store_node import SalesBox, StorageError, check_sale
from sync_protocol import (
    Heartbeat,
    MasterSnapshot,
    Rejection,
    decode,
    decode_sale,
    encode,
    sale_fingerprint,
)
from tests.store_node.store_fakes import STORE_ID, T0, make_sale


@pytest.fixture
def box(tmp_path: Path) -> Iterator[SalesBox]:
    sales_box = SalesBox(tmp_path / "store.db", store_id=STORE_ID)
    yield sales_box
    sales_box.close()


def quarantine_reasons(box: SalesBox) -> dict[str, str]:
    with sqlite3.connect(box.path) as conn:
        return dict(conn.execute("SELECT sale_id, reason FROM quarantine").fetchall())


def test_new_sales_are_accepted_and_stored_canonically(box: SalesBox) -> None:
    sales = [make_sale(1), make_sale(2)]
    ack = box.accept(sales, now=T0)
    assert ack.accepted == (sales[0].sale_id, sales[1].sale_id)
    assert ack.duplicates == () and ack.rejected == ()
    pending = box.pending(10)
    assert [p.sale_id for p in pending] == [s.sale_id for s in sales]
    assert decode_sale(pending[0].payload) == sales[0]
    assert box.counts()["sales"] == 2


def test_same_batch_twice_is_acknowledged_as_duplicates(box: SalesBox) -> None:
    sales = [make_sale(1), make_sale(2)]
    box.accept(sales, now=T0)
    again = box.accept(sales, now=T0 + timedelta(seconds=5))
    assert again.accepted == ()
    assert again.duplicates == tuple(s.sale_id for s in sales)
    assert box.counts() == {"sales": 2, "quarantine": 0, "registers": 1, "master": 0}


def test_same_id_with_other_payload_is_rejected_and_quarantined(box: SalesBox) -> None:
    original = make_sale(1)
    box.accept([original], now=T0)
    changed = dataclasses.replace(original, card_no="2770000099999")
    ack = box.accept([changed], now=T0)
    assert ack.accepted == () and ack.duplicates == ()
    assert [r.sale_id for r in ack.rejected] == [original.sale_id]
    # The Center's wording, from the one rule every hop applies.
    assert ack.rejected[0].reason == (
        f"sale_id: {original.sale_id} is already stored with a different payload "
        f"(fingerprint {sale_fingerprint(original)[:12]}..., "
        f"this one {sale_fingerprint(changed)[:12]}...)"
    )
    assert ack.rejected[0].reason == quarantine_reasons(box)[original.sale_id]
    # The stored sale is untouched; the conflicting one is kept aside.
    assert decode_sale(box.pending(10)[0].payload) == original
    assert box.counts()["quarantine"] == 1
    # Sending the same conflicting payload again does not grow the quarantine.
    box.accept([changed], now=T0)
    assert box.counts()["quarantine"] == 1


def test_register_seq_reused_by_another_sale_is_rejected(box: SalesBox) -> None:
    first = make_sale(7)
    box.accept([first], now=T0)
    other = make_sale(7)
    ack = box.accept([other], now=T0)
    assert ack.rejected == (
        Rejection(
            other.sale_id,
            f"seq: register 367-1 seq 7 already belongs to sale {first.sale_id}",
        ),
    )
    assert [p.sale_id for p in box.pending(10)] == [first.sale_id]
    assert box.counts()["quarantine"] == 1


def test_sale_of_another_store_is_rejected_naming_store_id(box: SalesBox) -> None:
    foreign = make_sale(1, store_id="406", register_id="406-1")
    ack = box.accept([foreign], now=T0)
    assert len(ack.rejected) == 1
    assert ack.rejected[0].reason.startswith("store_id:")
    assert "'406'" in ack.rejected[0].reason and "'367'" in ack.rejected[0].reason
    assert box.pending(10) == []
    assert box.registers() == []  # a foreign register is not "seen" here
    assert check_sale(foreign, STORE_ID) == ack.rejected[0].reason
    assert check_sale(make_sale(1), STORE_ID) is None


def test_mixed_batch_answers_each_sale_once(box: SalesBox) -> None:
    old = make_sale(1)
    box.accept([old], now=T0)
    new = make_sale(2)
    foreign = make_sale(3, store_id="406")
    ack = box.accept([old, new, new, foreign], now=T0)
    assert ack.accepted == (new.sale_id,)
    assert ack.duplicates == (old.sale_id,)
    assert [r.sale_id for r in ack.rejected] == [foreign.sale_id]


def test_a_failing_batch_writes_nothing(box: SalesBox, tmp_path: Path) -> None:
    # Simulate the disk failing on the second insert of the batch, after the first one.
    conn = sqlite3.connect(tmp_path / "store.db")
    conn.execute(
        "CREATE TRIGGER fail_second BEFORE INSERT ON sales WHEN NEW.seq = 2"
        " BEGIN SELECT RAISE(ABORT, 'simulated I/O failure'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.Error, match="simulated I/O failure"):
        box.accept([make_sale(1), make_sale(2)], now=T0)
    assert box.counts() == {"sales": 0, "quarantine": 0, "registers": 0, "master": 0}
    assert box.accept([make_sale(3)], now=T0).accepted  # the box is usable afterwards


def test_settle_marks_forwarded_and_center_rejected(box: SalesBox) -> None:
    sales = [make_sale(n) for n in (1, 2, 3)]
    box.accept(sales, now=T0)
    changed = box.settle([sales[0].sale_id], [Rejection(sales[1].sale_id, "unknown card")], now=T0)
    assert changed == 2
    assert [p.sale_id for p in box.pending(10)] == [sales[2].sale_id]
    outbox = box.outbox()
    assert (outbox.pending, outbox.rejected_by_center) == (1, 1)
    assert box.center_status().last_ok_at == T0
    # Settling again changes nothing: forwarded state is final.
    assert box.settle([sales[0].sale_id], [], now=T0) == 0


def test_pending_is_in_received_order_and_limited(box: SalesBox) -> None:
    sales = [make_sale(n, register_id=f"367-{n % 2 + 1}") for n in range(1, 8)]
    for sale in sales:
        box.accept([sale], now=T0)
    assert [p.sale_id for p in box.pending(3)] == [s.sale_id for s in sales[:3]]


def test_data_survives_reopening_and_store_id_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = SalesBox(path, store_id=STORE_ID)
    sale = make_sale(1)
    first.accept([sale], now=T0)
    first.close()
    second = SalesBox(path, store_id=STORE_ID)
    try:
        assert [p.sale_id for p in second.pending(10)] == [sale.sale_id]
        assert second.accept([sale], now=T0).duplicates == (sale.sale_id,)
    finally:
        second.close()
    with pytest.raises(StorageError, match=r"belongs to store '367'.*store_id='406'"):
        SalesBox(path, store_id="406")


def test_database_is_wal_with_full_sync(box: SalesBox, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert box._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_unusable_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=r"store\.db"):
        SalesBox(path, store_id=STORE_ID)


def test_registers_track_sales_and_heartbeats(box: SalesBox) -> None:
    box.accept([make_sale(4), make_sale(2)], now=T0)
    box.record_heartbeat(
        Heartbeat(
            node_id="367-1",
            role="register",
            store_id=STORE_ID,
            sent_at=T0,
            last_seq=3,
            queue_depth=1,
            oldest_queued_at=T0,
            master_version=9,
            devices={"printer": "paper_out"},
        ),
        now=T0 + timedelta(seconds=10),
    )
    (state,) = box.registers()
    assert state.register_id == "367-1"
    assert state.last_seen_at == T0 + timedelta(seconds=10)
    assert state.last_seq == 4  # the highest of what it sent and what it reported
    assert (state.queue_depth, state.master_version) == (1, 9)
    assert state.devices == {"printer": "paper_out"}
    assert (state.pending, state.oldest_pending_at) == (2, T0)


def test_summary_totals_per_register(box: SalesBox) -> None:
    sales = [make_sale(1), make_sale(2), make_sale(1, register_id="367-2")]
    box.accept(sales, now=T0)
    box.settle([sales[0].sale_id], [], now=T0)
    rows = {row.register_id: row for row in box.summary()}
    assert rows["367-1"].receipts == 2
    assert rows["367-1"].lines == 4
    assert rows["367-1"].total_minor == 2 * sales[0].total_minor
    assert (rows["367-1"].max_seq, rows["367-1"].pending) == (2, 1)
    assert rows["367-2"].receipts == 1


def test_master_cache_round_trip(box: SalesBox) -> None:
    assert box.master() is None
    three = MasterSnapshot(version=3, tables={"settings": ({"name": "a", "value": "1"},)})
    four = MasterSnapshot(version=4, tables={"settings": ({"name": "b", "value": "2"},)})
    box.save_master(3, encode(three, sender="center"), now=T0)
    box.save_master(4, encode(four, sender="center"), now=T0)
    cached = box.master()
    assert cached is not None and (cached.version, cached.fetched_at) == (4, T0)
    served = decode(cached.payload, expect=MasterSnapshot).message
    assert isinstance(served, MasterSnapshot) and served.tables == four.tables


def test_deduplication_outlives_forwarding_and_a_week_long_outage(box: SalesBox) -> None:
    week = [make_sale(n) for n in range(1, 6)]
    box.accept(week, now=T0)
    # Eight days without the Center: every sale is still held, oldest first.
    later = T0 + timedelta(days=8)
    assert [p.sale_id for p in box.pending(10)] == [s.sale_id for s in week]
    box.settle([s.sale_id for s in week], [], now=later)
    assert box.pending(10) == []
    # A register that never saw the ack re-sends them, long after they were forwarded:
    # still duplicates (nothing forwarded twice), and a changed payload is still refused.
    again = box.accept(week, now=later + timedelta(days=30))
    assert again.duplicates == tuple(s.sale_id for s in week) and again.accepted == ()
    assert box.pending(10) == []
    forged = dataclasses.replace(week[0], card_no="2770000099999")
    assert [r.sale_id for r in box.accept([forged], now=later).rejected] == [week[0].sale_id]
    assert box.counts()["sales"] == 5


# -- recovery of a lost or older store.db ----------------------------------------------------


def test_missing_seqs_are_what_neither_the_node_nor_the_center_holds() -> None:
    from store_node import missing_seqs

    assert missing_seqs(0, 10, [1, 2, 5], [(1, 3), (9, 9)]) == ((4, 4), (6, 8), (10, 10))
    assert missing_seqs(3, 8, [], []) == ((4, 8),)
    assert missing_seqs(0, 5, [1, 2, 3, 4, 5], []) == ()
    assert missing_seqs(0, 5, [], [(1, 100)]) == ()
    assert missing_seqs(5, 5, [], []) == ()


def test_a_new_file_says_so_and_an_older_one_is_found_by_a_register_report(
    tmp_path: Path,
) -> None:
    first = SalesBox(tmp_path / "store.db", store_id=STORE_ID)
    db_id = first.db_id
    assert first.created and len(db_id) == 32
    first.accept([make_sale(seq) for seq in (1, 2, 3)], now=T0)
    first.close()
    box = SalesBox(tmp_path / "store.db", store_id=STORE_ID)
    try:
        assert not box.created and box.db_id == db_id
        # Acknowledged through 3, all held: nothing to do.
        answer = box.report_journal("367-1", last_seq=4, acked_seq=3, now=T0)
        assert (answer.recovering, answer.resend, answer.started) == (False, (), None)
        assert box.recovery(T0) is None
        # The register says 5 were acknowledged: this file is older than the one that did.
        later = T0 + timedelta(minutes=1)
        answer = box.report_journal("367-1", last_seq=6, acked_seq=5, now=later)
        assert answer.recovering and answer.started is not None
        assert "seqs 4-5" in answer.started
        assert answer.resend == ()  # not before the Center said what it holds
        state = box.recovery(later)
        assert state is not None and not state.center_checked
        assert state.missing == {"367-1": ((4, 5),)}
        assert "asking the Center" in state.alert()
        assert box.settle_recovery(later) == (state, False)

        # The Center holds seq 4 (forwarded before the file was restored): only 5 is asked.
        box.save_center_coverage([("367-1", 4, [])], now=later)
        answer = box.report_journal("367-1", last_seq=6, acked_seq=5, now=later)
        assert (answer.recovering, answer.resend, answer.started) == (True, ((5, 5),), None)
        box.accept([make_sale(5)], now=later)
        state, ended = box.settle_recovery(later)
        assert ended and state is not None and state.missing == {}
        assert box.recovery(later) is None
    finally:
        box.close()


def test_a_recovery_waits_for_every_expected_register(box: SalesBox) -> None:
    box.expect_registers(["367-1", "367-2"])
    assert box.begin_recovery("emptied", now=T0)
    assert not box.begin_recovery("again", now=T0)
    box.save_center_coverage([("367-1", 2, []), ("367-2", 7, [(3, 4)])], now=T0)
    answer = box.report_journal("367-1", last_seq=2, acked_seq=2, now=T0)
    assert answer.resend == ()  # the Center has both
    state, ended = box.settle_recovery(T0)
    assert not ended and state is not None and state.waiting_for == ("367-2",)
    assert "waiting for 367-2 to report its journal" in state.alert()
    # A register that never reports is waited for a day, then checked when it comes back.
    from store_node.recovery import RECOVERY_WAIT

    state = box.recovery(T0 + RECOVERY_WAIT)
    assert state is not None and (state.waiting_for, state.unreported) == ((), ("367-2",))
    # 367-2: the Center lacks 3..4 and 8..9; quarantined seq 8 counts as held here.
    box.accept([make_sale(8, register_id="367-2", store_id="406")], now=T0)
    answer = box.report_journal("367-2", last_seq=9, acked_seq=9, now=T0)
    assert answer.resend == ((3, 4), (9, 9))
    assert not box.settle_recovery(T0)[1]
    box.accept([make_sale(s, register_id="367-2") for s in (3, 4, 9)], now=T0)
    assert box.settle_recovery(T0)[1]
