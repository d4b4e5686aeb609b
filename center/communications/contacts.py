"""A bulk load of customers' contacts and consents, JSON rows or a CSV file, checked line by
line before anything is written (pure: the caller loads all of it or nothing)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from center.communications.model import CHANNELS, PURPOSES, Consent
from center.communications.rules import normal_address, normal_email, normal_phone
from center.communications.templates import LANGUAGES
from center.errors import InvalidLines, MalformedRequest

__all__ = ["CONTACT_FIELDS", "MAX_CONTACT_ROWS", "ContactRow", "parse_contacts", "read_csv"]

MAX_CONTACT_ROWS = 10_000
CONTACT_FIELDS = (
    "email",
    "phone",
    "lang",
    "first_name",
    "timezone",
    "birth_date",
    "preferred_channel",
    "webpush",
    "fcm_token",
)
"""Contact attributes a load may set; an empty value clears the attribute."""
_CONSENT_COLUMNS = tuple(f"{c}_{p}" for c in CHANNELS for p in PURPOSES)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
"""A customer id (the web shell's ID_PATTERN; this module stays free of HTTP)."""
_YES, _NO = frozenset({"yes", "true", "1"}), frozenset({"no", "false", "0"})


@dataclass(frozen=True, slots=True)
class ContactRow:
    """One customer's new contact attributes and consent changes (channel, purpose, granted)."""

    customer_id: str
    attributes: Mapping[str, str]
    consents: tuple[tuple[str, str, bool], ...] = field(default=())


def read_csv(data: bytes) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV file with a header row: customer_id, any of CONTACT_FIELDS and
    consent columns `<channel>_<purpose>` (yes / no / empty)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedRequest("body", f"not UTF-8 at byte {exc.start}") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    known = {"customer_id", *CONTACT_FIELDS, *_CONSENT_COLUMNS}
    header = reader.fieldnames or []
    if "customer_id" not in header:
        raise MalformedRequest("line 1", "the header row needs a customer_id column")
    unknown = [name for name in header if name not in known]
    if unknown:
        raise MalformedRequest(f"line 1: {unknown[0]}", f"unknown column (known: {sorted(known)})")
    rows = []
    for row in reader:
        if None in row:
            raise MalformedRequest(f"line {reader.line_num}", "more values than columns")
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def _consents_of(row: Mapping[str, Any], where: str, problems: list[dict[str, Any]]) -> list:
    found: list[tuple[str, str, bool]] = []
    raw = row.get("consents")
    if raw is not None:  # JSON: {"email": {"advertising": true}}
        if not isinstance(raw, Mapping):
            problems.append({"where": f"{where}.consents", "message": "expected an object"})
            return found
        for channel, purposes in raw.items():
            if channel not in CHANNELS or not isinstance(purposes, Mapping):
                problems.append(
                    {
                        "where": f"{where}.consents.{channel}",
                        "message": f"expected one of {CHANNELS}",
                    }
                )
                continue
            for purpose, granted in purposes.items():
                if purpose not in PURPOSES or not isinstance(granted, bool):
                    problems.append(
                        {
                            "where": f"{where}.consents.{channel}.{purpose}",
                            "message": f"expected a purpose of {PURPOSES} set to true or false",
                        }
                    )
                    continue
                found.append((channel, purpose, granted))
    for column in _CONSENT_COLUMNS:  # CSV: email_advertising = yes / no / empty
        value = row.get(column)
        if value is None or value == "":
            continue
        text = str(value).strip().casefold()
        if text not in _YES | _NO:
            problems.append({"where": f"{where}.{column}", "message": "expected yes, no or empty"})
            continue
        channel, _, purpose = column.partition("_")
        found.append((channel, purpose, text in _YES))
    return found


def _attribute(name: str, value: Any) -> str | None:
    """The stored form of one contact attribute, or None when the value is not acceptable."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if value == "":
        return ""
    if name == "email":
        return normal_email(value)
    if name == "phone":
        return normal_phone(value) and value
    if name == "lang":
        return value if value in LANGUAGES else None
    if name == "birth_date":
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            return None
    if name == "preferred_channel":
        return value if value in CHANNELS else None
    if name in ("webpush", "fcm_token"):
        return normal_address("webpush" if name == "webpush" else "fcm", value)
    if name == "timezone":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            return None
        return value
    return value if len(value) <= 100 else None


_EXPECTED = {
    "email": "an e-mail address",
    "phone": "a phone number in international form",
    "lang": f"one of {', '.join(LANGUAGES)}",
    "first_name": "up to 100 characters",
    "timezone": "an IANA time zone such as Europe/Moscow",
    "birth_date": "a date YYYY-MM-DD",
    "preferred_channel": f"one of {', '.join(CHANNELS)}",
    "webpush": "a push subscription: {endpoint, keys: {p256dh, auth}} as JSON",
    "fcm_token": "an FCM registration token",
}


def parse_contacts(rows: Sequence[Any], *, csv_lines: bool) -> list[ContactRow]:
    """Checked rows; InvalidLines listing every bad line and field (CSV lines count from 2,
    after the header; JSON rows are `rows[i]`)."""
    if not 0 < len(rows) <= MAX_CONTACT_ROWS:
        raise MalformedRequest("rows", f"expected 1..{MAX_CONTACT_ROWS} rows, got {len(rows)}")
    problems: list[dict[str, Any]] = []
    found: list[ContactRow] = []
    seen: dict[str, str] = {}
    for i, row in enumerate(rows):
        where = f"line {i + 2}" if csv_lines else f"rows[{i}]"
        if not isinstance(row, Mapping):
            problems.append({"where": where, "message": "expected an object"})
            continue
        extra = sorted(set(row) - {"customer_id", "consents", *CONTACT_FIELDS, *_CONSENT_COLUMNS})
        for name in extra:
            problems.append({"where": f"{where}.{name}", "message": "unknown field"})
        customer_id = row.get("customer_id")
        if not isinstance(customer_id, str) or not _ID.match(customer_id):
            problems.append({"where": f"{where}.customer_id", "message": "expected a customer id"})
            continue
        if customer_id in seen:
            problems.append(
                {
                    "where": f"{where}.customer_id",
                    "message": f"{customer_id!r} already given at {seen[customer_id]}",
                }
            )
            continue
        seen[customer_id] = where
        attributes: dict[str, str] = {}
        for name in CONTACT_FIELDS:
            if name not in row:
                continue
            value = _attribute(name, row[name])
            if value is None:
                problems.append(
                    {"where": f"{where}.{name}", "message": f"expected {_EXPECTED[name]}"}
                )
            else:
                attributes[name] = value
        consents = _consents_of(row, where, problems)
        found.append(ContactRow(customer_id, attributes, tuple(consents)))
    if problems:
        raise _invalid(problems)
    return found


def _invalid(problems: Sequence[Mapping[str, Any]]) -> InvalidLines:
    first = problems[0]
    return InvalidLines(str(first["where"]), str(first["message"]), problems[:1000])


def unknown_customers(rows: Iterable[ContactRow], known: Iterable[str], *, csv_lines: bool) -> None:
    """InvalidLines naming every row whose customer the Center does not know."""
    held = set(known)
    problems = [
        {
            "where": f"line {i + 2}.customer_id" if csv_lines else f"rows[{i}].customer_id",
            "message": f"unknown customer {r.customer_id!r}",
        }
        for i, r in enumerate(rows)
        if r.customer_id not in held
    ]
    if problems:
        raise _invalid(problems)


def consents_of(
    rows: Iterable[ContactRow], source: str, evidence: str, now: datetime
) -> list[Consent]:
    """The consent records of a load, each with the load's source and evidence."""
    return [
        Consent(r.customer_id, channel, purpose, granted, source, evidence, now)
        for r in rows
        for channel, purpose, granted in r.consents
    ]
