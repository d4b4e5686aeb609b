"""Personal offers: a customer's percent off named products, read from a request body.

A body replaces the customer's whole set (`PUT /v1/customers/{customer_id}/offers`). Each offer
is one product at `percent` off (a rate: Decimal, 0 < percent <= 100, at most two decimals),
optionally limited to [valid_from, valid_to) and tagged with where it came from (`model` for a
recommender's output, `manual` for a marketer's hand). Cards carry the offers down the master
feed, and the register's engine applies them through a `personal_offers` promotion.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from center.errors import InvalidRequest

__all__ = ["MAX_OFFERS", "OfferInput", "format_percent", "parse_offers"]

MAX_OFFERS = 100
"""Offers one customer may hold: a card row carries all of them to every store."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_PRODUCT = re.compile(r"^[^\x00-\x1f]{1,64}$")
_SOURCE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_FIELDS = ("offer_id", "product_id", "percent", "valid_from", "valid_to", "source")
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class OfferInput:
    """One personal offer as asked for."""

    offer_id: str
    product_id: str
    percent: Decimal
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    source: str = "manual"


def format_percent(value: Decimal) -> str:
    """The canonical text of a percent: no exponent, no trailing zeros ("15", "12.5")."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _percent(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(field, f"expected a number or a decimal string, got {value!r}")
    try:
        rate = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest(field, f"expected a decimal percent, got {value!r}") from None
    if not rate.is_finite() or not Decimal(0) < rate <= _HUNDRED:
        raise InvalidRequest(field, f"expected 0 < percent <= 100, got {value!r}")
    if rate != rate.quantize(Decimal("0.01")):
        raise InvalidRequest(field, f"expected at most two decimals, got {value!r}")
    return rate


def _time(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidRequest(field, f"expected an ISO 8601 time with offset, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            field, f"expected an ISO 8601 time with offset, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidRequest(field, f"time {value!r} has no UTC offset; add one (e.g. +00:00)")
    return parsed.astimezone(UTC)


def _offer(item: Any, index: int) -> OfferInput:
    where = f"body.offers[{index}]"
    if not isinstance(item, Mapping):
        raise InvalidRequest(where, f"expected an object, got {type(item).__name__}")
    extra = sorted(set(item) - set(_FIELDS))
    if extra:
        raise InvalidRequest(f"{where}.{extra[0]}", f"unknown field; expected {list(_FIELDS)}")
    product_id = item.get("product_id")
    if not isinstance(product_id, str) or not _PRODUCT.match(product_id):
        raise InvalidRequest(f"{where}.product_id", f"expected a product id, got {product_id!r}")
    offer_id = item.get("offer_id", product_id)
    if not isinstance(offer_id, str) or not _ID.match(offer_id):
        raise InvalidRequest(
            f"{where}.offer_id", f"expected 1..64 letters, digits or ._:-, got {offer_id!r}"
        )
    if "percent" not in item:
        raise InvalidRequest(f"{where}.percent", "required")
    percent = _percent(item["percent"], f"{where}.percent")
    valid_from = _time(item.get("valid_from"), f"{where}.valid_from")
    valid_to = _time(item.get("valid_to"), f"{where}.valid_to")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise InvalidRequest(
            f"{where}.valid_to",
            f"{item['valid_to']!r} is not after valid_from {item['valid_from']!r}",
        )
    source = item.get("source", "manual")
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise InvalidRequest(
            f"{where}.source",
            f"expected a short lowercase name such as 'model' or 'manual', got {source!r}",
        )
    return OfferInput(offer_id, product_id, percent, valid_from, valid_to, source)


def parse_offers(body: Any) -> tuple[OfferInput, ...]:
    """The offers of `{"offers": [...]}`; InvalidRequest naming the first bad field."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("body", f"expected a JSON object, got {type(body).__name__}")
    extra = sorted(set(body) - {"offers"})
    if extra:
        raise InvalidRequest(f"body.{extra[0]}", "unknown field; expected ['offers']")
    items = body.get("offers")
    if not isinstance(items, list):
        raise InvalidRequest("body.offers", f"expected a list, got {type(items).__name__}")
    if len(items) > MAX_OFFERS:
        raise InvalidRequest(
            "body.offers", f"{len(items)} offers; a customer may hold at most {MAX_OFFERS}"
        )
    offers = tuple(_offer(item, i) for i, item in enumerate(items))
    seen: dict[str, int] = {}
    for i, offer in enumerate(offers):
        if offer.offer_id in seen:
            raise InvalidRequest(
                f"body.offers[{i}].offer_id",
                f"offer_id {offer.offer_id!r} repeats offers[{seen[offer.offer_id]}]; "
                "give each offer of a product its own offer_id",
            )
        seen[offer.offer_id] = i
    return offers
