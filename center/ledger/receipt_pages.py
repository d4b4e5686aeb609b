"""Console pages of a receipt: its lines with the discounts that explain them, payments, the
points it moved at the Center; and the loyalty manager's head-office return of chosen lines
(the same parser and repository call as POST /v1/returns), then the points it reversed."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from aiohttp import web

from center.access.permissions import Requirement
from center.errors import InvalidRequest, MalformedRequest, RequestError, UnknownObject
from center.ledger.returns_api import parse_return
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import field_errors, form_of, page_actor, render
from center.web.request import ID_PATTERN, in_db
from sync_protocol import Sale, decode_sale

__all__ = ["PERMISSIONS", "add_routes", "parse_qty_milli"]

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/receipts/{sale_id}"): "customers.read",
    ("POST", "/console/receipts/{sale_id}/return"): "ledger.adjust",
}
"""(method, canonical route path) -> the permission a caller needs."""

MAX_QTY_TEXT = 20


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_get("/console/receipts/{sale_id}", receipt)
    app.router.add_post("/console/receipts/{sale_id}/return", give_back)


def parse_qty_milli(text: str, field: str) -> int:
    """A quantity typed in units ("1", "0,5", "1.250") as milli-units; 0 for an empty field."""
    cleaned = text.strip().replace(",", ".").replace(" ", "").replace("\u00a0", "")
    if not cleaned:
        return 0
    try:
        value = Decimal(cleaned) if len(cleaned) <= MAX_QTY_TEXT else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0 or (value * 1000) % 1:
        raise InvalidRequest(field, f"expected a quantity such as 1 or 0,5, got {text[:40]!r}")
    return int(value * 1000)


def _sale_id(request: web.Request) -> str:
    value = request.match_info["sale_id"]
    if not ID_PATTERN.match(value):
        raise MalformedRequest("sale_id", f"expected a sale id, got {value[:80]!r}")
    return value


async def _stored(request: web.Request, sale_id: str) -> Sale:
    payload = await in_db(request, request.app[STORAGE_KEY].sales.load_sale, sale_id)
    if payload is None:
        raise UnknownObject("sale_id", f"unknown sale {sale_id!r}")
    return decode_sale(payload)


async def _receipt_page(
    request: web.Request,
    sale_id: str,
    *,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    storage = request.app[STORAGE_KEY]
    sale = await _stored(request, sale_id)
    movements = await in_db(request, storage.ledger.movements_of, sale_id)
    returned = await in_db(request, storage.returns.returned_qty, sale_id)
    done = await in_db(request, storage.returns.return_status, sale_id)
    customer = None
    if sale.card_no is not None:
        balance = await in_db(
            request, storage.ledger.balance, sale.card_no, request.app[CLOCK_KEY]()
        )
        customer = None if balance is None else balance.customer_id
    lines = [
        {
            "line": line,
            "paid_minor": line.amount_minor - sum(d.amount_minor for d in line.discounts),
            "left_milli": line.qty_milli - returned.get(line.line_no, 0),
        }
        for line in sale.lines
    ]
    notice = "returned" if request.query.get("done") == "returned" else ""
    return render(
        request,
        "ledger/receipt.html",
        {
            "sale": sale,
            "lines": lines,
            "movements": movements,
            "return_row": done,
            "customer_id": customer,
            "errors": dict(errors or {}),
            "values": dict(values or {}),
            "notice": notice,
            # A new return id per rendering: the same form posted twice returns once.
            "return_id": (values or {}).get("return_id") or str(uuid.uuid4()),
        },
        status=status,
    )


async def receipt(request: web.Request) -> web.StreamResponse:
    """A receipt: lines and their discounts by rule, payments, the Center's point movements."""
    return await _receipt_page(request, _sale_id(request))


async def give_back(request: web.Request) -> web.StreamResponse:
    """A head-office return of the quantities typed per line; to the return's own page."""
    sale_id = _sale_id(request)
    form = await form_of(request)
    sale = await _stored(request, sale_id)
    values = {
        f"qty:{line.line_no}": str(form.get(f"qty:{line.line_no}", ""))[:40] for line in sale.lines
    }
    values["return_id"] = str(form.get("return_id", ""))[:64]
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    actor = page_actor(request)
    try:
        lines: list[dict[str, int]] = []
        for line in sale.lines:
            qty = parse_qty_milli(values[f"qty:{line.line_no}"], f"qty:{line.line_no}")
            if qty:
                lines.append({"line_no": line.line_no, "qty_milli": qty})
        if not lines:
            raise InvalidRequest("form", "type the quantity to return on at least one line")
        original, returned, return_id = parse_return(
            {"sale_id": sale_id, "lines": lines, "return_id": values["return_id"]}
        )
        await in_db(
            request,
            lambda: storage.returns.head_office_return(original, returned, return_id, actor, now),
        )
    except RequestError as exc:
        if isinstance(exc, UnknownObject):
            raise
        found = field_errors(exc)
        field, message = next(iter(found.items()))
        # POST /v1/returns names lines[<line_no>].qty_milli; the page's field is qty:<line_no>.
        if field.startswith("lines[") and "]" in field:
            line_no = field[len("lines[") : field.index("]")]
            field = f"qty:{line_no}"
        if not field.startswith("qty:"):
            field = "form"
        return await _receipt_page(
            request, sale_id, errors={field: message}, values=values, status=exc.status
        )
    return web.Response(
        status=303, headers={"Location": f"/console/receipts/{return_id}?done=returned"}
    )
