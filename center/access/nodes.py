"""Store-node enrolment (one-time, expiring tokens) and request-signature verification.

A verified request's nonce is checked twice: in the worker's memory (a replay refused with no
database round trip), then claimed in the database (`record_nonce`), so that a replay is
refused after a restart and by another Center worker sharing the same PostgreSQL.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from center.errors import EnrolmentRefused, Unauthorized
from center.storage import Storage
from sync_protocol import (
    NONCE_HEADER,
    SIGNATURE_WINDOW_S,
    ReplayedNonce,
    SignatureError,
    new_secret,
    signature_headers,
    verify_request,
)
from sync_protocol import (
    NonceCache as ProtocolNonceCache,
)

__all__ = [
    "MAX_TTL_H",
    "NONCE_HORIZON",
    "Enrolment",
    "NodeIdentity",
    "NonceCache",
    "enrol_node",
    "issue_token",
    "record_nonce",
    "signature_headers",
    "token_hash",
    "verify_signature",
]

MAX_TTL_H = 24 * 30
NONCE_HORIZON = timedelta(seconds=2 * SIGNATURE_WINDOW_S)
"""How long a nonce is held: a timestamp may be a window ahead, so its request stays
acceptable for up to twice the window after it arrives."""


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who signed a request: the enrolled node and the one store it may act for."""

    node_id: str
    store_id: str


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What a store node receives once, in exchange for its token."""

    node_id: str
    store_id: str
    secret: str


def token_hash(token: str) -> str:
    """The SHA-256 hex kept instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(storage: Storage, store_id: str, now: datetime, ttl_h: float) -> str:
    """Create a one-time enrolment token for `store_id`, valid for `ttl_h` hours."""
    if not 0 < ttl_h <= MAX_TTL_H:
        raise ValueError(f"ttl_h: must be > 0 and at most {MAX_TTL_H} hours, got {ttl_h}")
    token = "lt1_" + secrets.token_urlsafe(32)
    storage.nodes.add_enrolment_token(
        token_hash(token), store_id, now, now + timedelta(hours=ttl_h)
    )
    return token


def enrol_node(storage: Storage, token: str, now: datetime) -> Enrolment:
    """Redeem a token; raise EnrolmentRefused for an unknown, used or expired one."""
    node_id = f"node-{secrets.token_hex(8)}"
    secret = new_secret()
    status, store_id = storage.nodes.redeem_enrolment_token(token_hash(token), node_id, secret, now)
    if status == "used":
        raise EnrolmentRefused(
            "token_used", 403, "this enrolment token was already used; issue a new one"
        )
    if status == "expired":
        raise EnrolmentRefused(
            "token_expired", 403, "this enrolment token has expired; issue a new one"
        )
    if status != "enrolled" or store_id is None:
        raise EnrolmentRefused("invalid_token", 401, "unknown enrolment token")
    return Enrolment(node_id=node_id, store_id=store_id, secret=secret)


class NonceCache(ProtocolNonceCache):
    """The Center's replay cache: room for every store node's requests within the window."""

    def __init__(
        self,
        window_s: int = SIGNATURE_WINDOW_S,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(window_s, max_entries, clock)


def verify_signature(
    found: Mapping[str, str],
    *,
    credential: tuple[str, str] | None,
    method: str,
    path: str,
    query: str,
    body: bytes,
    now_s: float,
    nonces: ProtocolNonceCache,
) -> NodeIdentity:
    """Check one request's signature headers; raise Unauthorized naming what is wrong."""
    try:
        signed = verify_request(
            found,
            None if credential is None else credential[1],
            method=method,
            path=path,
            query=query,
            body=body,
            now_s=now_s,
            nonces=nonces,
            receiver="Center",
            sender="node",
        )
    except SignatureError as exc:
        raise Unauthorized(f"header {exc.header}", exc.problem) from exc
    assert credential is not None  # verify_request refuses an unknown node
    return NodeIdentity(node_id=signed.node_id, store_id=credential[0])


def record_nonce(storage: Storage, node_id: str, nonce: str, now: datetime) -> None:
    """Claim a verified request's nonce in the database; Unauthorized if it was already used.

    Refuses a replay sent after a restart, or to another Center worker on the same database.
    """
    if not storage.nodes.claim_nonce(node_id, nonce, now, NONCE_HORIZON):
        raise Unauthorized(f"header {NONCE_HEADER}", ReplayedNonce.default_problem)
