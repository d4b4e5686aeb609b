"""HTTP routes of communications: consent, templates, the burning chain, messages, one-click
unsubscribe (RFC 8058) and open tracking."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from center.access.api import actor_of
from center.access.permissions import PUBLIC, Requirement
from center.communications.abx import compare_groups
from center.communications.campaigns import launch_burning, launch_trigger, run_fallback
from center.communications.chains import BurningCampaign
from center.communications.channels.vonage import WebhookRefused, receipt_of, verify_webhook
from center.communications.contacts import parse_contacts, read_csv
from center.communications.model import CHANNELS, PURPOSES, Consent
from center.communications.templates import LANGUAGES, VARIABLES, Template
from center.communications.triggers import TRIGGERS, TriggerCampaign
from center.errors import (
    InvalidRequest,
    MalformedRequest,
    Unauthorized,
    UnknownObject,
    UnsupportedMediaType,
)
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.request import ID_PATTERN, in_db, json_body, parse_json, query_id, query_int

__all__ = ["PERMISSIONS", "add_routes"]

MAX_JSON_BYTES = 256 * 1024
MAX_CONTACTS_BYTES = 4 * 1024 * 1024
VONAGE_SECRET_ENV = "VONAGE_SIGNATURE_SECRET"
"""The variable holding the Vonage account's signature secret (webhooks are refused without)."""
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)

PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("POST", "/v1/communications/consents"): "consents.write",
    ("GET", "/v1/communications/consents/{customer_id}"): ("customers.read", "consents.write"),
    ("POST", "/v1/communications/contacts"): "customers.write",
    ("PUT", "/v1/communications/templates/{template_id}"): "communications.write",
    ("POST", "/v1/communications/templates/{template_id}/preview"): "communications.read",
    ("POST", "/v1/communications/campaigns/burning"): "communications.write",
    ("POST", "/v1/communications/campaigns/{campaign_id}/fallback"): "communications.write",
    ("POST", "/v1/communications/campaigns/trigger"): "communications.write",
    ("GET", "/v1/communications/campaigns/{campaign_id}"): "communications.read",
    ("GET", "/v1/communications/messages"): "communications.read",
    ("GET", "/v1/communications/unsubscribe/{token}"): PUBLIC,
    ("POST", "/v1/communications/unsubscribe/{token}"): PUBLIC,
    ("GET", "/v1/communications/opened/{token}"): PUBLIC,
    # Authenticated as Vonage signs its webhooks (a JWT over the body), not by a Center user.
    ("POST", "/v1/communications/callbacks/vonage"): PUBLIC,
}
"""(method, canonical route path) -> the permission a caller needs."""


def add_routes(app: web.Application) -> None:
    """Register this module's routes."""
    app.router.add_post("/v1/communications/consents", record_consents)
    app.router.add_get("/v1/communications/consents/{customer_id}", consents)
    app.router.add_post("/v1/communications/contacts", load_contacts)
    app.router.add_put("/v1/communications/templates/{template_id}", put_template)
    app.router.add_post("/v1/communications/templates/{template_id}/preview", preview)
    app.router.add_post("/v1/communications/campaigns/burning", launch)
    app.router.add_post("/v1/communications/campaigns/{campaign_id}/fallback", fallback)
    app.router.add_post("/v1/communications/campaigns/trigger", launch_triggered)
    app.router.add_get("/v1/communications/campaigns/{campaign_id}", campaign)
    app.router.add_get("/v1/communications/messages", messages)
    app.router.add_get("/v1/communications/unsubscribe/{token}", unsubscribe_page)
    app.router.add_post("/v1/communications/unsubscribe/{token}", unsubscribe)
    app.router.add_get("/v1/communications/opened/{token}", opened)
    app.router.add_post("/v1/communications/callbacks/vonage", vonage_status)


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise MalformedRequest(name, f"expected an id, got {value[:80]!r}")
    return value


def _token(request: web.Request) -> str:
    token = request.match_info["token"]
    if not 16 <= len(token) <= 64 or not set(token) <= _TOKEN_CHARS:
        raise MalformedRequest("token", "not an unsubscribe token")
    return token


def _text(body: Mapping[str, Any], name: str, where: str, *, limit: int = 500) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise MalformedRequest(f"{where}.{name}", f"expected 1..{limit} characters")
    return value


