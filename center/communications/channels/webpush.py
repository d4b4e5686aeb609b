"""Web Push to the customer portal (pywebpush): the payload encrypted as aes128gcm (RFC 8291)
for the browser's subscription keys, authenticated to the push service with VAPID (RFC 8292),
delivered by the push service (RFC 8030)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush_async

from center.communications.model import OutMessage, Receipt, SendOutcome

__all__ = ["WebPushChannel"]


class WebPushChannel:
    """Sends to each subscription's push service, over one HTTP session."""

    name = "webpush"

    def __init__(
        self,
        *,
        vapid_private_key: str,
        subject: str,
        ttl_s: int = 86_400,
        rate_per_s: float = 50.0,
        timeout_s: float = 30.0,
    ) -> None:
        """`vapid_private_key`: the application server's P-256 key (PEM, or base64url DER as
        `vapid --gen` writes it); `subject`: a mailto: or https: contact (RFC 8292 `sub`)."""
        if not subject.startswith(("mailto:", "https:")):
            raise ValueError(f"subject: expected mailto: or https:, got {subject!r}")
        if vapid_private_key.lstrip().startswith("-----BEGIN"):
            self.vapid = Vapid02.from_pem(vapid_private_key.encode())
        else:
            self.vapid = Vapid02.from_string(private_key=vapid_private_key)
        self.subject = subject
        self.ttl_s = ttl_s
        self.rate_per_s = rate_per_s
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()

    def payload(self, message: OutMessage) -> str:
        """What the portal's service worker receives (decrypted) in its push event."""
        return json.dumps(
            {"title": message.subject, "body": message.body, "tag": message.idempotency_key},
            ensure_ascii=False,
        )

    async def send(self, message: OutMessage) -> SendOutcome:
        await self.open()
        try:
            subscription: dict[str, Any] = json.loads(message.address)
        except ValueError:
            return SendOutcome(False, permanent=True, reason="not a push subscription")
        try:
            answer = await webpush_async(
                subscription,
                data=self.payload(message),
                vapid_private_key=self.vapid,
                vapid_claims={"sub": self.subject},
                ttl=self.ttl_s,
                timeout=self.timeout_s,
                aiohttp_session=self._session,
            )
        except WebPushException as exc:
            status = exc.status_code or 0
            # 404 / 410: the subscription is gone for good; 429 and 5xx: try again later.
            retry = status == 429 or status >= 500 or status == 0
            return SendOutcome(False, permanent=not retry, reason=f"push {status}: {exc}"[:300])
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendOutcome(False, reason=f"push: {exc!r}"[:300])
        assert not isinstance(answer, str)
        location = answer.headers.get("Location", "") or message.message_id
        return SendOutcome(True, (location,))

    async def receipts(self) -> list[Receipt]:
        return []  # RFC 8030 receipts need a receipt subscription; acceptance is what we know

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
