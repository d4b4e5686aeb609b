"""replica.db: the register's local copy of the master data it needs to sell offline."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlite_utils

from loyalty_engine import PersonalOffer
from pos_agent.errors import ReplicaError
from pos_agent.migrations import Migrations
from sync_protocol import (
    MasterDelta,
    MasterSnapshot,
    ProtocolError,
    canonical_row,
    replica_checksum,
)

__all__ = ["TABLE_KEYS", "Card", "CardCoupon", "CardOffer", "Product", "Replica"]

# Tables of master data v1 and the key column of each (docs/PROTOCOL.md); others are ignored.
TABLE_KEYS: dict[str, str] = {
    "products": "product_id",
    "cards": "card_no",
    "stores": "store_id",
    "promotions": "promotion_id",
    "settings": "name",
}
_KEY_MAX = 128


@dataclass(frozen=True, slots=True)
class Product:
    """What the engine needs to know about one product."""

    product_id: str
    department: str = ""
    category: str = ""
    brand: str = ""
    price_minor: int | None = None
    """The shelf price the Center publishes (None: unknown; the register software sends it)."""


@dataclass(frozen=True, slots=True)
class CardCoupon:
    """A coupon the Center issued to the card's customer (card rows carry `coupons`)."""

    code: str
    batch_id: str = ""
    promotion_id: str = ""
    single_use: bool = True
    valid_from: str | None = None
    """First day (YYYY-MM-DD, inclusive) or None."""
    valid_to: str | None = None
    """Last day (YYYY-MM-DD, inclusive) or None."""

    def usable(self, now: datetime) -> bool:
        """Not expired at `now` (days are UTC days, as on the Center)."""
        return self.valid_to is None or self.valid_to >= now.astimezone(UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class CardOffer:
    """A personal offer of the card's customer (card rows carry `personal_offers`)."""

    offer_id: str
    product_id: str
    percent: Decimal
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    source: str = ""

    def active(self, now: datetime) -> bool:
        """Within [valid_from, valid_to) at `now`."""
        return (self.valid_from is None or self.valid_from <= now) and (
            self.valid_to is None or now < self.valid_to
        )


@dataclass(frozen=True, slots=True)
class Card:
    """A loyalty card as the replica knows it (the balance is the Center's last word)."""

    card_no: str
    bonus_balance: int = 0
    segment: str = ""
    segments: tuple[str, ...] = ()
    """Every segment the Center puts the customer in (card rows carry `segments`)."""
    status: str = "active"
    coupons: tuple[CardCoupon, ...] = ()
    personal_offers: tuple[CardOffer, ...] = ()

    def coupons_at(self, now: datetime) -> tuple[CardCoupon, ...]:
        """The customer's coupons not expired at `now`."""
        return tuple(c for c in self.coupons if c.usable(now))

    def offers_at(self, now: datetime) -> tuple[PersonalOffer, ...]:
        """The engine's personal offers of the customer, those valid at `now`."""
        return tuple(
            PersonalOffer(o.offer_id, (o.product_id,), o.percent)
            for o in self.personal_offers
            if o.active(now)
        )


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _listed(value: Any) -> Any:
    """A list column as received, or as sqlite-utils kept it (JSON text)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _day(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 10:
        raise ReplicaError(f"{where}: expected YYYY-MM-DD or null, got {value!r}")
    return value


def _instant(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ReplicaError(f"{where}: expected an ISO 8601 time with offset, got {value!r}")
    return parsed


def _card_coupons(value: Any, where: str) -> tuple[CardCoupon, ...]:
    listed = _listed(value)
    if listed is None:
        return ()
    if not isinstance(listed, list | tuple):
        raise ReplicaError(f"{where}: expected a list of coupons, got {type(listed).__name__}")
    out: list[CardCoupon] = []
    for i, item in enumerate(listed):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("code"), str):
            raise ReplicaError(f"{at}: expected a map with a string code, got {item!r}")
        out.append(
            CardCoupon(
                code=item["code"],
                batch_id=_text(item.get("batch_id")),
                promotion_id=_text(item.get("promotion_id")),
                single_use=bool(item.get("single_use", True)),
                valid_from=_day(item.get("valid_from"), f"{at}.valid_from"),
                valid_to=_day(item.get("valid_to"), f"{at}.valid_to"),
            )
        )
    return tuple(out)


def _card_offers(value: Any, where: str) -> tuple[CardOffer, ...]:
    listed = _listed(value)
    if listed is None:
        return ()
    if not isinstance(listed, list | tuple):
        raise ReplicaError(f"{where}: expected a list of offers, got {type(listed).__name__}")
    out: list[CardOffer] = []
    for i, item in enumerate(listed):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise ReplicaError(f"{at}: expected a map, got {item!r}")
        offer_id, product_id = item.get("offer_id"), item.get("product_id")
        if not isinstance(offer_id, str) or not isinstance(product_id, str):
            raise ReplicaError(f"{at}: expected string offer_id and product_id, got {item!r}")
        try:
            percent = Decimal(str(item.get("percent")))
        except InvalidOperation:
            percent = Decimal(-1)
        if not percent.is_finite() or not Decimal(0) < percent <= Decimal(100):
            raise ReplicaError(f"{at}.percent: expected 0 < percent <= 100, got {item!r}")
        out.append(
            CardOffer(
                offer_id=offer_id,
                product_id=product_id,
                percent=percent,
                valid_from=_instant(item.get("valid_from"), f"{at}.valid_from"),
                valid_to=_instant(item.get("valid_to"), f"{at}.valid_to"),
                source=_text(item.get("source")),
            )
        )
    return tuple(out)


def _check_rows(table: str, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    key = TABLE_KEYS[table]
    checked: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        where = f"tables.{table}[{index}]"
        if not isinstance(row, Mapping):
            raise ReplicaError(f"{where}: expected a map, got {type(row).__name__}")
        value = row.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= _KEY_MAX:
            raise ReplicaError(f"{where}.{key}: expected a key string of 1..{_KEY_MAX} chars")
        for column in row:
            if not isinstance(column, str) or not column:
                raise ReplicaError(f"{where}: column name {column!r} is not a string")
        if table == "cards" and "bonus_balance" in row:
            balance = row["bonus_balance"]
            if isinstance(balance, bool) or not isinstance(balance, int):
                raise ReplicaError(f"{where}.bonus_balance: expected int, got {balance!r}")
        if table == "cards":
            for name, check in (("coupons", _card_coupons), ("personal_offers", _card_offers)):
                value = row.get(name)
                if value is not None and not isinstance(value, list | tuple):
                    raise ReplicaError(f"{where}.{name}: expected a list, got {value!r}")
                check(value, f"{where}.{name}")
        if table == "promotions" and not isinstance(row.get("doc"), Mapping):
            raise ReplicaError(f"{where}.doc: expected a rule document (map)")
        if table == "settings":
            row = {**row, "value": _text(row.get("value"))}
        checked.append(dict(row))
    return checked


# The typed tables as sqlite-utils 4 created them in the release before migrations (kept
# literally, so a fresh file equals an adopted one whatever sqlite-utils does later); they gain
# a column for every new column the master data brings (insert_all(alter=True)). Cards looked up
# online are not master data (not checksummed); master_rows keeps every master row exactly as
# received (canonical text): the checksum is computed over these, since the typed tables keep
# only what the register reads.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS "products" (
   "product_id" TEXT PRIMARY KEY,
   "department" TEXT,
   "category" TEXT,
   "brand" TEXT
);
CREATE TABLE IF NOT EXISTS "cards" (
   "card_no" TEXT PRIMARY KEY,
   "bonus_balance" INTEGER,
   "segment" TEXT
);
CREATE TABLE IF NOT EXISTS "stores" (
   "store_id" TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS "promotions" (
   "promotion_id" TEXT PRIMARY KEY,
   "version" INTEGER,
   "doc" TEXT
);
CREATE TABLE IF NOT EXISTS "settings" (
   "name" TEXT PRIMARY KEY,
   "value" TEXT
);
CREATE TABLE IF NOT EXISTS "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
CREATE TABLE IF NOT EXISTS "looked_up_cards" (
   "card_no" TEXT PRIMARY KEY,
   "row" TEXT,
   "looked_up_at" TEXT
);
CREATE TABLE IF NOT EXISTS master_rows (tbl TEXT NOT NULL, key TEXT NOT NULL, row TEXT NOT NULL, \
PRIMARY KEY (tbl, key));
"""

MIGRATIONS = Migrations("replica", error=ReplicaError)


@MIGRATIONS
def m001_baseline(conn: sqlite3.Connection) -> None:
    """The tables of the release before migrations; a replica.db it wrote is adopted as is."""
    MIGRATIONS.create_or_adopt(conn, _SCHEMA)


class Replica:
    """One connection to replica.db; each thread that needs it opens its own."""

    def __init__(self, path: Path) -> None:
        conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            MIGRATIONS.apply(conn)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        self.db.close()

    def master_version(self) -> int:
        """The version of the master data this replica holds (0: never received any)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'master_version'").fetchone()
        return int(row[0]) if row else 0

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    def _set_version(self, version: int) -> None:
        self._set_meta("master_version", str(version))
        # Any change to the rows invalidates the cached checksum.
        self.db.execute("DELETE FROM meta WHERE key = 'checksum'")

    def _keep_rows(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        key = TABLE_KEYS[table]
        try:
            texts = [(table, str(row[key]), canonical_row(row)) for row in rows]
        except ProtocolError as exc:
            raise ReplicaError(f"tables.{table}: {exc}") from exc
        self.db.conn.executemany(
            "INSERT INTO master_rows (tbl, key, row) VALUES (?, ?, ?) "
            "ON CONFLICT (tbl, key) DO UPDATE SET row = excluded.row",
            texts,
        )

    def apply_snapshot(self, snapshot: MasterSnapshot, *, repair: bool = False) -> bool:
        """Replace every table the snapshot carries, all in one transaction; False if not newer.

        ``repair`` applies it even at the current version and replaces every table (a full
        resync after a checksum mismatch).
        """
        if snapshot.version <= self.master_version() and not repair:
            return False
        checked = {
            table: _check_rows(table, rows)
            for table, rows in snapshot.tables.items()
            if table in TABLE_KEYS
        }
        with self.db.atomic():
            replaced = TABLE_KEYS if repair else checked
            for table in replaced:
                self.db[table].delete_where()  # type: ignore[union-attr]
                self.db.execute("DELETE FROM master_rows WHERE tbl = ?", [table])
            for table, rows in checked.items():
                if rows:
                    self.db[table].insert_all(rows, alter=True, replace=True)  # type: ignore[union-attr]
                    # As received, not as checked: the sender's checksum covers these bytes.
                    self._keep_rows(table, snapshot.tables[table])
            self._set_version(snapshot.version)
        return True

    def apply_delta(self, delta: MasterDelta) -> bool:
        """Apply upserts and deletes in one transaction; False if already applied."""
        current = self.master_version()
        if delta.to_version <= current:
            return False
        if delta.from_version != current:
            raise ReplicaError(
                f"from_version: delta {delta.from_version}->{delta.to_version} does not apply "
                f"to replica version {current}; a snapshot is needed"
            )
        upserts = {
            table: _check_rows(table, rows)
            for table, rows in delta.upserts.items()
            if table in TABLE_KEYS
        }
        with self.db.atomic():
            for table, keys in delta.deletes.items():
                if table in TABLE_KEYS and keys:
                    marks = ", ".join("?" for _ in keys)
                    self.db[table].delete_where(  # type: ignore[union-attr]
                        f"[{TABLE_KEYS[table]}] IN ({marks})", [str(k) for k in keys]
                    )
                    self.db.execute(
                        f"DELETE FROM master_rows WHERE tbl = ? AND key IN ({marks})",
                        [table, *(str(k) for k in keys)],
                    )
            for table, rows in upserts.items():
                if rows:
                    # A row replaces the previous one whole (INSERT OR REPLACE), as in the
                    # store node's cache and the checksum.
                    self.db[table].insert_all(rows, alter=True, replace=True)  # type: ignore[union-attr]
                    self._keep_rows(table, delta.upserts[table])
            self._set_version(delta.to_version)
        return True

    def checksum(self) -> str:
        """sync_protocol.replica_checksum of the master rows held (cached until they change)."""
        cached = self._meta("checksum")
        if cached is not None:
            return cached
        with self.db.atomic():
            tables: dict[str, list[dict[str, Any]]] = {}
            for table, text in self.db.execute("SELECT tbl, row FROM master_rows"):
                tables.setdefault(str(table), []).append(json.loads(text))
            value = replica_checksum(tables)
            self._set_meta("checksum", value)
        return value

    def mark_synced(self, at: datetime) -> None:
        """Remember the last time the store node answered a master-data poll."""
        self._set_meta("synced_at", at.isoformat())

    def synced_at(self) -> datetime | None:
        """When the store node last answered a master-data poll (None: never)."""
        value = self._meta("synced_at")
        return None if value is None else datetime.fromisoformat(value)

    def remember_card(self, row: Mapping[str, Any], at: datetime) -> None:
        """Keep a card the store node looked up online (master data wins once it has it)."""
        (checked,) = _check_rows("cards", [row])
        self.db.execute(
            "INSERT INTO looked_up_cards (card_no, row, looked_up_at) VALUES (?, ?, ?) "
            "ON CONFLICT (card_no) DO UPDATE SET row = excluded.row, "
            "looked_up_at = excluded.looked_up_at",
            [checked["card_no"], json.dumps(checked, default=str), at.isoformat()],
        )

    def _row(self, table: str, key: str) -> dict[str, Any] | None:
        rows = self.db[table].rows_where(f"[{TABLE_KEYS[table]}] = ?", [key], limit=1)
        return next(iter(rows), None)

    def product(self, product_id: str) -> Product | None:
        """The product's engine attributes, or None when the replica does not know it."""
        row = self._row("products", product_id)
        if row is None:
            return None
        price = row.get("price_minor")
        return Product(
            product_id=product_id,
            department=_text(row.get("department")),
            category=_text(row.get("category")),
            brand=_text(row.get("brand")),
            price_minor=price if type(price) is int and price >= 0 else None,
        )

    def product_names(self, product_ids: Sequence[str]) -> dict[str, str]:
        """Printable names of the products the replica knows (for slips and the display)."""
        wanted = sorted(set(product_ids))
        if not wanted or "products" not in self.db.table_names():
            return {}
        if "name" not in self.db["products"].columns_dict:
            return {}
        marks = ", ".join("?" for _ in wanted)
        rows = self.db.execute(
            f"SELECT product_id, name FROM products WHERE product_id IN ({marks})", wanted
        ).fetchall()
        return {str(pid): str(name) for pid, name in rows if name}

    def card(self, card_no: str) -> Card | None:
        """The card's last known balance and segment, or None when the replica does not know it."""
        row = self._row("cards", card_no)
        if row is None:
            found = self.db.execute(
                "SELECT row FROM looked_up_cards WHERE card_no = ?", [card_no]
            ).fetchone()
            if found is None:
                return None
            row = json.loads(found[0])
        balance = row.get("bonus_balance")
        listed = _listed(row.get("segments"))  # sqlite-utils keeps a list column as JSON text
        segments = tuple(str(s) for s in listed) if isinstance(listed, list | tuple) else ()
        return Card(
            card_no=card_no,
            bonus_balance=balance if isinstance(balance, int) else 0,
            segment=_text(row.get("segment")),
            segments=segments,
            status=_text(row.get("status")) or "active",
            # Checked when the row was applied.
            coupons=_card_coupons(row.get("coupons"), "cards.coupons"),
            personal_offers=_card_offers(row.get("personal_offers"), "cards.personal_offers"),
        )

    def store_format(self, store_id: str) -> str:
        """The store's format (e.g. "Discounter") for rules restricted by format, or ""."""
        row = self._row("stores", store_id)
        if row is None:
            return ""
        return _text(row.get("format") or row.get("store_format"))

    def promotion_source(self) -> tuple[int, list[dict[str, Any]], dict[str, str]]:
        """(master_version, rule documents, chain settings), read as one consistent snapshot."""
        with self.db.atomic():
            version = self.master_version()
            docs: list[dict[str, Any]] = [
                json.loads(row["doc"])
                for row in self.db["promotions"].rows_where(order_by="promotion_id")
            ]
            settings = {str(row["name"]): _text(row["value"]) for row in self.db["settings"].rows}
        return version, docs, settings

    def counts(self) -> dict[str, int]:
        """Row count of every master-data table (for /health and logs)."""
        return {table: self.db[table].count for table in TABLE_KEYS}
