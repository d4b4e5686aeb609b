"""The master-data change feed: deltas, tombstones, checksums, card scope.

Positions. Every replicated master row carries `version`, assigned under the `master_version`
row lock, which is held until the writer commits (`_lock_master` at transaction start or
`_bump_master`): versions therefore become visible in order, and a reader that saw version W has
seen every row of version <= W. Deleting a replicated row fires a trigger (both backends) that
bumps the version and writes a tombstone, whatever code path deleted it.

Balances change with the ledger, whose writers (ingest) must not take that global lock. Ledger
rows carry a position: the entry_id on SQLite (one writer, so ids commit in order) and the
writing transaction's xid8 on PostgreSQL, where ids do NOT commit in order. A `feed_marks` row
ties a master version to a ledger watermark: every ledger row below the mark was committed (or
aborted) before the mark was taken (on PostgreSQL the xmin of a snapshot). A reader at version V
re-reads the cards of every ledger row at or above mark(V): rows of transactions still running
when the mark was taken are picked up later, never skipped (at worst sent twice). When the ledger
moved past the newest mark, the feed "ticks": a tiny transaction bumps the version and records a
new mark (skipped, not waited for, while a master writer holds the lock).

Card rows also carry ``state``, the customer state (center/crm/state_store.py): it moves with
the card's ledger rows (every sale with an accrual or a spend makes one), so it reaches the
store with the balances. Card rows also carry the customer's live coupons (issued to them, not
yet used up, not expired) and personal offers (not expired), each key only when non-empty.
Issuing coupons and changing offers bump the customer's cards; on PostgreSQL a redemption
(ingest, no global lock) has a feed position like a ledger row, and an expiry is found by time
window like a lot's, so both reach the store with the balances of the last delta page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from center.crm.state_store import CustomerStateRepository, Derived
from center.errors import StorageError
from center.feed.versions import MasterVersions
from center.ledger.store import ACTIVE_SQL, DEBT_SUM_SQL
from center.storage.base import (
    MASTER_TABLES,
    MasterChange,
    MasterTable,
    Progress,
    is_required,
)
from center.storage.database import Database
from center.storage.migrations import Migration
from center.storage.owners import move_cards, register_cards
from sync_protocol import MasterDelta, MasterSnapshot, replica_checksum, state_row

__all__ = [
    "DEFAULT_DELTA_MAX_ROWS",
    "DEFAULT_SCOPE_DAYS",
    "POSTGRES_MIGRATION",
    "SQLITE_MIGRATION",
    "TOMBSTONED",
    "FeedRepository",
    "FeedSettings",
]

DEFAULT_SCOPE_DAYS = 365
DEFAULT_DELTA_MAX_ROWS = 20_000
"""Rows per delta page: ~200 bytes a row keeps a page far below the 8 MiB message limit."""
_CHUNK = 500
_UPSERT_CHUNK = 5000
"""Master rows per insert or update statement."""
FEED_RETENTION_DAYS = 7
"""Marks and tombstones kept: a store away longer than this gets a snapshot."""

TOMBSTONED: Mapping[str, tuple[str, str]] = {
    "products": ("product_id", ""),
    "stores": ("store_id", ""),
    "promotions": ("promotion_id", ""),
    "settings": ("name", ""),
    "cards": ("card_no", ""),
    "store_products": ("product_id", "store_id"),
}
"""Replicated table -> (key column, store column) of its tombstones."""


def _sqlite_trigger(table: str, key: str, store: str) -> str:
    store_value = f"OLD.{store}" if store else "''"
    return (
        f"CREATE TRIGGER {table}_tombstone AFTER DELETE ON {table} BEGIN "
        "UPDATE master_version SET version = version + 1 WHERE id = 1; "
        "INSERT INTO master_tombstones (table_name, row_key, store_id, version, deleted_at) "
        f"VALUES ('{table}', OLD.{key}, {store_value}, "
        "(SELECT version FROM master_version WHERE id = 1), "
        "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')); END"
    )


def _pg_trigger(table: str, key: str, store: str) -> str:
    args = f"'{key}', '{store}'" if store else f"'{key}'"
    return (
        f"CREATE TRIGGER {table}_tombstone AFTER DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION feed_tombstone({args})"
    )


_VERSIONED = ("products", "stores", "promotions", "settings", "cards", "store_products")

SQLITE_MIGRATION = Migration(
    "m013_master_feed",
    (
        """CREATE TABLE master_tombstones (
        tomb_id INTEGER PRIMARY KEY AUTOINCREMENT,
        table_name TEXT NOT NULL,
        row_key TEXT NOT NULL,
        store_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        deleted_at TEXT NOT NULL
    )""",
        "CREATE INDEX master_tombstones_version ON master_tombstones (version)",
        *(_sqlite_trigger(t, k, s) for t, (k, s) in TOMBSTONED.items()),
        """CREATE TABLE store_cards (
        store_id TEXT NOT NULL,
        card_no TEXT NOT NULL,
        added_at TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (store_id, card_no)
    )""",
        """CREATE TABLE feed_marks (
        version INTEGER PRIMARY KEY,
        mark INTEGER NOT NULL,
        marked_at TEXT NOT NULL
    )""",
        "INSERT INTO feed_marks (version, mark, marked_at) SELECT version, "
        "(SELECT COALESCE(MAX(entry_id), 0) + 1 FROM ledger), "
        "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now') FROM master_version WHERE id = 1",
        *(f"CREATE INDEX {t}_feed_version ON {t} (version)" for t in _VERSIONED),
        "CREATE INDEX sales_store_card ON sales (store_id, card_no)",
        "CREATE INDEX lots_open_activation ON lots (active_from) WHERE remaining > 0",
    ),
)
"""The master-data feed (tombstones, store card scopes, marks), on SQLite."""

POSTGRES_MIGRATION = Migration(
    "m013_master_feed",
    (
        """CREATE TABLE master_tombstones (
        tomb_id BIGSERIAL PRIMARY KEY,
        table_name TEXT NOT NULL,
        row_key TEXT NOT NULL,
        store_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        deleted_at TIMESTAMPTZ NOT NULL
    )""",
        "CREATE INDEX master_tombstones_version ON master_tombstones (version)",
        """CREATE FUNCTION feed_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        v BIGINT;
        old_row JSONB := to_jsonb(OLD);
    BEGIN
        UPDATE master_version SET version = version + 1 WHERE id = 1 RETURNING version INTO v;
        INSERT INTO master_tombstones (table_name, row_key, store_id, version, deleted_at)
        VALUES (TG_TABLE_NAME, old_row ->> TG_ARGV[0],
                CASE WHEN TG_NARGS > 1 THEN old_row ->> TG_ARGV[1] ELSE '' END, v, now());
        RETURN OLD;
    END $$""",
        *(_pg_trigger(t, k, s) for t, (k, s) in TOMBSTONED.items()),
        """CREATE TABLE store_cards (
        store_id TEXT NOT NULL,
        card_no TEXT NOT NULL,
        added_at TIMESTAMPTZ NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (store_id, card_no)
    )""",
        """CREATE TABLE feed_marks (
        version BIGINT PRIMARY KEY,
        mark BIGINT NOT NULL,
        marked_at TIMESTAMPTZ NOT NULL
    )""",
        # No table rewrite: old rows keep NULL (they are below every mark), new rows get their xid.
        "ALTER TABLE ledger ADD COLUMN feed_xid xid8",
        "ALTER TABLE ledger ALTER COLUMN feed_xid SET DEFAULT pg_current_xact_id()",
        "CREATE INDEX ledger_feed_xid ON ledger (feed_xid)",
        "INSERT INTO feed_marks (version, mark, marked_at) SELECT version, "
        "CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT), now() "
        "FROM master_version WHERE id = 1",
        *(f"CREATE INDEX {t}_feed_version ON {t} (version)" for t in _VERSIONED),
        "CREATE INDEX sales_store_card ON sales (store_id, card_no)",
        "CREATE INDEX lots_open_activation ON lots (active_from) WHERE remaining > 0",
    ),
)
"""The master-data feed (tombstones, store card scopes, marks), on PostgreSQL."""


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """How the feed decides a store's cards and sizes its pages."""

    scope_days: int = DEFAULT_SCOPE_DAYS
    max_rows: int = DEFAULT_DELTA_MAX_ROWS
    tick_every_s: float = 1.0
    """At most one ledger tick per this many seconds: bounds feed_marks rows and lock traffic."""
    checksum_every_s: float = 300.0
    """A delta carries the full replica checksum at most this often per store ("" otherwise);
    snapshots always, an up-to-date answer when the last checksum is of its version."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _product(r: Sequence[Any]) -> dict[str, Any]:
    row = {
        "product_id": r[0],
        "name": r[1],
        "department": r[2],
        "category": r[3],
        "brand": r[4],
        "weighed": bool(r[5]),
        "price_minor": None if r[6] is None else int(r[6]),
    }
    if r[7]:  # only when set: rows loaded before master data had paths stay as they were
        row["category_path"] = r[7]
    return row


def _store(r: Sequence[Any]) -> dict[str, Any]:
    row = {"store_id": r[0], "name": r[1], "format": r[2], "timezone": r[3]}
    # Only when set, as above (older replicas ignore the new keys: PROTOCOL.md).
    row.update({name: value for name, value in (("region", r[4]), ("address", r[5])) if value})
    return row


def _promotion(r: Sequence[Any]) -> dict[str, Any]:
    return {"promotion_id": r[0], "version": int(r[1]), "doc": json.loads(r[2])}


def _setting(r: Sequence[Any]) -> dict[str, Any]:
    return {"name": r[0], "value": r[1]}


_PRODUCT_COLUMNS = (
    "p.product_id, p.name, p.department, p.category, p.brand, p.weighed, p.price_minor, "
    "p.category_path"
)
_ROW_KEYS = {
    "products": "product_id",
    "stores": "store_id",
    "promotions": "promotion_id",
    "settings": "name",
    "cards": "card_no",
}


class FeedLedger(Protocol):
    """What the feed needs of the ledger: every card's bonus balance at a moment."""

    def bonus_balances(self, now: datetime) -> dict[str, int]: ...


