"""This register's credentials for its store node: enrolment with a one-time token, signing."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from pos_agent.errors import EnrolmentFailed
from sync_protocol import canonical_query, sign_headers

__all__ = ["CREDENTIALS_FILE", "Credentials", "enrol", "load_credentials", "save_credentials"]

CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The node id and secret the store node issued to this register at enrolment."""

    node_id: str
    register_id: str
    secret: str

    def headers(
        self,
        method: str,
        url: str,
        params: Any = None,
        body: Any = b"",
        *,
        now_s: float | None = None,
    ) -> dict[str, str]:
        """Signature headers for one request to `url` (params and body as given to requests)."""
        data = body if isinstance(body, bytes) else b""
        return sign_headers(
            self.node_id,
            self.secret,
            method=method,
            path=urlsplit(url).path,
            query=canonical_query(dict(params or {})),
            body=data,
            now_s=signing_time() if now_s is None else now_s,
        )


def signing_time() -> float:
    """Unix seconds for signatures: the wall clock plus LOYALTY_CLOCK_SKEW_S (skew tests only).

    `loyalty-pos serve` refuses a malformed value at start and shifts its clock by the same
    amount, so the register signs with the time it stamps its sales with.
    """
    try:
        return time.time() + float(os.environ.get("LOYALTY_CLOCK_SKEW_S") or 0)
    except ValueError:
        return time.time()


def load_credentials(data_dir: Path) -> Credentials | None:
    """The credentials kept in `data_dir`, or None before enrolment (or if unreadable)."""
    try:
        raw = json.loads((data_dir / CREDENTIALS_FILE).read_text(encoding="utf-8"))
        return Credentials(
            node_id=str(raw["node_id"]),
            register_id=str(raw["register_id"]),
            secret=str(raw["secret"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EnrolmentFailed(
            f"{data_dir / CREDENTIALS_FILE}: unreadable ({exc}); enrol again"
        ) from exc


def save_credentials(data_dir: Path, credentials: Credentials) -> Path:
    """Write the credentials file, readable by this user only (0600), atomically."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CREDENTIALS_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(
            fd,
            json.dumps(
                {
                    "node_id": credentials.node_id,
                    "register_id": credentials.register_id,
                    "secret": credentials.secret,
                }
            ).encode(),
        )
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def enrol(
    store_url: str,
    token: str,
    register_id: str,
    *,
    timeout_s: float,
    verify: str | bool = True,
) -> Credentials:
    """Redeem an enrolment token at the store node (POST /v1/enrol); an https node's
    certificate is checked against `verify` (store_node.ca_file, or True: system CAs)."""
    url = f"{store_url.rstrip('/')}/v1/enrol"
    session = requests.Session()
    session.trust_env = False  # never through an internet proxy on the shop LAN
    session.verify = verify
    try:
        response = session.post(
            url, json={"token": token, "register_id": register_id}, timeout=timeout_s
        )
    except requests.RequestException as exc:
        raise EnrolmentFailed(f"POST {url}: {exc}") from exc
    finally:
        session.close()
    if response.status_code != 200:
        raise EnrolmentFailed(f"POST {url}: HTTP {response.status_code} {response.text[:300]}")
    try:
        answer = response.json()
        credentials = Credentials(
            node_id=str(answer["node_id"]),
            register_id=str(answer["register_id"]),
            secret=str(answer["secret"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EnrolmentFailed(f"POST {url}: unexpected answer {response.text[:200]!r}") from exc
    if credentials.register_id != register_id:
        raise EnrolmentFailed(
            f"POST {url}: enrolled as register {credentials.register_id!r}, "
            f"but register.register_id is {register_id!r}"
        )
    return credentials
