"""The register software's local JSON API (docs/API.md, POS agent section)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import hdrs, web

from pos_agent.certificates import certificate_code
from pos_agent.config import Config
from pos_agent.dbthread import DbThread
from pos_agent.devices import DeviceHub
from pos_agent.errors import RequestError, RequestTooLarge
from pos_agent.inputs import (
    MAX_BODY_BYTES,
    parse_body,
    parse_calculate,
    parse_certificate,
    parse_confirm,
    parse_coupon,
    parse_coupon_code,
    parse_empty,
    parse_identification,
    parse_line_no,
    parse_lines,
)
from pos_agent.register import Priced, Register
from pos_agent.uploader import Uploads
from sync_protocol import MalformedMessage, ProtocolError, check_json_value

__all__ = ["CONFIG", "DEVICES", "UPLOADER", "WORKER", "add_routes", "error_middleware"]

log = logging.getLogger(__name__)

T = TypeVar("T")


CONFIG = web.AppKey("config", Config)
WORKER: web.AppKey[DbThread[Register]] = web.AppKey("worker")
"""The one thread that owns the Register (its journal, replica and store link)."""
UPLOADER: web.AppKey[Uploads] = web.AppKey("uploader")
DEVICES = web.AppKey("devices", DeviceHub)

_KINDS = {400: "malformed", 404: "not_found", 405: "method_not_allowed", 409: "conflict"}


def _error(status: int, kind: str, detail: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": kind, "detail": detail}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Every refusal becomes {"error": kind, "detail": message naming the field} with a 4xx."""
    try:
        if request.match_info.http_exception is None:
            check_json_value(dict(request.match_info), root="path")
            check_json_value(dict(request.query), root="query")
        response: web.StreamResponse = await handler(request)
        return response
    except RequestError as exc:
        return _error(exc.status, exc.kind, str(exc), getattr(exc, "field", None))
    except MalformedMessage as exc:
        if exc.path.startswith(("path", "query")):
            return _error(400, "malformed", str(exc), exc.path)
        return _error(422, "invalid", f"sale not recorded: {exc}", exc.path or None)
    except ProtocolError as exc:
        # A sale the wire cannot carry (an integer beyond 64 bits, say): encoding it failed
        # inside the journal's transaction, so nothing was journaled.
        return _error(422, "invalid", f"sale not recorded: {exc}", exc.path or None)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "too_large", f"body: larger than the {MAX_BODY_BYTES} bytes accepted")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = _KINDS.get(exc.status, "http_error")
        return _error(exc.status, kind, f"{request.method} {request.path}: {exc.reason}")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(500, "internal", "unexpected error; see the agent's log")


async def _json_body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise RequestTooLarge(
            f"body: {request.content_length} bytes is larger than the {MAX_BODY_BYTES} accepted"
        )
    body = await request.read()
    return parse_body(body, request.headers.get(hdrs.CONTENT_TYPE))


