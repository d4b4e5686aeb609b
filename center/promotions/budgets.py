"""Supplier budget leases: the rules (pure) by which the Center carves what is left of a
supplier-funded promotion's budget into per-store allowances the store nodes spend offline.

The invariant, kept by every function here: for each budgeted promotion, spent (booked from the
sales the Center holds) plus the store leases that count is at most the budget. A store node
lets its registers give a promotion only within its lease, so whatever the stores do while the
Center is away, together they give at most the budget. ARCHITECTURE.md "Supplier budget leases"
has the protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from center.errors import MalformedRequest
from sync_protocol import Sale

__all__ = [
    "BUDGET_SETTINGS",
    "BudgetLease",
    "BudgetLeaseRequest",
    "BudgetLeaseReturn",
    "BudgetSettings",
    "counts",
    "funding_of",
    "outstanding",
    "parse_budget_lease_request",
    "parse_budget_lease_returns",
    "read_settings",
    "returned",
    "returned_amounts",
    "room",
    "settle",
    "size_grant",
]

_MAX_MINOR = 2**53
_MAX_ID = 128
MAX_RETURNS = 500


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    """The chain settings of budget leases (`budgets.lease_*`: dotted, so the engine's strict
    settings check leaves them to their component)."""

    ttl_s: int = 86_400
    """How long a grant lasts; a store cut off longer gives nothing more of the promotion."""
    share_percent: int = 10
    """What one store is granted beyond what it needs now, in percent of the budget."""
    grace_s: int = 7 * 86_400
    """How long an expired lease its store never returned still counts (its store may have
    given it offline in sales not yet sent)."""


BUDGET_SETTINGS: Mapping[str, str] = {
    "budgets.lease_ttl_s": "ttl_s",
    "budgets.lease_share_percent": "share_percent",
    "budgets.lease_grace_s": "grace_s",
}
"""Chain setting name -> BudgetSettings field."""


def read_settings(values: Mapping[str, str]) -> BudgetSettings:
    """BudgetSettings from the chain settings' text values (absent or unreadable: the default)."""
    given: dict[str, int] = {}
    for name, field in BUDGET_SETTINGS.items():
        text = values.get(name, "")
        if text.isascii() and text.isdigit() and len(text) <= 15:
            given[field] = int(text)
    if given.get("share_percent", 0) > 100:
        given["share_percent"] = 100
    return BudgetSettings(**given)


def funding_of(doc: Any) -> tuple[str, int | None]:
    """(funded_by, budget_minor) of a promotion document (("chain", None) when unreadable)."""
    funding = doc.get("funding") if isinstance(doc, Mapping) else None
    if not isinstance(funding, Mapping):
        return "chain", None
    by = funding.get("by", "chain")
    budget = funding.get("budget_minor")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        budget = None
    return (by if isinstance(by, str) else "chain"), budget


@dataclass(frozen=True, slots=True)
class BudgetLease:
    """One store's allowance on one promotion's budget, as the Center holds it.

    `amount` is what the store may still give (or gave in sales the Center has not booked yet):
    settling a booked sale takes it off."""

    store_id: str
    amount: int
    expires_at: datetime
    lease_id: str = ""


def counts(lease: BudgetLease, now: datetime, settings: BudgetSettings) -> bool:
    """Whether the lease still takes its amount out of the budget at `now`."""
    return lease.amount > 0 and now < lease.expires_at + timedelta(seconds=settings.grace_s)


def outstanding(
    leases: Iterable[BudgetLease],
    now: datetime,
    settings: BudgetSettings,
    *,
    besides: str | None = None,
) -> int:
    """The sum of the leases that count, leaving out store `besides`'s."""
    return sum(
        lease.amount
        for lease in leases
        if lease.store_id != besides and counts(lease, now, settings)
    )


def room(
    budget: int,
    spent: int,
    leases: Iterable[BudgetLease],
    store_id: str,
    now: datetime,
    settings: BudgetSettings,
) -> int:
    """What store `store_id` may hold of a budget of which `spent` is booked (never negative)."""
    return max(0, budget - spent - outstanding(leases, now, settings, besides=store_id))


def size_grant(
    budget: int,
    spent: int,
    leases: Iterable[BudgetLease],
    store_id: str,
    now: datetime,
    settings: BudgetSettings,
    *,
    unsent: int,
    need: int,
) -> int:
    """The lease a store gets now: what it needs (its unsent use, holds and what the receipt
    wants) or its unsent use plus its share of the budget, whichever is more, within room."""
    share = budget * settings.share_percent // 100
    want = max(need, unsent + share)
    return min(room(budget, spent, leases, store_id, now, settings), want)


