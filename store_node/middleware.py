"""The two middlewares every store-node request passes: errors to JSON, then signatures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from store_node.auth import (
    Unauthorized,
    record_nonce,
    signature_headers,
    verify_signature,
)
from store_node.bodies import check_path_and_query
from store_node.errors import (
    RequestError,
)
from store_node.keys import (
    AUTH_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
    IDENTITY_KEY,
    KNOWN_KEY,
    MAX_BODY_KEY,
    NONCES_KEY,
    STORED_NONCES_KEY,
)
from sync_protocol import (
    PayloadTooLarge,
    ProtocolError,
    UnexpectedMessageType,
    canonical_query,
)

__all__ = ["OPEN_PATHS", "auth_middleware", "error_middleware"]

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset(
    {"/", "/sign-in", "/sign-out", "/registers", "/health", "/v1/enrol", "/v1/sales/summary"}
)
"""Answered without a signature: the admin page (its own sign-in, session and CSRF token:
store_node/admin_page.py) and liveness (the same figures), enrolment (the token is the
credential), totals."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, kind: str, detail: str) -> web.Response:
    return web.json_response({"error": kind, "detail": detail}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every refusal to a JSON `{"error", "detail"}` answer; nothing was written before it."""
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(exc.status, exc.kind, str(exc))
    except PayloadTooLarge as exc:
        return _error(413, "too_large", f"body: {exc}")
    except UnexpectedMessageType as exc:
        return _error(422, "unexpected_type", str(exc))
    except ProtocolError as exc:
        return _error(400, "malformed", str(exc))
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[MAX_BODY_KEY]
        return _error(413, "too_large", f"body: larger than the limit of {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = exc.reason.lower().replace(" ", "_")
        return _error(exc.status, kind, f"{request.method} {request.path}: {exc.reason}")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(500, "internal", "internal error; see the store node log")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Verify the register signature of every route but OPEN_PATHS (docs/API.md)."""
    request[IDENTITY_KEY] = None
    if request.match_info.http_exception is None:
        check_path_and_query(request)
    if request.path in OPEN_PATHS or request.match_info.http_exception is not None:
        return await handler(request)
    app = request.app
    found = signature_headers(request.headers)
    if found is None:
        if app[CONFIG_KEY].security.require_signatures:
            raise Unauthorized(
                "headers: this request is not signed; enrol the register "
                "(loyalty-pos enrol) and sign every request"
            )
        return await handler(request)
    node_id = found.get("X-Loyalty-Node", "")[:64]
    known = app[KNOWN_KEY]
    credential = known.get(node_id)
    if credential is None and node_id:
        credential = await asyncio.to_thread(app[AUTH_KEY].credential, node_id)
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
    # Memory refused a replay since this start; auth.db, one from before a restart.
    nonce = found["X-Loyalty-Nonce"]
    await asyncio.to_thread(record_nonce, app[STORED_NONCES_KEY], identity.node_id, nonce, now)
    request[IDENTITY_KEY] = identity
    return await handler(request)
