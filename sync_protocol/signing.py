"""Request signatures between nodes: HMAC-SHA256 over method, path, query, time, nonce and body.

The string signed is the lines `METHOD`, canonical path, canonical query, timestamp (Unix
seconds), nonce and the hex SHA-256 of the body, joined by "\\n". The canonical query is the
decoded (name, value) pairs sorted and percent-encoded again, and the canonical path is each
segment of the path as sent decoded and percent-encoded again (canonical_path), so that a client
library's own encoding of the URL does not change what is signed, and `a%2Fb` stays one segment.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from .errors import (
    BadSignature,
    MalformedSignatureHeader,
    MissingSignatureHeader,
    ReplayedNonce,
    StaleTimestamp,
    UnknownNode,
)
from .identifiers import ID_PATTERN

__all__ = [
    "NODE_HEADER",
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_HEADERS",
    "SIGNATURE_WINDOW_S",
    "TIMESTAMP_HEADER",
    "NonceCache",
    "SignedHeaders",
    "canonical_path",
    "canonical_query",
    "canonical_string",
    "check_timestamp",
    "new_secret",
    "parse_signature_headers",
    "request_signature",
    "sign_headers",
    "signature_headers",
    "signature_matches",
    "verify_request",
]

NODE_HEADER = "X-Loyalty-Node"
TIMESTAMP_HEADER = "X-Loyalty-Timestamp"
NONCE_HEADER = "X-Loyalty-Nonce"
SIGNATURE_HEADER = "X-Loyalty-Signature"
SIGNATURE_WINDOW_S = 300
"""A signed request is accepted while |receiver clock - timestamp| <= this many seconds."""
SIGNATURE_HEADERS = (NODE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_MAX_TIMESTAMP_DIGITS = 12


def new_secret() -> str:
    """A fresh node secret: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def canonical_query(pairs: Iterable[tuple[str, str]] | Mapping[str, str]) -> str:
    """Sorted, percent-encoded `name=value&...` of decoded query pairs."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in sorted(items))


_PATH_SAFE = "!$&'()*+,;=:@"
"""RFC 3986 pchar besides unreserved letters, digits and -._~: kept as they are in a segment."""


def canonical_path(path: str) -> str:
    """The path as signed: each `/`-separated segment percent-decoded (UTF-8) and encoded again
    the one way, whether `path` is raw (as sent on the wire) or as a client was given it.

    Sender and receiver both sign this of the raw path (the receiver: request.raw_path without
    the query), so a card number with a space, quote, non-ASCII character or `/` signs the same
    on both sides; an identifier path (letters, digits, . _ : -) is its own canonical form.
    """
    return "/".join(
        quote(unquote_to_bytes(segment), safe=_PATH_SAFE) for segment in path.split("/")
    )


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
    """Hex HMAC-SHA256 of the request's canonical string under `secret` (`path` raw or not:
    canonical_path is applied here, on both sides)."""
    text = canonical_string(
        method=method,
        path=canonical_path(path),
        query=query,
        timestamp=timestamp,
        nonce=nonce,
        body=body,
    )
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def canonical_string(
    *, method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """The text that is signed: method, path, query, timestamp, nonce, body SHA-256, by lines."""
    return "\n".join(
        (method.upper(), path, query, timestamp, nonce, hashlib.sha256(body).hexdigest())
    )


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


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """The four signature headers of one request, each checked for its form."""

    node_id: str
    timestamp: str
    nonce: str
    signature: str


def signature_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The signature headers present, or None when the request carries none of them."""
    found = {name: headers[name] for name in SIGNATURE_HEADERS if name in headers}
    return found or None


