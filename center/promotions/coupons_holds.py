"""Single-use codes, chain-wide: holds the Center grants store nodes, and offline policies.

Every single-use code has one authority, the Center. Online, a store node reserving a code for
a register's receipt asks the Center to hold it (`POST /v1/coupon-holds`, the node's
reservation id is the hold id); the Center holds it for one store at a time for a TTL, the
commit turns the hold into "redeemed by sale S" until the sale itself arrives, and the release
frees it. Offline (the Center unreachable), a store node follows the offline policy of the
code's type, fetched from the Center (`GET /v1/coupon-policies`): ``never``, ``issuing_store``
(register-issued codes: only in the store whose register issued the code) or ``any_store``.
Whatever gets through twice shows in the double-redemption report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from center.errors import InvalidRequest, MalformedRequest, RequestError
from center.promotions.coupons import normalise_code

__all__ = [
    "MAX_HOLD_CODES",
    "MAX_HOLD_TTL_S",
    "OFFLINE_POLICIES",
    "ORIGINS",
    "CommitRequest",
    "CouponTaken",
    "HoldRequest",
    "allowed_offline",
    "default_offline",
    "merge_policies",
    "parse_batch_update",
    "parse_commit",
    "parse_hold",
    "parse_release",
    "register_batch_id",
]

MAX_HOLD_CODES = 20
MAX_HOLD_TTL_S = 3600
OFFLINE_POLICIES = ("never", "issuing_store", "any_store")
"""From the most to the least restrictive."""
ORIGINS = ("head_office", "register")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_STORE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_CODE_MAX = 128


class CouponTaken(RequestError):
    """A single-use code is held by another store or redeemed; the message names the code."""

    kind = "coupon_unavailable"
    status = 409


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """POST /v1/coupon-holds: hold exactly `codes` for `hold_id` (its other codes go)."""

    store_id: str
    hold_id: str
    codes: tuple[str, ...]
    ttl_s: int


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """POST /v1/coupon-holds/{hold_id}/commit: sale `sale_id` redeemed `codes`."""

    store_id: str
    sale_id: str
    codes: tuple[str, ...]


def register_batch_id(prefix: str) -> str:
    """The batch that collects the codes registers issue under ``prefix``."""
    return f"register:{prefix}"


def default_offline(*, origin: str, signed: bool) -> str:
    """A new batch's offline policy: register-issued codes only where issued; head-office
    codes never, unless signed (registers verify those offline, as before holds existed)."""
    if origin == "register":
        return "issuing_store"
    return "any_store" if signed else "never"


def allowed_offline(origin: str) -> tuple[str, ...]:
    """The offline policies a batch of this origin may have."""
    return OFFLINE_POLICIES if origin == "register" else ("never", "any_store")


def merge_policies(rows: Iterable[tuple[str, str, str]]) -> list[dict[str, str]]:
    """One policy per prefix from (prefix, origin, offline) of every batch: batches sharing a
    prefix cannot be told apart offline, so the most restrictive policy wins."""
    merged: dict[str, tuple[str, str]] = {}
    rank = {policy: i for i, policy in enumerate(OFFLINE_POLICIES)}
    for prefix, origin, offline in rows:
        if offline not in rank:
            offline = "never"
        seen = merged.get(prefix)
        if seen is None or rank[offline] < rank[seen[1]]:
            merged[prefix] = (origin, offline)
    return [
        {"prefix": prefix, "origin": origin, "offline": offline}
        for prefix, (origin, offline) in sorted(merged.items())
    ]


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise MalformedRequest("body", f"expected a JSON object, got {type(body).__name__}")
    return body


def _known(doc: Mapping[str, Any], known: tuple[str, ...]) -> None:
    extra = sorted(set(doc) - set(known))
    if extra:
        raise InvalidRequest(f"body.{extra[0]}", f"unknown field; expected {sorted(known)}")


def _store(doc: Mapping[str, Any]) -> str:
    store_id = doc.get("store_id")
    if not isinstance(store_id, str) or not _STORE.match(store_id):
        raise InvalidRequest("body.store_id", f"expected a store id, got {store_id!r}")
    return store_id


def _codes(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    raw = doc.get(name, [])
    if not isinstance(raw, list) or len(raw) > MAX_HOLD_CODES:
        raise InvalidRequest(f"body.{name}", f"expected a list of at most {MAX_HOLD_CODES} codes")
    codes: list[str] = []
    for i, code in enumerate(raw):
        if not isinstance(code, str) or not 0 < len(code.strip()) <= _CODE_MAX:
            raise InvalidRequest(f"body.{name}[{i}]", f"expected a coupon code, got {code!r}")
        normal = normalise_code(code)
        if not normal.isprintable():
            raise InvalidRequest(f"body.{name}[{i}]", "expected printable characters")
        if normal not in codes:
            codes.append(normal)
    return tuple(codes)


def hold_id_of(value: str) -> str:
    """A hold id from the path; MalformedRequest otherwise."""
    if not _ID.match(value):
        raise MalformedRequest("hold_id", f"expected a hold id, got {value[:80]!r}")
    return value


def parse_hold(body: Any) -> HoldRequest:
    """Validate a hold request; InvalidRequest naming the field."""
    doc = _object(body)
    _known(doc, ("store_id", "hold_id", "codes", "ttl_s"))
    hold_id = doc.get("hold_id")
    if not isinstance(hold_id, str) or not _ID.match(hold_id):
        raise InvalidRequest(
            "body.hold_id", f"expected 1..128 letters, digits or ._:-, got {hold_id!r}"
        )
    ttl_s = doc.get("ttl_s", 300)
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_HOLD_TTL_S:
        raise InvalidRequest(
            "body.ttl_s", f"expected an integer 1..{MAX_HOLD_TTL_S}, got {ttl_s!r}"
        )
    return HoldRequest(_store(doc), hold_id, _codes(doc, "codes"), ttl_s)


def parse_commit(body: Any) -> CommitRequest:
    """Validate a hold commit; InvalidRequest naming the field."""
    doc = _object(body)
    _known(doc, ("store_id", "sale_id", "codes"))
    sale_id = doc.get("sale_id")
    if not isinstance(sale_id, str) or not _ID.match(sale_id):
        raise InvalidRequest("body.sale_id", f"expected the sale's id, got {sale_id!r}")
    return CommitRequest(_store(doc), sale_id, _codes(doc, "codes"))


def parse_release(body: Any) -> str:
    """The store id of a hold release; InvalidRequest naming the field."""
    doc = _object(body)
    _known(doc, ("store_id",))
    return _store(doc)


def parse_batch_update(body: Any) -> str:
    """PATCH /v1/coupon-batches/{batch_id}: the new offline policy."""
    doc = _object(body)
    _known(doc, ("offline",))
    offline = doc.get("offline")
    if offline not in OFFLINE_POLICIES:
        raise InvalidRequest(
            "body.offline", f"expected one of {list(OFFLINE_POLICIES)}, got {offline!r}"
        )
    return str(offline)
