"""Goods selectors: which receipt lines a rule touches, and the index keys it is found by."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .fields import FieldReader
from .model import ReceiptLine

__all__ = ["ALL_GOODS", "CERTIFICATE_TYPE", "GoodsSelector", "parse_goods"]

# The product type of a gift certificate line: money sold, not goods. ``calculate`` keeps such
# lines away from every rule (no goods match, discount, accrual base, total condition or bonus
# payment share); they only add their amount to what the customer pays.
CERTIFICATE_TYPE = "gift_certificate"

# The receipt-line attributes a selector filters on, in the order index keys are listed.
_FIELDS = ("products", "departments", "categories", "types", "brands")


@dataclass(frozen=True, slots=True)
class GoodsSelector:
    """Lines matching ANY include-list (all if every one is empty), minus the exclusions."""

    products: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    exclude_products: frozenset[str] = frozenset()
    exclude_departments: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()
    exclude_types: frozenset[str] = frozenset()
    exclude_brands: frozenset[str] = frozenset()

    # Computed once (``__post_init__``): asked for every line of every rule of every receipt.
    is_all: bool = field(init=False, repr=False, compare=False, default=True)
    has_exclusions: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        everything = not (
            self.products or self.departments or self.categories or self.types or self.brands
        )
        excluding = bool(
            self.exclude_products
            or self.exclude_categories
            or self.exclude_departments
            or self.exclude_types
            or self.exclude_brands
        )
        object.__setattr__(self, "is_all", everything)
        object.__setattr__(self, "has_exclusions", excluding)

    def matches(self, line: ReceiptLine) -> bool:
        """Whether ``line`` is among these goods."""
        if (
            line.product_id in self.exclude_products
            or line.department in self.exclude_departments
            or line.category in self.exclude_categories
            or line.type in self.exclude_types
            or line.brand in self.exclude_brands
        ):
            return False
        if self.is_all:
            return True
        return (
            line.product_id in self.products
            or line.department in self.departments
            or line.category in self.categories
            or line.type in self.types
            or line.brand in self.brands
        )

    def excludes(self, line: ReceiptLine) -> bool:
        """Whether an exclusion list names ``line`` (a line the index found by an include-list
        key matches unless this says so)."""
        return bool(
            (self.exclude_products and line.product_id in self.exclude_products)
            or (self.exclude_categories and line.category in self.exclude_categories)
            or (self.exclude_departments and line.department in self.exclude_departments)
            or (self.exclude_types and line.type in self.exclude_types)
            or (self.exclude_brands and line.brand in self.exclude_brands)
        )

    def matching(self, lines: Sequence[ReceiptLine]) -> list[int]:
        """Indexes of the ``lines`` this selector matches (``matches``, one pass without a
        call per line)."""
        if self.is_all:
            found = list(range(len(lines)))
        else:
            products, departments, categories, types, brands = (
                self.products,
                self.departments,
                self.categories,
                self.types,
                self.brands,
            )
            found = [
                i
                for i, line in enumerate(lines)
                if line.product_id in products
                or line.department in departments
                or line.category in categories
                or line.type in types
                or line.brand in brands
            ]
        return self.not_excluded(lines, found) if self.has_exclusions else found

    def not_excluded(self, lines: Sequence[ReceiptLine], indexes: Iterable[int]) -> list[int]:
        """Those of ``indexes`` whose line no exclusion list names (``excludes``, one pass per
        exclusion list instead of a call per line: a category-wide rule minus one product is
        asked this for every line of every receipt)."""
        kept = list(indexes)
        if self.exclude_products:
            names = self.exclude_products
            kept = [i for i in kept if lines[i].product_id not in names]
        if self.exclude_categories:
            names = self.exclude_categories
            kept = [i for i in kept if lines[i].category not in names]
        if self.exclude_departments:
            names = self.exclude_departments
            kept = [i for i in kept if lines[i].department not in names]
        if self.exclude_types:
            names = self.exclude_types
            kept = [i for i in kept if lines[i].type not in names]
        if self.exclude_brands:
            names = self.exclude_brands
            kept = [i for i in kept if lines[i].brand not in names]
        return kept

    def index_keys(self) -> tuple[tuple[str, str], ...] | None:
        """Keys a line must share for this selector to match it; ``None``: any line may match."""
        if self.is_all:
            return None
        return tuple(
            (name, value) for name in _FIELDS for value in sorted(getattr(self, name)) if value
        )


ALL_GOODS = GoodsSelector()


def parse_goods(reader: FieldReader, key: str = "goods") -> GoodsSelector:
    """Read an optional goods selector object: include-lists and ``exclude_*`` lists."""
    sub = reader.child(key)
    if sub is None:
        return ALL_GOODS
    values = {name: frozenset(sub.str_list(name)) for name in _FIELDS}
    excluded = {f"exclude_{name}": frozenset(sub.str_list(f"exclude_{name}")) for name in _FIELDS}
    return GoodsSelector(**values, **excluded)
