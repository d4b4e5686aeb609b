"""A local stand-in for the Vonage Messages API v1: `POST /v1/messages` with Basic auth answers
202 {"message_uuid"}, then posts signed status webhooks (HS256 JWT whose payload_hash is the
SHA-256 of the body) to the Center: Viber delivered, or for a number without Viber "rejected"
followed, when the request carried an SMS failover, by the SMS "delivered"."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["VonageServer", "sign"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(body: bytes, secret: str, iat: float) -> str:
    """The Authorization header Vonage puts on a signed webhook."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(
        json.dumps(
            {
                "iat": int(iat),
                "jti": str(uuid.uuid4()),
                "iss": "Vonage",
                "payload_hash": hashlib.sha256(body).hexdigest(),
                "api_key": "key",
            }
        ).encode()
    )
    signature = hmac.new(secret.encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest()
    return f"Bearer {head}.{claims}.{_b64(signature)}"


class VonageServer:
    """The API on an aiohttp app; `requests` keeps every accepted body, `webhooks` every status
    posted and the Center's answer status."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        signature_secret: str,
        status_url: str,
        clock: Callable[[], float],
        no_viber: frozenset[str] = frozenset(),
    ) -> None:
        self.auth = "Basic " + base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
        self.signature_secret = signature_secret
        self.status_url = status_url
        self.clock = clock
        self.no_viber = no_viber
        self.requests: list[dict[str, Any]] = []
        self.webhooks: list[tuple[dict[str, Any], int]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.send)
        return app

    async def send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self.auth:
            return web.json_response({"type": "unauthorized", "title": "Unauthorized"}, status=401)
        body = await request.json()
        problems = [
            name
            for name, ok in (
                ("channel", body.get("channel") in ("viber_service", "sms")),
                ("message_type", body.get("message_type") == "text"),
                ("to", str(body.get("to", "")).isdigit()),
                ("from", bool(body.get("from"))),
                ("text", 0 < len(str(body.get("text", ""))) <= 1000),
                ("client_ref", len(str(body.get("client_ref", ""))) <= 100),
            )
            if not ok
        ]
        for item in body.get("failover", []):
            if item.get("channel") != "sms" or not str(item.get("to", "")).isdigit():
                problems.append("failover")
        if problems:
            return web.json_response(
                {"type": "invalid-params", "title": "Invalid params", "detail": problems[0]},
                status=422,
            )
        self.requests.append(body)
        message_uuid = str(uuid.uuid4())
        task = asyncio.get_running_loop().create_task(self._report(message_uuid, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response({"message_uuid": message_uuid}, status=202)

    async def _report(self, message_uuid: str, body: dict[str, Any]) -> None:
        items = [body, *body.get("failover", [])]
        for number, item in enumerate(items, start=1):
            viber_fails = item["channel"] == "viber_service" and item["to"] in self.no_viber
            status: dict[str, Any] = {
                "message_uuid": message_uuid,
                "to": item["to"],
                "from": item["from"],
                "timestamp": "2026-12-07T12:00:00Z",
                "status": "rejected" if viber_fails else "delivered",
                "channel": item["channel"],
                "client_ref": item.get("client_ref", ""),
            }
            if len(items) > 1:
                status["workflow"] = {
                    "workflow_id": "wf-" + message_uuid,
                    "items_number": str(number),
                    "items_total": str(len(items)),
                }
            await self.post(status)
            if not viber_fails:
                return

    async def post(self, status: dict[str, Any], *, secret: str | None = None) -> int:
        """Post one status webhook to the Center, signed (with `secret` to forge one)."""
        data = json.dumps(status).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": sign(data, secret or self.signature_secret, self.clock()),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.status_url, data=data, headers=headers) as answer,
        ):
            self.webhooks.append((status, answer.status))
            return answer.status
