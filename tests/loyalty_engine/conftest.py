"""Factories for receipts and promotion documents."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from loyalty_engine import Receipt, ReceiptLine

# A Saturday, noon UTC.
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

MakeReceipt = Callable[..., Receipt]
MakeDoc = Callable[..., dict[str, Any]]


@pytest.fixture
def make_receipt() -> MakeReceipt:
    """Build a receipt from line amounts (each line one unit at that price)."""

    def make(*amounts: int, **fields: Any) -> Receipt:
        lines = tuple(
            ReceiptLine(
                line_no=i + 1,
                product_id=f"P{i + 1}",
                qty_milli=1000,
                unit_price_minor=a,
                amount_minor=a,
            )
            for i, a in enumerate(amounts)
        )
        fields.setdefault("now", NOW)
        fields.setdefault("store_id", "S1")
        return Receipt(lines=lines, **fields)

    return make


@pytest.fixture
def accrual_doc() -> MakeDoc:
    """An active ``accrual_percent`` document, overridable field by field."""

    def make(**fields: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "promotion_id": "A3",
            "kind": "accrual_percent",
            "status": "active",
            "priority": 100,
            "requires_card": True,
            "percent": "3",
        }
        doc.update(fields)
        return doc

    return make


@pytest.fixture
def threshold_doc() -> MakeDoc:
    """An active ``threshold_discount`` document: 5 % from 5 000, 10 % from 10 000."""

    def make(**fields: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "promotion_id": "T5",
            "kind": "threshold_discount",
            "status": "active",
            "priority": 10,
            "steps": [
                {"min_total_minor": 5000, "percent": "5"},
                {"min_total_minor": 10000, "percent": "10"},
            ],
        }
        doc.update(fields)
        return doc

    return make
