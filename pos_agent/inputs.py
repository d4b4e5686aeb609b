"""Turn request bodies of the register software into typed inputs, naming any bad field.

Strict on purpose: an unknown key is refused (a typo such as "qty" would otherwise sell
a line at the wrong quantity), integers must be JSON integers (never 3.0 or "3").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pos_agent.certificates import CERTIFICATE_METHOD, certificate_code
from pos_agent.errors import InvalidField, MalformedRequest, UnsupportedMediaType
from pos_agent.receipts import MAX_LINES, LineInput, PaymentInput
from sync_protocol import MAX_ID_LEN, MalformedMessage, check_card_no, load_json

__all__ = [
    "MAX_BODY_BYTES",
    "Pricing",
    "card_no_of",
    "parse_body",
    "parse_calculate",
    "parse_card",
    "parse_certificate",
    "parse_confirm",
    "parse_coupon",
    "parse_coupon_code",
    "parse_empty",
    "parse_line_no",
    "parse_lines",
]

MAX_BODY_BYTES = 1024 * 1024
MAX_QTY_MILLI = 1_000_000_000  # a million units: anything larger is a scanner or typing error
MAX_PRICE_MINOR = 10_000_000_000
# Bounding each line keeps a full receipt's sums far inside msgpack's int64.
MAX_LINE_AMOUNT_MINOR = 10_000_000_000_000
MAX_ID_CHARS = MAX_ID_LEN
MAX_PAYMENTS = 32
MAX_WALLETS = 16
MAX_WALLET_CHARS = 32

_JSON_TYPES = ("application/json", "text/json")


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_body(body: bytes, content_type: str | None) -> Any:
    """Decode a JSON body (an empty body counts as {}); MalformedRequest if it is not JSON."""
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in _JSON_TYPES and not media.endswith("+json"):
            raise UnsupportedMediaType(
                f"Content-Type: expected application/json, got {content_type!r}"
            )
    if not body.strip():
        return {}
    try:
        return load_json(body, root="body")
    except MalformedMessage as exc:
        raise MalformedRequest(str(exc)) from exc


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _object(value: Any, path: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
    where = path or "body"
    if not isinstance(value, dict):
        raise InvalidField(where, f"expected a JSON object, got {_show(value)}")
    for key in value:
        if key not in allowed:
            raise InvalidField(
                _join(path, key), f"unknown field (allowed: {', '.join(sorted(allowed))})"
            )
    for key in sorted(required):
        if key not in value:
            raise InvalidField(_join(path, key), "missing")
    return value


def _int(value: Any, path: str, *, lo: int, hi: int) -> int:
    what = "a positive integer" if lo == 1 else "a non-negative integer"
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InvalidField(path, f"expected {what}, got {_show(value)}")
    if value > hi:
        raise InvalidField(path, f"{value} is larger than the maximum {hi}")
    return value


def _text(value: Any, path: str, *, max_chars: int = MAX_ID_CHARS) -> str:
    if not isinstance(value, str):
        raise InvalidField(path, f"expected a string, got {_show(value)}")
    if not value.strip() or len(value) > max_chars or not value.isprintable():
        raise InvalidField(
            path, f"expected 1..{max_chars} printable characters, got {_show(value)}"
        )
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidField(path, f"expected true or false, got {_show(value)}")
    return value


_LINE_KEYS = {
    "product_id",
    "qty_milli",
    "unit_price_minor",
    "amount_minor",
    "weighed",
    "certificate_code",
}


def _line(value: Any, path: str) -> LineInput:
    doc = _object(value, path, _LINE_KEYS, {"product_id", "qty_milli"})
    product_id = _text(doc["product_id"], _join(path, "product_id"))
    qty = _int(doc["qty_milli"], _join(path, "qty_milli"), lo=1, hi=MAX_QTY_MILLI)
    price: int | None = None
    if doc.get("unit_price_minor") is not None:  # absent: the shelf price from master data
        price = _int(
            doc["unit_price_minor"], _join(path, "unit_price_minor"), lo=0, hi=MAX_PRICE_MINOR
        )
    amount = doc.get("amount_minor")
    if amount is not None:
        amount = _int(amount, _join(path, "amount_minor"), lo=0, hi=MAX_LINE_AMOUNT_MINOR)
    elif price is not None:
        check_line_amount(qty, price, _join(path, "qty_milli"))
    weighed = _bool(doc.get("weighed", False), _join(path, "weighed"))
    certificate = ""
    if doc.get("certificate_code") is not None:
        certificate = certificate_code(doc["certificate_code"], _join(path, "certificate_code"))
        if qty != 1000 or weighed:
            raise InvalidField(
                _join(path, "qty_milli"), "a certificate line sells exactly one certificate (1000)"
            )
    return LineInput(product_id, qty, price, amount, weighed, certificate)


def check_line_amount(qty_milli: int, price: int, field: str) -> None:
    """InvalidField naming `field` when the line's amount would pass the maximum."""
    if qty_milli * price // 1000 > MAX_LINE_AMOUNT_MINOR:
        raise InvalidField(
            field,
            f"{qty_milli} milli-units at {price} make a line larger than the maximum "
            f"{MAX_LINE_AMOUNT_MINOR}",
        )


