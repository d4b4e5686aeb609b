"""Which store node or register has stopped talking: pure rules over the nodes' heartbeats."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "LIMITS",
    "SORTS",
    "STATUS_ORDER",
    "Contact",
    "limits_of",
    "node_contacts",
    "sort_contacts",
]

STATUS_ORDER = ("silent", "late", "ok")
"""Worst first."""

LIMITS: Mapping[str, tuple[timedelta, timedelta]] = {
    # A store node beats every master poll (seconds): a few minutes without one is news.
    "store": (timedelta(minutes=2), timedelta(minutes=15)),
    # A register reports to its store node; an hour's silence in opening hours is an alert.
    "register": (timedelta(minutes=10), timedelta(hours=1)),
}
"""role -> (late after, silent after) since the last contact (the defaults of [monitoring])."""
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
    alerts: tuple[str, ...] = ()
    """Alert codes: center_unsynced, store_silent, register_silent, printer_paper_out,
    printer_paper_near_end, printer_error, display_error, store_db_recovery."""


Limits = Mapping[str, tuple[timedelta, timedelta]]


def limits_of(
    store_late_s: int, store_silent_s: int, register_late_s: int, register_silent_s: int
) -> dict[str, tuple[timedelta, timedelta]]:
    """LIMITS from the seconds of the Center's [monitoring] settings."""
    return {
        "store": (timedelta(seconds=store_late_s), timedelta(seconds=store_silent_s)),
        "register": (timedelta(seconds=register_late_s), timedelta(seconds=register_silent_s)),
    }


def _status(role: str, age: timedelta | None, limits: Limits) -> str:
    late, silent = limits[role]
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


def _device_alerts(devices: Mapping[str, str]) -> tuple[str, ...]:
    found: list[str] = []
    paper = devices.get("printer_paper", "")
    if paper in ("out", "near_end"):
        found.append(f"printer_paper_{paper}")
    for name in ("printer", "display"):
        if devices.get(name) == "error":
            found.append(f"{name}_error")
    return tuple(found)


def node_contacts(
    heartbeats: Iterable[Mapping[str, Any]], now: datetime, limits: Limits = LIMITS
) -> list[Contact]:
    """Every store node and each register it reports, worst status first, then longest silent.

    A register's last contact is the one its store node reported, so a register behind a
    silent store node shows its last known time, not a fresh one. A device alert (paper out, a
    printer error) makes a register in touch "late": it needs attention all the same.
    """
    found: list[Contact] = []
    for beat in heartbeats:
        store_id = str(beat["store_id"])
        devices: dict[str, dict[str, str]] = {}
        register_seen: dict[str, datetime | None] = {}
        store_alerts: list[str] = []
        for key, value in dict(beat.get("devices") or {}).items():
            owner, _, name = str(key).partition(":")
            if owner == "alert":
                store_alerts.append(name)
            elif owner == "register":
                register_seen[name] = _parse(str(value))
            else:
                devices.setdefault(owner, {})[name] = str(value)
        received: datetime = beat["received_at"]
        lag = now - beat["oldest_queued_at"] if beat.get("oldest_queued_at") is not None else None
        status = _status("store", now - received, limits)
        if status == "silent":
            store_alerts.insert(0, "store_silent")
        if lag is not None and lag >= UNSYNCED:
            store_alerts.append("center_unsynced")
        if status == "ok" and store_alerts:
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
                alerts=tuple(store_alerts),
            )
        )
        for register_id in sorted(set(register_seen) | set(devices)):
            seen = register_seen.get(register_id)
            age = None if seen is None else now - seen
            own = devices.get(register_id, {})
            register_status = _status("register", age, limits)
            alerts = _device_alerts(own)
            if register_status == "silent":
                alerts = ("register_silent", *alerts)
            elif alerts:
                register_status = "late"
            found.append(
                Contact(
                    role="register",
                    store_id=store_id,
                    node_id=register_id,
                    last_seen_at=seen,
                    age_s=_seconds(age),
                    status=register_status,
                    devices=tuple(sorted(own.items())),
                    alerts=alerts,
                )
            )
    far = 10**12
    return sorted(
        found,
        key=lambda c: (STATUS_ORDER.index(c.status), -(far if c.age_s is None else c.age_s)),
    )


SORTS = ("status", "store", "node", "last_contact", "queue", "lag")
"""The columns the monitoring page sorts by ("status": worst first, the default)."""


def sort_contacts(
    contacts: Iterable[Contact], by: str, *, descending: bool = False
) -> list[Contact]:
    """The contacts ordered by one of SORTS (ties keep the worst-first order)."""
    far = 10**12
    keys: dict[str, Any] = {
        "status": lambda c: (STATUS_ORDER.index(c.status), -(far if c.age_s is None else c.age_s)),
        "store": lambda c: (c.store_id, c.role != "store", c.node_id),
        "node": lambda c: c.node_id,
        "last_contact": lambda c: far if c.age_s is None else c.age_s,
        "queue": lambda c: c.queue_depth,
        "lag": lambda c: c.sync_lag_s,
    }
    if by not in keys:
        raise ValueError(f"sort: expected one of {', '.join(SORTS)}, got {by[:40]!r}")
    ordered = sorted(contacts, key=keys["status"])
    return sorted(ordered, key=keys[by], reverse=descending)
