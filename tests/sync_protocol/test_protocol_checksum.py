"""replica_checksum: canonical, order-independent, pinned by a golden value."""

from __future__ import annotations

import pytest

from sync_protocol import MalformedMessage, canonical_row, replica_checksum

TABLES = {
    "cards": [
        {
            "card_no": "2000",
            "customer_id": "c2",
            "status": "active",
            "bonus_balance": 0,
            "segments": [],
        },
        {
            "card_no": "1000",
            "customer_id": "c1",
            "status": "active",
            "bonus_balance": 1250,
            "segments": ["vip"],
        },
    ],
    "products": [
        {"product_id": "p1", "name": "Молоко 1л", "weighed": False, "price_minor": 8990},
    ],
    "promotions": [
        {"promotion_id": "x", "version": 3, "doc": {"kind": "accrual_percent", "percent": "5"}},
    ],
    "settings": [{"name": "bonus_max_share", "value": "0.5"}],
}

GOLDEN = "f4bc724f7073678147d2fdf9a8e2878afc5e2f55290fbe4e8c99344dcff632e1"
"""Pinned once: a change here breaks every replica in the field (they would all repair)."""


def test_golden_value_is_pinned() -> None:
    assert replica_checksum(TABLES) == GOLDEN


def test_canonical_row_sorts_keys_and_keeps_utf8() -> None:
    assert canonical_row({"b": 1, "a": "ё", "c": [True, None]}) == '{"a":"ё","b":1,"c":[true,null]}'


def test_order_of_rows_and_tables_does_not_matter() -> None:
    shuffled = {name: list(reversed(rows)) for name, rows in reversed(list(TABLES.items()))}
    assert replica_checksum(shuffled) == GOLDEN
    as_tuples = {name: tuple(rows) for name, rows in TABLES.items()}
    assert replica_checksum(as_tuples) == GOLDEN


def test_empty_table_counts_as_absent() -> None:
    assert replica_checksum({**TABLES, "stores": []}) == GOLDEN
    assert replica_checksum({}) == replica_checksum({"cards": ()})


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t["cards"][0].update(bonus_balance=1),
        lambda t: t["settings"].append({"name": "x", "value": "1"}),
        lambda t: t["products"][0].update(weighed=0),  # 0 is not False: replicas keep types
        lambda t: t["promotions"].clear(),
    ],
)
def test_any_change_changes_the_checksum(change: object) -> None:
    import copy

    tables = copy.deepcopy(TABLES)
    change(tables)  # type: ignore[operator]
    assert replica_checksum(tables) != GOLDEN


def test_unsupported_value_is_refused() -> None:
    with pytest.raises(MalformedMessage, match="cannot checksum"):
        replica_checksum({"t": [{"x": object()}]})
