"""Mobile push through Firebase Cloud Messaging's HTTP v1 API.

As Google documents it (firebase.google.com/docs/cloud-messaging/send-message and
developers.google.com/identity/protocols/oauth2/service-account): the service account's key signs
a JWT (RS256; iss = client_email, scope firebase.messaging, aud = token_uri, one hour), traded
at `token_uri` (grant_type jwt-bearer) for an access token; then
``POST {base}/v1/projects/{project_id}/messages:send`` with ``{"message": {"token",
"notification": {"title", "body"}, "data"}}`` answers ``{"name": "projects/.../messages/ID"}``.
404 UNREGISTERED and 400 INVALID_ARGUMENT are final; 429 and 5xx are retried; a 401 renews the
access token once.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from center.communications.model import OutMessage, Receipt, SendOutcome

__all__ = ["FCM_SCOPE", "FcmChannel", "service_account_jwt"]

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_jwt(account: Mapping[str, Any], now_s: float) -> str:
    """The signed assertion a service account trades for an access token (RFC 7523)."""
    key = serialization.load_pem_private_key(str(account["private_key"]).encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private_key: expected an RSA key")
    header = {"alg": "RS256", "typ": "JWT"}
    if account.get("private_key_id"):
        header["kid"] = str(account["private_key_id"])
    claims = {
        "iss": account["client_email"],
        "scope": FCM_SCOPE,
        "aud": account["token_uri"],
        "iat": int(now_s),
        "exp": int(now_s) + 3600,
    }
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing}.{_b64(signature)}"


class FcmChannel:
    """One project's FCM sender: an access token kept until shortly before it expires."""

    name = "fcm"

    def __init__(
        self,
        service_account: Mapping[str, Any],
        *,
        base_url: str = "https://fcm.googleapis.com",
        rate_per_s: float = 100.0,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        missing = [
            k for k in ("project_id", "client_email", "private_key", "token_uri")
            if not service_account.get(k)
        ]  # fmt: skip
        if missing:
            raise ValueError(f"service account: missing {', '.join(missing)}")
        self.account = dict(service_account)
        self.base_url = base_url.rstrip("/")
        self.rate_per_s = rate_per_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._token = ""
        self._token_until = 0.0

    async def open(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )

    async def _access_token(self, *, renew: bool = False) -> str:
        if self._token and not renew and self.clock() < self._token_until - 60:
            return self._token
        assert self._session is not None
        now = self.clock()
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": service_account_jwt(self.account, now),
        }
        async with self._session.post(self.account["token_uri"], data=form) as answer:
            body = await answer.json(content_type=None)
            if answer.status != 200 or "access_token" not in body:
                raise PermissionError(f"token endpoint {answer.status}: {str(body)[:200]}")
        self._token = str(body["access_token"])
        self._token_until = now + float(body.get("expires_in", 3600))
        return self._token

    def body(self, message: OutMessage) -> dict[str, Any]:
        """The messages:send body of one message."""
        return {
            "message": {
                "token": message.address,
                "notification": {"title": message.subject, "body": message.body},
                "data": {"idempotency_key": message.idempotency_key, "kind": message.kind},
            }
        }

    async def send(self, message: OutMessage) -> SendOutcome:
        await self.open()
        assert self._session is not None
        url = f"{self.base_url}/v1/projects/{self.account['project_id']}/messages:send"
        try:
            for attempt in (1, 2):
                token = await self._access_token(renew=attempt == 2)
                headers = {"Authorization": f"Bearer {token}"}
                async with self._session.post(url, json=self.body(message), headers=headers) as a:
                    status, text = a.status, await a.text()
                if status != 401:
                    break
        except PermissionError as exc:
            return SendOutcome(False, reason=f"fcm: {exc}"[:300])
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendOutcome(False, reason=f"fcm: {exc!r}"[:300])
        if status == 200:
            try:
                return SendOutcome(True, (str(json.loads(text)["name"]),))
            except (ValueError, KeyError, TypeError):
                return SendOutcome(False, reason=f"fcm: 200 without a name: {text[:200]}")
        retry = status in (401, 429) or status >= 500
        return SendOutcome(False, permanent=not retry, reason=f"fcm {status}: {text[:250]}")

    async def receipts(self) -> list[Receipt]:
        return []  # FCM reports acceptance; delivery shows in its own analytics, not here

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
