"""The store node's one reader of JSON request bodies: content type, size, then the checked
JSON of sync_protocol (depth, surrogates, NUL, 64-bit integers), 4xx naming the field."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from store_node.errors import MalformedRequest, RequestTooLarge, UnsupportedMediaType
from sync_protocol import MalformedMessage, check_card_no, check_json_value, load_json

__all__ = ["card_no_value", "check_path_and_query", "json_body"]


def check_path_and_query(request: web.Request) -> None:
    """400 naming the path part or query parameter that holds a NUL or a lone surrogate."""
    try:
        check_json_value(dict(request.match_info), root="path")
        check_json_value(dict(request.query), root="query")
    except MalformedMessage as exc:
        raise MalformedRequest(str(exc)) from exc


def card_no_value(value: Any, field: str = "card_no") -> str:
    """A card number from a path or body by the one card-number rule (trimmed, digits);
    400 naming `field` otherwise."""
    try:
        return check_card_no(value, where=field)
    except MalformedMessage as exc:
        raise MalformedRequest(f"{field}: {exc.problem}") from exc


async def json_body(request: web.Request, *, max_bytes: int, empty: Any = None) -> Any:
    """The request's JSON body: 415 for another content type, 413 above `max_bytes`, 400 naming
    the field for anything load_json refuses; an empty body is `empty` (400 when None)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type: expected application/json, got {request.content_type or 'nothing'!r}"
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise RequestTooLarge(f"body: {request.content_length} bytes is more than {max_bytes}")
    data = await request.read()
    if len(data) > max_bytes:
        raise RequestTooLarge(f"body: {len(data)} bytes is more than {max_bytes}")
    if not data and empty is not None:
        return empty
    try:
        return load_json(data)
    except MalformedMessage as exc:
        raise MalformedRequest(str(exc)) from exc
