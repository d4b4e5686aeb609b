"""Reading the registers', store nodes' and Center's databases once every process stopped."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from sync_protocol import Sale, decode_sale


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def journal_sales(path: Path) -> list[Sale]:
    """Every sale a register journaled, in seq order."""
    conn = _ro(path)
    try:
        rows = conn.execute("SELECT payload FROM sales ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [decode_sale(bytes(r[0])) for r in rows]


_CENTER_QUERIES = (
    "SELECT sale_id, register_id, seq, fingerprint FROM sales",
    "SELECT COUNT(*) FROM (SELECT register_id, seq FROM sales "
    "GROUP BY register_id, seq HAVING COUNT(*) > 1) AS d",
    "SELECT COUNT(*) FROM (SELECT source, wallet, kind, rule_id FROM ledger "
    "GROUP BY source, wallet, kind, rule_id HAVING COUNT(*) > 1) AS d",
    "SELECT card_no, SUM(amount) FROM ledger WHERE rule_id = 'welcome' GROUP BY card_no",
    "SELECT sale_id, received_at FROM sales",
)


def _when(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def clock_offsets(
    journals: dict[str, list[Sale]], store_dbs: dict[str, Path], center_received: dict[str, Any]
) -> dict[str, float]:
    """How far ahead of the Center each node's clock looked, from the times stamped on sales.

    A register: minus the smallest (Center received_at - closed_at); a store node: the smallest
    (its forwarded_at - Center received_at). Network and queueing delays only add to both
    differences, and the smallest of many sales is one that went straight through.
    """
    out: dict[str, float] = {}
    for register_id, sales in sorted(journals.items()):
        gaps = [
            (_when(center_received[s.sale_id]) - s.closed_at).total_seconds()
            for s in sales
            if s.sale_id in center_received
        ]
        if gaps:
            out[f"pos-{register_id}"] = round(-min(gaps), 1)
    for store_id, path in sorted(store_dbs.items()):
        conn = _ro(path)
        try:
            rows = conn.execute(
                "SELECT sale_id, forwarded_at FROM sales WHERE forwarded_at IS NOT NULL"
            ).fetchall()
        finally:
            conn.close()
        gaps = [
            (_when(at) - _when(center_received[i])).total_seconds()
            for i, at in rows
            if i in center_received
        ]
        if gaps:
            out[f"store-{store_id}"] = round(min(gaps), 1)
    return out


def center_queries(sqlite_path: Path, dsn: str) -> list[list[tuple[Any, ...]]]:
    """The rows of each of _CENTER_QUERIES, straight from the Center's database (either backend)."""
    if not dsn:
        conn = _ro(sqlite_path)
        try:
            return [conn.execute(q).fetchall() for q in _CENTER_QUERIES]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(dsn) as pg:
        return [pg.execute(q).fetchall() for q in _CENTER_QUERIES]
