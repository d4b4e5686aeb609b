"""Roles, their permissions, and the permission every Center route needs (fail closed)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "AUTHENTICATED",
    "PERMISSIONS",
    "PUBLIC",
    "READ_PERMISSIONS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "Requirement",
    "allows",
    "api_modules",
    "requirement_names",
    "route_permissions",
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
    "audit.read",
    "users.admin",
    "stores.admin",
)
"""Every permission a route may require."""

PUBLIC = "public"
"""The 'permission' of a route answered without any credentials (/health, /v1/enrol)."""

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
        },
        "data_analyst": READ_PERMISSIONS,
        "call_center": frozenset(
            {"customers.read", "customers.write", "cards.write", "ledger.read", "coupons.read"}
        ),
        "sales_director": READ_PERMISSIONS,
        "marketing_director": READ_PERMISSIONS | {"promotions.publish"},
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


def api_modules() -> list[str]:
    """center.app, center.crm_api and every center/*_api.py module, by name."""
    import center

    found = sorted(
        f"center.{m.name}"
        for m in pkgutil.iter_modules(center.__path__)
        if m.name.endswith("_api") and not m.ispkg
    )
    return ["center.app", *(name for name in found if name != "center.app")]


def route_permissions(app: web.Application | None = None) -> dict[tuple[str, str], Requirement]:
    """(method, canonical path) -> requirement, aggregated from every API module's PERMISSIONS.

    With an app, only the routes it serves are returned (HEAD counts as GET); a route missing
    here is refused by the Center (fail closed).
    """
    table: dict[tuple[str, str], Requirement] = {}
    for name in api_modules():
        module = importlib.import_module(name)
        declared: Mapping[tuple[str, str], Requirement] = getattr(module, "PERMISSIONS", {})
        for key, requirement in declared.items():
            for permission in requirement_names(requirement):
                if permission not in (PUBLIC, AUTHENTICATED) and permission not in PERMISSIONS:
                    raise ValueError(
                        f"{name}.PERMISSIONS[{key!r}]: unknown permission {permission!r} "
                        f"(known: {', '.join(PERMISSIONS)})"
                    )
            table[key] = requirement
    if app is None:
        return table
    served: dict[tuple[str, str], Requirement] = {}
    for route in app.router.routes():
        method = "GET" if route.method == "HEAD" else route.method
        key = (method, route.resource.canonical if route.resource is not None else "")
        if key in table:
            served[key] = table[key]
    return served
