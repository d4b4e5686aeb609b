"""The two middlewares every request passes: errors to JSON, then authentication."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from center.access.api import authorize
from center.access.nodes import NodeIdentity, record_nonce, signature_headers, verify_signature
from center.errors import (
    RequestError,
    RequestTooLarge,
    StorageError,
    Unauthorized,
    UnknownObject,
)
from center.members.api import verify_member
from center.web.keys import (
    CLOCK_KEY,
    CREDENTIALS_KEY,
    IDENTITY_KEY,
    NONCES_KEY,
    STORAGE_KEY,
)
from center.web.pages import is_page, page_error, remember_chain_language
from center.web.request import MAX_BODY_BYTES, check_path_and_query, in_db
from sync_protocol import PayloadTooLarge, ProtocolError, canonical_query

__all__ = ["auth_middleware", "error_middleware"]

log = logging.getLogger(__name__)


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Authenticate (user bearer token or node signature) and authorize every request."""
    request[IDENTITY_KEY] = None
    if request.match_info.http_exception is not None:
        return await handler(request)
    check_path_and_query(request)
    await authorize(request, _verify_node, verify_member)
    if is_page(request):
        await remember_chain_language(request)
    return await handler(request)


async def _verify_node(request: web.Request) -> NodeIdentity:
    """The node whose signature headers this request carries (docs/API.md); Unauthorized."""
    found = signature_headers(request.headers)
    if found is None:
        raise Unauthorized(
            "headers", "this request is not signed; enrol the node and sign every request"
        )
    app = request.app
    node_id = found.get("X-Loyalty-Node", "")
    known = app[CREDENTIALS_KEY]
    credential = known.get(node_id)
    if credential is None and node_id:
        credential = await in_db(request, app[STORAGE_KEY].nodes.node_credential, node_id[:64])
        if credential is not None:
            known[node_id] = credential
    body = await request.read()
    now = app[CLOCK_KEY]()
    identity = verify_signature(
        found,
        credential=credential,
        method=request.method,
        # As sent (percent-encoded), like the signer: a decoded `%2F` would be a `/`.
        path=request.rel_url.raw_path,
        query=canonical_query(list(request.query.items())),
        body=body,
        now_s=now.timestamp(),
        nonces=app[NONCES_KEY],
    )
    # Memory refused a replay to this worker since its start; the database, any other.
    nonce = found["X-Loyalty-Nonce"]
    await in_db(request, record_nonce, app[STORAGE_KEY], identity.node_id, nonce, now)
    request[IDENTITY_KEY] = identity
    return identity


def _error(status: int, kind: str, detail: str, problems: Any = None) -> web.Response:
    body: dict[str, Any] = {"error": kind, "detail": detail}
    if problems:
        body["problems"] = list(problems)
    return web.json_response(body, status=status)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every refusal becomes `{"error": kind, "detail": message}` with its status."""
    try:
        return await handler(request)
    except PayloadTooLarge as exc:
        return _error(RequestTooLarge.status, RequestTooLarge.kind, f"body: {exc}")
    except ProtocolError as exc:
        return _error(400, _snake(type(exc).__name__), str(exc))
    except RequestError as exc:
        if is_page(request):
            return page_error(request, exc)
        # A file or batch refused for many lines lists them all (center/feed/loaders.py).
        return _error(exc.status, exc.kind, str(exc), getattr(exc, "problems", None))
    except StorageError as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return _error(503, "storage_unavailable", str(exc))
    except web.HTTPRequestEntityTooLarge:
        return _error(
            RequestTooLarge.status,
            RequestTooLarge.kind,
            f"body: larger than {MAX_BODY_BYTES} bytes",
        )
    except web.HTTPNotFound:
        return _error(
            UnknownObject.status, UnknownObject.kind, f"path: no route for {request.path[:200]!r}"
        )
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return _error(
            405, "method_not_allowed", f"method: {request.method} not allowed here (use {allowed})"
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, _snake(type(exc).__name__.removeprefix("HTTP")), exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal", "internal error; see the Center's log")