def parse_signature_headers(found: Mapping[str, str]) -> SignedHeaders:
    """Check the form of the four headers; raise a SignatureError naming the first bad one."""
    for name in SIGNATURE_HEADERS:
        if not found.get(name):
            raise MissingSignatureHeader(name)
    node_id = found[NODE_HEADER]
    timestamp = found[TIMESTAMP_HEADER]
    nonce = found[NONCE_HEADER]
    signature = found[SIGNATURE_HEADER].lower()
    if not ID_PATTERN.match(node_id):
        raise MalformedSignatureHeader(NODE_HEADER, f"not a node id: {node_id[:80]!r}")
    if not (
        timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS
    ):
        raise MalformedSignatureHeader(TIMESTAMP_HEADER, f"expected Unix seconds: {timestamp!r}")
    if not _NONCE.match(nonce):
        raise MalformedSignatureHeader(NONCE_HEADER, "expected 16..64 letters, digits, - or _")
    if not _SIGNATURE.match(signature):
        raise MalformedSignatureHeader(SIGNATURE_HEADER, "expected 64 hex digits")
    return SignedHeaders(node_id=node_id, timestamp=timestamp, nonce=nonce, signature=signature)


def check_timestamp(
    timestamp: str,
    *,
    now_s: float,
    window_s: int = SIGNATURE_WINDOW_S,
    receiver: str = "receiver",
    sender: str = "sender",
) -> None:
    """Raise StaleTimestamp when `timestamp` (Unix seconds) is over `window_s` from `now_s`."""
    skew = now_s - int(timestamp)
    if abs(skew) > window_s:
        raise StaleTimestamp(TIMESTAMP_HEADER, timestamp, skew, window_s, receiver, sender)


class NonceCache:
    """Nonces seen within twice the signature window; a second use of one is a replay.

    Memory is bounded by `max_entries`: past it the oldest nonces are forgotten first.
    Times are read from `clock` (monotonic by default) unless a caller passes `now_s`;
    one cache must be fed from one time base.
    """

    def __init__(
        self,
        window_s: int = SIGNATURE_WINDOW_S,
        max_entries: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0 or max_entries <= 0:
            raise ValueError(
                f"window_s and max_entries: must be > 0, got {window_s} and {max_entries}"
            )
        self.window_s = window_s
        self.max_entries = max_entries
        self.clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, node_id: str, nonce: str, now_s: float | None = None) -> bool:
        """Remember a nonce; False when it was already seen (a replay)."""
        now = self.clock() if now_s is None else now_s
        # Entries are kept for twice the window: a timestamp may be up to window_s in the
        # future, so its request stays acceptable until 2 * window_s after arrival.
        horizon = now - 2 * self.window_s
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest >= horizon and len(self._seen) < self.max_entries:
                break
            self._seen.popitem(last=False)
        key = (node_id, nonce)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


def verify_request(
    found: Mapping[str, str],
    secret: str | None,
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    now_s: float,
    nonces: NonceCache,
    receiver: str = "receiver",
    sender: str = "sender",
) -> SignedHeaders:
    """Parse and verify one request's signature headers; `secret` is None for an unknown node.

    Checks, in order: headers present and well-formed, node known, time window (against
    `now_s`, the receiver's Unix time), HMAC in constant time, nonce not seen before. Returns
    the parsed headers; raises a SignatureError naming the header at fault.
    """
    signed = parse_signature_headers(found)
    if secret is None:
        raise UnknownNode(NODE_HEADER, signed.node_id)
    check_timestamp(
        signed.timestamp, now_s=now_s, window_s=nonces.window_s, receiver=receiver, sender=sender
    )
    expected = request_signature(
        secret,
        method=method,
        path=path,
        query=query,
        timestamp=signed.timestamp,
        nonce=signed.nonce,
        body=body,
    )
    if not signature_matches(expected, signed.signature):
        raise BadSignature(SIGNATURE_HEADER)
    # The receiver's clock, not the cache's own, times the nonce: after a clock step back a
    # request is acceptable again for longer, and its nonce must be remembered that long.
    if not nonces.add(signed.node_id, signed.nonce, now_s):
        raise ReplayedNonce(NONCE_HEADER)
    return signed
