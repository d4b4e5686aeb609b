"""The chain's own master data: loads of stores, registers, products, prices and the managed
lists, price changes by effective time, the chain settings; each write one transaction with its
audit rows and one master version (published down the feed like any master change).

Every source goes through `load`: checked records (center/feed/loaders.py), then references
(a register's store, a price's product) checked against the database and the same load, then
written with the feed's upsert (compare, write only what changed, bump the version only then).
A load with any problem raises InvalidLines listing every one, and writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from center.access.audit import AuditLog
from center.errors import InvalidLines, UnknownObject
from center.feed.loaders import (
    KINDS,
    Problem,
    Record,
    check_rows,
    check_settings,
    parse_csv,
)
from center.feed.store import FeedRepository
from center.feed.versions import MasterVersions
from center.storage.base import MASTER_TABLES, Progress
from center.storage.database import Database
from center.storage.migrations import Migration
from loyalty_engine import RuleError, load_promotion_set

__all__ = [
    "AUDIT_KIND",
    "LIST_NAMES",
    "PER_ROW_AUDIT",
    "POSTGRES_MIGRATION",
    "SQLITE_MIGRATION",
    "LoadReport",
    "MasterDataRepository",
]

PER_ROW_AUDIT = 1000
"""A load changing at most this many rows writes an audit row per row (before/after) as well
as the load's own row; a bigger one (an import) only the load's row with the first keys."""
LIST_NAMES: Mapping[str, str] = {"formats": "format", "regions": "region"}
"""Managed list kind -> its `master_lists.list_name`."""
_TABLE: Mapping[str, str] = {
    "formats": "master_lists",
    "regions": "master_lists",
    "stores": "stores",
    "registers": "registers",
    "products": "products",
}
_KEYS_SHOWN = 100
AUDIT_KIND: Mapping[str, str] = {
    "stores": "store",
    "products": "product",
    "registers": "register",
    "master_lists": "master_list",
}
"""Master table -> the audit kind of its rows' history (other tables: the load's row only)."""

SQLITE_MIGRATION = Migration(
    "m020_master_data",
    (
        "ALTER TABLE products ADD COLUMN category_path TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE products ADD COLUMN cost_minor INTEGER",
        "ALTER TABLE stores ADD COLUMN region TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE stores ADD COLUMN address TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE registers (
        register_id TEXT PRIMARY KEY,
        store_id TEXT NOT NULL,
        version INTEGER NOT NULL
    )""",
        "CREATE INDEX registers_store ON registers (store_id)",
        """CREATE TABLE master_lists (
        list_name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (list_name, name_key)
    )""",
        """CREATE TABLE price_changes (
        product_id TEXT NOT NULL,
        effective_from TEXT NOT NULL,
        price_minor INTEGER NOT NULL,
        applied INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL,
        PRIMARY KEY (product_id, effective_from)
    )""",
        "CREATE INDEX price_changes_due ON price_changes (effective_from) WHERE applied = 0",
    ),
)
"""Stores' region and address, products' path and cost, registers, managed lists, price
changes (SQLite)."""

POSTGRES_MIGRATION = Migration(
    "m020_master_data",
    (
        "ALTER TABLE products ADD COLUMN category_path TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE products ADD COLUMN cost_minor BIGINT",
        "ALTER TABLE stores ADD COLUMN region TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE stores ADD COLUMN address TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE registers (
        register_id TEXT PRIMARY KEY,
        store_id TEXT NOT NULL,
        version BIGINT NOT NULL
    )""",
        "CREATE INDEX registers_store ON registers (store_id)",
        """CREATE TABLE master_lists (
        list_name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (list_name, name_key)
    )""",
        """CREATE TABLE price_changes (
        product_id TEXT NOT NULL,
        effective_from TIMESTAMPTZ NOT NULL,
        price_minor BIGINT NOT NULL,
        applied INTEGER NOT NULL DEFAULT 0,
        version BIGINT NOT NULL,
        PRIMARY KEY (product_id, effective_from)
    )""",
        "CREATE INDEX price_changes_due ON price_changes (effective_from) WHERE applied = 0",
    ),
)
"""The same on PostgreSQL."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a load did: rows read and changed per kind, the master version after it."""

    kind: str
    rows: int
    changed: int
    prices_applied: int
    master_version: int
    sha256: str = ""
    tables: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows": self.rows,
            "changed": self.changed,
            "prices_applied": self.prices_applied,
            "master_version": self.master_version,
            "sha256": self.sha256,
        }


