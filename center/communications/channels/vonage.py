"""Viber with SMS failover through an aggregator's HTTP API: the Vonage Messages API v1.

Follows Vonage's published Messages API (developer.vonage.com/en/api/messages and the guide
"Sending a Message with Failover", developer.vonage.com/messages/guides/failover-message):

- send: ``POST {base}/v1/messages`` with HTTP Basic auth (API key : API secret), a JSON body
  ``{"channel": "viber_service", "message_type": "text", "to", "from", "text", "client_ref",
  "viber_service": {"category", "ttl"}, "failover": [{"channel": "sms", ...}]}``; the answer is
  ``202 {"message_uuid"[, "workflow_id"]}``; 401/403/422 are refusals (RFC 7807 bodies), 429 and
  5xx are worth a retry.
- status webhooks: ``POST`` of ``{"message_uuid", "to", "from", "timestamp", "status",
  "channel", "client_ref", "workflow": {"workflow_id", "items_number", "items_total"}}`` with
  status submitted / delivered / read / rejected / undeliverable, signed as Vonage signs them:
  ``Authorization: Bearer <JWT>``, HS256 with the account's signature secret, whose claim
  ``payload_hash`` is the SHA-256 of the body (developer.vonage.com "Signed Webhooks").

A Viber message rejected or undeliverable while a failover item follows is not final: Vonage
sends the SMS itself; only the last item's status ends the message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from center.communications.model import OutMessage, Receipt, SendOutcome

__all__ = ["VonageChannel", "WebhookRefused", "receipt_of", "verify_webhook"]

_FINAL = {"delivered": "delivered", "read": "delivered", "rejected": "failed",
          "undeliverable": "failed"}  # fmt: skip
_MAX_SKEW_S = 300


class WebhookRefused(ValueError):
    """A status webhook whose signature, hash or age does not check out."""


def _b64url(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise WebhookRefused("the token is not base64url") from exc


def verify_webhook(authorization: str, body: bytes, secret: str, *, now_s: float) -> dict[str, Any]:
    """The claims of a signed webhook: HS256 with `secret`, `payload_hash` the SHA-256 of the
    body, issued within five minutes of `now_s`; WebhookRefused otherwise."""
    if not secret:
        raise WebhookRefused("no signature secret is configured")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        raise WebhookRefused("expected Authorization: Bearer <JWT>")
    head_b64, claims_b64, signature_b64 = token.split(".")
    try:
        header = json.loads(_b64url(head_b64))
        claims = json.loads(_b64url(claims_b64))
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRefused("the token is not JSON") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise WebhookRefused("expected an HS256 token")
    expected = hmac.new(
        secret.encode(), f"{head_b64}.{claims_b64}".encode(), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(expected, _b64url(signature_b64)):
        raise WebhookRefused("bad signature")
    if not isinstance(claims, dict):
        raise WebhookRefused("the claims are not an object")
    if not hmac.compare_digest(
        str(claims.get("payload_hash", "")), hashlib.sha256(body).hexdigest()
    ):
        raise WebhookRefused("payload_hash does not match the body")
    issued = claims.get("iat")
    if not isinstance(issued, int | float) or abs(now_s - issued) > _MAX_SKEW_S:
        raise WebhookRefused("the token is stale or from the future")
    return claims


def receipt_of(status: Mapping[str, Any]) -> Receipt | None:
    """The Receipt a status webhook means, or None while the message is still on its way
    (submitted, or the Viber item failed and the SMS failover follows)."""
    uuid, state = status.get("message_uuid"), _FINAL.get(str(status.get("status")))
    if not isinstance(uuid, str) or not uuid or state is None:
        return None
    workflow = status.get("workflow")
    if state == "failed" and isinstance(workflow, Mapping):
        try:
            number, total = int(workflow["items_number"]), int(workflow["items_total"])
        except (KeyError, TypeError, ValueError):
            number, total = 1, 1
        if number < total:
            return None  # Vonage now sends the next item (the SMS) itself
    channel = str(status.get("channel", ""))
    return Receipt(uuid, state, f"{status.get('status')} on {channel}")


class VonageChannel:
    """Viber (with an SMS failover when the customer agreed to SMS) over one HTTP session."""

    name = "viber"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        api_secret: str,
        viber_service_id: str,
        sms_sender: str,
        category: str = "promotion",
        ttl_s: int = 86_400,
        rate_per_s: float = 30.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key, self.api_secret = api_key, api_secret
        self.viber_service_id, self.sms_sender = viber_service_id, sms_sender
        self.category, self.ttl_s = category, ttl_s
        self.rate_per_s = rate_per_s
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None or self._session.closed:
            basic = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Basic {basic}"},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            )

    def body(self, message: OutMessage) -> dict[str, Any]:
        """The request body of one message: Viber, then the SMS failover if allowed."""
        category = "transaction" if message.kind == "transactional" else self.category
        found: dict[str, Any] = {
            "channel": "viber_service",
            "message_type": "text",
            "to": message.address,
            "from": self.viber_service_id,
            "text": message.body,
            "client_ref": message.idempotency_key[:100],
            "viber_service": {"category": category, "ttl": self.ttl_s},
        }
        if message.sms_failover:
            found["failover"] = [
                {
                    "channel": "sms",
                    "message_type": "text",
                    "to": message.address,
                    "from": self.sms_sender,
                    "text": message.body,
                    "client_ref": message.idempotency_key[:100],
                }
            ]
        return found

    async def send(self, message: OutMessage) -> SendOutcome:
        await self.open()
        assert self._session is not None
        try:
            async with self._session.post(
                f"{self.base_url}/v1/messages", json=self.body(message)
            ) as answer:
                text = await answer.text()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendOutcome(False, reason=f"vonage: {exc!r}"[:300])
        if status == 202:
            try:
                uuid = json.loads(text)["message_uuid"]
            except (ValueError, KeyError, TypeError):
                return SendOutcome(False, reason=f"vonage: 202 without message_uuid: {text[:200]}")
            return SendOutcome(True, (str(uuid),))
        detail = text[:300]
        try:
            problem = json.loads(text)
            detail = f"{problem.get('title', '')}: {problem.get('detail', '')}"[:300]
        except (ValueError, AttributeError):
            pass
        retry = status == 429 or status >= 500
        return SendOutcome(False, permanent=not retry, reason=f"vonage {status} {detail}")

    async def receipts(self) -> list[Receipt]:
        return []  # statuses arrive as webhooks at the Center (api.py), not on this session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