def parse_consents(body: Any, now: datetime) -> list[Consent]:
    """Consent records from {"consents": [{customer_id, channel, purpose, granted, source,
    evidence}]}; the time is the Center's."""
    items = body.get("consents") if isinstance(body, Mapping) else None
    if not isinstance(items, list) or not 0 < len(items) <= 1000:
        raise MalformedRequest("body.consents", "expected a list of 1..1000 records")
    found = []
    for i, item in enumerate(items):
        where = f"body.consents[{i}]"
        if not isinstance(item, Mapping):
            raise MalformedRequest(where, "expected an object")
        customer_id = _text(item, "customer_id", where, limit=64)
        if not ID_PATTERN.match(customer_id):
            raise MalformedRequest(f"{where}.customer_id", "expected an id")
        if item.get("channel") not in CHANNELS:
            raise InvalidRequest(f"{where}.channel", f"expected one of {', '.join(CHANNELS)}")
        if item.get("purpose") not in PURPOSES:
            raise InvalidRequest(f"{where}.purpose", f"expected one of {', '.join(PURPOSES)}")
        if not isinstance(item.get("granted"), bool):
            raise MalformedRequest(f"{where}.granted", "expected true or false")
        found.append(
            Consent(
                customer_id,
                item["channel"],
                item["purpose"],
                item["granted"],
                _text(item, "source", where, limit=100),
                _text(item, "evidence", where),
                now,
            )
        )
    return found


async def record_consents(request: web.Request) -> web.Response:
    now = request.app[CLOCK_KEY]()
    parsed = parse_consents(await json_body(request, max_bytes=MAX_JSON_BYTES), now)
    storage = request.app[STORAGE_KEY]

    def record() -> None:
        known = storage.communications.contacts(sorted({c.customer_id for c in parsed}))
        unknown = sorted({c.customer_id for c in parsed} - set(known))
        if unknown:
            raise UnknownObject("body.consents.customer_id", f"unknown customer(s): {unknown[:10]}")
        storage.communications.record_consents(parsed)

    await in_db(request, record)
    return web.json_response({"recorded": len(parsed), "actor": actor_of(request)}, status=201)


async def load_contacts(request: web.Request) -> web.Response:
    """Contacts and consents of many customers, JSON {"rows": [...], "source"} or a text/csv
    file (?source=): every bad line named, nothing loaded unless every line is good."""
    if request.content_type == "text/csv":
        data = await request.read()
        if len(data) > MAX_CONTACTS_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_CONTACTS_BYTES, actual_size=len(data))
        raw_rows: Any = read_csv(data)
        source, csv_lines = request.query.get("source", "csv file"), True
    elif request.content_type == "application/json":
        body = await json_body(request, max_bytes=MAX_CONTACTS_BYTES)
        if not isinstance(body, Mapping) or not isinstance(body.get("rows"), list):
            raise MalformedRequest("body.rows", 'expected {"rows": [...]}')
        raw_rows, source, csv_lines = body["rows"], body.get("source", "api"), False
    else:
        raise UnsupportedMediaType(
            "content-type", f"expected application/json or text/csv, got {request.content_type!r}"
        )
    if not isinstance(source, str) or not 0 < len(source) <= 100:
        raise MalformedRequest("source", "expected 1..100 characters")
    rows = parse_contacts(raw_rows, csv_lines=csv_lines)
    storage = request.app[STORAGE_KEY]
    actor, now = actor_of(request), request.app[CLOCK_KEY]()
    done = await in_db(
        request,
        lambda: storage.communications.load_contacts(
            rows, csv_lines=csv_lines, source=source, actor=actor, now=now
        ),
    )
    return web.json_response(done)


async def consents(request: web.Request) -> web.Response:
    customer_id = _path_id(request, "customer_id")
    storage = request.app[STORAGE_KEY]
    history = await in_db(request, storage.communications.consent_history, customer_id)
    current: dict[str, dict[str, bool]] = {}
    for record in history:
        current.setdefault(record["channel"], {})[record["purpose"]] = record["granted"]
    return web.json_response({"customer_id": customer_id, "current": current, "history": history})


async def put_template(request: web.Request) -> web.Response:
    template_id = _path_id(request, "template_id")
    body = await json_body(request, max_bytes=MAX_JSON_BYTES)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    template = await in_db(request, storage.communications.put_template, template_id, body, now)
    return web.json_response(
        {"template_id": template_id, "subject": template.subject, "body": template.body}
    )


async def _template(request: web.Request, template_id: str) -> Template:
    found = await in_db(request, request.app[STORAGE_KEY].communications.template, template_id)
    if found is None:
        raise UnknownObject("template_id", f"unknown template {template_id!r}")
    return found


