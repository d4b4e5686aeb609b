"""Small factories for Center tests: valid sales, master rows and configs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sync_protocol import LineDiscount, LoyaltyMovement, Payment, Sale, SaleLine

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CARD = "2900000000013"
OTHER_CARD = "2900000000020"


def make_sale(
    seq: int,
    *,
    register_id: str = "367-1",
    store_id: str = "367",
    sale_id: str | None = None,
    card_no: str | None = None,
    amounts: tuple[int, ...] = (250, 199),
    discount: int = 0,
    accrue: int = 0,
    spend: int = 0,
    active_from: datetime | None = None,
    expires_at: datetime | None = None,
) -> Sale:
    """A consistent sale: lines, a discount on line 1, payments equal to the total."""
    lines = tuple(
        SaleLine(
            line_no=i + 1,
            product_id=str(1000 + i),
            qty_milli=1000,
            unit_price_minor=amount,
            amount_minor=amount,
            discounts=(LineDiscount("threshold-5-10", discount),) if discount and i == 0 else (),
        )
        for i, amount in enumerate(amounts)
    )
    subtotal = sum(amounts)
    total = subtotal - discount
    loyalty: list[LoyaltyMovement] = []
    if accrue:
        loyalty.append(
            LoyaltyMovement("bonus", "accrue", accrue, "base-accrual-3", active_from, expires_at)
        )
    if spend:
        loyalty.append(LoyaltyMovement("bonus", "spend", spend))
    payments = [Payment("bonus", spend)] if spend else []
    payments.append(Payment("cash", total - spend))
    closed = T0 + timedelta(minutes=seq)
    return Sale(
        sale_id=sale_id or str(uuid.uuid4()),
        store_id=store_id,
        register_id=register_id,
        seq=seq,
        opened_at=closed - timedelta(minutes=1),
        closed_at=closed,
        card_no=card_no,
        lines=lines,
        payments=tuple(payments),
        loyalty=tuple(loyalty),
        subtotal_minor=subtotal,
        discount_minor=discount,
        total_minor=total,
        promo_version=1,
    )


def master_tables() -> dict[str, list[dict[str, Any]]]:
    """A tiny master data set: 3 products, 2 stores (one with an assortment), 2 cards."""
    return {
        "products": [
            {"product_id": "1000", "name": "Milk", "department": "DAIRY", "price_minor": 250},
            {"product_id": "1001", "name": "Bread", "department": "PASTRY", "price_minor": 199},
            {"product_id": "1002", "name": "Apples", "weighed": True, "price_minor": None},
        ],
        "stores": [
            {"store_id": "367", "name": "Store 367", "timezone": "America/Chicago"},
            {"store_id": "406", "name": "Store 406", "timezone": "America/Chicago"},
        ],
        "store_products": [
            {"store_id": "367", "product_id": "1000"},
            {"store_id": "367", "product_id": "1002"},
        ],
        "customers": [
            {"customer_id": "hh-1", "attributes": {"age": "65+"}},
            {"customer_id": "hh-2"},
        ],
        "cards": [
            {"card_no": CARD, "customer_id": "hh-1"},
            {"card_no": OTHER_CARD, "customer_id": "hh-2", "status": "blocked"},
        ],
        "promotions": [
            {"promotion_id": "base-accrual-3", "doc": {"promotion_id": "base-accrual-3", "x": 1}}
        ],
        "settings": [{"name": "bonus_max_share", "value": "0.5"}],
    }


def write_config(
    folder: Path,
    *,
    backend: str = "sqlite",
    dsn: str = "",
    port: int = 0,
    extra: str = "",
    signatures: bool = False,
    verify: bool = False,
) -> Path:
    """A center.toml in `folder` with data under folder/data (signatures off unless asked).

    Sale verification is off unless asked: most tests ingest hand-made sales whose loyalty no
    promotion gives, to test what the ledger does with it."""
    path = folder / "center.toml"
    path.write_text(
        "[center]\n"
        'node_id = "center-test"\n'
        'listen_host = "127.0.0.1"\n'
        f"listen_port = {port}\n"
        'data_dir = "data"\n\n'
        "[storage]\n"
        f'backend = "{backend}"\n'
        'sqlite_path = "center.db"\n'
        f'dsn = "{dsn}"\n'
        "\n[security]\n"
        f"require_signatures = {'true' if signatures else 'false'}\n"
        + ("" if verify else "\n[verify]\nenabled = false\n")
        + extra
    )
    return path
