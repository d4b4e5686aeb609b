"""Roles, their permissions, and the permission every Center route needs (fail closed)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

__all__ = [
    "AUTHENTICATED",
    "MEMBER",
    "PERMISSIONS",
    "PUBLIC",
    "READ_PERMISSIONS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "Requirement",
    "allows",
    "requirement_names",
]

PERMISSIONS: tuple[str, ...] = (
    "node",
    "customers.read",
    "customers.write",
    "cards.write",
    "ledger.read",
    "ledger.adjust",
    "promotions.read",
    "promotions.write",
    "promotions.publish",
    "coupons.read",
    "coupons.write",
    "segments.read",
    "segments.write",
    "reports.read",
    "communications.read",
    "communications.write",
    "consents.write",
    "audit.read",
    "users.admin",
    "stores.admin",
    "master.read",
    "master.write",
    "fraud.read",
    "fraud.review",
    "loyalty.review",
    "certificates.read",
    "certificates.write",
    "suppliers.cabinet",
    "suppliers.admin",
    "advertising.read",
    "advertising.write",
)
"""Every permission a route may require."""

PUBLIC = "public"
"""The 'permission' of a route answered without any credentials (/health, /v1/enrol)."""

MEMBER = "member"
"""The 'permission' of a member route (/v1/member/...): only a member access token, never a
staff token, console session or node signature (center/members/)."""

AUTHENTICATED = "authenticated"
"""The 'permission' of a route any authenticated caller may use (/v1/me)."""

Requirement = str | tuple[str, ...]
"""A route's permission: one permission, or a tuple meaning any one of them."""

READ_PERMISSIONS: frozenset[str] = frozenset(p for p in PERMISSIONS if p.endswith(".read"))
"""Every read-only permission."""


def _prefix(prefix: str) -> frozenset[str]:
    return frozenset(p for p in PERMISSIONS if p.startswith(prefix + "."))


ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "administrator": frozenset(PERMISSIONS) - {"node"},
        "marketer": _prefix("promotions")
        | _prefix("coupons")
        | _prefix("segments")
        | _prefix("communications")
        | _prefix("advertising")
        | {"customers.read", "reports.read"},
        "loyalty_manager": _prefix("customers")
        | {
            "cards.write",
            "ledger.read",
            "ledger.adjust",
            "coupons.read",
            "coupons.write",
            "promotions.read",
            "segments.read",
            "reports.read",
            "audit.read",
            "consents.write",
            "fraud.read",
            "fraud.review",
            "loyalty.review",
            "certificates.read",
            "certificates.write",
        },
        "data_analyst": READ_PERMISSIONS,
        "call_center": frozenset(
            {
                "customers.read",
                "customers.write",
                "cards.write",
                "ledger.read",
                "coupons.read",
                "consents.write",
                "certificates.read",
            }
        ),
        "sales_director": READ_PERMISSIONS,
        "marketing_director": READ_PERMISSIONS | {"promotions.publish"},
        # A supplier's person: its own campaigns, audience sizes and aggregates, never a
        # customer (center/suppliers/); bound to one supplier organisation.
        "supplier": frozenset({"suppliers.cabinet"}),
        # The chain's person responsible for suppliers: organisations, their people, top-ups.
        "supplier_manager": frozenset({"suppliers.admin", "reports.read"}),
    }
)
"""What each role may do; a user has exactly one role."""

ROLES: tuple[str, ...] = tuple(ROLE_PERMISSIONS)


def requirement_names(requirement: Requirement) -> tuple[str, ...]:
    """The permissions of a requirement, any one of which suffices."""
    return (requirement,) if isinstance(requirement, str) else tuple(requirement)


def allows(granted: frozenset[str], requirement: Requirement) -> bool:
    """True when `granted` holds at least one permission of `requirement`."""
    return any(name in granted for name in requirement_names(requirement))