async def preview(request: web.Request) -> web.Response:
    template = await _template(request, _path_id(request, "template_id"))
    body = await json_body(request, max_bytes=MAX_JSON_BYTES, optional=True)
    lang = body.get("lang", "ru") if isinstance(body, Mapping) else "ru"
    if lang not in LANGUAGES:
        raise InvalidRequest("body.lang", f"expected one of {', '.join(LANGUAGES)}")
    values = body.get("values", {}) if isinstance(body, Mapping) else {}
    if not isinstance(values, Mapping):
        raise MalformedRequest("body.values", "expected an object")
    for name in values:
        if name not in VARIABLES:
            raise InvalidRequest(f"body.values.{name}", f"unknown variable {name!r}")
    filled = {name: str(values.get(name, f"[{name}]")) for name in VARIABLES}
    subject, text = template.render(lang, filled)
    return web.json_response({"lang": lang, "subject": subject, "body": text})


async def _campaign(request: web.Request, body: Any) -> BurningCampaign:
    if not isinstance(body, Mapping):
        raise MalformedRequest("body", "expected a JSON object")
    campaign_id = body.get("campaign_id")
    if not isinstance(campaign_id, str) or not ID_PATTERN.match(campaign_id):
        raise MalformedRequest("body.campaign_id", "expected an id")
    templates = body.get("templates")
    if not isinstance(templates, Mapping) or not templates:
        raise MalformedRequest("body.templates", "expected {group: template_id}")
    resolved = {}
    for group, template_id in templates.items():
        if not isinstance(template_id, str) or not ID_PATTERN.match(template_id):
            raise MalformedRequest(f"body.templates.{group}", "expected a template id")
        resolved[str(group)] = await _template(request, template_id)
    raw_split = body.get("split", {"A": 9000, "X": 1000})
    if not isinstance(raw_split, Mapping) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in raw_split.values()
    ):
        raise MalformedRequest("body.split", "expected {group: share per 10000}")
    for group in resolved:
        if group not in raw_split:
            raise InvalidRequest(f"body.templates.{group}", "a group with a template needs a share")
    within = body.get("within_days", 7)
    if not isinstance(within, int) or isinstance(within, bool):
        raise MalformedRequest("body.within_days", "expected an integer")
    currency = body.get("currency", "RUB")
    if not isinstance(currency, str) or len(currency) != 3:
        raise MalformedRequest("body.currency", "expected an ISO 4217 code")
    return BurningCampaign(
        campaign_id,
        resolved,
        tuple((str(g), int(s)) for g, s in raw_split.items()),
        within,
        currency,
    )


async def launch_triggered(request: web.Request) -> web.Response:
    """Launch (or run again) a triggered chain: welcome, inactivity, birthday, purchase or a
    manual launch to a segment; each customer on their preferred channel where reachable."""
    body = await json_body(request, max_bytes=MAX_JSON_BYTES)
    burning = await _campaign(
        request, {**body, "within_days": 7} if isinstance(body, Mapping) else body
    )
    trigger = body.get("trigger")
    if trigger not in TRIGGERS:
        raise InvalidRequest("body.trigger", f"expected one of {', '.join(TRIGGERS)}")
    days = body.get("days", 30)
    if not isinstance(days, int) or isinstance(days, bool):
        raise MalformedRequest("body.days", "expected an integer")
    channels = body.get("channels", ["email", "sms"])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise MalformedRequest("body.channels", "expected a list of channel names")
    segment_id = body.get("segment_id", "")
    if not isinstance(segment_id, str) or (segment_id and not ID_PATTERN.match(segment_id)):
        raise MalformedRequest("body.segment_id", "expected a segment id")
    kind = body.get("kind", "marketing")
    if kind not in ("marketing", "transactional"):
        raise InvalidRequest("body.kind", "expected marketing or transactional")
    campaign = TriggerCampaign(
        burning.campaign_id,
        trigger,
        burning.templates,
        burning.split,
        tuple(channels),
        days,
        segment_id,
        burning.currency,
        kind,
    )
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(request, launch_trigger, storage.communications, campaign, now)
    return web.json_response(done, status=201)


async def launch(request: web.Request) -> web.Response:
    campaign = await _campaign(request, await json_body(request, max_bytes=MAX_JSON_BYTES))
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    done = await in_db(request, launch_burning, storage.communications, campaign, now)
    return web.json_response(done, status=201)


async def fallback(request: web.Request) -> web.Response:
    body = await json_body(request, max_bytes=MAX_JSON_BYTES)
    if isinstance(body, Mapping):
        body = {**body, "campaign_id": _path_id(request, "campaign_id")}
    campaign = await _campaign(request, body)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    added = await in_db(request, run_fallback, storage.communications, campaign, now)
    return web.json_response({"campaign_id": campaign.campaign_id, "enqueued": added})


