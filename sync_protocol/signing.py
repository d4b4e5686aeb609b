"""Request signatures between nodes: HMAC-SHA256 over method, path, query, time, nonce and body.

The string signed is the lines `METHOD`, `path`, canonical query, timestamp (Unix seconds),
nonce and the hex SHA-256 of the body, joined by "\\n". The canonical query is the decoded
(name, value) pairs sorted and percent-encoded again, so that a client library's own
encoding of the query does not change what is signed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from urllib.parse import quote

__all__ = [
    "NODE_HEADER",
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_WINDOW_S",
    "TIMESTAMP_HEADER",
    "canonical_query",
    "new_secret",
    "request_signature",
    "sign_headers",
    "signature_matches",
]

NODE_HEADER = "X-Loyalty-Node"
TIMESTAMP_HEADER = "X-Loyalty-Timestamp"
NONCE_HEADER = "X-Loyalty-Nonce"
SIGNATURE_HEADER = "X-Loyalty-Signature"
SIGNATURE_WINDOW_S = 300
"""A signed request is accepted while |receiver clock - timestamp| <= this many seconds."""


def new_secret() -> str:
    """A fresh node secret: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def canonical_query(pairs: Iterable[tuple[str, str]] | Mapping[str, str]) -> str:
    """Sorted, percent-encoded `name=value&...` of decoded query pairs."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in sorted(items))


def request_signature(
    secret: str,
    *,
    method: str,
    path: str,
    query: str,
    timestamp: str,
    nonce: str,
    body: bytes,
) -> str:
    """Hex HMAC-SHA256 of the request's canonical string under `secret`."""
    text = "\n".join(
        (method.upper(), path, query, timestamp, nonce, hashlib.sha256(body).hexdigest())
    )
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex signatures."""
    return hmac.compare_digest(expected.encode(), given.encode())


def sign_headers(
    node_id: str,
    secret: str,
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    now_s: float,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four signature headers for one request (`query` as made by canonical_query)."""
    timestamp = str(int(now_s))
    nonce = nonce or secrets.token_hex(16)
    signature = request_signature(
        secret, method=method, path=path, query=query, timestamp=timestamp, nonce=nonce, body=body
    )
    return {
        NODE_HEADER: node_id,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature,
    }
