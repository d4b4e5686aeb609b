"""Console pages of advertising blocks: the list with "who sees what", the form (name,
description, audience, placement, priority, channels, time zone, period, media link, rich text),
the preview as the portal shows a block.

The form turns text into the JSON body of POST /v1/advertising/blocks and calls the same
parser and repository; errors sit next to their fields with what was typed kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from center.access.permissions import Requirement
from center.advertising.api import block_id_of
from center.advertising.model import (
    AUDIENCES,
    CHANNELS,
    STATUSES,
    Block,
    BlockInput,
    local_input,
    parse_block,
    placements_of,
)
from center.errors import RequestError, UnknownObject
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import CSP, field_errors, form_of, page_actor, render
from center.web.request import ID_PATTERN, in_db

__all__ = ["MEDIA_CSP", "PERMISSIONS", "add_routes", "with_media"]

_ONE = "/console/advertising/{block_id}"
PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/advertising"): "advertising.read",
    ("GET", "/console/advertising/new"): "advertising.write",
    ("POST", "/console/advertising/new"): "advertising.write",
    ("POST", "/console/advertising/preview"): "advertising.write",
    ("GET", _ONE): "advertising.read",
    ("POST", _ONE): "advertising.write",
}
"""(method, canonical route path) -> the permission a caller needs."""

MEDIA_CSP = CSP.replace("img-src 'self' data:", "img-src 'self' data: https:") + (
    "; media-src https:"
)
"""The console's policy, letting a block's https image or video load (scripts stay 'self')."""
_MAX_TEXT = 20_000
_TEXT_FIELDS = (
    "block_id",
    "name",
    "description",
    "audience",
    "segment_id",
    "placement",
    "priority",
    "timezone",
    "starts_at",
    "ends_at",
    "media_url",
    "link_url",
    "rich_text",
    "status",
)


def N_(text: str) -> str:
    """Mark a text for the catalogues; the template translates it when shown."""
    return text


AUDIENCE_NAMES = {
    "everyone": N_("Everyone"),
    "card_holders": N_("Card holders"),
    "no_card": N_("People without a card"),
    "segment": N_("Members of a segment"),
}
CHANNEL_NAMES = {"portal": N_("Portal"), "app": N_("Mobile app")}
STATUS_NAMES = {"active": N_("shown"), "paused": N_("paused")}


def add_routes(app: web.Application) -> None:
    """Register this module's routes (`new` and `preview` before the id they would shadow)."""
    app.router.add_get("/console/advertising", blocks_page)
    app.router.add_get("/console/advertising/new", new_form)
    app.router.add_post("/console/advertising/new", create)
    app.router.add_post("/console/advertising/preview", preview)
    app.router.add_get(_ONE, block_page)
    app.router.add_post(_ONE, update)


def with_media(response: web.StreamResponse) -> web.StreamResponse:
    """The page may show https images and videos (blocks' media)."""
    response.headers["Content-Security-Policy"] = MEDIA_CSP
    return response


def _labels() -> dict[str, Any]:
    return {
        "audiences": AUDIENCES,
        "audience_names": AUDIENCE_NAMES,
        "channels": CHANNELS,
        "channel_names": CHANNEL_NAMES,
        "statuses": STATUSES,
        "status_names": STATUS_NAMES,
    }


def form_values(data: BlockInput) -> dict[str, Any]:
    """A stored block as the form shows it (times local to its zone)."""
    doc = data.to_doc()
    values: dict[str, Any] = {k: str(doc.get(k, "")) for k in _TEXT_FIELDS}
    values["starts_at"] = local_input(data.starts_at, data.timezone)
    values["ends_at"] = local_input(data.ends_at, data.timezone)
    values["channels"] = list(data.channels)
    return values


async def _posted(request: web.Request) -> dict[str, Any]:
    form = await form_of(request)
    values: dict[str, Any] = {n: str(form.get(n, ""))[:_MAX_TEXT] for n in _TEXT_FIELDS}
    values["channels"] = [str(c) for c in form.getall("channels", []) if str(c) in CHANNELS]
    return values


def _body(values: Mapping[str, Any]) -> dict[str, Any]:
    """The form as the JSON body the API parses (priority as a number when it is one)."""
    body: dict[str, Any] = {k: values[k] for k in _TEXT_FIELDS if k != "priority"}
    text = str(values.get("priority", "")).strip() or "0"
    body["priority"] = int(text) if text.isdigit() and len(text) < 7 else text
    body["channels"] = list(values.get("channels", []))
    return body


async def _checked(
    request: web.Request, block_id: str | None
) -> tuple[BlockInput | None, dict[str, Any], dict[str, str]]:
    values = await _posted(request)
    if block_id is not None:
        values["block_id"] = block_id
    repo = request.app[STORAGE_KEY].advertising
    try:
        hosts = await in_db(request, repo.media_hosts)
        data = parse_block(_body(values), block_id=block_id, media_hosts=hosts)
    except RequestError as exc:
        return None, values, field_errors(exc)
    return data, values, {}


async def _segments(request: web.Request) -> list[dict[str, Any]]:
    return await in_db(request, request.app[STORAGE_KEY].segments.list_segments)


