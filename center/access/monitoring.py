"""Which store node or register has stopped talking: pure rules over the nodes' heartbeats."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["LIMITS", "STATUS_ORDER", "Contact", "node_contacts"]

STATUS_ORDER = ("silent", "late", "ok")
"""Worst first."""

LIMITS: Mapping[str, tuple[timedelta, timedelta]] = {
    # A store node beats every master poll (seconds): a few minutes without one is news.
    "store": (timedelta(minutes=2), timedelta(minutes=15)),
    # A register reports to its store node; an hour's silence in opening hours is an alert.
    "register": (timedelta(minutes=10), timedelta(hours=1)),
}
"""role -> (late after, silent after) since the last contact."""
UNSYNCED = timedelta(hours=24)
"""Sales waiting this long for the Center make a store node late even when it beats."""


@dataclass(frozen=True, slots=True)
class Contact:
    """One store node or register as the Center last heard of it."""

    role: str
    store_id: str
    node_id: str
    last_seen_at: datetime | None
    age_s: int | None
    status: str
    queue_depth: int = 0
    sync_lag_s: int = 0
    devices: tuple[tuple[str, str], ...] = ()


def _status(role: str, age: timedelta | None) -> str:
    late, silent = LIMITS[role]
    if age is None or age >= silent:
        return "silent"
    return "late" if age >= late else "ok"


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else max(0, int(value.total_seconds()))


def _parse(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def node_contacts(heartbeats: Iterable[Mapping[str, Any]], now: datetime) -> list[Contact]:
    """Every store node and each register it reports, worst status first, then longest silent.

    A register's last contact is the one its store node reported, so a register behind a
    silent store node shows its last known time, not a fresh one.
    """
    found: list[Contact] = []
    for beat in heartbeats:
        store_id = str(beat["store_id"])
        devices: dict[str, dict[str, str]] = {}
        register_seen: dict[str, datetime | None] = {}
        for key, value in dict(beat.get("devices") or {}).items():
            owner, _, name = str(key).partition(":")
            if owner == "register":
                register_seen[name] = _parse(str(value))
            else:
                devices.setdefault(owner, {})[name] = str(value)
        received: datetime = beat["received_at"]
        lag = now - beat["oldest_queued_at"] if beat.get("oldest_queued_at") is not None else None
        status = _status("store", now - received)
        if status == "ok" and lag is not None and lag >= UNSYNCED:
            status = "late"
        found.append(
            Contact(
                role="store",
                store_id=store_id,
                node_id=str(beat["node_id"]),
                last_seen_at=received,
                age_s=_seconds(now - received),
                status=status,
                queue_depth=int(beat.get("queue_depth") or 0),
                sync_lag_s=_seconds(lag) or 0,
            )
        )
        for register_id in sorted(set(register_seen) | set(devices)):
            seen = register_seen.get(register_id)
            age = None if seen is None else now - seen
            found.append(
                Contact(
                    role="register",
                    store_id=store_id,
                    node_id=register_id,
                    last_seen_at=seen,
                    age_s=_seconds(age),
                    status=_status("register", age),
                    devices=tuple(sorted(devices.get(register_id, {}).items())),
                )
            )
    far = 10**12
    return sorted(
        found,
        key=lambda c: (STATUS_ORDER.index(c.status), -(far if c.age_s is None else c.age_s)),
    )
