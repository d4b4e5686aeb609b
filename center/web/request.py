"""What every route module reads from a request: bodies, query values, path ids, the DB thread."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from center.errors import Forbidden, MalformedRequest, UnsupportedContentType
from center.web.keys import EXECUTOR_KEY, IDENTITY_KEY
from sync_protocol import (
    CONTENT_TYPE,
    DEFAULT_CARD_RULE,
    CardRule,
    MalformedMessage,
    check_card_no,
    check_json_value,
    load_json,
)

__all__ = [
    "ID_PATTERN",
    "MAX_BODY_BYTES",
    "MAX_ID_LEN",
    "card_no_param",
    "card_no_value",
    "check_path_and_query",
    "in_db",
    "iso",
    "json_body",
    "msgpack_body",
    "own_store",
    "parse_json",
    "query_id",
    "query_int",
]

T = TypeVar("T")

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest accepted request body; the same bound the decoder enforces on a message."""
MAX_ID_LEN = 64
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
"""An identifier in a path or query: 1..64 letters, digits and . _ : - (first alphanumeric)."""


async def in_db(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on the app's database thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[EXECUTOR_KEY], fn, *args)


async def msgpack_body(request: web.Request) -> bytes:
    """The raw msgpack body; 415 for another content type."""
    if request.content_type != CONTENT_TYPE:
        raise UnsupportedContentType(
            "content-type", f"expected {CONTENT_TYPE}, got {request.content_type!r}"
        )
    return await request.read()


async def json_body(request: web.Request, *, max_bytes: int, optional: bool = False) -> Any:
    """The request's JSON body: 415 for another content type, 413 above ``max_bytes``, 400 for
    text that is not JSON; ``optional`` makes a missing or empty body ``{}``."""
    if optional and not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise UnsupportedContentType(
            "content-type", f"expected application/json, got {request.content_type!r}"
        )
    data = await request.read()
    if len(data) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(data))
    if optional and not data:
        return {}
    return parse_json(data)


def parse_json(data: bytes) -> Any:
    """The Center's one JSON reader of request bodies (sync_protocol.load_json): 400 naming the
    field for text that is not JSON, nested too deep, a lone surrogate or NUL in a string, an
    integer beyond 64 bits or a number JSON does not allow."""
    try:
        return load_json(data)
    except MalformedMessage as exc:
        raise MalformedRequest(exc.path or "body", exc.problem) from exc


def check_path_and_query(request: web.Request) -> None:
    """400 naming the path part or query parameter that holds a NUL or a lone surrogate: no
    database stores them, and every handler reads these values."""
    try:
        check_json_value(dict(request.match_info), root="path")
        check_json_value(dict(request.query), root="query")
    except MalformedMessage as exc:
        raise MalformedRequest(exc.path, exc.problem) from exc


def card_no_param(request: web.Request) -> str:
    """The `{card_no}` of the path, trimmed and checked by the one card-number rule
    (sync_protocol.check_card_no); 400 naming card_no otherwise."""
    return card_no_value(request.match_info["card_no"], "card_no")


def card_no_value(value: Any, field: str, rule: CardRule = DEFAULT_CARD_RULE) -> str:
    """A card number from a path or body, normalised and in `rule`'s format; 400 naming
    `field` otherwise."""
    try:
        return check_card_no(value, rule, where=field)
    except MalformedMessage as exc:
        raise MalformedRequest(field, exc.problem) from exc


def query_id(request: web.Request, name: str, *, required: bool = True) -> Any:
    """An identifier query parameter; None when absent and not required."""
    value = request.query.get(name)
    if value is None or value == "":
        if required:
            raise MalformedRequest(name, "required query parameter is missing")
        return None
    if not ID_PATTERN.match(value):
        raise MalformedRequest(
            name, f"expected 1..{MAX_ID_LEN} letters or digits, got {value[:80]!r}"
        )
    return value


def query_int(request: web.Request, name: str, *, default: int) -> int:
    """A non-negative integer query parameter, `default` when absent."""
    value = request.query.get(name)
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise MalformedRequest(name, f"expected a non-negative integer, got {value[:80]!r}")
    return int(value)


def own_store(request: web.Request, store_id: Any, *, field: str = "store_id") -> Any:
    """`store_id` if the signing node may act for it; Forbidden otherwise."""
    identity = request[IDENTITY_KEY]
    if identity is not None and store_id != identity.store_id:
        raise Forbidden(
            field,
            f"node {identity.node_id} acts for store {identity.store_id!r} only, got {store_id!r}",
        )
    return store_id


def iso(value: datetime | None) -> str | None:
    """An aware time as ISO 8601 in UTC, or None."""
    return None if value is None else value.astimezone(UTC).isoformat()