async def blocks_page(request: web.Request) -> web.StreamResponse:
    """Every block; with `?customer_id=&placement=&channel=`, what that customer sees now."""
    repo = request.app[STORAGE_KEY].advertising
    found: list[Block] = await in_db(request, repo.blocks)
    customer_id = request.query.get("customer_id", "").strip()[:64]
    placement = request.query.get("placement", "").strip()[:64]
    channel = request.query.get("channel", "portal")
    channel = channel if channel in CHANNELS else "portal"
    seen: list[Block] | None = None
    check_error = ""
    if placement:
        if customer_id and not ID_PATTERN.match(customer_id):
            check_error = "customer_id"
        else:
            now = request.app[CLOCK_KEY]()
            seen = await in_db(
                request, repo.blocks_for, customer_id or None, placement, channel, now
            )
    context = {
        **_labels(),
        "blocks": found,
        "placements": placements_of(found),
        "check": {"customer_id": customer_id, "placement": placement, "channel": channel},
        "seen": seen,
        "check_error": check_error,
        "now": request.app[CLOCK_KEY](),
    }
    return with_media(render(request, "advertising/list.html", context))


async def _form(
    request: web.Request,
    block: Block | None,
    values: Mapping[str, Any],
    errors: Mapping[str, str],
    *,
    status: int = 200,
    done: str = "",
) -> web.StreamResponse:
    context = {
        **_labels(),
        "block": block,
        "values": values,
        "errors": errors,
        "segments": await _segments(request),
        "done": done,
        "preview": block.data if block is not None and not errors else None,
    }
    return with_media(render(request, "advertising/block.html", context, status=status))


async def new_form(request: web.Request) -> web.StreamResponse:
    """An empty block: everyone, both channels, Moscow time, from today for a month."""
    now = request.app[CLOCK_KEY]()
    zone = "Europe/Moscow"
    values = {
        "audience": "everyone",
        "channels": list(CHANNELS),
        "timezone": zone,
        "priority": "0",
        "status": "active",
        "placement": "home_top",
        "starts_at": local_input(now, zone)[:10] + "T00:00",
        "ends_at": "",
    }
    return await _form(request, None, values, {})


async def create(request: web.Request) -> web.StreamResponse:
    """Save a new block; the form again with the errors next to their fields (422, 409)."""
    data, values, errors = await _checked(request, None)
    if data is not None:
        repo = request.app[STORAGE_KEY].advertising
        try:
            await in_db(
                request, repo.create_block, data, page_actor(request), request.app[CLOCK_KEY]()
            )
        except RequestError as exc:
            errors = field_errors(exc)
            return await _form(request, None, values, errors, status=exc.status)
        return web.Response(
            status=303, headers={"Location": f"/console/advertising/{data.block_id}?done=saved"}
        )
    return await _form(request, None, values, errors, status=422)


async def _existing(request: web.Request, block_id: str) -> Block:
    found = await in_db(request, request.app[STORAGE_KEY].advertising.block, block_id)
    if found is None:
        raise UnknownObject("block_id", f"unknown advertising block {block_id!r}")
    return found


async def block_page(request: web.Request) -> web.StreamResponse:
    """One block: its form (read-only without the right to write) and its preview."""
    block = await _existing(request, block_id_of(request))
    done = request.query.get("done", "")
    return await _form(
        request,
        block,
        form_values(block.data),
        {},
        done=done if done in ("saved", "unchanged") else "",
    )


async def update(request: web.Request) -> web.StreamResponse:
    """Save the block's new content; the form again with the errors next to their fields."""
    block_id = block_id_of(request)
    before = await _existing(request, block_id)
    data, values, errors = await _checked(request, block_id)
    if data is not None:
        repo = request.app[STORAGE_KEY].advertising
        try:
            after = await in_db(
                request, repo.update_block, data, page_actor(request), request.app[CLOCK_KEY]()
            )
        except RequestError as exc:
            if isinstance(exc, UnknownObject):
                raise
            return await _form(request, before, values, field_errors(exc), status=exc.status)
        done = "saved" if after.revision != before.revision else "unchanged"
        return web.Response(
            status=303, headers={"Location": f"/console/advertising/{block_id}?done={done}"}
        )
    return await _form(request, before, values, errors, status=422)


async def preview(request: web.Request) -> web.StreamResponse:
    """The posted form shown as the portal would show the block (nothing saved): an htmx
    fragment, or the errors that would refuse it."""
    values = await _posted(request)
    if not values.get("block_id"):
        values["block_id"] = "preview"
    repo = request.app[STORAGE_KEY].advertising
    errors: dict[str, str] = {}
    data: BlockInput | None = None
    try:
        data = parse_block(_body(values), media_hosts=await in_db(request, repo.media_hosts))
    except RequestError as exc:
        errors = field_errors(exc)
    if not request.headers.get("HX-Request"):
        context = {
            **_labels(),
            "block": None,
            "values": values,
            "errors": errors,
            "segments": await _segments(request),
            "done": "",
            "preview": data,
        }
        return with_media(render(request, "advertising/block.html", context))
    context = {**_labels(), "preview": data, "errors": errors}
    return with_media(render(request, "advertising/preview.html", context))
