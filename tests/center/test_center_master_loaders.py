"""The master-data CSV parser and loads: every bad line named by line and field, nothing written
by a file with a bad line, idempotent re-loads, managed lists, price changes, settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from center.cli import main
from center.errors import InvalidLines
from center.feed.loaders import check_settings, major_to_minor, parse_csv, split_path
from center.storage import Storage
from tests.center.center_factories import write_config

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

STORES = (
    b"store_id,name,format,region,timezone,address\n"
    b"S1,Tverskaya,discounter,MOSCOW,Europe/Moscow,Tverskaya 1\n"
    b"S2,Nevsky,Hypermarket,,Europe/Moscow,\n"
)
PRODUCTS = (
    "product_id,name,category_path,brand,price,cost,weighed\n"
    "P1,Молоко 3.2%,Dairy > Milk > Whole,Farm,89.90,61.5,no\n"
    "P2,Apples,Fruit > Apples,,129,,yes\n"
).encode()


def _problems(data: bytes, kind: str, **kw: object) -> list[tuple[int, str]]:
    _, problems = parse_csv(kind, data, **kw)  # type: ignore[arg-type]
    return [(p.line, p.field) for p in problems]


# -- the pure parser ---------------------------------------------------------------------------


def test_every_bad_line_is_reported_with_its_line_and_field() -> None:
    data = (
        b"store_id,name,format,timezone,address\n"
        b"S1,One,Discounter,Europe/Moscow,\n"  # line 2: good
        b"S 2,Two,,Europe/Moscow,\n"  # line 3: bad id
        b"\n"  # line 4: blank, skipped
        b"S3,,Mega,Mars/Base,\n"  # line 5: name, format, timezone
        b"S1,Again,,UTC,\n"  # line 6: S1 twice
        b"S4,Four,,UTC\n"  # line 7: a cell short
        b'S5,"Five, Ltd",,UTC,"Main st, 1"\n'  # line 8: quoted commas are fine
    )
    records, problems = parse_csv(data=data, kind="stores", formats={"discounter": "Discounter"})
    assert [(p.line, p.field) for p in problems] == [
        (3, "store_id"),
        (5, "name"),
        (5, "format"),
        (5, "timezone"),
        (6, "store_id"),
        (7, "row"),
    ]
    assert "'Mega'" in problems[2].message and "Discounter" in problems[2].message
    assert "line 2" in problems[4].message
    assert [r.values["store_id"] for r in records] == ["S1", "S5"]
    assert records[1].values["address"] == "Main st, 1"


def test_header_problems_stop_before_any_line() -> None:
    assert _problems(b"store_id,name,colour\nS1,One,red\n", "stores") == [
        (1, "timezone"),
        (1, "colour"),
    ]
    assert _problems(b"", "stores") == [(1, "header")]
    assert _problems(b"name\n\xff\xfe\n", "formats") == [(2, "file")]


def test_formats_compare_case_insensitively_and_keep_the_lists_spelling() -> None:
    records, problems = parse_csv(
        "stores",
        STORES,
        formats={"discounter": "Discounter", "hypermarket": "Hypermarket"},
        regions={"moscow": "Moscow"},
    )
    assert problems == []
    assert [(r.values["format"], r.values["region"]) for r in records] == [
        ("Discounter", "Moscow"),
        ("Hypermarket", ""),
    ]
    _, problems = parse_csv("stores", STORES, formats={}, regions={"moscow": "Moscow"})
    assert [(p.line, p.field) for p in problems] == [(2, "format"), (3, "format")]


def test_products_money_paths_and_flags() -> None:
    records, problems = parse_csv("products", PRODUCTS)
    assert problems == []
    milk, apples = (r.values for r in records)
    assert milk["name"] == "Молоко 3.2%"
    assert (milk["price_minor"], milk["cost_minor"], milk["weighed"]) == (8990, 6150, False)
    assert (milk["department"], milk["category"], milk["product_type"]) == (
        "Dairy",
        "Milk",
        "Whole",
    )
    assert milk["category_path"] == "Dairy > Milk > Whole"
    assert (apples["price_minor"], apples["cost_minor"], apples["weighed"]) == (12900, None, True)
    bad = (
        b"product_id,name,price,cost,weighed\n"
        b"P1,Milk,89.999,,no\n"
        b"P2,Bread,-1,,no\n"
        b"P3,Salt,1e3,,no\n"
        b"P4,Tea,1,abc,maybe\n"
    )
    assert sorted(_problems(bad, "products")) == [
        (2, "price"),
        (3, "price"),
        (4, "price"),
        (5, "cost"),
        (5, "weighed"),
    ]
    # A currency without cents: a decimal is refused, the integer is the minor amount.
    assert _problems(b"product_id,name,price\nP1,Sushi,120.5\n", "products", exponent=0) == [
        (2, "price")
    ]


def test_major_units_are_never_rounded() -> None:
    assert major_to_minor("12.5", 2) == 1250
    assert major_to_minor("0.29", 2) == 29
    assert major_to_minor("7", 3) == 7000
    with pytest.raises(ValueError, match="at most 2 decimals"):
        major_to_minor("2.675", 2)
    assert split_path(" Dairy >  > Kefir > ") == ("Dairy", "", "Kefir")


def test_price_changes_read_days_in_the_chain_zone() -> None:
    data = (
        b"product_id,price,effective_from\n"
        b"P1,10.00,2026-03-02\n"
        b"P1,11.00,2026-03-05T08:00:00+03:00\n"
        b"P1,12.00,2026-03-06T08:00:00\n"
    )
    records, problems = parse_csv("prices", data, zone=ZoneInfo("Europe/Moscow"))
    assert [(p.line, p.field) for p in problems] == [(4, "effective_from")]
    assert [r.values["effective_from"] for r in records] == [
        datetime(2026, 3, 1, 21, 0, tzinfo=UTC),
        datetime(2026, 3, 5, 5, 0, tzinfo=UTC),
    ]


def test_settings_name_the_unknown_key_and_the_value_out_of_range() -> None:
    values, problems = check_settings(
        {"max_discount_shares": "0.3", "bonus_max_share": "1.5", "max_accrual_minor": -1}
    )
    assert [p.field for p in problems] == [
        "max_discount_shares",
        "bonus_max_share",
        "max_accrual_minor",
    ]
    values, problems = check_settings({"currency": "JPY", "max_discount_share": 0.25})
    assert problems == []
    assert values == {"currency": "JPY", "currency_exponent": "0", "max_discount_share": "0.25"}


# -- loads into the Center, both backends ------------------------------------------------------


def _lists(storage: Storage) -> None:
    storage.master.load_csv("formats", b"name\nDiscounter\nHypermarket\n", actor="t", now=NOW)
    storage.master.load_csv("regions", b"name\nMoscow\n", actor="t", now=NOW)


def _counts(storage: Storage) -> tuple[int, ...]:
    with storage.db.guard("count"):
        row = storage.db.execute(
            "SELECT (SELECT COUNT(*) FROM stores), (SELECT COUNT(*) FROM products), "
            "(SELECT COUNT(*) FROM registers), (SELECT COUNT(*) FROM price_changes), "
            "(SELECT COUNT(*) FROM audit), (SELECT version FROM master_version)"
        ).fetchone()
    return tuple(int(v) for v in row)


def test_a_file_with_one_bad_line_writes_nothing(storage: Storage) -> None:
    _lists(storage)
    before = _counts(storage)
    data = STORES + b"S3,Third,Cash&Carry,Moscow,Europe/Moscow,\n"
    with pytest.raises(InvalidLines) as caught:
        storage.master.load_csv("stores", data, actor="t", now=NOW)
    assert [(p["line"], p["field"]) for p in caught.value.problems] == [(4, "format")]
    assert str(caught.value).startswith("line 4: format: unknown format 'Cash&Carry'")
    assert _counts(storage) == before
    # A register of a store that the database does not hold: refused by reference, too.
    with pytest.raises(InvalidLines) as caught:
        storage.master.load_csv(
            "registers", b"register_id,store_id\nR1,S1\nR2,S1\n", actor="t", now=NOW
        )
    assert [(p["line"], p["field"]) for p in caught.value.problems] == [
        (2, "store_id"),
        (3, "store_id"),
    ]
    assert _counts(storage) == before


def test_reloading_the_same_file_changes_nothing(storage: Storage) -> None:
    _lists(storage)
    first = storage.master.load_csv("stores", STORES, actor="t", now=NOW)
    assert (first.rows, first.changed) == (2, 2)
    before = _counts(storage)
    again = storage.master.load_csv("stores", STORES, actor="t", now=NOW)
    assert (again.changed, again.master_version) == (0, first.master_version)
    assert _counts(storage) == before
    # One field changed: one row, one new version, its audit row says what.
    edited = STORES.replace(b"Hypermarket,,", b"hypermarket,moscow,")
    third = storage.master.load_csv("stores", edited, actor="ann", now=NOW)
    assert (third.changed, third.master_version) == (1, first.master_version + 1)
    history = storage.audit.audit_history("store", "S2")
    assert [(h["action"], h["actor"]) for h in history] == [("create", "t"), ("update", "ann")]
    assert (history[0]["after"]["region"], history[1]["after"]["region"]) == ("", "Moscow")


def test_price_changes_apply_when_due(storage: Storage) -> None:
    storage.master.load_csv("products", PRODUCTS, actor="t", now=NOW)
    later = NOW + timedelta(days=2)
    prices = (
        "product_id,price,effective_from\n"
        f"P1,79.90,{(NOW - timedelta(hours=1)).isoformat()}\n"
        f"P2,139.00,{later.isoformat()}\n"
    ).encode()
    report = storage.master.load_csv("prices", prices, actor="t", now=NOW)
    assert report.prices_applied == 1
    price = {r["product_id"]: r["price_minor"] for r in storage.master.rows("products")}
    assert price == {"P1": 7990, "P2": 12900}
    version = storage.feed.master_version()
    assert storage.master.apply_due_prices(NOW + timedelta(days=1)) == 0
    assert storage.master.apply_due_prices(later) == 1
    price = {r["product_id"]: r["price_minor"] for r in storage.master.rows("products")}
    assert price == {"P1": 7990, "P2": 13900}
    assert storage.feed.master_version() == version + 1
    assert storage.master.load_csv("prices", prices, actor="t", now=later).changed == 0


def test_settings_changes_are_checked_versioned_and_audited(storage: Storage) -> None:
    version = storage.feed.master_version()
    done = storage.master.set_settings(
        {"max_discount_share": "0.30", "max_accrual_minor": 50000}, actor="ann", now=NOW
    )
    assert done["settings"] == {"max_accrual_minor": "50000", "max_discount_share": "0.3"}
    assert done["version"] == version + 1
    with pytest.raises(InvalidLines) as caught:
        storage.master.set_settings({"max_discount_shares": "0.5"}, actor="ann", now=NOW)
    assert caught.value.field == "max_discount_shares"
    with pytest.raises(InvalidLines) as caught:
        storage.master.set_settings({"max_discount_share": "1.5"}, actor="ann", now=NOW)
    assert caught.value.field == "max_discount_share"
    assert storage.master.settings()["settings"]["max_discount_share"] == "0.3"
    removed = storage.master.set_settings({"max_accrual_minor": None}, actor="ann", now=NOW)
    assert "max_accrual_minor" not in removed["settings"]
    history = storage.audit.audit_history("setting", "max_accrual_minor")
    assert [(h["before"], h["after"]) for h in history] == [
        (None, {"max_accrual_minor": "50000"}),
        ({"max_accrual_minor": "50000"}, None),
    ]


# -- the console script ------------------------------------------------------------------------


def test_cli_loads_a_big_file_with_progress_and_refuses_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    rows = "".join(
        f"P{n},Product {n},Grocery > Dry,,{n % 500}.{n % 100:02d},,no\n" for n in range(60_001)
    )
    big = tmp_path / "products.csv"
    big.write_text("product_id,name,category_path,brand,price,cost,weighed\n" + rows)
    assert main(["load-master", "--config", config, "products", str(big)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["changed"] == 60_001
    assert "read products: 50000/60002" in err and "products: 60001/60001 (100%)" in err
    assert main(["load-master", "--config", config, "products", str(big)]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] == 0
    assert main(["set-settings", "--config", config, "max_discount_shares=0.5"]) == 1
    assert "max_discount_shares: unknown setting" in capsys.readouterr().err
    assert main(["set-settings", "--config", config, "max_discount_share=0.5"]) == 0
    capsys.readouterr()
    assert main(["settings", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out)["settings"] == {"max_discount_share": "0.5"}