def settle(amount: int, given: int) -> int:
    """A lease after a sale of its store giving `given` was booked (now in spent)."""
    return max(0, amount - given)


def returned(amount: int, unsent: int) -> int:
    """A lease its store gave back, still used by `unsent` in sales not yet at the Center."""
    return max(0, min(amount, unsent))


def returned_amounts(
    original: Sale, booked: Mapping[str, int], ret: Sale, earlier: Mapping[str, int]
) -> dict[str, int]:
    """promotion_id -> what the return `ret` gives back to each budget the `original` sale used
    (`booked`: what it booked; `earlier`: what earlier returns of it gave back already).

    Line discounts come back in proportion to the units returned of each line, accruals in
    proportion to the amount returned; never more than the original booked."""
    by_line = {line.line_no: line for line in original.lines}
    out: dict[str, int] = {}
    for line in ret.lines:
        first = by_line.get(line.line_no)
        if first is None or first.qty_milli <= 0:
            continue
        qty = min(abs(line.qty_milli), first.qty_milli)
        for discount in first.discounts:
            if discount.rule_id in booked:
                part = discount.amount_minor * qty // first.qty_milli
                out[discount.rule_id] = out.get(discount.rule_id, 0) + part
    total = original.total_minor
    back = min(abs(ret.total_minor), total) if total > 0 else 0
    for movement in original.loyalty:
        if movement.kind == "accrue" and movement.rule_id in booked and total > 0:
            part = movement.amount * back // total
            out[movement.rule_id] = out.get(movement.rule_id, 0) + part
    return {
        pid: min(amount, max(0, booked[pid] - earlier.get(pid, 0)))
        for pid, amount in out.items()
        if amount > 0 and booked[pid] - earlier.get(pid, 0) > 0
    }


@dataclass(frozen=True, slots=True)
class BudgetLeaseRequest:
    """A store node asks for (or to raise) its lease on a promotion's budget."""

    store_id: str
    promotion_id: str
    unsent_minor: int
    need_minor: int


@dataclass(frozen=True, slots=True)
class BudgetLeaseReturn:
    """A store node gives a lease back; `unsent_minor` of it is used by sales on their way."""

    lease_id: str
    promotion_id: str
    unsent_minor: int


def _text(body: Mapping[str, Any], key: str, where: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID or not value.isprintable():
        raise MalformedRequest(f"{where}.{key}", f"expected 1..{_MAX_ID} printable characters")
    return value


def _minor(body: Mapping[str, Any], key: str, where: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_MINOR:
        raise MalformedRequest(f"{where}.{key}", f"expected an integer 0..2^53, got {value!r}")
    return value


def _object(body: Any, where: str, known: set[str]) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise MalformedRequest(where, "expected a JSON object")
    for key in sorted(set(body) - known):
        raise MalformedRequest(
            f"{where}.{key}", f"unknown field (known: {', '.join(sorted(known))})"
        )
    return body


def parse_budget_lease_request(body: Any) -> BudgetLeaseRequest:
    """Check a POST /v1/budget-leases body; MalformedRequest names the field."""
    known = {"store_id", "promotion_id", "unsent_minor", "need_minor"}
    fields = _object(body, "body", known)
    return BudgetLeaseRequest(
        store_id=_text(fields, "store_id", "body"),
        promotion_id=_text(fields, "promotion_id", "body"),
        unsent_minor=_minor(fields, "unsent_minor", "body"),
        need_minor=_minor(fields, "need_minor", "body"),
    )


def parse_budget_lease_returns(body: Any) -> tuple[str, tuple[BudgetLeaseReturn, ...]]:
    """(store_id, returns) of a POST /v1/budget-leases/return body; MalformedRequest names the
    field."""
    fields = _object(body, "body", {"store_id", "leases"})
    store_id = _text(fields, "store_id", "body")
    items = fields.get("leases")
    if not isinstance(items, list) or len(items) > MAX_RETURNS:
        raise MalformedRequest("body.leases", f"expected a list of at most {MAX_RETURNS} leases")
    out = []
    for index, item in enumerate(items):
        where = f"body.leases[{index}]"
        one = _object(item, where, {"lease_id", "promotion_id", "unsent_minor"})
        out.append(
            BudgetLeaseReturn(
                lease_id=_text(one, "lease_id", where),
                promotion_id=_text(one, "promotion_id", where),
                unsent_minor=_minor(one, "unsent_minor", where),
            )
        )
    return store_id, tuple(out)
