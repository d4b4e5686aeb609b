"""Local push services the push tests send to, written from the specifications, not from the
sending library: a Web Push service (RFC 8030) that checks the VAPID token (RFC 8292) and decrypts
the aes128gcm body (RFC 8291) with the subscription's own keys; and FCM's HTTP v1 API with its
OAuth2 token endpoint (RFC 7523 JWT bearer, RS256 checked with the service account's key)."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = ["FcmServer", "PushService", "Subscriber", "service_account"]


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Subscriber:
    """A browser's subscription: its P-256 key pair and auth secret."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))
    server_key: bytes = b""

    def subscription(self, endpoint: str) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": endpoint, "keys": {"p256dh": b64e(public), "auth": b64e(self.auth)}}


class PushService:
    """POST /push/{id}: 201 with a Location when the VAPID token checks and the body decrypts;
    401 for a bad token, 400 for a body that does not decrypt, 410 for an unknown id."""

    def __init__(self) -> None:
        self.subscribers: dict[str, Subscriber] = {}
        self.received: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str]] = []
        self.origin = ""

    def subscribe(self, origin: str, application_server_key: bytes = b"") -> dict[str, Any]:
        """A new subscription; with `application_server_key` (the page's PushManager option)
        only that VAPID key may push to it (RFC 8292 section 4)."""
        sub_id = uuid.uuid4().hex
        self.subscribers[sub_id] = Subscriber(server_key=application_server_key)
        self.origin = origin
        return self.subscribers[sub_id].subscription(f"{origin}/push/{sub_id}")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/push/{sub_id}", self.push)
        return app

    def _refuse(self, status: int, why: str) -> web.Response:
        self.refused.append((status, why))
        return web.Response(status=status, text=why)

    def _check_vapid(self, header: str, subscriber: Subscriber) -> str | None:
        scheme, _, params = header.partition(" ")
        if scheme.lower() != "vapid":
            return "expected the vapid scheme"
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        if "t" not in parts or "k" not in parts:
            return "t and k required"
        token, public_raw = parts["t"], b64d(parts["k"])
        if subscriber.server_key and public_raw != subscriber.server_key:
            return "k is not the subscription's applicationServerKey"
        head_b64, claims_b64, sig_b64 = token.split(".")
        if json.loads(b64d(head_b64)).get("alg") != "ES256":
            return "expected ES256"
        signature = b64d(sig_b64)
        if len(signature) != 64:
            return "ES256 signature must be 64 bytes"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_raw)
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "bad signature"
        claims = json.loads(b64d(claims_b64))
        if claims.get("aud") != self.origin:
            return f"aud {claims.get('aud')!r} is not {self.origin!r}"
        if not time.time() < int(claims.get("exp", 0)) <= time.time() + 86_400:
            return "exp must be within 24 hours"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return "sub must be mailto: or https:"
        return None

    async def push(self, request: web.Request) -> web.Response:
        subscriber = self.subscribers.get(request.match_info["sub_id"])
        if subscriber is None:
            return self._refuse(410, "no such subscription")
        problem = self._check_vapid(request.headers.get("Authorization", ""), subscriber)
        if problem:
            return self._refuse(401, problem)
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._refuse(400, "expected Content-Encoding: aes128gcm")
        if not request.headers.get("TTL", "").isdigit():
            return self._refuse(400, "TTL required")
        body = await request.read()
        try:
            plain = http_ece.decrypt(
                body, private_key=subscriber.key, auth_secret=subscriber.auth, version="aes128gcm"
            )
        except Exception as exc:
            return self._refuse(400, f"does not decrypt: {exc!r}")
        self.received.append(json.loads(plain))
        location = f"{self.origin}/message/{uuid.uuid4().hex}"
        return web.Response(status=201, headers={"Location": location})


def service_account(token_uri: str, server: FcmServer) -> dict[str, str]:
    """A service account JSON (as the Firebase console gives it), known to `server`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "loyalty-demo",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "sender@loyalty-demo.iam.gserviceaccount.com",
        "token_uri": token_uri,
    }
    server.accounts[account["client_email"]] = key.public_key()
    return account


class FcmServer:
    """POST /token (JWT bearer grant) and POST /v1/projects/{p}/messages:send."""

    def __init__(self) -> None:
        self.accounts: dict[str, rsa.RSAPublicKey] = {}
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.sent: list[dict[str, Any]] = []
        self.unregistered: set[str] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/projects/{project}/messages:send", self.send)
        return app

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        head_b64, claims_b64, sig_b64 = str(form.get("assertion", "..")).split(".")
        claims = json.loads(b64d(claims_b64))
        public_key = self.accounts.get(str(claims.get("iss")))
        if public_key is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        try:
            public_key.verify(
                b64d(sig_b64),
                f"{head_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return web.json_response({"error": "invalid_grant"}, status=400)
        if (
            claims.get("aud") != str(request.url)
            or claims.get("scope") != "https://www.googleapis.com/auth/firebase.messaging"
            or not claims.get("iat", 0) < claims.get("exp", 0) <= claims.get("iat", 0) + 3600
        ):
            return web.json_response({"error": "invalid_grant", "claims": claims}, status=400)
        token = "ya29." + uuid.uuid4().hex
        self.tokens.add(token)
        return web.json_response(
            {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    async def send(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return web.json_response(
                {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status=401
            )
        body = await request.json()
        message = body.get("message", {})
        if not isinstance(message.get("token"), str) or "notification" not in message:
            return web.json_response(
                {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}, status=400
            )
        if message["token"] in self.unregistered:
            return web.json_response(
                {
                    "error": {
                        "code": 404,
                        "status": "NOT_FOUND",
                        "details": [{"errorCode": "UNREGISTERED"}],
                    }
                },
                status=404,
            )
        self.sent.append(message)
        name = f"projects/{request.match_info['project']}/messages/{uuid.uuid4().int % 10**16}"
        return web.json_response({"name": name})