class FeedRepository:
    """Master data and the change feed of each store's replica, over the Database."""

    def __init__(
        self,
        db: Database,
        *,
        versions: MasterVersions,
        ledger: FeedLedger,
        states: CustomerStateRepository | None = None,
    ) -> None:
        self.db = db
        self.versions = versions
        self.ledger = ledger
        self.states = states if states is not None else CustomerStateRepository(db)
        # States derived inside a read snapshot, checkpointed after it (one thread: DbThread).
        self._derived: dict[str, Derived] = {}
        self._feed_last_tick: float | None = None
        # Per store: (version, checksum, monotonic time) of the last full computation, reused
        # while the store stays at that version.
        self._checksum_cache: dict[str, tuple[int, str, float]] = {}

    # -- master data ---------------------------------------------------------------------------

    def master_version(self) -> int:
        """The current master-data version (0 before any import)."""
        with self.db.guard("read master version"):
            return self.versions.current()

    def upsert_master(
        self,
        tables: Mapping[str, Iterable[Mapping[str, Any]]],
        *,
        progress: Progress | None = None,
    ) -> MasterChange:
        """Insert or update master rows in one transaction; bump the version only on change."""
        prepared = self.prepare_master(tables)
        with self.db.guard("upsert master data"), self.db.transaction():
            # The row lock, held to the commit, makes versions commit in order (feed.py).
            version = self.versions.lock() + 1
            changed = self.write_master(prepared, version, progress)
            if any(changed.values()):
                self.db.execute("UPDATE master_version SET version = ? WHERE id = 1", (version,))
            else:
                version -= 1
        return MasterChange(version=version, changed=changed)

    def prepare_master(
        self, tables: Mapping[str, Iterable[Mapping[str, Any]]]
    ) -> dict[str, dict[tuple, tuple]]:
        """Master rows checked against MASTER_TABLES, as write_master takes them."""
        for name in tables:
            if name not in MASTER_TABLES:
                raise StorageError(
                    f"{name}: not a master table (known: {', '.join(MASTER_TABLES)})"
                )
        return {name: self._prepare(MASTER_TABLES[name], rows) for name, rows in tables.items()}

    def write_master(
        self, prepared: Mapping[str, dict[tuple, tuple]], version: int, progress: Progress | None
    ) -> dict[str, int]:
        """Upsert prepared rows at `version` inside the caller's transaction (which holds the
        master_version lock and moves the version when a row changed); rows changed per table."""
        return {
            name: self._upsert_table(MASTER_TABLES[name], rows, version, progress)
            for name, rows in prepared.items()
        }

    def _prepare(self, spec: MasterTable, rows: Iterable[Mapping[str, Any]]) -> dict[tuple, tuple]:
        out: dict[tuple, tuple] = {}
        known = set(spec.columns)
        for i, row in enumerate(rows):
            unknown = set(row) - known
            if unknown:
                raise StorageError(f"{spec.name}[{i}]: unknown columns {sorted(unknown)}")
            values: list[Any] = []
            for column in spec.keys:
                key = row.get(column)
                if not isinstance(key, str) or not key:
                    raise StorageError(f"{spec.name}[{i}].{column}: expected a non-empty string")
                values.append(key)
            for column, default in spec.values:
                if column not in row and is_required(default):
                    raise StorageError(f"{spec.name}[{i}].{column}: required")
                value = row.get(column, default)
                if column in spec.json_columns:
                    value = _json(value)
                elif column in spec.bool_columns:
                    value = int(bool(value))
                values.append(value)
            out[tuple(values[: len(spec.keys)])] = tuple(values)
        return out

    def _upsert_table(
        self,
        spec: MasterTable,
        rows: dict[tuple, tuple],
        version: int,
        progress: Progress | None,
    ) -> int:
        nkeys = len(spec.keys)
        existing = {
            tuple(r[:nkeys]): tuple(r)
            for r in self.db.execute(
                f"SELECT {', '.join(spec.columns)} FROM {spec.name}"
            ).fetchall()
        }
        new = [(*values, version) for key, values in rows.items() if key not in existing]
        changed = [
            (*values[nkeys:], version, *key)
            for key, values in rows.items()
            if key in existing and existing[key] != values
        ]
        total = len(new) + len(changed)
        done = 0
        for start in range(0, len(new), _UPSERT_CHUNK):
            chunk = new[start : start + _UPSERT_CHUNK]
            self.db.bulk_insert(spec.name, (*spec.columns, "version"), chunk)
            done += len(chunk)
            if progress:
                progress(spec.name, done, total)
        if changed:
            sets = ", ".join(f"{c} = ?" for c in (*spec.columns[nkeys:], "version"))
            keys = " AND ".join(f"{c} = ?" for c in spec.keys)
            for start in range(0, len(changed), _UPSERT_CHUNK):
                chunk = changed[start : start + _UPSERT_CHUNK]
                self.db.executemany(f"UPDATE {spec.name} SET {sets} WHERE {keys}", chunk)
                done += len(chunk)
                if progress:
                    progress(spec.name, done, total)
        if spec.name == "cards":
            # A card's rows belong to its customer (center/storage/owners.py): new cards enter
            # the directory, a card given to another customer moves its rows there.
            register_cards(
                self.db,
                [(key[0], values[1]) for key, values in rows.items() if key not in existing],
            )
            move_cards(
                self.db,
                {
                    key[0]: values[1]
                    for key, values in rows.items()
                    if key in existing and existing[key][1] != values[1]
                },
            )
        if progress and not total:
            progress(spec.name, 0, 0)
        return total

    def existing_cards(self) -> set[str]:
        """Every card number the Center holds (the importer never overwrites a live card)."""
        with self.db.guard("read card numbers"):
            return {str(row[0]) for row in self.db.execute("SELECT card_no FROM cards").fetchall()}

    def pricing_master(self) -> dict[str, list[tuple[Any, ...]]]:
        """What pricing needs: products (id, department, category, brand, product_type),
        stores (id, format, timezone), promotions (doc, version), settings (name, value)."""
        queries = {
            "products": (
                "SELECT product_id, department, category, brand, product_type FROM products"
            ),
            "stores": "SELECT store_id, format, timezone FROM stores",
            "promotions": "SELECT doc, version FROM promotions ORDER BY promotion_id",
            "settings": "SELECT name, value FROM settings ORDER BY name",
        }
        with self.db.guard("read pricing master"), self.db.snapshot():
            return {
                name: [tuple(r) for r in self.db.execute(sql).fetchall()]
                for name, sql in queries.items()
            }

    # -- positions -----------------------------------------------------------------------------

    def _ledger_mark_now(self) -> int:
        return int(self.db.execute(self.db.dialect.ledger_mark_sql).fetchone()[0])

    def _ledger_since(self) -> str:
        """WHERE condition: ledger rows at or above a mark (one `?`)."""
        return self.db.dialect.ledger_since_sql

    def _mark_at(self, version: int) -> tuple[int, int, Any] | None:
        """(mark version, ledger mark, marked_at as stored) of the newest mark <= `version`."""
        row = self.db.execute(
            "SELECT version, mark, marked_at FROM feed_marks WHERE version <= ? "
            "ORDER BY version DESC LIMIT 1",
            (version,),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), row[2])

    _TIMED = (
        "remaining > 0 AND ((active_from > ? AND active_from <= ?) "
        "OR (expires_at > ? AND expires_at <= ?))"
    )
    """Lots that became active or expired in a time window: balances moved with no ledger row."""

    def _tick(self, now: datetime, every_s: float) -> None:
        """Record a new ledger mark at a new version when the ledger moved past the newest one."""
        last = self._feed_last_tick
        if last is not None and time.monotonic() - last < every_s:
            return
        self._feed_last_tick = time.monotonic()
        at = self.db.ts(now)
        with self.db.guard("tick master feed"), self.db.snapshot():
            newest = self.db.execute(
                "SELECT version, mark, marked_at FROM feed_marks ORDER BY version DESC LIMIT 1"
            ).fetchone()
            if newest is None:
                return
            moved = self.db.execute(
                f"SELECT 1 FROM ledger WHERE {self._ledger_since()} LIMIT 1", (int(newest[1]),)
            ).fetchone()
            if moved is None and self.db.dt(newest[2]) < now:
                moved = self.db.execute(
                    f"SELECT 1 FROM lots WHERE {self._TIMED} LIMIT 1",
                    (newest[2], at, newest[2], at),
                ).fetchone()
            if moved is None and self._extras_moved(int(newest[1]), newest[2], now):
                moved = (1,)
        if moved is None:
            return
        with self.db.guard("tick master feed"), self.db.transaction():
            row = self.db.execute(
                "SELECT version FROM master_version WHERE id = 1"
                f"{self.db.dialect.for_update}{self.db.dialect.skip_locked}"
            ).fetchone()
            if row is None:
                return  # a master writer holds the lock: its commit moves the version anyway
            version = int(row[0]) + 1
            self.db.execute("UPDATE master_version SET version = ? WHERE id = 1", (version,))
            self.db.execute(
                "INSERT INTO feed_marks (version, mark, marked_at) VALUES (?, ?, ?)",
                (version, self._ledger_mark_now(), at),
            )
            # A store behind the oldest mark kept gets a snapshot; older tombstones go with it.
            horizon = self.db.ts(now - timedelta(days=FEED_RETENTION_DAYS))
            self.db.execute(
                "DELETE FROM feed_marks WHERE marked_at < ? AND version < ?", (horizon, version)
            )
            self.db.execute(
                "DELETE FROM master_tombstones WHERE version < "
                "(SELECT MIN(version) FROM feed_marks)"
            )

    # -- scope ---------------------------------------------------------------------------------

    def _scope_sql(self) -> str:
        """WHERE condition on `c` (cards): in the store's scope (params: store, since, store)."""
        return (
            "(EXISTS (SELECT 1 FROM sales s WHERE s.store_id = ? AND s.card_no = c.card_no "
            "AND s.closed_at >= ?) OR EXISTS (SELECT 1 FROM store_cards sc "
            "WHERE sc.store_id = ? AND sc.card_no = c.card_no))"
        )

    def _has_table(self, name: str) -> bool:
        return self.db.dialect.has_table(self.db.execute, name)

    def _card_rows(self, cards: Sequence[Sequence[Any]], now: datetime) -> list[dict[str, Any]]:
        """Card rows (card_no, customer_id, status) with balance and segments."""
        at = self.db.ts(now)
        segments_table = self._has_table("segment_members")
        out: list[dict[str, Any]] = []
        for start in range(0, len(cards), _CHUNK):
            chunk = cards[start : start + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            nos = [c[0] for c in chunk]
            balances = {
                r[0]: int(r[1])
                for r in self.db.execute(
                    "SELECT card_no, CAST(SUM(remaining) AS BIGINT) FROM lots "
                    f"WHERE card_no IN ({marks}) AND wallet = 'bonus' AND remaining > 0 "
                    f"AND {ACTIVE_SQL} GROUP BY card_no",
                    (*nos, at, at),
                ).fetchall()
            }
            for card_no, debt in self.db.execute(
                f"SELECT card_no, {DEBT_SUM_SQL} FROM lot_consumptions WHERE card_no IN "
                f"({marks}) AND wallet = 'bonus' AND kind IN ('debt', 'recover') GROUP BY card_no",
                nos,
            ).fetchall():
                balances[card_no] = balances.get(card_no, 0) - int(debt or 0)
            segments: dict[str, list[str]] = {}
            if segments_table:
                customers = sorted({c[1] for c in chunk})
                cmarks = ", ".join("?" for _ in customers)
                for customer_id, segment_id in self.db.execute(
                    "SELECT customer_id, segment_id FROM segment_members "
                    f"WHERE customer_id IN ({cmarks})",
                    customers,
                ).fetchall():
                    segments.setdefault(customer_id, []).append(str(segment_id))
            coupons, offers = self._card_extras(sorted({c[1] for c in chunk}), now)
            derived = self.states.derive([(str(c[0]), str(c[1])) for c in chunk], now)
            self._derived.update(derived)
            for c in chunk:
                row: dict[str, Any] = {
                    "card_no": c[0],
                    "customer_id": c[1],
                    "status": c[2],
                    "bonus_balance": balances.get(c[0], 0),
                    "segments": sorted(segments.get(c[1], [])),
                    "state": state_row(derived[str(c[0])].state),
                }
                # Only when there are any: rows of other cards stay as they were.
                if c[1] in coupons:
                    row["coupons"] = coupons[c[1]]
                if c[1] in offers:
                    row["personal_offers"] = offers[c[1]]
                out.append(row)
        return out

    _LIVE_COUPON = "(c.status = 'issued' OR (c.status = 'redeemed' AND b.single_use = 0))"
    """A coupon its holder may still use (a multi-use one stays after a redemption)."""

    def _card_extras(
        self, customers: Sequence[str], now: datetime
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
        """(coupons, personal offers) of each customer that has any, live at `now`."""
        coupons: dict[str, list[dict[str, Any]]] = {}
        offers: dict[str, list[dict[str, Any]]] = {}
        if not customers:
            return coupons, offers
        marks = ", ".join("?" for _ in customers)
        # A batch's valid_to is a day, inclusive: the coupon goes the next UTC day.
        today = now.astimezone(UTC).date().isoformat()
        for r in self.db.execute(
            "SELECT c.customer_id, c.code, c.batch_id, b.promotion_id, b.single_use, "
            "b.valid_from, b.valid_to FROM coupons c JOIN coupon_batches b "
            f"ON b.batch_id = c.batch_id WHERE c.customer_id IN ({marks}) "
            f"AND {self._LIVE_COUPON} AND (b.valid_to IS NULL OR b.valid_to >= ?) "
            "ORDER BY c.code",
            (*customers, today),
        ).fetchall():
            coupons.setdefault(r[0], []).append(
                {
                    "code": r[1],
                    "batch_id": r[2],
                    "promotion_id": r[3],
                    "single_use": bool(r[4]),
                    "valid_from": r[5],
                    "valid_to": r[6],
                }
            )
        for r in self.db.execute(
            "SELECT customer_id, offer_id, product_id, percent, valid_from, valid_to, source "
            f"FROM personal_offers WHERE customer_id IN ({marks}) "
            "AND (valid_to IS NULL OR valid_to > ?) ORDER BY offer_id",
            (*customers, self.db.ts(now)),
        ).fetchall():
            offers.setdefault(r[0], []).append(
                {
                    "offer_id": r[1],
                    "product_id": r[2],
                    "percent": r[3],
                    "valid_from": None if r[4] is None else self.db.dt(r[4]).isoformat(),
                    "valid_to": None if r[5] is None else self.db.dt(r[5]).isoformat(),
                    "source": r[6],
                }
            )
        return coupons, offers

    def _extras_moved(self, mark: int, marked_at: Any, now: datetime) -> set[str]:
        """Customers whose coupons or offers changed with no card bump since a mark: coupons
        redeemed (feed position at/above it), coupons and offers that expired since it."""
        found: set[str] = set()
        if not self.db.dialect.single_writer:  # a single writer's ingest bumps the cards itself
            found.update(
                str(r[0])
                for r in self.db.execute(
                    "SELECT DISTINCT c.customer_id FROM coupon_redemptions r JOIN coupons c "
                    "ON c.code = r.code WHERE r.feed_pos >= CAST(CAST(? AS TEXT) AS xid8) "
                    "AND c.customer_id IS NOT NULL",
                    (mark,),
                ).fetchall()
            )
        base = self.db.dt(marked_at)
        if base < now:
            low, high = base.date().isoformat(), now.astimezone(UTC).date().isoformat()
            found.update(
                str(r[0])
                for r in self.db.execute(
                    "SELECT DISTINCT c.customer_id FROM coupon_batches b JOIN coupons c "
                    "ON c.batch_id = b.batch_id WHERE b.valid_to >= ? AND b.valid_to < ? "
                    f"AND c.customer_id IS NOT NULL AND {self._LIVE_COUPON}",
                    (low, high),
                ).fetchall()
            )
            found.update(
                str(r[0])
                for r in self.db.execute(
                    "SELECT DISTINCT customer_id FROM personal_offers "
                    "WHERE valid_to > ? AND valid_to <= ?",
                    (marked_at, self.db.ts(now)),
                ).fetchall()
            )
        return found

    # -- reading a store's replica -------------------------------------------------------------

    def _store_row(self, store_id: str) -> tuple[Any, ...] | None:
        row = self.db.execute(
            "SELECT store_id, name, format, timezone, region, address FROM stores "
            "WHERE store_id = ?",
            (store_id,),
        ).fetchone()
        return None if row is None else tuple(row)

    def _has_assortment(self, store_id: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM store_products WHERE store_id = ? LIMIT 1", (store_id,)
        ).fetchone()
        return row is not None

    def _replica(
        self, store: tuple[Any, ...], now: datetime, settings: FeedSettings
    ) -> dict[str, list[dict[str, Any]]]:
        """Every table of the store's replica as the Center holds it now (inside a snapshot)."""
        store_id = store[0]
        if self._has_assortment(store_id):
            products = self.db.execute(
                f"SELECT {_PRODUCT_COLUMNS} FROM products p JOIN store_products s "
                "ON s.product_id = p.product_id WHERE s.store_id = ? ORDER BY p.product_id",
                (store_id,),
            ).fetchall()
        else:
            products = self.db.execute(
                f"SELECT {_PRODUCT_COLUMNS} FROM products p ORDER BY p.product_id"
            ).fetchall()
        cutoff = self.db.ts(now - timedelta(days=settings.scope_days))
        cards = self.db.execute(
            "SELECT c.card_no, c.customer_id, c.status FROM cards c WHERE c.card_no IN ("
            "SELECT s.card_no FROM sales s WHERE s.store_id = ? AND s.card_no IS NOT NULL "
            "AND s.closed_at >= ? UNION SELECT sc.card_no FROM store_cards sc "
            "WHERE sc.store_id = ?) ORDER BY c.card_no",
            (store_id, cutoff, store_id),
        ).fetchall()
        return {
            "products": [_product(r) for r in products],
            "cards": self._card_rows(cards, now),
            "stores": [_store(store)],
            "promotions": [
                _promotion(r)
                for r in self.db.execute(
                    "SELECT promotion_id, version, doc FROM promotions ORDER BY promotion_id"
                ).fetchall()
            ],
            "settings": [
                _setting(r)
                for r in self.db.execute(
                    "SELECT name, value FROM settings ORDER BY name"
                ).fetchall()
            ],
        }

    def _changes(
        self,
        store: tuple[Any, ...],
        since: int,
        until: int,
        now: datetime,
        settings: FeedSettings,
    ) -> tuple[int, dict[str, list[dict[str, Any]]], dict[str, set[str]]]:
        """Rows with a version in (since, until], cut to at most max_rows at a version boundary.

        Returns (to_version, upserts, deletes); to_version < until when the page was cut, and
        since when one version alone exceeds the page (the caller then sends a snapshot).
        """
        store_id = store[0]
        limit = settings.max_rows + 1
        rng = (since, until)
        found: list[tuple[int, str, Any]] = []  # (version, table, raw row or key)
        if self._has_assortment(store_id):
            both = "CASE WHEN p.version > s.version THEN p.version ELSE s.version END"
            rows = self.db.execute(
                f"SELECT {_PRODUCT_COLUMNS}, {both} FROM products p JOIN store_products s "
                "ON s.product_id = p.product_id WHERE s.store_id = ? "
                f"AND {both} > ? AND {both} <= ? ORDER BY 9 LIMIT {limit}",
                (store_id, *rng),
            ).fetchall()
        else:
            rows = self.db.execute(
                f"SELECT {_PRODUCT_COLUMNS}, p.version FROM products p "
                f"WHERE p.version > ? AND p.version <= ? ORDER BY p.version LIMIT {limit}",
                rng,
            ).fetchall()
        found.extend((int(r[8]), "products", _product(r)) for r in rows)
        for table, sql, build in (
            (
                "promotions",
                "SELECT promotion_id, version, doc, version FROM promotions",
                _promotion,
            ),
            ("settings", "SELECT name, value, version FROM settings", _setting),
        ):
            width = 3 if table == "promotions" else 2
            for r in self.db.execute(
                f"{sql} WHERE version > ? AND version <= ? ORDER BY version LIMIT {limit}", rng
            ).fetchall():
                found.append((int(r[width]), table, build(r)))
        row = self.db.execute(
            "SELECT version FROM stores WHERE store_id = ? AND version > ? AND version <= ?",
            (store_id, *rng),
        ).fetchone()
        if row is not None:
            found.append((int(row[0]), "stores", _store(store)))
        cutoff = self.db.ts(now - timedelta(days=settings.scope_days))
        in_scope = (
            "SELECT c.card_no, c.customer_id, c.status, c.version FROM cards c "
            f"WHERE c.version > ? AND c.version <= ? AND {self._scope_sql()} "
            f"UNION SELECT c.card_no, c.customer_id, c.status, sc.version FROM cards c "
            "JOIN store_cards sc ON sc.card_no = c.card_no WHERE sc.store_id = ? "
            "AND sc.version > ? AND sc.version <= ?"
        )
        cards = self.db.execute(
            f"SELECT * FROM ({in_scope}) AS changed ORDER BY 4 LIMIT {limit}",
            (*rng, store_id, cutoff, store_id, store_id, *rng),
        ).fetchall()
        found.extend((int(r[3]), "cards", tuple(r[:3])) for r in cards)
        for table, key, version in self.db.execute(
            "SELECT table_name, row_key, version FROM master_tombstones "
            "WHERE version > ? AND version <= ? AND (store_id = '' OR store_id = ?) "
            f"ORDER BY version LIMIT {limit}",
            (*rng, store_id),
        ).fetchall():
            name = "products" if table == "store_products" else table
            if name in _ROW_KEYS and (name != "stores" or key == store_id):
                found.append((int(version), "-" + name, key))
        to_version = until
        if len(found) > settings.max_rows:
            found.sort(key=lambda item: item[0])
            to_version = found[settings.max_rows - 1][0] - 1
            if to_version <= since:
                return since, {}, {}
            found = [item for item in found if item[0] <= to_version]
        upserts: dict[str, list[dict[str, Any]]] = {}
        deletes: dict[str, set[str]] = {}
        card_raw: dict[str, tuple[Any, ...]] = {}
        for _, table, value in found:
            if table.startswith("-"):
                deletes.setdefault(table[1:], set()).add(str(value))
            elif table == "cards":
                card_raw[value[0]] = value
            else:
                upserts.setdefault(table, []).append(value)
        if card_raw:
            upserts["cards"] = self._card_rows(list(card_raw.values()), now)
        return to_version, upserts, deletes

    def _ledger_cards(
        self, store_id: str, base: tuple[int, int, Any], now: datetime, settings: FeedSettings
    ) -> list[tuple[Any, ...]]:
        """(card_no, customer_id, status) of in-scope cards whose balance, coupons or offers may
        have moved since the base mark: ledger rows and coupon redemptions at/above it, lots
        activated or expired, coupons and offers expired since it was taken."""
        found = {
            str(r[0])
            for r in self.db.execute(
                f"SELECT DISTINCT card_no FROM ledger WHERE {self._ledger_since()}", (base[1],)
            ).fetchall()
        }
        if self.db.dt(base[2]) < now:
            at = self.db.ts(now)
            found.update(
                str(r[0])
                for r in self.db.execute(
                    f"SELECT DISTINCT card_no FROM lots WHERE {self._TIMED}",
                    (base[2], at, base[2], at),
                ).fetchall()
            )
        customers = sorted(self._extras_moved(base[1], base[2], now))
        for start in range(0, len(customers), _CHUNK):
            chunk = customers[start : start + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            found.update(
                str(r[0])
                for r in self.db.execute(
                    f"SELECT card_no FROM cards WHERE customer_id IN ({marks})", chunk
                ).fetchall()
            )
        changed = sorted(found)
        cutoff = self.db.ts(now - timedelta(days=settings.scope_days))
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(changed), _CHUNK):
            chunk = changed[start : start + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            out.extend(
                tuple(r)
                for r in self.db.execute(
                    "SELECT c.card_no, c.customer_id, c.status FROM cards c "
                    f"WHERE c.card_no IN ({marks}) AND {self._scope_sql()}",
                    (*chunk, store_id, cutoff, store_id),
                ).fetchall()
            )
        return out

    def _aged_out(
        self, store_id: str, base: tuple[int, int, Any], now: datetime, settings: FeedSettings
    ) -> list[str]:
        """Cards whose last sale at the store fell out of the scope window since the base mark
        was taken (and that the store did not look up)."""
        since = self.db.dt(base[2])
        if since >= now:
            return []
        days = timedelta(days=settings.scope_days)
        low, high = self.db.ts(since - days), self.db.ts(now - days)
        candidates = [
            str(r[0])
            for r in self.db.execute(
                "SELECT DISTINCT card_no FROM sales WHERE store_id = ? AND card_no IS NOT NULL "
                "AND closed_at >= ? AND closed_at < ?",
                (store_id, low, high),
            ).fetchall()
        ]
        out: list[str] = []
        for start in range(0, len(candidates), _CHUNK):
            chunk = candidates[start : start + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            kept = {
                str(r[0])
                for r in self.db.execute(
                    f"SELECT c.card_no FROM cards c WHERE c.card_no IN ({marks}) "
                    f"AND {self._scope_sql()}",
                    (*chunk, store_id, high, store_id),
                ).fetchall()
            }
            out.extend(c for c in chunk if c not in kept)
        return out

    def master_feed(
        self, store_id: str, since: int, now: datetime, settings: FeedSettings = FeedSettings()
    ) -> MasterSnapshot | MasterDelta | None:
        """What a store at `since` needs (see _master_feed); the customer states derived for it
        are checkpointed afterwards, outside the read snapshot."""
        try:
            return self._master_feed(store_id, since, now, settings)
        finally:
            self._save_states()

    def _save_states(self) -> None:
        derived, self._derived = self._derived, {}
        if derived:
            self.states.save(derived)

    def _master_feed(
        self, store_id: str, since: int, now: datetime, settings: FeedSettings
    ) -> MasterSnapshot | MasterDelta | None:
        """What a store at version `since` needs: snapshot (since 0 or too old) or delta; None
        for an unknown store. Snapshots carry the checksum of the store's replica; deltas at
        most every settings.checksum_every_s (partial pages never)."""
        self._tick(now, settings.tick_every_s)
        cache = self._checksum_cache
        with self.db.guard("read master feed"), self.db.snapshot():
            store = self._store_row(store_id)
            if store is None:
                return None
            current = self.versions.current()
            base = self._mark_at(since) if 0 < since <= current else None
            if base is not None:
                if since == current:
                    # Up to date: the checksum last sent describes what the store holds (the
                    # ledger may have moved since; that comes with the next tick). Unknown
                    # after a restart: "" (no check) rather than a needless repair.
                    cached = cache.get(store_id)
                    checksum = cached[1] if cached is not None and cached[0] == current else ""
                    return MasterDelta(from_version=since, to_version=since, checksum=checksum)
                to_version, upserts, deletes = self._changes(store, since, current, now, settings)
                if to_version > since:
                    return self._delta(
                        store, (since, to_version, current), upserts, deletes, base, now, settings
                    )
            tables = self._replica(store, now, settings)
            checksum = replica_checksum(tables)
            cache[store_id] = (current, checksum, time.monotonic())
            return MasterSnapshot(
                version=current,
                tables={name: tuple(rows) for name, rows in tables.items()},
                checksum=checksum,
            )

    def _delta(
        self,
        store: tuple[Any, ...],
        versions: tuple[int, int, int],
        upserts: dict[str, list[dict[str, Any]]],
        deletes: dict[str, set[str]],
        base: tuple[int, int, Any],
        now: datetime,
        settings: FeedSettings,
    ) -> MasterDelta:
        """The delta (since, to_version]; the last page (to_version == current) adds balances."""
        since, to_version, current = versions
        checksum = ""
        if to_version == current:
            # The last page also carries balances moved by the ledger since the base mark.
            held = {row["card_no"] for row in upserts.get("cards", [])}
            extra = [
                c for c in self._ledger_cards(store[0], base, now, settings) if c[0] not in held
            ]
            if extra:
                upserts.setdefault("cards", []).extend(self._card_rows(extra, now))
            held |= {c[0] for c in extra}
            aged = [c for c in self._aged_out(store[0], base, now, settings) if c not in held]
            if aged:
                deletes.setdefault("cards", set()).update(aged)
            # A full re-read of the store's replica costs ~10 ms per 1000 rows, so it runs at
            # most every checksum_every_s per store; other deltas carry "" (not computed).
            cache = self._checksum_cache
            last = cache.get(store[0])
            if last is None or time.monotonic() - last[2] >= settings.checksum_every_s:
                checksum = replica_checksum(self._replica(store, now, settings))
                cache[store[0]] = (current, checksum, time.monotonic())
        return MasterDelta(
            from_version=since,
            to_version=to_version,
            upserts={name: tuple(rows) for name, rows in upserts.items() if rows},
            deletes={name: tuple(sorted(keys)) for name, keys in deletes.items() if keys},
            checksum=checksum,
        )

    # -- online lookup -------------------------------------------------------------------------

    def lookup_card(self, store_id: str, card_no: str, now: datetime) -> dict[str, Any] | None:
        """The card row of `card_no` (adding it to the store's scope), or None if unknown."""
        try:
            return self._lookup_card(store_id, card_no, now)
        finally:
            self._save_states()

    def _lookup_card(self, store_id: str, card_no: str, now: datetime) -> dict[str, Any] | None:
        with self.db.guard("look up card"), self.db.transaction():
            card = self.db.execute(
                "SELECT card_no, customer_id, status FROM cards WHERE card_no = ?", (card_no,)
            ).fetchone()
            if card is None:
                return None
            held = self.db.execute(
                "SELECT 1 FROM store_cards WHERE store_id = ? AND card_no = ?",
                (store_id, card_no),
            ).fetchone()
            if held is None:
                version = self.versions.bump()
                self.db.execute(
                    "INSERT INTO store_cards (store_id, card_no, added_at, version) "
                    "VALUES (?, ?, ?, ?)",
                    (store_id, card_no, self.db.ts(now), version),
                )
            return self._card_rows([tuple(card)], now)[0]

    # -- the full snapshot (tools, tests) ------------------------------------------------------

    def master_snapshot(
        self, store_id: str, now: datetime, *, since: int = 0
    ) -> tuple[int, dict[str, tuple[dict[str, Any], ...]]] | None:
        """(version, tables) for a store, with every card (no tables when `since` is current);
        None if unknown. Kept for tools; stores use master_feed."""
        with self.db.guard("read master snapshot"), self.db.snapshot():
            # One transaction so the version matches the rows.
            store = self._store_row(store_id)
            if store is None:
                return None
            version = self.versions.current()
            if since == version:
                return version, {}
            tables = self._replica(store, now, FeedSettings())
            balances = self.ledger.bonus_balances(now)
            tables["cards"] = [
                {
                    "card_no": r[0],
                    "customer_id": r[1],
                    "status": r[2],
                    "bonus_balance": balances.get(r[0], 0),
                }
                for r in self.db.execute(
                    "SELECT card_no, customer_id, status FROM cards ORDER BY card_no"
                ).fetchall()
            ]
        return version, {name: tuple(rows) for name, rows in tables.items()}
