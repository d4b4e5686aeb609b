"""The store node's master-data cache: rows with per-row versions and tombstones, in SQLite.

Every row of the Center's replica is one `master_rows` row (table, key, version, canonical JSON
text); a deleted row stays as a tombstone (text NULL) at the version of its deletion, so a
register at any version the node has passed gets an exact delta. A Center snapshot is applied as
a diff (changed rows upserted, vanished rows tombstoned at the snapshot's version), so even a
repair costs registers only a delta. Functions here run inside the caller's transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from store_node.errors import StoreNodeError
from sync_protocol import (
    MasterDelta,
    MasterSnapshot,
    ProtocolError,
    canonical_row,
    decode_sale,
    fold_sales,
    read_state,
    replica_checksum,
    state_row,
)

__all__ = [
    "KEYS",
    "MASTER_SCHEMA",
    "MasterGap",
    "MasterState",
    "apply_message",
    "cached_card",
    "card_row",
    "remember_card",
    "serve",
    "state",
    "with_store_sales",
]

STORE_SALES_PER_CARD = 500
"""The newest sales of one card at this store folded into its state; older ones reached the
Center long ago and are in its state already."""

log = logging.getLogger(__name__)

KEYS: Mapping[str, str] = {
    "products": "product_id",
    "cards": "card_no",
    "stores": "store_id",
    "promotions": "promotion_id",
    "settings": "name",
}
"""Replicated table -> its key column (docs/PROTOCOL.md); rows of other tables are ignored."""

MASTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS master_rows (
    table_name TEXT NOT NULL,
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    row TEXT,
    PRIMARY KEY (table_name, row_key)
);
CREATE INDEX IF NOT EXISTS master_rows_version ON master_rows (version);
CREATE TABLE IF NOT EXISTS master_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS looked_up_cards (
    card_no TEXT PRIMARY KEY,
    row TEXT NOT NULL,
    fetched_at TEXT NOT NULL
)
"""


class MasterGap(StoreNodeError):
    """A delta does not start at the cached version; the node must ask for a snapshot."""


@dataclass(frozen=True, slots=True)
class MasterState:
    """What the cache holds: the Center version, its own checksum, when it last changed."""

    version: int
    checksum: str
    fetched_at: datetime


def state(conn: sqlite3.Connection) -> MasterState | None:
    """The cache's version and checksum, or None before the first fetch."""
    row = conn.execute(
        "SELECT version, checksum, fetched_at FROM master_state WHERE id = 1"
    ).fetchone()
    if row is None:
        return None
    return MasterState(int(row[0]), str(row[1]), datetime.fromisoformat(row[2]))


