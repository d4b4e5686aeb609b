"""Test helpers: a user token of a role, and a JSON client calling the Center with it."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient

from center.access.users import create_user
from center.storage import Storage

__all__ = ["StaffApi", "staff_token"]

_numbers = itertools.count(1)
# Earlier than any test clock, so a fresh token is valid whatever `now` the app is given.
_CREATED = datetime(2000, 1, 1, tzinfo=UTC)


def staff_token(storage: Storage, role: str, *, username: str | None = None) -> str:
    """A bearer token of a new user with `role` (named `<role>-<n>` unless given)."""
    name = username or f"{role.replace('_', '-')}-{next(_numbers)}"
    return create_user(storage, name, role, "test", _CREATED)


class StaffApi:
    """Calls the Center as one user: JSON body in, (status, JSON body) out."""

    def __init__(self, client: TestClient[Any, Any], token: str) -> None:
        self.client = client
        self.token = token

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send one request with `Authorization: Bearer <token>`; (status, decoded JSON)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        response = await self.client.request(method, path, data=data, params=query, headers=headers)
        text = await response.text()
        try:
            decoded = json.loads(text) if text else None
        except ValueError:
            decoded = text
        return response.status, decoded
