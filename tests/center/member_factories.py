"""Member test helpers: a clock that moves, the code a challenge put in the outbox, sign-up."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from center.storage import Storage

__all__ = ["Clock", "MemberApi", "code_in_outbox", "sign_up"]


class Clock:
    """now() for the app; `advance` moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def code_in_outbox(storage: Storage, challenge_id: str) -> str:
    """The six digits of the sign-in message a challenge queued (as the channel would send)."""
    row = storage.db.execute(
        "SELECT body FROM comm_messages WHERE idempotency_key = ?",
        (f"member-code:{challenge_id}",),
    ).fetchone()
    assert row is not None, f"no sign-in message for {challenge_id}"
    found = re.search(r"\b(\d{6})\b", row[0])
    assert found, row[0]
    return found.group(1)


class MemberApi:
    """Calls the Center as one member (or anonymous): JSON in, (status, JSON) out."""

    def __init__(self, client: TestClient[Any, Any], token: str = "") -> None:
        self.client = client
        self.token = token

    async def call(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        response = await self.client.request(method, path, data=data, params=query, headers=headers)
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def sign_up(
    client: TestClient[Any, Any], storage: Storage, address: dict[str, str]
) -> dict[str, Any]:
    """Ask a code for `address`, answer it with consent: the tokens and customer id."""
    anonymous = MemberApi(client)
    status, challenge = await anonymous.call("POST", "/v1/member/auth/code", address)
    assert status == 202, challenge
    code = code_in_outbox(storage, challenge["challenge_id"])
    status, tokens = await anonymous.call(
        "POST",
        "/v1/member/auth/verify",
        {
            "challenge_id": challenge["challenge_id"],
            "code": code,
            "consents": {"personal_data": True, "advertising": False},
        },
    )
    assert status in (200, 201), tokens
    return dict(tokens)