def _live(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    for name, text in conn.execute(
        "SELECT table_name, row FROM master_rows WHERE row IS NOT NULL ORDER BY table_name, row_key"
    ):
        tables.setdefault(name, []).append(json.loads(text))
    return tables


def _key(table: str, row: Mapping[str, Any]) -> str | None:
    value = row.get(KEYS[table])
    return None if value is None else str(value)


def _upsert(conn: sqlite3.Connection, table: str, key: str, text: str, version: int) -> None:
    conn.execute(
        "INSERT INTO master_rows (table_name, row_key, version, row) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (table_name, row_key) DO UPDATE SET version = excluded.version, "
        "row = excluded.row WHERE master_rows.row IS NOT excluded.row",
        (table, key, version, text),
    )


def _tombstone(conn: sqlite3.Connection, table: str, key: str, version: int) -> None:
    conn.execute(
        "UPDATE master_rows SET row = NULL, version = ? "
        "WHERE table_name = ? AND row_key = ? AND row IS NOT NULL",
        (version, table, key),
    )


def apply_message(
    conn: sqlite3.Connection,
    message: MasterSnapshot | MasterDelta,
    now: datetime,
    *,
    verify: bool = False,
) -> tuple[int, bool]:
    """Apply a Center message; (new version, whether the checksum matched or was absent).

    An empty up-to-date delta is checked against the kept checksum unless `verify` asks for a
    full re-read of the rows (periodic drift detection). Raises MasterGap for a delta that does
    not start at the cached version.
    """
    held = state(conn)
    current = held.version if held else 0
    if (
        held is not None
        and not verify
        and isinstance(message, MasterDelta)
        and message.from_version == message.to_version == current
        and not message.upserts
        and not message.deletes
    ):
        # Up to date: compare with the checksum kept at the last change, no full re-read.
        return current, not message.checksum or message.checksum == held.checksum
    if isinstance(message, MasterSnapshot):
        version = message.version
        wanted: dict[tuple[str, str], str] = {}
        for table, rows in message.tables.items():
            if table not in KEYS:
                continue
            for row in rows:
                key = _key(table, row)
                if key is not None:
                    wanted[(table, key)] = canonical_row(row)
        live = {
            (t, k): text
            for t, k, text in conn.execute(
                "SELECT table_name, row_key, row FROM master_rows WHERE row IS NOT NULL"
            )
        }
        for (table, key), text in wanted.items():
            if live.get((table, key)) != text:
                _upsert(conn, table, key, text, version)
        for table, key in live.keys() - wanted.keys():
            _tombstone(conn, table, key, version)
    else:
        if message.from_version != current:
            raise MasterGap(
                f"from_version: delta {message.from_version}->{message.to_version} does not "
                f"apply to the cached version {current}"
            )
        version = message.to_version
        for table, keys in message.deletes.items():
            if table in KEYS:
                for key in keys:
                    _tombstone(conn, table, str(key), version)
        for table, rows in message.upserts.items():
            if table in KEYS:
                for row in rows:
                    key = _key(table, row)
                    if key is not None:
                        _upsert(conn, table, key, canonical_row(row), version)
    checksum = replica_checksum(_live(conn))
    conn.execute(
        "INSERT INTO master_state (id, version, checksum, fetched_at) VALUES (1, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET version = excluded.version, "
        "checksum = excluded.checksum, fetched_at = excluded.fetched_at",
        (version, checksum, now.astimezone(UTC).isoformat(timespec="microseconds")),
    )
    return version, not message.checksum or message.checksum == checksum


def serve(
    conn: sqlite3.Connection, since: int, *, max_rows: int = 20_000
) -> MasterSnapshot | MasterDelta | None:
    """What a register at `since` needs from the cache (None before the first fetch)."""
    held = state(conn)
    if held is None:
        return None
    if 0 < since <= held.version:
        if since == held.version:
            return MasterDelta(from_version=since, to_version=since, checksum=held.checksum)
        to_version = held.version
        count = conn.execute(
            "SELECT COUNT(*) FROM master_rows WHERE version > ?", (since,)
        ).fetchone()[0]
        if count > max_rows:
            cut = conn.execute(
                "SELECT version FROM master_rows WHERE version > ? ORDER BY version "
                "LIMIT 1 OFFSET ?",
                (since, max_rows - 1),
            ).fetchone()
            to_version = int(cut[0]) - 1
        if to_version > since:
            upserts: dict[str, list[dict[str, Any]]] = {}
            deletes: dict[str, list[str]] = {}
            for table, key, text in conn.execute(
                "SELECT table_name, row_key, row FROM master_rows "
                "WHERE version > ? AND version <= ? ORDER BY table_name, row_key",
                (since, to_version),
            ):
                if text is None:
                    deletes.setdefault(table, []).append(key)
                else:
                    upserts.setdefault(table, []).append(json.loads(text))
            return MasterDelta(
                from_version=since,
                to_version=to_version,
                upserts={t: tuple(rows) for t, rows in upserts.items()},
                deletes={t: tuple(keys) for t, keys in deletes.items()},
                checksum=held.checksum if to_version == held.version else "",
            )
    return MasterSnapshot(
        version=held.version,
        tables={t: tuple(rows) for t, rows in _live(conn).items()},
        checksum=held.checksum,
    )


def card_row(conn: sqlite3.Connection, card_no: str) -> dict[str, Any] | None:
    """The card as the replica holds it, or None."""
    row = conn.execute(
        "SELECT row FROM master_rows WHERE table_name = 'cards' AND row_key = ? "
        "AND row IS NOT NULL",
        (card_no,),
    ).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def cached_card(conn: sqlite3.Connection, card_no: str) -> dict[str, Any] | None:
    """A card the Center answered online earlier (until the replica holds it), or None."""
    row = conn.execute("SELECT row FROM looked_up_cards WHERE card_no = ?", (card_no,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def remember_card(conn: sqlite3.Connection, row: Mapping[str, Any], now: datetime) -> None:
    """Keep the Center's online answer apart from the replica (its checksum is the Center's)."""
    conn.execute(
        "INSERT INTO looked_up_cards (card_no, row, fetched_at) VALUES (?, ?, ?) "
        "ON CONFLICT (card_no) DO UPDATE SET row = excluded.row, fetched_at = excluded.fetched_at",
        (str(row["card_no"]), canonical_row(row), now.astimezone(UTC).isoformat()),
    )


def chain_zone(conn: sqlite3.Connection) -> tzinfo:
    """The chain's time zone from the cached settings (the days of the customer state)."""
    row = conn.execute(
        "SELECT row FROM master_rows WHERE table_name = 'settings' AND row_key = 'timezone' "
        "AND row IS NOT NULL"
    ).fetchone()
    name = str(json.loads(row[0]).get("value") or "UTC") if row is not None else "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def with_store_sales(conn: sqlite3.Connection, row: Mapping[str, Any]) -> dict[str, Any]:
    """The card row with this store's sales of the card that its ``state`` does not cover
    (its ``seen``) counted in: the Center's state, current for the store's registers."""
    card_no = str(row.get("card_no", ""))
    try:
        held = read_state(row.get("state"))
    except ProtocolError as exc:
        log.warning(
            "card %s: customer state from the Center unreadable (%s); not served", card_no, exc
        )
        return dict(row)
    sales = []
    for register_id, seq, payload in conn.execute(
        "SELECT register_id, seq, payload FROM sales WHERE card_no = ? "
        "AND center_rejected_at IS NULL ORDER BY received_no DESC LIMIT ?",
        (card_no, STORE_SALES_PER_CARD),
    ):
        if seq <= held.seen.get(register_id, 0):
            continue  # counted already: no need to decode it
        try:
            sales.append(decode_sale(bytes(payload)))
        except ProtocolError:
            continue
    current = fold_sales(held, sales, chain_zone(conn))
    if current is held:
        return dict(row)  # nothing of this store's to add: the row as the Center sent it
    return {**row, "state": state_row(current)}


def live_rows(conn: sqlite3.Connection) -> Sequence[tuple[str, dict[str, Any]]]:
    """(table, row) of every live row, for tests and diagnostics."""
    return [(t, row) for t, rows in _live(conn).items() for row in rows]
