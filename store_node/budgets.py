"""This store's supplier budget leases: what the Center lets the node give of a supplier-funded
promotion without asking, and the registers' holds on it.

The Center carves what is left of each budgeted promotion into leases, one per store, so that
all stores together never give more than the budget (ARCHITECTURE.md "Supplier budget leases").
Here a lease is a row per promotion on the reservation book's connection: its amount covers
what this store's sales gave of the promotion that the Center had not acknowledged when the
lease was asked for (`requested_at`) and everything given since, and it ends at `expires_at`
(store_node/leases.py's margin). A register's confirm holds what the receipt takes, keyed by
the sale id, until that sale reaches the node (its own amount counts from then on).
A promotion with no live lease here gives nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from store_node.leases import node_expiry
from sync_protocol import Sale, promotion_amounts

__all__ = [
    "HOLD_TTL",
    "SCHEMA",
    "BudgetGrant",
    "NodeBudgetLease",
    "due",
    "forget",
    "held",
    "hold",
    "index_sale",
    "lease_of",
    "left",
    "save",
    "unsent",
]

SCHEMA = (
    "CREATE TABLE budget_leases (promotion_id TEXT PRIMARY KEY, lease_id TEXT NOT NULL,"
    " amount INTEGER NOT NULL CHECK (amount >= 0), requested_at TEXT NOT NULL,"
    " expires_at TEXT NOT NULL)",
    "CREATE TABLE budget_promotions (promotion_id TEXT PRIMARY KEY)",
    "CREATE TABLE budget_holds (hold_id TEXT NOT NULL, promotion_id TEXT NOT NULL,"
    " register_id TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount >= 0),"
    " expires_at TEXT NOT NULL, PRIMARY KEY (hold_id, promotion_id))",
    "CREATE INDEX budget_holds_promotion ON budget_holds (promotion_id, expires_at)",
    "CREATE TABLE reservation_sale_budgets (sale_id TEXT NOT NULL, promotion_id TEXT NOT NULL,"
    " amount INTEGER NOT NULL, PRIMARY KEY (promotion_id, sale_id))",
)
"""The tables of migration m005_budget_leases of the reservation book."""

HOLD_TTL = timedelta(hours=24)
"""A confirm's hold counts this long at most while its sale has not reached the node (a
register cut off from the node keeps its sale in its outbox; the hold keeps the budget)."""


@dataclass(frozen=True, slots=True)
class BudgetGrant:
    """The Center's answer to POST /v1/budget-leases."""

    lease_id: str
    amount: int
    ttl_s: int


@dataclass(frozen=True, slots=True)
class NodeBudgetLease:
    """A budget lease as this node keeps it."""

    promotion_id: str
    lease_id: str
    amount: int
    requested_at: datetime
    expires_at: datetime


def _ts(moment: datetime) -> str:
    # The sales table's form: fixed-width UTC, so text order is time order.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def save(
    conn: sqlite3.Connection, promotion_id: str, grant: BudgetGrant, requested_at: datetime
) -> NodeBudgetLease:
    """Keep the Center's new lease on the promotion (it replaces the last one)."""
    lease = NodeBudgetLease(
        promotion_id,
        grant.lease_id,
        grant.amount,
        requested_at,
        node_expiry(requested_at, grant.ttl_s),
    )
    conn.execute(
        "INSERT INTO budget_leases (promotion_id, lease_id, amount, requested_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (promotion_id) DO UPDATE SET"
        " lease_id = excluded.lease_id, amount = excluded.amount,"
        " requested_at = excluded.requested_at, expires_at = excluded.expires_at",
        (promotion_id, lease.lease_id, lease.amount, _ts(requested_at), _ts(lease.expires_at)),
    )
    conn.execute(
        "INSERT OR IGNORE INTO budget_promotions (promotion_id) VALUES (?)", (promotion_id,)
    )
    return lease


_COLUMNS = "promotion_id, lease_id, amount, requested_at, expires_at"


def _lease(row: tuple[object, ...]) -> NodeBudgetLease:
    return NodeBudgetLease(
        str(row[0]),
        str(row[1]),
        int(str(row[2])),
        datetime.fromisoformat(str(row[3])),
        datetime.fromisoformat(str(row[4])),
    )


