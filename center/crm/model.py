"""Customers and cards for the call center: request validation and search-key normalisation."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from center.errors import MalformedRequest
from sync_protocol import DEFAULT_CARD_RULE, CardRule, MalformedMessage, check_card_no

__all__ = [
    "CARD_TYPES",
    "PROFILE_FIELDS",
    "CustomerInput",
    "SearchQuery",
    "new_card_no",
    "parse_card_issue",
    "parse_customer",
    "parse_merge",
    "parse_reason",
    "parse_replace",
    "parse_search",
    "search_keys",
]

PROFILE_FIELDS = ("last_name", "first_name", "middle_name", "phone", "email")
"""Attributes with their own search keys; every other attribute is free."""
CARD_TYPES = ("physical", "electronic")
MAX_TEXT = 200
MAX_ATTRIBUTES = 50
MAX_QUERY = 100
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_WILDCARDS = re.compile(r"[%_\\]")


@dataclass(frozen=True, slots=True)
class CustomerInput:
    """A validated new customer: its id (None: the Center makes one) and attributes."""

    customer_id: str | None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Normalised search terms: name word prefixes, e-mail prefix, phone digits, card prefix."""

    words: tuple[str, ...] = ()
    email: str = ""
    digits: str = ""


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    return body


def _text(body: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise MalformedRequest(f"body.{name}", "required")
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT or not value.strip():
        raise MalformedRequest(f"body.{name}", f"expected text of 1..{MAX_TEXT} characters")
    return value.strip()


def _id(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise MalformedRequest(f"body.{name}", "required")
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise MalformedRequest(
            f"body.{name}", f"expected 1..64 letters, digits or ._:-, got {str(value)[:80]!r}"
        )
    return value


def _unknown(body: Mapping[str, Any], known: tuple[str, ...]) -> None:
    extra = sorted(set(body) - set(known))
    if extra:
        raise MalformedRequest(f"body.{extra[0]}", "unknown field")


def parse_customer(body: Any) -> CustomerInput:
    """A new customer from a JSON body; MalformedRequest names the first bad field."""
    body = _object(body)
    _unknown(body, ("customer_id", *PROFILE_FIELDS, "attributes"))
    customer_id = _id(body, "customer_id")
    profile = {name: _text(body, name, required=name == "last_name") for name in PROFILE_FIELDS}
    phone = profile["phone"]
    if phone and (not re.fullmatch(r"[0-9 +()\-]+", phone) or len(_digits(phone)) < 5):
        raise MalformedRequest("body.phone", f"expected at least 5 digits, got {phone[:80]!r}")
    if profile["email"] and not _EMAIL.match(profile["email"]):
        raise MalformedRequest("body.email", f"not an e-mail address: {profile['email'][:80]!r}")
    free = body.get("attributes", {})
    if not isinstance(free, Mapping) or len(free) > MAX_ATTRIBUTES:
        raise MalformedRequest(
            "body.attributes", f"expected an object of at most {MAX_ATTRIBUTES} attributes"
        )
    for key, value in free.items():
        where = f"body.attributes.{str(key)[:40]}"
        if key in PROFILE_FIELDS or not 1 <= len(key) <= 64:
            raise MalformedRequest(where, "reserved or bad attribute name")
        ok = value is None or isinstance(value, bool | int)
        if not ok and not (isinstance(value, str) and len(value) <= MAX_TEXT):
            raise MalformedRequest(where, f"expected text (≤{MAX_TEXT}), integer, bool or null")
    attributes = {**free, **{k: v for k, v in profile.items() if v}}
    return CustomerInput(customer_id=customer_id, attributes=attributes)


def parse_card_issue(body: Any, rule: CardRule = DEFAULT_CARD_RULE) -> tuple[str, str | None, str]:
    """(customer_id, card_no or None, card type) of a card to issue; the card number
    normalised and in the chain's format `rule`."""
    body = _object(body)
    _unknown(body, ("customer_id", "card_no", "type"))
    customer_id = _id(body, "customer_id", required=True)
    assert customer_id is not None
    card_type = body.get("type", "physical")
    if card_type not in CARD_TYPES:
        raise MalformedRequest("body.type", f"expected one of {CARD_TYPES}, got {card_type!r}")
    return customer_id, _card_no(body, "card_no", rule), card_type


def parse_reason(body: Any) -> str:
    """The reason of a block."""
    body = _object(body)
    _unknown(body, ("reason",))
    reason = _text(body, "reason", required=True)
    if reason == "replaced":
        raise MalformedRequest("body.reason", "'replaced' is set only by a replacement")
    return reason


def parse_merge(body: Any) -> tuple[str, str]:
    """(merged_id, reason or "") of a merge into the customer of the path."""
    body = _object(body)
    _unknown(body, ("merged_id", "reason"))
    merged_id = _id(body, "merged_id", required=True)
    assert merged_id is not None
    return merged_id, _text(body, "reason")


def parse_replace(body: Any, rule: CardRule = DEFAULT_CARD_RULE) -> str | None:
    """The wanted replacement card number (normalised, in the format `rule`), or None for a
    generated one."""
    body = _object(body)
    _unknown(body, ("new_card_no",))
    return _card_no(body, "new_card_no", rule)


def _card_no(body: Mapping[str, Any], name: str, rule: CardRule) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return check_card_no(value, rule, where=f"body.{name}")
    except MalformedMessage as exc:
        raise MalformedRequest(f"body.{name}", exc.problem) from exc


def new_card_no() -> str:
    """A fresh 13-digit card number (prefix 29, EAN-13 check digit)."""
    body = "29" + "".join(secrets.choice("0123456789") for _ in range(10))
    weighted = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - weighted % 10) % 10)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def search_keys(attributes: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    """(last, first, middle name, reversed phone digits, e-mail), case-folded, for the index."""

    def text(name: str) -> str:
        value = attributes.get(name)
        return value.casefold() if isinstance(value, str) else ""

    return (
        text("last_name"),
        text("first_name"),
        text("middle_name"),
        _digits(text("phone"))[::-1],
        text("email"),
    )


def parse_search(q: str | None) -> SearchQuery:
    """Classify a call-center query: e-mail (has @), digits (phone suffix / card prefix), names."""
    if q is None or not q.strip():
        raise MalformedRequest("q", "required query parameter is missing")
    if len(q) > MAX_QUERY:
        raise MalformedRequest("q", f"at most {MAX_QUERY} characters")
    text = _WILDCARDS.sub("", q.strip().casefold())
    if "@" in text:
        return SearchQuery(email=text)
    if re.fullmatch(r"[0-9 +()\-]+", text):
        digits = _digits(text)
        if len(digits) < 3:
            raise MalformedRequest("q", "give at least 3 digits of a phone or card number")
        return SearchQuery(digits=digits)
    words = tuple(w for w in text.split() if w)[:3]
    if not words:
        raise MalformedRequest("q", "nothing to search for")
    return SearchQuery(words=words)
