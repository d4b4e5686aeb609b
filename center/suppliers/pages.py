"""Console pages of the supplier cabinet (the supplier's person: audience builder with its live
size, campaigns, estimate, launch, report) and of the chain's person (suppliers, top-ups).

Each form goes through the JSON API's parsers and the same steps (`cabinet.py`): the pages only
turn text into the API's documents (money typed in major units, as people read it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import Conflict, InvalidRequest, RequestError
from center.promotions.constructor_form import parse_major
from center.suppliers import cabinet
from center.suppliers.api import supplier_of_caller
from center.suppliers.model import (
    AUDIENCE_FIELDS,
    masked,
    parse_audience,
    parse_campaign,
    parse_supplier,
    parse_top_up,
)
from center.web import i18n
from center.web.keys import CLOCK_KEY, EXECUTOR_KEY, STORAGE_KEY
from center.web.pages import (
    field_errors,
    form_of,
    language_of,
    page_actor,
    render,
    translate_for,
)
from center.web.request import ID_PATTERN, in_db

__all__ = ["PERMISSIONS", "add_routes"]

_HOME = "/console/supplier"
_ONE = _HOME + "/campaigns/{campaign_id}"
PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", _HOME): "suppliers.cabinet",
    ("POST", _HOME + "/audience-size"): "suppliers.cabinet",
    ("POST", _HOME + "/campaigns"): "suppliers.cabinet",
    ("GET", _ONE): "suppliers.cabinet",
    ("POST", _ONE + "/estimate"): "suppliers.cabinet",
    ("POST", _ONE + "/launch"): "suppliers.cabinet",
    ("GET", "/console/suppliers"): "suppliers.admin",
    ("POST", "/console/suppliers"): "suppliers.admin",
    ("POST", "/console/suppliers/{supplier_id}/top-ups"): "suppliers.admin",
}
"""(method, canonical route path) -> the permission a caller needs."""

AUDIENCE_FORM_NAMES = {"brands": "brands_bought"}
MONEY_FIELDS = ("min_avg_receipt", "max_avg_receipt")
"""Audience fields typed in major units (the API's *_minor)."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get(_HOME, home)
    app.router.add_post(_HOME + "/audience-size", audience_size)
    app.router.add_post(_HOME + "/campaigns", create_campaign)
    app.router.add_get(_ONE, campaign_page)
    app.router.add_post(_ONE + "/estimate", estimate)
    app.router.add_post(_ONE + "/launch", launch)
    app.router.add_get("/console/suppliers", suppliers)
    app.router.add_post("/console/suppliers", create_supplier)
    app.router.add_post("/console/suppliers/{supplier_id}/top-ups", top_up)


def _see(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _campaign_id(request: web.Request) -> str:
    value = request.match_info["campaign_id"]
    if not ID_PATTERN.match(value):
        raise InvalidRequest("campaign_id", f"unknown campaign {value[:80]!r}")
    return value


def _audience_doc(form: Mapping[str, Any]) -> dict[str, Any]:
    """The API's audience document from the builder's fields (empty fields left out)."""
    doc: dict[str, Any] = {}
    for name in AUDIENCE_FIELDS:
        # The audience's brands sit beside the campaign's goods brands on one form; segments
        # are ticked (one field per box).
        key = AUDIENCE_FORM_NAMES.get(name, name)
        values = form.getall(key, []) if hasattr(form, "getall") else [form.get(key, "")]
        text = ",".join(str(v)[:2000].strip() for v in values if str(v).strip())[:4000]
        if text:
            doc[name] = text
    for name in MONEY_FIELDS:
        text = str(form.get(name, ""))[:40].strip()
        if text:
            try:
                doc[name + "_minor"] = parse_major(text)
            except ValueError:
                raise InvalidRequest(
                    f"audience.{name}", f"expected an amount such as 1 234,56, got {text!r}"
                ) from None
    return doc


async def home(request: web.Request) -> web.StreamResponse:
    """The supplier's campaigns, account and the audience builder of a new campaign."""
    return await _home(request)


async def _home(
    request: web.Request,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> web.StreamResponse:
    supplier_id = await supplier_of_caller(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()

    def read() -> tuple[Any, Any, Any, Any]:
        cabinet.follow_live_campaigns_of(storage, supplier_id, now)
        return (
            storage.suppliers.supplier(supplier_id),
            storage.suppliers.campaigns(supplier_id),
            storage.suppliers.account(supplier_id, limit=20),
            storage.segments.list_segments(),
        )

    supplier, campaigns, account, segments = await in_db(request, read)
    return render(
        request,
        "suppliers/cabinet.html",
        {
            "supplier": supplier,
            "campaigns": campaigns,
            "account": account,
            # The chain's segments by name, never their members (campaign segments left out).
            "segments": [
                {"segment_id": s["segment_id"], "name": s["name"]}
                for s in segments
                if not str(s["segment_id"]).startswith("sup-")
            ],
            "errors": errors or {},
            "values": dict(values or {}),
            "today": now.date().isoformat(),
        },
        status=status,
    )


async def audience_size(request: web.Request) -> web.StreamResponse:
    """The audience's size as the builder's fields stand (the fragment htmx swaps in)."""
    supplier_id = await supplier_of_caller(request)
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    try:
        audience = parse_audience(_audience_doc(form))
    except RequestError as exc:
        return render(request, "suppliers/audience_size.html", {"error": str(exc)})

    def count() -> int:
        size = storage.suppliers.audience_size(audience, now)
        storage.suppliers.record_action(
            supplier_id, "audience_size", audience.to_doc(), page_actor(request), now
        )
        return size

    size = await in_db(request, count)
    return render(request, "suppliers/audience_size.html", {"size": masked(size)})


async def create_campaign(request: web.Request) -> web.StreamResponse:
    """Create a draft campaign from the form; its page, or the form again with why."""
    supplier_id = await supplier_of_caller(request)
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    values = {k: str(v)[:2000] for k, v in form.items()}
    try:
        body = {
            "name": str(form.get("name", ""))[:200],
            "product_ids": str(form.get("product_ids", ""))[:4000],
            "brands": str(form.get("brands", ""))[:4000],
            "percent": str(form.get("percent", ""))[:20].replace(",", "."),
            "date_from": str(form.get("date_from", ""))[:20],
            "date_to": str(form.get("date_to", ""))[:20],
            "audience": _audience_doc(form),
            "control_percent": str(form.get("control_percent", "")).strip()[:4] or None,
        }
        campaign = parse_campaign(body, now.date())
        done = await in_db(
            request,
            storage.suppliers.create_campaign,
            supplier_id,
            campaign,
            page_actor(request),
            now,
        )
    except InvalidRequest as exc:
        errors = {
            k.removeprefix("body.").removeprefix("audience."): v
            for k, v in field_errors(exc).items()
        }
        return await _home(request, status=422, errors=errors, values=values)
    return _see(f"{_HOME}/campaigns/{done['campaign_id']}")


async def _campaign(
    request: web.Request, *, status: int = 200, error: str = ""
) -> web.StreamResponse:
    supplier_id = await supplier_of_caller(request)
    campaign_id = _campaign_id(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    found = await in_db(
        request, cabinet.report, storage, supplier_id, campaign_id, page_actor(request), now
    )
    account = await in_db(request, lambda: storage.suppliers.account(supplier_id, limit=0))
    return render(
        request,
        "suppliers/campaign.html",
        {**found, "c": found["campaign"], "balances": account, "error": error},
        status=status,
    )


async def campaign_page(request: web.Request) -> web.StreamResponse:
    """A campaign: its parameters, estimate, launch, and once launched its report."""
    return await _campaign(request)


async def estimate(request: web.Request) -> web.StreamResponse:
    """Estimate the budget on the stored history; the campaign's page."""
    supplier_id = await supplier_of_caller(request)
    campaign_id = _campaign_id(request)
    app = request.app
    try:
        await cabinet.estimate(
            app[STORAGE_KEY],
            app[EXECUTOR_KEY],
            supplier_id,
            campaign_id,
            page_actor(request),
            app[CLOCK_KEY](),
        )
    except Conflict as exc:
        return await _campaign(request, status=exc.status, error=str(exc))
    return _see(f"{_HOME}/campaigns/{campaign_id}")


async def launch(request: web.Request) -> web.StreamResponse:
    """Launch when funded; the campaign's page, with why when refused."""
    supplier_id = await supplier_of_caller(request)
    campaign_id = _campaign_id(request)
    storage = request.app[STORAGE_KEY]
    try:
        await in_db(
            request,
            cabinet.launch,
            storage,
            supplier_id,
            campaign_id,
            page_actor(request),
            request.app[CLOCK_KEY](),
        )
    except Conflict as exc:
        error = str(exc)
        if exc.field == "budget":
            # Told in money as people read it: the API's message counts minor units.
            found = await in_db(request, cabinet.own_campaign, storage, supplier_id, campaign_id)
            account = await in_db(request, lambda: storage.suppliers.account(supplier_id, limit=0))
            short = int(found["estimate_minor"] or 0) - int((account or {})["available_minor"])
            _ = translate_for(request)
            error = _(
                "The account does not cover the budget: ask the chain to top it up by %(amount)s.",
                amount=i18n.money(short, language_of(request)),
            )
        return await _campaign(request, status=exc.status, error=error)
    return _see(f"{_HOME}/campaigns/{campaign_id}")


# -- the chain's person --------------------------------------------------------------------------


async def _suppliers(
    request: web.Request, *, status: int = 200, errors: dict[str, str] | None = None
) -> web.StreamResponse:
    found = await in_db(request, request.app[STORAGE_KEY].suppliers.list_suppliers)
    return render(
        request,
        "suppliers/suppliers.html",
        {"suppliers": found, "errors": errors or {}},
        status=status,
    )


async def suppliers(request: web.Request) -> web.StreamResponse:
    """Every supplier with its account, and the forms to add one and to top one up."""
    return await _suppliers(request)


async def create_supplier(request: web.Request) -> web.StreamResponse:
    """Add a supplier organisation."""
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    try:
        supplier_id, name = parse_supplier(
            {
                "supplier_id": str(form.get("supplier_id", ""))[:80],
                "name": str(form.get("name", ""))[:300],
            }
        )
        await in_db(
            request,
            storage.suppliers.create_supplier,
            supplier_id,
            name,
            page_actor(request),
            request.app[CLOCK_KEY](),
        )
    except RequestError as exc:
        return await _suppliers(request, status=exc.status, errors=field_errors(exc))
    return _see("/console/suppliers")


async def top_up(request: web.Request) -> web.StreamResponse:
    """Money in on a supplier's account, as the chain's person received it."""
    supplier_id = request.match_info["supplier_id"][:64]
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    text = str(form.get("amount", ""))[:40].strip()
    try:
        try:
            amount = parse_major(text)
        except ValueError:
            raise InvalidRequest(
                "amount", f"expected an amount such as 1 234,56, got {text!r}"
            ) from None
        amount, note = parse_top_up(
            {"amount_minor": amount, "note": str(form.get("note", ""))[:500]}
        )
        await in_db(
            request,
            storage.suppliers.top_up,
            supplier_id,
            amount,
            note,
            page_actor(request),
            request.app[CLOCK_KEY](),
        )
    except RequestError as exc:
        errors = {
            f"{supplier_id}.{k.removeprefix('body.').removesuffix('_minor')}": v
            for k, v in field_errors(exc).items()
        }
        return await _suppliers(request, status=exc.status, errors=errors)
    return _see("/console/suppliers")
