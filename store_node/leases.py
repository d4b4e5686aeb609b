"""This store's spending leases: what the Center lets the node spend of a card without asking.

The Center carves each card's balance into leases, one per store, so that all stores together
never let a card spend more than its balance plus the chain's overdraft ceiling (ARCHITECTURE.md
"Offline spending leases"). Here a lease is a row per (card, wallet) on the reservation book's
connection: its amount covers every spend in this store's sales the Center had not acknowledged
when the lease was asked for (`requested_at`) and every spend since, and it ends at
`expires_at`, set by this node's clock a margin before the Center's end. Once the Center has
granted one lease (`lease_support`), a card without a live lease spends nothing here while the
Center is away; before that (an older Center), the node keeps the rule of the release before.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "SCHEMA",
    "LeaseGrant",
    "NodeLease",
    "due",
    "forget",
    "lease_of",
    "node_expiry",
    "save",
    "supported",
]

SCHEMA = (
    "CREATE TABLE spending_leases (card_no TEXT NOT NULL, wallet TEXT NOT NULL,"
    " lease_id TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount >= 0),"
    " requested_at TEXT NOT NULL, expires_at TEXT NOT NULL, PRIMARY KEY (card_no, wallet))",
    "CREATE TABLE lease_support (id INTEGER PRIMARY KEY CHECK (id = 1), since TEXT NOT NULL)",
)
"""The tables of migration m003_spending_leases of the reservation book."""

MAX_MARGIN = timedelta(seconds=60)
"""A lease ends here this much (at most a tenth of its life) before the Center's end, so a
clock running a little behind the Center's never spends a lease the Center has taken back."""


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """The Center's answer to POST /v1/leases."""

    lease_id: str
    amount: int
    ttl_s: int


@dataclass(frozen=True, slots=True)
class NodeLease:
    """A lease as this node keeps it."""

    card_no: str
    wallet: str
    lease_id: str
    amount: int
    requested_at: datetime
    expires_at: datetime


def _ts(moment: datetime) -> str:
    # The sales table's form: fixed-width UTC, so text order is time order.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def node_expiry(requested_at: datetime, ttl_s: int) -> datetime:
    """When a lease asked for at `requested_at` ends here (before the Center's end)."""
    ttl = timedelta(seconds=max(0, ttl_s))
    return requested_at + ttl - min(MAX_MARGIN, ttl / 10)


def save(
    conn: sqlite3.Connection, card_no: str, wallet: str, grant: LeaseGrant, requested_at: datetime
) -> NodeLease:
    """Keep the Center's new lease (it replaces the card's last one); leases are now the rule."""
    lease = NodeLease(
        card_no,
        wallet,
        grant.lease_id,
        grant.amount,
        requested_at,
        node_expiry(requested_at, grant.ttl_s),
    )
    conn.execute(
        "INSERT INTO spending_leases (card_no, wallet, lease_id, amount, requested_at,"
        " expires_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (card_no, wallet) DO UPDATE SET"
        " lease_id = excluded.lease_id, amount = excluded.amount,"
        " requested_at = excluded.requested_at, expires_at = excluded.expires_at",
        (card_no, wallet, lease.lease_id, lease.amount, _ts(requested_at), _ts(lease.expires_at)),
    )
    conn.execute(
        "INSERT OR IGNORE INTO lease_support (id, since) VALUES (1, ?)", (_ts(requested_at),)
    )
    return lease


def supported(conn: sqlite3.Connection) -> bool:
    """Whether the Center has granted this node a lease (from then on, leases bound spends)."""
    return conn.execute("SELECT 1 FROM lease_support WHERE id = 1").fetchone() is not None


def _lease(row: tuple[object, ...]) -> NodeLease:
    return NodeLease(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        int(str(row[3])),
        datetime.fromisoformat(str(row[4])),
        datetime.fromisoformat(str(row[5])),
    )


_COLUMNS = "card_no, wallet, lease_id, amount, requested_at, expires_at"


def lease_of(conn: sqlite3.Connection, card_no: str, wallet: str) -> NodeLease | None:
    """The card's lease here, live or not."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM spending_leases WHERE card_no = ? AND wallet = ?",
        (card_no, wallet),
    ).fetchone()
    return None if row is None else _lease(tuple(row))


def due(conn: sqlite3.Connection, now: datetime, limit: int = 200) -> list[NodeLease]:
    """Leases that ended here, to give back to the Center."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM spending_leases WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
        (_ts(now), limit),
    ).fetchall()
    return [_lease(tuple(r)) for r in rows]


def forget(conn: sqlite3.Connection, leases: list[NodeLease]) -> None:
    """Drop leases the Center took back (a lease renewed meanwhile has another id: kept)."""
    conn.executemany(
        "DELETE FROM spending_leases WHERE card_no = ? AND wallet = ? AND lease_id = ?",
        [(lease.card_no, lease.wallet, lease.lease_id) for lease in leases],
    )