def _at(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _receipt_id(request: web.Request) -> str:
    return request.match_info["receipt_id"]


def calculation_view(priced: Priced) -> dict[str, Any]:
    """The JSON answer of calculate (docs/API.md)."""
    calc = priced.calculation
    return {
        "receipt_id": priced.receipt.receipt_id,
        "card_no": priced.receipt.card_no,
        "lines": [
            {
                "line_no": line.line_no,
                "product_id": line.product_id,
                "amount_minor": line.amount_minor,
                "discount_minor": sum(d.amount_minor for d in line.discounts),
                "discounts": [
                    {"rule_id": d.rule_id, "amount_minor": d.amount_minor} for d in line.discounts
                ],
                "known_product": priced.known_products.get(line.line_no, False),
            }
            for line in calc.lines
        ],
        "subtotal_minor": calc.subtotal_minor,
        "discount_minor": calc.discount_minor,
        "total_minor": calc.total_minor,
        "accrual": [
            {
                "wallet": a.wallet,
                "amount": a.amount,
                "rule_id": a.rule_id,
                "active_from": _at(a.active_from),
                "expires_at": _at(a.expires_at),
            }
            for a in calc.accruals
        ],
        "bonus_balance": priced.available_bonus,
        "bonus_payable_max": calc.bonus_payable_max,
        "bonus_to_spend": calc.bonus_to_spend,
        "to_pay_minor": calc.to_pay_minor,
        "messages": {
            "slip": list(calc.messages.slip),
            "cashier": list(calc.messages.cashier),
            "display": list(calc.messages.display),
        },
        "promo_version": calc.promo_version,
        "explanation": list(calc.explanation),
        "coupon_codes": list(priced.receipt.coupon_codes),
        "coupons_consumed": list(calc.coupons_consumed),
    }


async def health(request: web.Request) -> web.Response:
    """GET /health."""
    config = request.app[CONFIG]
    worker = request.app[WORKER]
    stats, master_version = await worker.run(Register.stats)
    link = request.app[UPLOADER].status()
    synced_at, reservations_pending = await worker.run(Register.offline_state)
    promotions_error = await worker.run(lambda r: r.promotions_error)
    return web.json_response(
        {
            "register_id": config.register.register_id,
            "store_id": config.register.store_id,
            "queue_depth": stats.queue_depth,
            "last_seq": stats.last_seq,
            "oldest_queued_at": _at(stats.oldest_queued_at),
            "master_version": master_version,
            "store_url": link.store_url,
            "last_upload_at": _at(link.last_upload_at),
            "last_error": link.last_error,
            "rejected": [
                {"seq": r.seq, "sale_id": r.sale_id, "reason": r.reason} for r in stats.rejected
            ],
            "promotions_error": promotions_error,
            "master_synced_at": _at(synced_at),
            "reservations_pending": reservations_pending,
            "devices": request.app[DEVICES].status(),
        }
    )


async def open_receipt(request: web.Request) -> web.Response:
    """POST /v1/receipts."""
    parse_empty(await _json_body(request))
    worker = request.app[WORKER]
    receipt = await worker.run(Register.open_receipt)
    return web.json_response(
        {"receipt_id": receipt.receipt_id, "opened_at": _at(receipt.opened_at)}, status=201
    )


async def get_receipt(request: web.Request) -> web.Response:
    """GET /v1/receipts/{receipt_id}."""
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    receipt = await worker.run(lambda r: r.receipt(receipt_id))
    return web.json_response(receipt.to_dict())


async def add_lines(request: web.Request) -> web.Response:
    """POST /v1/receipts/{receipt_id}/lines."""
    lines = parse_lines(await _json_body(request))
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    line_nos = await worker.run(lambda r: r.add_lines(receipt_id, lines))
    return web.json_response({"line_nos": line_nos})


async def remove_line(request: web.Request) -> web.Response:
    """DELETE /v1/receipts/{receipt_id}/lines/{line_no}."""
    line_no = parse_line_no(request.match_info["line_no"])
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    await worker.run(lambda r: r.remove_line(receipt_id, line_no))
    return web.json_response({"removed": line_no})


async def identify_card(request: web.Request) -> web.Response:
    """POST /v1/receipts/{receipt_id}/card."""
    by, value = parse_identification(await _json_body(request))
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    if by == "qr":
        view = await worker.run(lambda r: r.identify_qr(receipt_id, value))
    else:
        view = await worker.run(lambda r: r.identify_card(receipt_id, value))
    answer = {
        "card_no": view.card_no,
        "known": view.known,
        "bonus_balance": view.bonus_balance,
        "wallets": dict(view.wallets),
        "tier": view.tier,
        "segments": list(view.segments),
        "coupons": [
            {
                "code": c.code,
                "batch_id": c.batch_id,
                "promotion_id": c.promotion_id,
                "single_use": c.single_use,
                "valid_from": c.valid_from,
                "valid_to": c.valid_to,
            }
            for c in view.coupons
        ],
        "personal_offers": [
            {
                "offer_id": o.offer_id,
                "product_id": o.product_id,
                "percent": str(o.percent),
                "valid_from": None if o.valid_from is None else o.valid_from.isoformat(),
                "valid_to": None if o.valid_to is None else o.valid_to.isoformat(),
            }
            for o in view.personal_offers
        ],
        "personal_messages": [
            {"message_id": m.message_id, "cashier": m.cashier, "display": m.display}
            for m in view.messages
        ],
    }
    if by == "qr":  # only then: a card_no answer stays as registers have always had it
        answer["identified_by"] = "qr"
    if view.tier_progress is not None:  # a tier programme is defined
        answer["tier_progress"] = dict(view.tier_progress)
    return web.json_response(answer)


async def add_coupon(request: web.Request) -> web.Response:
    """POST /v1/receipts/{receipt_id}/coupons: validated offline, kept for pricing."""
    code = parse_coupon(await _json_body(request))
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    match = await worker.run(lambda r: r.add_coupon(receipt_id, code))
    return web.json_response(
        {
            "receipt_id": receipt_id,
            "code": match.code,
            "rule_id": match.promotion_id,
            "title": match.title,
            "multi_use": match.multi_use,
        }
    )


async def remove_coupon(request: web.Request) -> web.Response:
    """DELETE /v1/receipts/{receipt_id}/coupons/{code}."""
    code = parse_coupon_code(request.match_info["code"])
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    await worker.run(lambda r: r.remove_coupon(receipt_id, code))
    return web.json_response({"removed": code})


async def add_certificate(request: web.Request) -> web.Response:
    """POST /v1/receipts/{receipt_id}/certificates: pay part or all with a gift certificate
    (held at the store node now, redeemed at confirm, released at cancel)."""
    code, amount = parse_certificate(await _json_body(request))
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    held = await worker.run(lambda r: r.add_certificate(receipt_id, code, amount))
    return web.json_response({"receipt_id": receipt_id, **held.to_dict()})


async def remove_certificate(request: web.Request) -> web.Response:
    """DELETE /v1/receipts/{receipt_id}/certificates/{code}."""
    code = certificate_code(request.match_info["code"], "code")
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    await worker.run(lambda r: r.remove_certificate(receipt_id, code))
    return web.json_response({"removed": code})


async def calculate(request: web.Request) -> web.Response:
    """POST /v1/receipts/{receipt_id}/calculate."""
    asked = parse_calculate(await _json_body(request))
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    priced = await worker.run(
        lambda r: r.calculate(
            receipt_id, asked.bonus_to_spend, spend=asked.spend, payments=asked.payments
        )
    )
    return web.json_response(calculation_view(priced))


async def confirm(request: web.Request) -> web.Response:
    """POST /v1/receipts/{receipt_id}/confirm: answers only after the commit."""
    asked = parse_confirm(await _json_body(request))
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    sale = await worker.run(
        lambda r: r.confirm(receipt_id, asked.payments, asked.bonus_to_spend, spend=asked.spend)
    )
    return web.json_response(
        {
            "sale_id": sale.sale_id,
            "seq": sale.seq,
            "total_minor": sale.total_minor,
            "messages": list(sale.messages),
            "coupons_redeemed": list(sale.coupons_redeemed),
            "coupons_issued": list(sale.coupons_issued),
        }
    )


async def cancel(request: web.Request) -> web.Response:
    """POST /v1/receipts/{receipt_id}/cancel."""
    parse_empty(await _json_body(request))
    worker = request.app[WORKER]
    receipt_id = _receipt_id(request)
    await worker.run(lambda r: r.cancel(receipt_id))
    return web.json_response({"cancelled": receipt_id})


async def sales_summary(request: web.Request) -> web.Response:
    """GET /v1/sales/summary: totals over every confirmed sale kept at the register."""
    worker = request.app[WORKER]
    summary = await worker.run(Register.summary)
    return web.json_response(
        {
            "register_id": request.app[CONFIG].register.register_id,
            "receipts": summary.receipts,
            "lines": summary.lines,
            "total_minor": summary.total_minor,
            "max_seq": summary.max_seq,
            "queued": summary.queued,
        }
    )


def add_routes(app: web.Application) -> None:
    """Register every route of docs/API.md (POS agent)."""
    app.router.add_get("/health", health)
    app.router.add_post("/v1/receipts", open_receipt)
    app.router.add_get("/v1/receipts/{receipt_id}", get_receipt)
    app.router.add_post("/v1/receipts/{receipt_id}/lines", add_lines)
    app.router.add_delete("/v1/receipts/{receipt_id}/lines/{line_no}", remove_line)
    app.router.add_post("/v1/receipts/{receipt_id}/card", identify_card)
    app.router.add_post("/v1/receipts/{receipt_id}/coupons", add_coupon)
    app.router.add_delete("/v1/receipts/{receipt_id}/coupons/{code}", remove_coupon)
    app.router.add_post("/v1/receipts/{receipt_id}/certificates", add_certificate)
    app.router.add_delete("/v1/receipts/{receipt_id}/certificates/{code}", remove_certificate)
    app.router.add_post("/v1/receipts/{receipt_id}/calculate", calculate)
    app.router.add_post("/v1/receipts/{receipt_id}/confirm", confirm)
    app.router.add_post("/v1/receipts/{receipt_id}/cancel", cancel)
    app.router.add_get("/v1/sales/summary", sales_summary)
