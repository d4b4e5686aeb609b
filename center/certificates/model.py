"""Pure rules of gift certificates: request parsing, the state of a code, what a hold may take,
what a return pays back to a certificate; no I/O.

A certificate is sold at a register as a line whose product is the batch's nominal product and
which carries the scanned code (`SaleLine.certificate_code`); the Center activates it when the
sale arrives (never before: a cancelled receipt sends nothing). It is redeemed as a tender
(`Payment("certificate", amount, code=...)`): online the store node holds the amount here first.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from center.errors import InvalidRequest, MalformedRequest, RequestError
from sync_protocol import Payment, Sale

__all__ = [
    "CERTIFICATE_METHOD",
    "MAX_BATCH",
    "MAX_HOLD_TTL_S",
    "STATES",
    "BatchRequest",
    "CertificateHold",
    "CertificateRefused",
    "CertificateView",
    "certificate_payments",
    "check_redeemable",
    "code_of",
    "hold_id_of",
    "new_code",
    "parse_batch",
    "parse_block",
    "parse_commit",
    "parse_hold",
    "parse_release",
    "return_payments",
    "state_of",
]

CERTIFICATE_METHOD = "certificate"
"""The payment method of a certificate tender."""
MAX_BATCH = 10_000
MAX_HOLD_TTL_S = 3600
MAX_CODES_PER_HOLD = 10
STATES = ("issued", "active", "partially_used", "used_up", "expired", "blocked", "returned")
"""issued = printed and sold-inactive until its sale reaches the Center."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_HOLD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,39}$")


class CertificateRefused(RequestError):
    """A certificate cannot pay this amount now (blocked, expired, used up, above the balance,
    held by another store); the message names the code and the balance."""

    kind = "certificate_refused"
    status = 409


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """POST /v1/certificate-batches: `count` codes of one nominal (None: a free amount)."""

    batch_id: str
    title: str
    product_id: str
    nominal_minor: int | None
    count: int
    valid_days: int
    prefix: str


@dataclass(frozen=True, slots=True)
class CertificateHold:
    """POST /v1/certificate-holds: hold exactly `amounts` (code -> minor units) for a receipt."""

    store_id: str
    hold_id: str
    amounts: Mapping[str, int]
    ttl_s: int


@dataclass(frozen=True, slots=True)
class CertificateView:
    """What the rules need of one stored certificate."""

    code: str
    status: str
    """The stored status: issued, active, blocked or returned."""
    balance_minor: int
    initial_minor: int
    expires_at: datetime | None


def code_of(value: Any, field: str) -> str:
    """A certificate code, trimmed and upper-cased; MalformedRequest naming `field` otherwise."""
    if not isinstance(value, str):
        raise InvalidRequest(field, f"expected a certificate code, got {type(value).__name__}")
    code = value.strip().upper()
    if not _CODE.match(code):
        raise InvalidRequest(
            field, f"expected 4..40 letters, digits or '-' (a certificate code), got {value[:48]!r}"
        )
    return code


def new_code(prefix: str) -> str:
    """A fresh random code of a batch (12 digits after the prefix: guessing one is hopeless)."""
    return f"{prefix}-{secrets.randbelow(10**12):012d}"


def state_of(cert: CertificateView, now: datetime) -> str:
    """The state shown to people (one of STATES)."""
    if cert.status in ("issued", "blocked", "returned"):
        return cert.status
    if cert.balance_minor <= 0:
        return "used_up"
    if cert.expires_at is not None and now >= cert.expires_at:
        return "expired"
    return "active" if cert.balance_minor >= cert.initial_minor else "partially_used"


def check_redeemable(
    cert: CertificateView, amount: int, held_elsewhere: int, now: datetime
) -> None:
    """CertificateRefused unless `amount` fits the balance left after other receipts' holds."""
    state = state_of(cert, now)
    if state not in ("active", "partially_used"):
        hint = {
            "issued": "it was never sold (it activates when its sale reaches the Center)",
            "blocked": "it is blocked",
            "returned": "it was returned",
            "used_up": "its balance is 0",
            "expired": f"it expired at {cert.expires_at.isoformat() if cert.expires_at else '?'}",
        }[state]
        raise CertificateRefused("amounts", f"certificate {cert.code} cannot pay: {hint}")
    free = cert.balance_minor - held_elsewhere
    if amount > free:
        raise CertificateRefused(
            f"amounts.{cert.code}",
            f"certificate {cert.code} has {_major(free)} available (balance "
            f"{_major(cert.balance_minor)}), {_major(amount)} asked",
        )