def parse_lines(body: Any) -> list[LineInput]:
    """One line object, or {"lines": [...]} (all of them valid, or none taken)."""
    if isinstance(body, dict) and "lines" in body:
        doc = _object(body, "", {"lines"}, {"lines"})
        items = doc["lines"]
        if not isinstance(items, list) or not items:
            raise InvalidField("lines", f"expected a non-empty list of lines, got {_show(items)}")
        if len(items) > MAX_LINES:
            raise InvalidField("lines", f"{len(items)} lines is more than {MAX_LINES}")
        return [_line(item, f"lines[{index}]") for index, item in enumerate(items)]
    return [_line(body, "")]


def parse_card(body: Any) -> str:
    """{"card_no": str} -> the card number, trimmed and checked (sync_protocol.check_card_no)."""
    doc = _object(body, "", {"card_no"}, {"card_no"})
    return card_no_of(doc["card_no"])


def parse_identification(body: Any) -> tuple[str, str]:
    """{"card_no": str} or {"qr": str} (an electronic card's rotating QR payload) ->
    ("card_no", the checked number) or ("qr", the payload, checked by the register)."""
    if isinstance(body, dict) and "qr" in body:
        doc = _object(body, "", {"qr"}, {"qr"})
        payload = doc["qr"]
        if not isinstance(payload, str) or not payload or len(payload) > 200:
            raise InvalidField("qr", "expected the QR payload the customer's phone shows")
        return "qr", payload
    return "card_no", parse_card(body)


def card_no_of(value: Any, field: str = "card_no") -> str:
    """The one card-number rule at the register: trimmed, digits, the chain's format."""
    try:
        return check_card_no(value, where=field)
    except MalformedMessage as exc:
        raise InvalidField(field, exc.problem) from exc


MAX_COUPON_CHARS = 64


def parse_coupon(body: Any) -> str:
    """{"code": str} -> the code, trimmed and upper-cased as the engine compares codes."""
    doc = _object(body, "", {"code"}, {"code"})
    return _text(doc["code"], "code", max_chars=MAX_COUPON_CHARS).strip().upper()


def parse_coupon_code(text: str) -> str:
    """The {code} path segment, normalised like parse_coupon."""
    return _text(text, "code", max_chars=MAX_COUPON_CHARS).strip().upper()


def _bonus(doc: Mapping[str, Any]) -> int:
    return _int(doc.get("bonus_to_spend", 0), "bonus_to_spend", lo=0, hi=MAX_LINE_AMOUNT_MINOR)


@dataclass(frozen=True, slots=True)
class Pricing:
    """What a calculate or confirm asks besides the receipt: wallet spends and tenders."""

    bonus_to_spend: int = 0
    spend: Mapping[str, int] = field(default_factory=dict)
    """Units to spend from wallets other than bonus (stickers, compliments...), none zero."""
    payments: list[PaymentInput] = field(default_factory=list)


