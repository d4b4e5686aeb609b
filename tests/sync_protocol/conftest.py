"""Factories for sync_protocol tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from sync_protocol import LineDiscount, LoyaltyMovement, Payment, Sale, SaleLine

T0 = datetime(2024, 5, 17, 9, 30, 15, 250000, tzinfo=UTC)


def build_sale(**overrides: Any) -> Sale:
    """Return a consistent sale (totals, payments) with every kind of part; override any field."""
    lines = overrides.pop(
        "lines",
        (
            SaleLine(1, "4600001", 2000, 8990, 17980, (LineDiscount("promo-10pct", 1798),)),
            SaleLine(2, "2000123", 1250, 39900, 49875, (), weighed=True),
            SaleLine(3, "unknown-77", 1000, 1500, 1500, known_product=False),
        ),
    )
    subtotal = sum(line.amount_minor for line in lines)
    discount = sum(d.amount_minor for line in lines for d in line.discounts)
    total = subtotal - discount
    fields: dict[str, Any] = {
        "sale_id": "0b7e6a7c-3f5d-4e0a-9a51-2f4c8d1e6b90",
        "store_id": "367",
        "register_id": "367-1",
        "seq": 42,
        "opened_at": T0,
        "closed_at": T0.replace(minute=31),
        "card_no": "2770000012345",
        "lines": lines,
        "payments": (Payment("bonus", 5000), Payment("card", total - 5000)),
        "loyalty": (
            LoyaltyMovement("bonus", "spend", 5000),
            LoyaltyMovement(
                "bonus",
                "accrue",
                675,
                "accrual-1pct",
                active_from=T0.replace(day=31),
                expires_at=T0.replace(year=2025),
            ),
        ),
        "subtotal_minor": subtotal,
        "discount_minor": discount,
        "total_minor": total,
        "promo_version": 7,
        "prev_hash": "9f" * 32,
        "messages": ("You saved 17.98", "Bonus balance: 1 234"),
    }
    fields.update(overrides)
    return Sale(**fields)


@pytest.fixture
def make_sale() -> Callable[..., Sale]:
    """Factory fixture: make_sale(**overrides) -> Sale."""
    return build_sale