def lease_of(conn: sqlite3.Connection, promotion_id: str) -> NodeBudgetLease | None:
    """The promotion's lease here, live or not."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM budget_leases WHERE promotion_id = ?", (promotion_id,)
    ).fetchone()
    return None if row is None else _lease(tuple(row))


def index_sale(conn: sqlite3.Connection, sale: Sale) -> None:
    """Record what a sale held here gave of each promotion this node ever had a lease on."""
    amounts = promotion_amounts(sale)
    if not amounts:
        return
    marks = ", ".join("?" for _ in amounts)
    leased = {
        str(r[0])
        for r in conn.execute(
            f"SELECT promotion_id FROM budget_promotions WHERE promotion_id IN ({marks})",
            list(amounts),
        ).fetchall()
    }
    conn.executemany(
        "INSERT OR IGNORE INTO reservation_sale_budgets (sale_id, promotion_id, amount)"
        " VALUES (?, ?, ?)",
        [(sale.sale_id, pid, amount) for pid, amount in amounts.items() if pid in leased],
    )


def unsent(conn: sqlite3.Connection, promotion_id: str, since: datetime | None) -> int:
    """What this store's sales gave of the promotion that the Center had not acknowledged at
    `since` (None: not acknowledged at all)."""
    row = conn.execute(
        "SELECT COALESCE(SUM(b.amount), 0) FROM reservation_sale_budgets b"
        " JOIN sales s ON s.sale_id = b.sale_id"
        " WHERE b.promotion_id = ? AND s.center_rejected_at IS NULL"
        " AND (s.forwarded_at IS NULL OR s.forwarded_at >= ?)",
        (promotion_id, "" if since is None else _ts(since)),
    ).fetchone()
    return int(row[0])


def held(
    conn: sqlite3.Connection, promotion_id: str, now: datetime, exclude: str | None = None
) -> int:
    """What registers' confirms hold of the promotion whose sales are not here yet."""
    row = conn.execute(
        "SELECT COALESCE(SUM(h.amount), 0) FROM budget_holds h"
        " WHERE h.promotion_id = ? AND h.expires_at > ? AND h.hold_id IS NOT ?"
        " AND NOT EXISTS (SELECT 1 FROM sales s WHERE s.sale_id = h.hold_id)",
        (promotion_id, _ts(now), exclude),
    ).fetchone()
    return int(row[0])


def left(
    conn: sqlite3.Connection, promotion_id: str, now: datetime, exclude: str | None = None
) -> int:
    """What the promotion's live lease still lets this store give (0 without one)."""
    lease = lease_of(conn, promotion_id)
    if lease is None or lease.expires_at <= now:
        return 0
    return max(
        0,
        lease.amount
        - unsent(conn, promotion_id, lease.requested_at)
        - held(conn, promotion_id, now, exclude),
    )


def hold(
    conn: sqlite3.Connection,
    hold_id: str,
    register_id: str,
    amounts: Mapping[str, int],
    now: datetime,
) -> None:
    """Hold `amounts` of each promotion for the sale `hold_id` (replacing its last hold)."""
    conn.execute("DELETE FROM budget_holds WHERE hold_id = ?", (hold_id,))
    conn.executemany(
        "INSERT INTO budget_holds (hold_id, promotion_id, register_id, amount, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (hold_id, pid, register_id, amount, _ts(now + HOLD_TTL))
            for pid, amount in amounts.items()
            if amount > 0
        ],
    )


def due(conn: sqlite3.Connection, now: datetime, limit: int = 200) -> list[NodeBudgetLease]:
    """Leases that ended here, to give back to the Center."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM budget_leases WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
        (_ts(now), limit),
    ).fetchall()
    return [_lease(tuple(r)) for r in rows]


def forget(conn: sqlite3.Connection, leases: list[NodeBudgetLease]) -> None:
    """Drop leases the Center took back (a lease renewed meanwhile has another id: kept), and
    holds long expired."""
    conn.executemany(
        "DELETE FROM budget_leases WHERE promotion_id = ? AND lease_id = ?",
        [(lease.promotion_id, lease.lease_id) for lease in leases],
    )