async def campaign(request: web.Request) -> web.Response:
    campaign_id = _path_id(request, "campaign_id")
    pre_days = query_int(request, "pre_days", default=90)
    window_days = query_int(request, "window_days", default=30)
    if not 1 <= pre_days <= 730:
        raise InvalidRequest("pre_days", f"expected 1..730, got {pre_days}")
    if not 1 <= window_days <= 365:
        raise InvalidRequest("window_days", f"expected 1..365, got {window_days}")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    states = await in_db(request, storage.communications.state_counts, campaign_id)
    results = await in_db(request, storage.communications.results, campaign_id, now)
    if not results and not states:
        raise UnknownObject("campaign_id", f"unknown campaign {campaign_id!r}")
    reasons = await in_db(request, storage.communications.reasons, campaign_id)
    outcomes = await in_db(
        request,
        lambda: storage.communications.abx_outcomes(
            campaign_id, now, pre_days=pre_days, window_days=window_days
        ),
    )
    return web.json_response(
        {
            "campaign_id": campaign_id,
            "states": states,
            "groups": results,
            "reasons": reasons,
            # each variant against X: conversion, revenue per customer, incremental revenue,
            # 95 % intervals with CUPED on the pre-period spend
            "abx": compare_groups(outcomes),
            "pre_days": pre_days,
            "window_days": window_days,
        }
    )


async def messages(request: web.Request) -> web.Response:
    customer_id = query_id(request, "customer_id", required=False)
    campaign_id = query_id(request, "campaign_id", required=False)
    if customer_id is None and campaign_id is None:
        raise MalformedRequest("customer_id", "give customer_id or campaign_id")
    storage = request.app[STORAGE_KEY]

    def read() -> list[dict[str, Any]]:
        return storage.communications.messages(customer_id=customer_id, campaign_id=campaign_id)

    return web.json_response({"messages": await in_db(request, read)})


async def unsubscribe_page(request: web.Request) -> web.Response:
    """A GET never unsubscribes (link scanners follow links): it shows a one-button form."""
    token = html.escape(_token(request))
    return web.Response(
        text=(
            "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
            f'<form method=post action="/v1/communications/unsubscribe/{token}">'
            '<input type=hidden name="List-Unsubscribe" value="One-Click">'
            "<button>Отписаться / Unsubscribe</button></form>"
        ),
        content_type="text/html",
    )


async def unsubscribe(request: web.Request) -> web.Response:
    """RFC 8058 one-click: a POST of List-Unsubscribe=One-Click withdraws advertising consent
    on the message's channel, and its queued marketing there is skipped, in one transaction."""
    token = _token(request)
    form = await request.post()
    if form.get("List-Unsubscribe") != "One-Click":
        raise MalformedRequest("List-Unsubscribe", "expected List-Unsubscribe=One-Click")
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    evidence = f"POST from {request.remote}; User-Agent {request.headers.get('User-Agent', '')!r}"
    done = await in_db(request, storage.communications.unsubscribe, token, now, evidence)
    if done is None:
        raise UnknownObject("token", "unknown unsubscribe token")
    return web.json_response(done)


async def opened(request: web.Request) -> web.Response:
    token = _token(request)
    storage = request.app[STORAGE_KEY]
    now = request.app[CLOCK_KEY]()
    await in_db(request, storage.communications.mark_engaged, token, "opened", now)
    return web.Response(
        body=_PIXEL, content_type="image/gif", headers={"Cache-Control": "no-store"}
    )


async def vonage_status(request: web.Request) -> web.Response:
    """A Vonage Messages API status webhook: checked against the signature secret, then
    applied to the outbox as a delivery receipt (a final status only)."""
    data = await request.read()
    if len(data) > MAX_JSON_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON_BYTES, actual_size=len(data))
    now = request.app[CLOCK_KEY]()
    try:
        verify_webhook(
            request.headers.get("Authorization", ""),
            data,
            os.environ.get(VONAGE_SECRET_ENV, ""),
            now_s=now.timestamp(),
        )
    except WebhookRefused as exc:
        raise Unauthorized("Authorization", str(exc)) from exc
    status = parse_json(data)
    if not isinstance(status, Mapping):
        raise MalformedRequest("body", "expected a status object")
    receipt = receipt_of(status)
    changed = 0
    if receipt is not None:
        storage = request.app[STORAGE_KEY]
        changed = await in_db(request, storage.communications.apply_receipts, [receipt], now)
    return web.json_response({"applied": changed})
