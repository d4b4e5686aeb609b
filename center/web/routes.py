"""The one list of the Center's route modules: it registers the routes and their permissions."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from aiohttp import web

from center.access import admin_pages, enrol_api, nodes_pages
from center.access import api as users_api
from center.access import pages as access_pages
from center.access.permissions import (
    AUTHENTICATED,
    MEMBER,
    PERMISSIONS,
    PUBLIC,
    Requirement,
    requirement_names,
)
from center.advertising import api as advertising_api
from center.advertising import pages as advertising_pages
from center.analytics import api as analytics_api
from center.analytics import pages as analytics_pages
from center.certificates import api as certificates_api
from center.certificates import pages as certificates_pages
from center.communications import api as communications_api
from center.crm import api as crm_api
from center.crm import customers_api, registration_pages, tiers_api, tiers_pages
from center.crm import pages as crm_pages
from center.feed import api as feed_api
from center.feed import master_api
from center.fraud import api as fraud_api
from center.fraud import pages as fraud_pages
from center.ingest import api as ingest_api
from center.ingest import pages as ingest_pages
from center.ingest import review_api
from center.ledger import api as ledger_api
from center.ledger import leases_api, receipt_pages, returns_api
from center.ledger import pages as ledger_pages
from center.members import api as members_api
from center.models import api as models_api
from center.models import pages as models_pages
from center.portal import pages as portal_pages
from center.promotions import api as promotions_api
from center.promotions import (
    budgets_api,
    constructor_audience,
    constructor_pages,
    coupons_api,
    offers_api,
    segments_api,
)
from center.promotions import pages as promotions_pages
from center.reporting import api as reports_api
from center.reporting import pages as reporting_pages
from center.suppliers import api as suppliers_api
from center.suppliers import pages as suppliers_pages
from center.web import health
from center.web import pages as web_pages

__all__ = ["ROUTE_MODULES", "add_routes", "route_permissions"]

ROUTE_MODULES: tuple[ModuleType, ...] = (
    health,
    enrol_api,
    ingest_api,
    feed_api,
    ledger_api,
    crm_api,
    users_api,
    promotions_api,
    coupons_api,
    segments_api,
    returns_api,
    leases_api,
    budgets_api,
    customers_api,
    tiers_api,
    offers_api,
    reports_api,
    master_api,
    communications_api,
    fraud_api,
    review_api,
    analytics_api,
    certificates_api,
    models_api,
    suppliers_api,
    members_api,
    advertising_api,
    web_pages,
    access_pages,
    registration_pages,
    crm_pages,
    ledger_pages,
    receipt_pages,
    fraud_pages,
    certificates_pages,
    tiers_pages,
    ingest_pages,
    nodes_pages,
    admin_pages,
    promotions_pages,
    constructor_pages,
    constructor_audience,
    reporting_pages,
    models_pages,
    analytics_pages,
    suppliers_pages,
    advertising_pages,
    portal_pages,
)
"""Every module with `add_routes(app)` and `PERMISSIONS`, in registration order (a fixed path
such as /v1/customers/search is registered before the {customer_id} it would otherwise match)."""


def add_routes(app: web.Application) -> None:
    """Register the routes of every module of ROUTE_MODULES."""
    for module in ROUTE_MODULES:
        module.add_routes(app)


def route_permissions(app: web.Application | None = None) -> dict[tuple[str, str], Requirement]:
    """(method, canonical path) -> requirement, from every route module's PERMISSIONS.

    With an app, only the routes it serves are returned (HEAD counts as GET); a route missing
    here is refused by the Center (fail closed).
    """
    table: dict[tuple[str, str], Requirement] = {}
    for module in ROUTE_MODULES:
        declared: Mapping[tuple[str, str], Requirement] = module.PERMISSIONS
        for key, requirement in declared.items():
            for permission in requirement_names(requirement):
                if (
                    permission not in (PUBLIC, AUTHENTICATED, MEMBER)
                    and permission not in PERMISSIONS
                ):
                    raise ValueError(
                        f"{module.__name__}.PERMISSIONS[{key!r}]: unknown permission "
                        f"{permission!r} (known: {', '.join(PERMISSIONS)})"
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
