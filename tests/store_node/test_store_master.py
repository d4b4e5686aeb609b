"""The store node's master cache: per-row versions, tombstones, checksums, register deltas."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from store_node import master_cache
from store_node.master_cache import MasterGap
from store_node.salesbox import SalesBox
from sync_protocol import MasterDelta, MasterSnapshot, replica_checksum

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

PRODUCTS = (
    {"product_id": "1000", "name": "Milk", "weighed": False, "price_minor": 250},
    {"product_id": "1001", "name": "Bread", "weighed": False, "price_minor": 199},
)
CARD = {
    "card_no": "29",
    "customer_id": "c1",
    "status": "active",
    "bonus_balance": 5,
    "segments": [],
}


def _checksum(tables: dict[str, tuple[dict[str, object], ...]]) -> str:
    return replica_checksum(tables)


def snapshot(version: int, **tables: tuple[dict[str, object], ...]) -> MasterSnapshot:
    return MasterSnapshot(version=version, tables=dict(tables), checksum=_checksum(tables))


@pytest.fixture
def box(tmp_path: Path) -> SalesBox:
    opened = SalesBox(tmp_path / "store.db", store_id="367")
    yield opened  # type: ignore[misc]
    opened.close()


def test_snapshot_then_delta_then_register_deltas(box: SalesBox) -> None:
    assert box.serve_master(0) is None
    assert box.apply_master(snapshot(10, products=PRODUCTS, cards=(CARD,)), now=T0) == (10, True)
    milk = {**PRODUCTS[0], "price_minor": 260}
    after = {"products": (milk,), "cards": (CARD,)}
    delta = MasterDelta(
        from_version=10,
        to_version=12,
        upserts={"products": (milk,)},
        deletes={"products": ("1001",)},
        checksum=replica_checksum(after),
    )
    assert box.apply_master(delta, now=T0 + timedelta(seconds=5)) == (12, True)
    # A register at 10 gets exactly the change, with the tombstone.
    served = box.serve_master(10)
    assert served == MasterDelta(
        from_version=10,
        to_version=12,
        upserts={"products": (milk,)},
        deletes={"products": ("1001",)},
        checksum=replica_checksum(after),
    )
    assert box.serve_master(12) == MasterDelta(12, 12, checksum=replica_checksum(after))
    full = box.serve_master(0)
    assert isinstance(full, MasterSnapshot) and full.version == 12
    assert full.tables == {"cards": (CARD,), "products": (milk,)}
    assert isinstance(box.serve_master(99), MasterSnapshot)  # ahead of the node: start over


def test_a_repair_snapshot_reaches_registers_as_a_delta(box: SalesBox) -> None:
    box.apply_master(snapshot(10, products=PRODUCTS, cards=(CARD,)), now=T0)
    repaired = snapshot(15, products=PRODUCTS[:1])
    assert box.apply_master(repaired, now=T0) == (15, True)
    served = box.serve_master(10)
    assert isinstance(served, MasterDelta)
    assert served.upserts == {}
    assert served.deletes == {"cards": ("29",), "products": ("1001",)}
    assert served.checksum == repaired.checksum


def test_a_delta_that_does_not_match_is_rolled_back(box: SalesBox) -> None:
    box.apply_master(snapshot(10, products=PRODUCTS), now=T0)
    bad = MasterDelta(from_version=10, to_version=11, upserts={"cards": (CARD,)}, checksum="0" * 64)
    assert box.apply_master(bad, now=T0) == (11, False)
    state = box.master_state()
    assert state is not None and state.version == 10  # nothing kept: the caller repairs
    assert box.master_card("29") is None
    with pytest.raises(MasterGap, match="from_version"):
        box.apply_master(MasterDelta(from_version=3, to_version=11), now=T0)


def test_drift_of_the_rows_is_found_by_a_full_verify(box: SalesBox, tmp_path: Path) -> None:
    first = snapshot(10, products=PRODUCTS)
    box.apply_master(first, now=T0)
    up_to_date = MasterDelta(10, 10, checksum=first.checksum)
    assert box.apply_master(up_to_date, now=T0) == (10, True)
    with sqlite3.connect(tmp_path / "store.db") as other:  # e.g. a disk fault or a bad restore
        other.execute("DELETE FROM master_rows WHERE row_key = '1001'")
    assert box.apply_master(up_to_date, now=T0) == (10, True)  # cheap check: kept checksum
    assert box.apply_master(up_to_date, now=T0, verify=True) == (10, False)


def test_paged_register_delta_is_cut_at_a_version(box: SalesBox) -> None:
    box.apply_master(snapshot(1), now=T0)
    version = 1
    for batch in range(3):
        rows = tuple({"product_id": f"p{batch}-{i}", "name": "x"} for i in range(4))
        box.apply_master(MasterDelta(version, version + 1, upserts={"products": rows}), now=T0)
        version += 1
    page = box.serve_master(1, max_rows=6)
    assert isinstance(page, MasterDelta)
    assert (page.to_version, len(page.upserts["products"]), page.checksum) == (2, 4, "")
    rest = box.serve_master(2, max_rows=6)
    assert isinstance(rest, MasterDelta) and rest.to_version == 3 and rest.checksum == ""
    last = box.serve_master(3, max_rows=6)
    assert isinstance(last, MasterDelta) and last.to_version == 4 and last.checksum


def test_cards_from_the_replica_or_the_online_answer(box: SalesBox) -> None:
    box.apply_master(snapshot(10, cards=(CARD,)), now=T0)
    assert box.master_card("29") == CARD
    other = {**CARD, "card_no": "30"}
    box.remember_card(other, now=T0)
    assert box.master_card("30") == other
    state = box.master_state()
    assert state is not None and state.checksum == _checksum({"cards": (CARD,)})
    assert master_cache.KEYS["cards"] == "card_no"
