"""This node's credentials for the Center: enrolment with a one-time token, and request signing."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from store_node.errors import CenterUnavailable, StorageError
from sync_protocol import canonical_query, sign_headers

__all__ = ["CREDENTIALS_FILE", "Credentials", "enrol", "load_credentials", "save_credentials"]

CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The node id and secret the Center issued to this store node at enrolment."""

    node_id: str
    store_id: str
    secret: str

    def headers(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        now_s: Callable[[], float] = time.time,
    ) -> dict[str, str]:
        """Signature headers for one request to the Center."""
        return sign_headers(
            self.node_id,
            self.secret,
            method=method,
            path=path,
            query=canonical_query(query or {}),
            body=body,
            now_s=now_s(),
        )


def load_credentials(data_dir: Path) -> Credentials | None:
    """The credentials kept in `data_dir`, or None before enrolment."""
    path = data_dir / CREDENTIALS_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(
            node_id=str(raw["node_id"]), store_id=str(raw["store_id"]), secret=str(raw["secret"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{path}: unreadable credentials ({exc}); enrol again") from exc


def save_credentials(data_dir: Path, credentials: Credentials) -> Path:
    """Write the credentials file, readable by this user only (0600), atomically."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CREDENTIALS_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        data = json.dumps(
            {
                "node_id": credentials.node_id,
                "store_id": credentials.store_id,
                "secret": credentials.secret,
            }
        ).encode()
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def enrol(
    center_url: str,
    token: str,
    store_id: str,
    *,
    timeout_s: float = 10.0,
    context: ssl.SSLContext | None = None,
) -> Credentials:
    """Redeem an enrolment token at the Center (POST /v1/enrol); raise naming the refusal."""
    url = f"{center_url}/v1/enrol"
    body = json.dumps({"token": token, "store_id": store_id}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            answer = json.loads(response.read(65536))
    except urllib.error.HTTPError as exc:
        detail = exc.read(2048).decode(errors="replace")
        raise CenterUnavailable(f"POST {url}: HTTP {exc.code} {detail}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CenterUnavailable(f"POST {url}: {exc}") from exc
    try:
        credentials = Credentials(
            node_id=str(answer["node_id"]),
            store_id=str(answer["store_id"]),
            secret=str(answer["secret"]),
        )
    except (KeyError, TypeError) as exc:
        raise CenterUnavailable(f"POST {url}: unexpected answer {str(answer)[:200]}") from exc
    if credentials.store_id != store_id:
        raise CenterUnavailable(
            f"POST {url}: the Center enrolled this node for store {credentials.store_id!r}, "
            f"but store.store_id is {store_id!r}"
        )
    return credentials