def _spend(doc: Mapping[str, Any]) -> tuple[int, dict[str, int]]:
    """(bonus_to_spend, other wallets) of `bonus_to_spend` and `spend` {wallet: units}."""
    bonus = _bonus(doc)
    raw = doc.get("spend", {})
    if not isinstance(raw, dict):
        raise InvalidField("spend", f"expected an object of wallet: units, got {_show(raw)}")
    if len(raw) > MAX_WALLETS:
        raise InvalidField("spend", f"{len(raw)} wallets is more than {MAX_WALLETS}")
    wallets: dict[str, int] = {}
    for wallet, units in raw.items():
        name = _text(wallet, "spend", max_chars=MAX_WALLET_CHARS)
        path = f"spend.{name}"
        amount = _int(units, path, lo=0, hi=MAX_LINE_AMOUNT_MINOR)
        if name == "bonus":
            if "bonus_to_spend" in doc and amount != bonus:
                raise InvalidField(
                    path, f"{amount} differs from bonus_to_spend {bonus}: send the bonus once"
                )
            bonus = amount
        elif amount:
            wallets[name] = amount
    return bonus, wallets


def _payments(items: Any) -> list[PaymentInput]:
    if not isinstance(items, list):
        raise InvalidField("payments", f"expected a list of payments, got {_show(items)}")
    if len(items) > MAX_PAYMENTS:
        raise InvalidField("payments", f"{len(items)} payments is more than {MAX_PAYMENTS}")
    payments = []
    for index, item in enumerate(items):
        path = f"payments[{index}]"
        pay = _object(item, path, {"method", "amount_minor"}, {"method", "amount_minor"})
        method = _text(pay["method"], f"{path}.method", max_chars=32)
        if method == "bonus":
            raise InvalidField(
                f"{path}.method", '"bonus" is not a tender here; send bonus_to_spend instead'
            )
        if method == CERTIFICATE_METHOD:
            raise InvalidField(
                f"{path}.method",
                '"certificate" is not a tender here; add it with POST '
                "/v1/receipts/{receipt_id}/certificates",
            )
        amount = _int(
            pay["amount_minor"], f"{path}.amount_minor", lo=0, hi=MAX_LINE_AMOUNT_MINOR * 1000
        )
        payments.append(PaymentInput(method=method, amount_minor=amount))
    return payments


def parse_calculate(body: Any) -> Pricing:
    """{"bonus_to_spend"?: int, "spend"?: {wallet: int}, "payments"?: [tenders so far]}."""
    doc = _object(body, "", {"bonus_to_spend", "spend", "payments"}, set())
    bonus, wallets = _spend(doc)
    return Pricing(bonus, wallets, _payments(doc.get("payments", [])))


def parse_confirm(body: Any) -> Pricing:
    """{"payments": [{"method", "amount_minor"}], "bonus_to_spend"?: int, "spend"?: {...}}."""
    doc = _object(body, "", {"payments", "bonus_to_spend", "spend"}, {"payments"})
    bonus, wallets = _spend(doc)
    return Pricing(bonus, wallets, _payments(doc["payments"]))


def parse_certificate(body: Any) -> tuple[str, int]:
    """{"code": str, "amount_minor": int > 0} -> (code, amount) of a certificate tender."""
    doc = _object(body, "", {"code", "amount_minor"}, {"code", "amount_minor"})
    amount = _int(doc["amount_minor"], "amount_minor", lo=1, hi=MAX_LINE_AMOUNT_MINOR * 1000)
    return certificate_code(doc["code"], "code"), amount


def parse_empty(body: Any) -> None:
    """A body that must be {} (open, cancel)."""
    _object(body, "", set(), set())


def parse_line_no(text: str) -> int:
    """The {line_no} path segment as a positive integer."""
    if not text.isdecimal() or int(text) < 1:
        raise InvalidField("line_no", f"expected a positive integer, got {_show(text)}")
    return int(text)