def _major(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def return_payments(
    original: Sale, refund_minor: int, credited_before: Mapping[str, int]
) -> tuple[Payment, ...]:
    """How a return of `refund_minor` is paid back: to the original's certificates first (up to
    what each paid, less what earlier returns credited back), the rest paid out."""
    out: list[Payment] = []
    left = refund_minor
    for payment in original.payments:
        if payment.method != CERTIFICATE_METHOD or not payment.code or left <= 0:
            continue
        room = payment.amount_minor - credited_before.get(payment.code, 0)
        credit = min(room, left)
        if credit > 0:
            out.append(Payment(CERTIFICATE_METHOD, credit, code=payment.code))
            left -= credit
    if left > 0 or not out:
        out.append(Payment("head_office", left))
    return tuple(out)


def certificate_payments(sale: Sale) -> dict[str, int]:
    """code -> amount of a sale's certificate tenders."""
    out: dict[str, int] = {}
    for payment in sale.payments:
        if payment.method == CERTIFICATE_METHOD and payment.code:
            out[payment.code] = out.get(payment.code, 0) + payment.amount_minor
    return out


# -- requests ---------------------------------------------------------------------------------


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    return body


def _known(doc: Mapping[str, Any], known: Sequence[str]) -> None:
    extra = sorted(set(doc) - set(known))
    if extra:
        raise InvalidRequest(f"body.{extra[0]}", f"unknown field; expected {sorted(known)}")


def _int(doc: Mapping[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"body.{name}", f"expected an integer {low}..{high}, got {value!r}")
    return value


def _text(doc: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidRequest(f"body.{name}", f"expected a non-empty text, got {value!r}")
    if pattern is not None and not pattern.match(value):
        raise InvalidRequest(f"body.{name}", f"expected letters, digits or ._:-, got {value!r}")
    return value.strip()


def parse_batch(body: Any) -> BatchRequest:
    """Validate a batch request; InvalidRequest naming the field."""
    doc = _object(body)
    _known(
        doc,
        ("batch_id", "title", "product_id", "nominal_minor", "count", "valid_days", "prefix"),
    )
    nominal = doc.get("nominal_minor")
    if nominal is not None:
        nominal = _int(doc, "nominal_minor", 1, 10**11)
    prefix = doc.get("prefix", "GC")
    if not isinstance(prefix, str) or not re.match(r"^[A-Z0-9]{1,8}$", prefix):
        raise InvalidRequest(
            "body.prefix", f"expected 1..8 capital letters or digits, got {prefix!r}"
        )
    return BatchRequest(
        batch_id=_text(doc, "batch_id", _ID),
        title=_text(doc, "title"),
        product_id=_text(doc, "product_id", _ID),
        nominal_minor=nominal,
        count=_int(doc, "count", 1, MAX_BATCH),
        valid_days=_int(doc, "valid_days", 1, 3660, default=365),
        prefix=prefix,
    )


def parse_block(body: Any) -> str:
    """POST /v1/certificates/{code}/block: the reason."""
    doc = _object(body)
    _known(doc, ("reason",))
    return _text(doc, "reason")


def _store(doc: Mapping[str, Any]) -> str:
    return _text(doc, "store_id", _ID)


def parse_hold(body: Any) -> CertificateHold:
    """Validate a certificate hold; InvalidRequest naming the field (a non-positive amount too)."""
    doc = _object(body)
    _known(doc, ("store_id", "hold_id", "amounts", "ttl_s"))
    hold_id = _text(doc, "hold_id", _HOLD_ID)
    raw = doc.get("amounts")
    if not isinstance(raw, dict) or len(raw) > MAX_CODES_PER_HOLD:
        raise InvalidRequest(
            "body.amounts", f"expected an object code -> amount_minor, at most {MAX_CODES_PER_HOLD}"
        )
    amounts: dict[str, int] = {}
    for key, amount in raw.items():
        code = code_of(key, "body.amounts")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= 10**11:
            raise InvalidRequest(
                f"body.amounts.{code}", f"expected a positive amount in minor units, got {amount!r}"
            )
        amounts[code] = amounts.get(code, 0) + amount
    return CertificateHold(
        _store(doc), hold_id, amounts, _int(doc, "ttl_s", 1, MAX_HOLD_TTL_S, default=300)
    )


def parse_commit(body: Any) -> tuple[str, str]:
    """(store_id, sale_id) of a hold commit."""
    doc = _object(body)
    _known(doc, ("store_id", "sale_id"))
    return _store(doc), _text(doc, "sale_id", _HOLD_ID)


def parse_release(body: Any) -> str:
    """The store id of a hold release."""
    doc = _object(body)
    _known(doc, ("store_id",))
    return _store(doc)


def hold_id_of(value: str) -> str:
    """A hold id from the path; MalformedRequest otherwise."""
    if not _HOLD_ID.match(value):
        raise MalformedRequest("hold_id", f"expected a hold id, got {value[:80]!r}")
    return value