def _problems_error(problems: Sequence[Problem], *, rows: bool) -> InvalidLines:
    """InvalidLines of a load: `line N` for a file, `rows[i]` for JSON rows, the field after."""

    def where(p: Problem) -> str:
        if not rows:
            return f"line {p.line}: {p.field}"
        return f"rows[{p.line}].{p.field}" if p.line >= 0 else p.field

    first = problems[0]
    return InvalidLines(
        where(first),
        first.message,
        [{**p.to_json(), "where": where(p)} for p in problems],
    )


class MasterDataRepository:
    """Loads and reads of the chain's master data, over the shared Database."""

    def __init__(
        self, db: Database, *, versions: MasterVersions, feed: FeedRepository, audit: AuditLog
    ) -> None:
        self.db = db
        self.versions = versions
        self.feed = feed
        self.audit = audit

    # -- loading -------------------------------------------------------------------------------

    def load_csv(
        self,
        kind: str,
        data: bytes,
        *,
        actor: str,
        now: datetime,
        source: str = "",
        progress: Progress | None = None,
    ) -> LoadReport:
        """Load a CSV file of `kind`; InvalidLines (nothing written) if any line is bad."""
        digest = hashlib.sha256(data).hexdigest()
        with self.db.guard(f"load {kind}"), self.db.transaction():
            self.versions.lock()
            exponent, zone = self._money_and_zone()
            formats, regions = self._lists()
            records, problems = parse_csv(
                kind,
                data,
                exponent=exponent,
                zone=zone,
                formats=formats,
                regions=regions,
                progress=progress,
            )
            if problems:
                raise _problems_error(problems, rows=False)
            return self._write(
                {kind: records},
                actor=actor,
                now=now,
                how={"source": "csv", "file": source, "sha256": digest},
                progress=progress,
                rows=False,
            )

    def load_rows(self, kind: str, rows: Any, *, actor: str, now: datetime) -> LoadReport:
        """Load JSON rows of `kind` ({"rows": [...]}); InvalidLines naming rows[i].field."""
        if kind not in KINDS:
            raise UnknownObject("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(rows, list) or not rows:
            raise InvalidLines(
                "rows",
                "expected a non-empty list of objects",
                [{"line": -1, "field": "rows", "message": "expected a non-empty list"}],
            )
        with self.db.guard(f"load {kind}"), self.db.transaction():
            self.versions.lock()
            exponent, zone = self._money_and_zone()
            formats, regions = self._lists()
            records, problems = check_rows(
                kind,
                enumerate(rows),
                text=False,
                exponent=exponent,
                zone=zone,
                formats=formats,
                regions=regions,
            )
            if problems:
                raise _problems_error(problems, rows=True)
            return self._write(
                {kind: records}, actor=actor, now=now, how={"source": "api"}, rows=True
            )

    def load_records(
        self,
        records: Mapping[str, Sequence[Record]],
        *,
        actor: str,
        now: datetime,
        extra: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
        source: str = "",
        progress: Progress | None = None,
    ) -> LoadReport:
        """Write records checked by `check_rows` (an importer) with other master tables
        (`extra`, the feed's upsert rows) in the same transaction and version."""
        with self.db.guard("load master data"), self.db.transaction():
            self.versions.lock()
            return self._write(
                records,
                actor=actor,
                now=now,
                how={"source": source or "import"},
                progress=progress,
                rows=False,
                extra=extra,
            )

    def _write(
        self,
        records: Mapping[str, Sequence[Record]],
        *,
        actor: str,
        now: datetime,
        how: dict[str, Any],
        rows: bool,
        progress: Progress | None = None,
        extra: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    ) -> LoadReport:
        """Inside the caller's transaction, the version lock held."""
        problems = self._references(records)
        if problems:
            raise _problems_error(problems, rows=rows)
        tables: dict[str, list[dict[str, Any]]] = {}
        for kind in KINDS:
            if kind in records and kind != "prices":
                tables.setdefault(_TABLE[kind], []).extend(
                    _table_row(kind, r) for r in records[kind]
                )
        for name, extra_rows in (extra or {}).items():
            tables.setdefault(name, []).extend(dict(r) for r in extra_rows)
        prepared = self.feed.prepare_master(tables)
        audited = sum(len(r) for r in prepared.values()) <= PER_ROW_AUDIT
        before = {
            name: self._rows(name, list(rows_))
            for name, rows_ in prepared.items()
            if audited and name in AUDIT_KIND
        }
        version = self.versions.current() + 1
        changed = self.feed.write_master(prepared, version, progress)
        changed_prices = self._write_prices(records.get("prices", ()), version)
        if changed_prices:
            changed["price_changes"] = changed_prices
        applied = self._apply_due(now, version)
        if applied:
            changed["products"] = changed.get("products", 0) + applied
        total = sum(changed.values())
        if total:
            self.db.execute("UPDATE master_version SET version = ? WHERE id = 1", (version,))
        else:
            version -= 1
        kinds = sorted(records) or ["import"]
        read = sum(len(r) for r in records.values())
        keys: list[str] = []
        at = self.db.ts(now)
        for name, rows_ in prepared.items():
            for key, values in rows_.items():
                old = before.get(name, {}).get(key)
                if audited and name in AUDIT_KIND and old != values:
                    self.audit.record(
                        AUDIT_KIND[name],
                        ":".join(key),
                        "create" if old is None else "update",
                        None if old is None else _shown(name, old),
                        _shown(name, values),
                        actor,
                        at,
                    )
                    keys.append(f"{name}:{':'.join(key)}")
        if total:
            self.audit.record(
                "master_load",
                ",".join(kinds),
                "load",
                None,
                {
                    **how,
                    "rows": read,
                    "changed": changed,
                    "keys": keys[:_KEYS_SHOWN],
                    "version": version,
                },
                actor,
                at,
            )
        return LoadReport(
            kind=",".join(kinds),
            rows=read,
            changed=total,
            prices_applied=applied,
            master_version=version,
            sha256=str(how.get("sha256", "")),
            tables=changed,
        )

    def _references(self, records: Mapping[str, Sequence[Record]]) -> list[Problem]:
        """A register's store and a price's product must exist (in the database or the load)."""
        problems: list[Problem] = []
        for kind, column, table, named in (
            ("registers", "store_id", "stores", "stores"),
            ("prices", "product_id", "products", "products"),
        ):
            wanted = records.get(kind, ())
            if not wanted:
                continue
            known = {str(r[0]) for r in self.db.execute(f"SELECT {column} FROM {table}")}
            known.update(str(r.values[column]) for r in records.get(named, ()))
            problems.extend(
                Problem(r.line, column, f"unknown {column[:-3]} {r.values[column]!r}")
                for r in wanted
                if r.values[column] not in known
            )
        return sorted(problems, key=lambda p: p.line)

    def _rows(self, name: str, keys: list[tuple]) -> dict[tuple, tuple]:
        """The rows of a master table at these keys, as prepare_master shapes them."""
        spec = MASTER_TABLES[name]
        out: dict[tuple, tuple] = {}
        where = " AND ".join(f"{k} = ?" for k in spec.keys)
        for key in keys:
            row = self.db.execute(
                f"SELECT {', '.join(spec.columns)} FROM {name} WHERE {where}", key
            ).fetchone()
            if row is not None:
                out[key] = tuple(row)
        return out

    def _write_prices(self, records: Sequence[Record], version: int) -> int:
        if not records:
            return 0
        held = {
            (str(r[0]), self.db.dt(r[1])): int(r[2])
            for r in self.db.execute(
                "SELECT product_id, effective_from, price_minor FROM price_changes"
            ).fetchall()
        }
        new: list[tuple[Any, ...]] = []
        moved: list[tuple[Any, ...]] = []
        for r in records:
            key = (r.values["product_id"], r.values["effective_from"])
            if key not in held:
                new.append((key[0], self.db.ts(key[1]), r.values["price_minor"], 0, version))
            elif held[key] != r.values["price_minor"]:
                moved.append((r.values["price_minor"], version, key[0], self.db.ts(key[1])))
        if new:
            self.db.bulk_insert(
                "price_changes",
                ("product_id", "effective_from", "price_minor", "applied", "version"),
                new,
            )
        if moved:
            # A corrected price applies again (at once if it is already due).
            self.db.executemany(
                "UPDATE price_changes SET price_minor = ?, applied = 0, version = ? "
                "WHERE product_id = ? AND effective_from = ?",
                moved,
            )
        return len(new) + len(moved)

    def _apply_due(self, now: datetime, version: int) -> int:
        """Products whose price change came due: the latest due price; rows changed."""
        due = self.db.execute(
            "SELECT product_id, effective_from, price_minor FROM price_changes "
            "WHERE applied = 0 AND effective_from <= ? ORDER BY product_id, effective_from",
            (self.db.ts(now),),
        ).fetchall()
        if not due:
            return 0
        latest = {str(r[0]): int(r[2]) for r in due}
        changed = 0
        for product_id, price in latest.items():
            row = self.db.execute(
                "SELECT price_minor FROM products WHERE product_id = ?", (product_id,)
            ).fetchone()
            if row is not None and row[0] != price:
                self.db.execute(
                    "UPDATE products SET price_minor = ?, version = ? WHERE product_id = ?",
                    (price, version, product_id),
                )
                changed += 1
        self.db.executemany(
            "UPDATE price_changes SET applied = 1 WHERE product_id = ? AND effective_from = ?",
            [(r[0], r[1]) for r in due],
        )
        return changed

    def apply_due_prices(self, now: datetime) -> int:
        """Apply the price changes due at `now` (the scheduler's job); products changed."""
        with self.db.guard("apply price changes"), self.db.transaction():
            pending = self.db.execute(
                "SELECT 1 FROM price_changes WHERE applied = 0 AND effective_from <= ? LIMIT 1",
                (self.db.ts(now),),
            ).fetchone()
            if pending is None:
                return 0
            version = self.versions.lock() + 1
            changed = self._apply_due(now, version)
            if changed:
                self.db.execute("UPDATE master_version SET version = ? WHERE id = 1", (version,))
                self.audit.record(
                    "master_load",
                    "prices",
                    "apply",
                    None,
                    {"source": "price_changes", "changed": {"products": changed}},
                    "scheduler",
                    self.db.ts(now),
                )
            return changed

    # -- context -------------------------------------------------------------------------------

    def _settings(self) -> dict[str, str]:
        return {
            str(r[0]): str(r[1])
            for r in self.db.execute("SELECT name, value FROM settings").fetchall()
        }

    def _money_and_zone(self) -> tuple[int, tzinfo]:
        """The currency's exponent and the chain's time zone, from the chain settings."""
        settings = self._settings()
        exponent = settings.get("currency_exponent", "2")
        zone: tzinfo = UTC
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):  # checked when set
            zone = ZoneInfo(settings.get("timezone", "UTC"))
        return (int(exponent) if exponent in ("0", "1", "2", "3") else 2), zone

    def _lists(self) -> tuple[dict[str, str], dict[str, str]]:
        lists: dict[str, dict[str, str]] = {"format": {}, "region": {}}
        for list_name, key, name in self.db.execute(
            "SELECT list_name, name_key, name FROM master_lists"
        ).fetchall():
            lists.setdefault(str(list_name), {})[str(key)] = str(name)
        return lists["format"], lists["region"]

    # -- reading -------------------------------------------------------------------------------

    def rows(self, kind: str, *, limit: int = 1000, after: str = "") -> list[dict[str, Any]]:
        """Rows of a kind in key order (`after` a key, at most `limit`)."""
        if kind not in KINDS:
            raise UnknownObject("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
        with self.db.guard(f"read {kind}"), self.db.snapshot():
            if kind in LIST_NAMES:
                return [
                    {"name": r[0], "version": int(r[1])}
                    for r in self.db.execute(
                        "SELECT name, version FROM master_lists WHERE list_name = ? "
                        "AND name_key > ? ORDER BY name_key LIMIT ?",
                        (LIST_NAMES[kind], after.casefold(), limit),
                    ).fetchall()
                ]
            if kind == "prices":
                return [
                    {
                        "product_id": r[0],
                        "effective_from": self.db.dt(r[1]).isoformat(),
                        "price_minor": int(r[2]),
                        "applied": bool(r[3]),
                        "version": int(r[4]),
                    }
                    for r in self.db.execute(
                        "SELECT product_id, effective_from, price_minor, applied, version "
                        "FROM price_changes WHERE product_id > ? "
                        "ORDER BY product_id, effective_from LIMIT ?",
                        (after, limit),
                    ).fetchall()
                ]
            spec = MASTER_TABLES[_TABLE[kind]]
            key = spec.keys[0]
            return [
                {
                    **_shown(spec.name, tuple(r[:-1])),
                    "version": int(r[-1]),
                }
                for r in self.db.execute(
                    f"SELECT {', '.join(spec.columns)}, version FROM {spec.name} "
                    f"WHERE {key} > ? ORDER BY {key} LIMIT ?",
                    (after, limit),
                ).fetchall()
            ]

    # -- chain settings ------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The chain settings ({name: text}; the coupon key only says whether it is set)."""
        with self.db.guard("read settings"), self.db.snapshot():
            values = self._settings()
            version = self.versions.current()
        return {"version": version, "settings": _redacted(values)}

    def set_settings(self, changes: Any, *, actor: str, now: datetime) -> dict[str, Any]:
        """Change chain settings ({name: value, null removes}); InvalidLines naming a key that is
        unknown or out of range; the engine must accept the result. One version, one audit row
        per setting changed."""
        values, problems = check_settings(changes)
        if problems:
            raise InvalidLines(
                problems[0].field,
                problems[0].message,
                [{**p.to_json(), "where": p.field} for p in problems],
            )
        with self.db.guard("set settings"), self.db.transaction():
            version = self.versions.lock() + 1
            held = self._settings()
            merged = {**held, **{k: v for k, v in values.items() if v is not None}}
            for name, value in values.items():
                if value is None:
                    merged.pop(name, None)
            try:
                load_promotion_set([], version=0, settings=merged)
            except RuleError as exc:
                raise InvalidLines(
                    "settings", str(exc), [{"line": 0, "field": "settings", "message": str(exc)}]
                ) from exc
            upserts = [
                {"name": k, "value": v}
                for k, v in values.items()
                if v is not None and held.get(k) != v
            ]
            removed = [k for k, v in values.items() if v is None and k in held]
            if upserts:
                prepared = self.feed.prepare_master({"settings": upserts})
                self.feed.write_master(prepared, version, None)
                self.db.execute("UPDATE master_version SET version = ? WHERE id = 1", (version,))
            for name in removed:
                # The table's trigger bumps the version and writes the tombstone.
                self.db.execute("DELETE FROM settings WHERE name = ?", (name,))
            at = self.db.ts(now)
            for name in sorted({*(u["name"] for u in upserts), *removed}):
                before = _redacted({name: held[name]}) if name in held else None
                after = _redacted({name: merged[name]}) if name in merged else None
                self.audit.record("setting", name, "set", before, after, actor, at)
            current = self.versions.current()
        return {"version": current, "settings": _redacted(merged)}


def _redacted(values: Mapping[str, str]) -> dict[str, Any]:
    return {
        k: ("(set)" if k in ("coupon_key", "member.ecard_key") and v else v)
        for k, v in sorted(values.items())
    }


def _table_row(kind: str, record: Record) -> dict[str, Any]:
    """A record as the row of its master table."""
    if kind in LIST_NAMES:
        name = str(record.values["name"])
        return {"list_name": LIST_NAMES[kind], "name_key": name.casefold(), "name": name}
    return dict(record.values)


def _shown(table: str, values: tuple) -> dict[str, Any]:
    """A master row (as stored) as JSON for the audit and the API."""
    spec = MASTER_TABLES[table]
    out = dict(zip(spec.columns, values, strict=True))
    for name in spec.bool_columns:
        out[name] = bool(out[name])
    for name in spec.json_columns:
        if isinstance(out[name], str):
            out[name] = json.loads(out[name])
    return out
