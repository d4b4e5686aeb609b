"""The SQL both adapters share: one transaction per write, written once for SQLite and PostgreSQL.

Statements use `?` placeholders; the PostgreSQL adapter turns them into `%s`. Row-level
logic (diffing master data, classifying a sale) is in Python so it behaves the same on both.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from center.access.audit import AuditLog
from center.access.nodes_store import NodeRepository
from center.access.users_store import UserRepository
from center.crm.store import CustomerRepository
from center.errors import StorageError
from center.feed.store import MasterFeedStore
from center.feed.versions import MasterVersions
from center.ingest.partitions import PartitionStore
from center.ingest.sales import check_sale, ledger_movements
from center.ledger.planner import (
    LedgerPlan,
    Lot,
    WalletKey,
    debited_wallets,
    derive_balance,
    plan_expiry,
    plan_movements,
)
from center.ledger.returns_store import ReturnsStore
from center.promotions.coupon_jobs_store import CouponJobRepository
from center.promotions.coupons_store import CouponRepository
from center.promotions.offers_store import OfferRepository
from center.promotions.segments_store import SegmentRepository
from center.promotions.store import PromotionRepository
from center.storage.base import (
    BURNING_WITHIN,
    MASTER_TABLES,
    Balance,
    Counts,
    LedgerEntry,
    MasterChange,
    MasterTable,
    Progress,
    RegisterSummary,
    is_required,
)
from center.storage.database import Database
from center.storage.dialect import Dialect
from center.storage.hooks import Migration
from center.storage.migrations import MigrationList, apply_migrations, recorded
from sync_protocol import (
    Ack,
    Rejection,
    Sale,
    Verdict,
    classify_sale,
    encode_sale,
)

__all__ = ["Migration", "SqlStorage", "lots_from_ledger"]

_CHUNK = 5000
_T = TypeVar("_T")
_EXPIRE_CHUNK = 500
_IN_CHUNK = 500
"""Values per `IN (...)` list: well under SQLite's limit of bound parameters."""
"""Cards per expiry transaction: bounds the locks one transaction holds."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class SqlStorage(
    ReturnsStore,
    MasterFeedStore,
    PartitionStore,
    ABC,
):
    """Storage over one DB-API connection; subclasses supply the dialect hooks."""

    backend: str = ""
    migrations = MigrationList((), numbered=0)
    """This backend's migrations, in order (center/storage/migrations.py)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        """The one connection every part of the storage uses (center/storage/database.py)."""
        # One repository per aggregate; the parts not yet a repository of their own are this
        # object's mixins.
        self.versions = MasterVersions(db)
        self.sales: Any = self
        self.ledger: Any = self
        self.returns: Any = self
        self.audit = AuditLog(db)
        self.promotions = PromotionRepository(db, audit=self.audit, versions=self.versions)
        self.coupons = CouponRepository(db, audit=self.audit, versions=self.versions)
        self.coupon_jobs = CouponJobRepository(db, audit=self.audit, coupons=self.coupons)
        self.segments = SegmentRepository(db, audit=self.audit, versions=self.versions)
        self.offers = OfferRepository(db, audit=self.audit, versions=self.versions)
        self.feed: Any = self
        self.users = UserRepository(db, audit=self.audit)
        self.nodes = NodeRepository(db)

        # Last: built from the parts above.
        self.customers = CustomerRepository(
            db, audit=self.audit, versions=self.versions, ledger=self.ledger
        )

    @property
    def dialect(self) -> Dialect:  # type: ignore[override]
        return self.db.dialect

    # -- the database's helpers, for the parts not yet repositories of their own ----------------

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute(sql, params)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    def _execute_planned(self, sql: str, params: Sequence[Any]) -> Any:
        return self.db.execute_planned(sql, params)

    def _transaction(self) -> AbstractContextManager[None]:
        return self.db.transaction()

    def _snapshot(self) -> AbstractContextManager[None]:
        return self.db.snapshot()

    def _ts(self, value: datetime | None) -> Any:
        return self.db.ts(value)

    def _dt(self, value: Any) -> datetime:
        return self.db.dt(value)

    def _lock_cards(self, card_nos: Iterable[str]) -> None:
        self.db.lock_cards(card_nos)

    def _lock_schema(self) -> None:
        self.db.lock_schema()

    def _bulk_insert(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        self.db.bulk_insert(table, columns, rows)

    def _retry_transient(self, attempt: Callable[[], _T]) -> _T:
        return self.db.retry_transient(attempt)

    def _guard(self, what: str) -> AbstractContextManager[None]:
        return self.db.guard(what)

    def close(self) -> None:
        self.db.close()

    # -- schema --------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        return apply_migrations(self, self.migrations)

    def migrations_applied(self) -> list[str]:
        """Names of the migrations recorded in the database, in the order they ran."""
        with self._guard("read migrations"), self._snapshot():
            return recorded(self)

    # -- sales ---------------------------------------------------------------------------------

    def ingest(self, sales: Sequence[Sale], received_at: datetime) -> Ack:
        # One order for every writer, so concurrent batches lock rows in the same order.
        ordered = sorted(sales, key=lambda s: (s.register_id, s.seq, s.sale_id))
        # Encoding and checks are pure: done once, when the transaction first needs them (a
        # backend may send a run's claim before encoding the next), not again on a retry.
        batch = _Batch(ordered)
        received = self._ts(received_at)
        with self._guard("ingest"):
            return self._retry_transient(lambda: self._ingest_once(batch, received))

    _SALE_KEYS = "sales"
    """The table holding the unique keys of stored sales: sale_id and (register_id, seq)."""

    def _ingest_once(self, batch: _Batch, received: Any) -> Ack:
        accepted: list[str] = []
        duplicates: list[str] = []
        rejected: list[Rejection] = []
        new: list[Sale] = []
        with self._transaction():
            prepared, claimed = self._claim_sales(batch, received)
            for p in prepared:
                sale, payload, fingerprint, problem = p.sale, p.payload, p.fingerprint, p.problem
                if problem is None:
                    if sale.sale_id in claimed:
                        claimed.discard(sale.sale_id)  # a repeat within the batch is a duplicate
                        accepted.append(sale.sale_id)
                        new.append(sale)
                        continue
                    problem = self._conflict(sale, fingerprint)
                    if problem == "duplicate":
                        duplicates.append(sale.sale_id)
                        continue
                self._quarantine(sale, problem, fingerprint, payload, received)
                rejected.append(Rejection(sale_id=sale.sale_id, reason=problem))
            if new:
                self._store_sale_details(new)
                self._on_new_sales(new)
        return Ack(accepted=tuple(accepted), duplicates=tuple(duplicates), rejected=tuple(rejected))

    def _on_new_sales(self, sales: Sequence[Sale]) -> None:
        """What else a newly stored sale changes, in the ingest transaction: coupons, returns."""
        self.coupons.record_coupon_redemptions(sales)
        self._apply_returns(sales)

    def _sale_row(self, p: _Prepared, received: Any) -> tuple[Any, ...]:
        sale = p.sale
        return (
            sale.sale_id,
            sale.store_id,
            sale.register_id,
            sale.seq,
            self._ts(sale.opened_at),
            self._ts(sale.closed_at),
            sale.card_no,
            sale.subtotal_minor,
            sale.discount_minor,
            sale.total_minor,
            len(sale.lines),
            sale.promo_version,
            p.fingerprint,
            p.payload,
            received,
            sale.prev_hash,
            p.chain_hash(),
        )

    _SALE_COLUMNS = (
        "sale_id",
        "store_id",
        "register_id",
        "seq",
        "opened_at",
        "closed_at",
        "card_no",
        "subtotal_minor",
        "discount_minor",
        "total_minor",
        "line_count",
        "promo_version",
        "fingerprint",
        "payload",
        "received_at",
        "prev_hash",
        "chain_hash",
    )

    def _claim_sales(self, batch: _Batch, received: Any) -> tuple[list[_Prepared], set[str]]:
        """Lock the batch's cards, then store its checked sales whose sale_id and (register_id,
        seq) are free: every _Prepared of the batch, in order, and the sale_ids stored."""
        self._lock_cards(batch.card_nos())
        prepared = batch.prepared(0, len(batch.sales))
        claimed: set[str] = set()
        marks = ", ".join("?" for _ in self._SALE_COLUMNS)
        sql = (
            f"INSERT INTO sales ({', '.join(self._SALE_COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT DO NOTHING RETURNING sale_id"
        )
        for p in prepared:
            if p.problem is not None:
                continue
            if self._execute(sql, self._sale_row(p, received)).fetchone() is not None:
                claimed.add(p.sale.sale_id)
        return prepared, claimed

    def _conflict(self, sale: Sale, fingerprint: str) -> str:
        """Why a checked sale was not stored: "duplicate", or the reason to quarantine it (the
        store node classifies with the same rule: sync_protocol.classify_sale)."""
        same_id = self._execute(
            f"SELECT fingerprint FROM {self._SALE_KEYS} WHERE sale_id = ?", (sale.sale_id,)
        ).fetchone()
        holder = None
        if same_id is None:
            holder = self._execute(
                f"SELECT sale_id FROM {self._SALE_KEYS} WHERE register_id = ? AND seq = ?",
                (sale.register_id, sale.seq),
            ).fetchone()
        found = classify_sale(
            sale_id=sale.sale_id,
            register_id=sale.register_id,
            seq=sale.seq,
            fingerprint=fingerprint,
            held_fingerprint=None if same_id is None else same_id[0],
            # The claim failed, so one key is taken: "?" if its row is not visible (yet).
            seq_holder="?" if holder is None else holder[0],
        )
        return "duplicate" if found.verdict is Verdict.DUPLICATE else found.reason

    def _store_sale_details(self, sales: Sequence[Sale]) -> None:
        """The lines and ledger movements of newly stored sales, in bulk."""
        entries: list[LedgerEntry] = []

        def lines() -> Iterator[tuple[Any, ...]]:
            # One pass that also collects the ledger movements. On PostgreSQL the COPY sends
            # rows as they are made: the server stores the first lines while the rest, and the
            # movements, are built.
            for sale in sales:
                sale_id = sale.sale_id
                for line in sale.lines:
                    discounts = line.discounts
                    yield (
                        sale_id,
                        line.line_no,
                        line.product_id,
                        line.qty_milli,
                        line.unit_price_minor,
                        line.amount_minor,
                        sum([d.amount_minor for d in discounts]) if discounts else 0,
                        int(line.weighed),
                        int(line.known_product),
                    )
                if sale.card_no:
                    entries.extend(
                        LedgerEntry(
                            card_no=sale.card_no,
                            wallet=m.wallet,
                            kind=m.kind,
                            amount=m.amount,
                            rule_id=m.rule_id,
                            source=sale_id,
                            created_at=sale.closed_at,
                            active_from=m.active_from,
                            expires_at=m.expires_at,
                        )
                        for m in ledger_movements(sale)
                    )

        self._bulk_insert("sale_lines", _LINE_COLUMNS, lines())
        if entries:
            self._apply_entries(entries)

    def _quarantine(
        self, sale: Sale, reason: str, fingerprint: str, payload: bytes, received: Any
    ) -> None:
        self._execute(
            "INSERT INTO quarantine (sale_id, store_id, register_id, seq, reason, fingerprint, "
            "payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                sale.sale_id,
                sale.store_id,
                sale.register_id,
                sale.seq,
                reason,
                fingerprint,
                payload,
                received,
            ),
        )

    def quarantined(self) -> list[tuple[str, str]]:
        """(sale_id, reason) of every quarantined payload, oldest first."""
        with self._guard("read quarantine"):
            rows = self._execute("SELECT sale_id, reason FROM quarantine ORDER BY entry_id")
            return [(r[0], r[1]) for r in rows.fetchall()]

    def load_sale(self, sale_id: str) -> bytes | None:
        """The stored canonical payload of a sale."""
        with self._guard("read sale"):
            row = self._execute(
                "SELECT payload FROM sales WHERE sale_id = ?", (sale_id,)
            ).fetchone()
            return bytes(row[0]) if row else None

    # -- reconciliation ------------------------------------------------------------------------

    def reconciliation(
        self, store_id: str, register_id: str | None = None
    ) -> list[RegisterSummary]:
        where = "store_id = ?" + (" AND register_id = ?" if register_id is not None else "")
        params: tuple[Any, ...] = (store_id,) if register_id is None else (store_id, register_id)
        with self._guard("reconciliation"):
            totals = self._execute(
                "SELECT register_id, COUNT(*), CAST(SUM(line_count) AS BIGINT), "
                "CAST(SUM(total_minor) AS BIGINT), CAST(SUM(discount_minor) AS BIGINT), "
                f"MIN(seq), MAX(seq) FROM sales WHERE {where} "
                "GROUP BY register_id ORDER BY register_id",
                params,
            ).fetchall()
            # LAG's default 0 makes a missing start (seq 1..) a gap too.
            gap_rows = self._execute(
                "SELECT register_id, prev + 1, seq - 1 FROM ("
                "SELECT register_id, seq, LAG(seq, 1, 0) OVER "
                f"(PARTITION BY register_id ORDER BY seq) AS prev FROM sales WHERE {where}"
                ") AS ordered WHERE seq - prev > 1 ORDER BY register_id, seq",
                params,
            ).fetchall()
            # A sale whose predecessor (seq - 1) is held must carry that sale's chain_hash.
            # Rows stored before the chain columns existed have chain_hash "" and are skipped;
            # runs of "" prev_hash are journals written before the chain (PROTOCOL.md).
            break_rows = self._execute(
                "SELECT register_id, seq FROM ("
                "SELECT register_id, seq, prev_hash, "
                "LAG(seq, 1, 0) OVER (PARTITION BY register_id ORDER BY seq) AS prev_seq, "
                "LAG(chain_hash, 1, '') OVER (PARTITION BY register_id ORDER BY seq) AS link, "
                "LAG(prev_hash, 1, '') OVER (PARTITION BY register_id ORDER BY seq) AS prev_prev "
                f"FROM sales WHERE {where}"
                ") AS ordered WHERE (seq = 1 AND prev_hash <> '') OR (seq - prev_seq = 1 "
                "AND link <> '' AND prev_hash <> link AND NOT (prev_hash = '' AND prev_prev = ''))"
                " ORDER BY register_id, seq",
                params,
            ).fetchall()
        gaps: dict[str, list[tuple[int, int]]] = {}
        for reg, start, end in gap_rows:
            gaps.setdefault(reg, []).append((int(start), int(end)))
        breaks: dict[str, list[int]] = {}
        for reg, seq in break_rows:
            breaks.setdefault(reg, []).append(int(seq))
        return [
            RegisterSummary(
                store_id=store_id,
                register_id=reg,
                receipts=int(receipts),
                lines=int(lines or 0),
                total_minor=int(total or 0),
                discount_minor=int(discount or 0),
                min_seq=int(min_seq),
                max_seq=int(max_seq),
                gaps=tuple(gaps.get(reg, ())),
                chain_breaks=tuple(breaks.get(reg, ())),
            )
            for reg, receipts, lines, total, discount, min_seq, max_seq in totals
        ]

    # -- master data ---------------------------------------------------------------------------

    def master_version(self) -> int:
        with self._guard("read master version"):
            return self.versions.current()

    def _master_version(self) -> int:
        return self.versions.current()

    def _bump_master(self) -> int:
        return self.versions.bump()

    def _lock_master(self) -> int:
        return self.versions.lock()

    def _audit(
        self, kind: str, object_id: str, action: str, before: Any, after: Any, actor: str, at: Any
    ) -> None:
        self.audit.record(kind, object_id, action, before, after, actor, at)

    def upsert_master(
        self,
        tables: Mapping[str, Iterable[Mapping[str, Any]]],
        *,
        progress: Progress | None = None,
    ) -> MasterChange:
        for name in tables:
            if name not in MASTER_TABLES:
                raise StorageError(
                    f"{name}: not a master table (known: {', '.join(MASTER_TABLES)})"
                )
        prepared = {name: self._prepare(MASTER_TABLES[name], rows) for name, rows in tables.items()}
        changed: dict[str, int] = {}
        with self._guard("upsert master data"), self._transaction():
            # The row lock, held to the commit, makes versions commit in order (feed.py).
            version = self._lock_master() + 1
            for name, rows in prepared.items():
                changed[name] = self._upsert_table(MASTER_TABLES[name], rows, version, progress)
            if any(changed.values()):
                self._execute("UPDATE master_version SET version = ? WHERE id = 1", (version,))
            else:
                version -= 1
        return MasterChange(version=version, changed=changed)

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
            for r in self._execute(f"SELECT {', '.join(spec.columns)} FROM {spec.name}").fetchall()
        }
        new = [(*values, version) for key, values in rows.items() if key not in existing]
        changed = [
            (*values[nkeys:], version, *key)
            for key, values in rows.items()
            if key in existing and existing[key] != values
        ]
        total = len(new) + len(changed)
        done = 0
        for start in range(0, len(new), _CHUNK):
            chunk = new[start : start + _CHUNK]
            self._bulk_insert(spec.name, (*spec.columns, "version"), chunk)
            done += len(chunk)
            if progress:
                progress(spec.name, done, total)
        if changed:
            sets = ", ".join(f"{c} = ?" for c in (*spec.columns[nkeys:], "version"))
            keys = " AND ".join(f"{c} = ?" for c in spec.keys)
            for start in range(0, len(changed), _CHUNK):
                chunk = changed[start : start + _CHUNK]
                self._executemany(f"UPDATE {spec.name} SET {sets} WHERE {keys}", chunk)
                done += len(chunk)
                if progress:
                    progress(spec.name, done, total)
        if progress and not total:
            progress(spec.name, 0, 0)
        return total

    # -- ledger --------------------------------------------------------------------------------
    #
    # `ledger` is the append-only journal of movements, unique by (source, wallet, kind,
    # rule_id): a replayed movement inserts nothing and so changes nothing else. What a new
    # movement does to the lots (a lot per credit, FIFO debits, debt and its recovery, expiry,
    # balances) is decided once, by center/ledger/planner.py; the code here reads the state a
    # plan needs and writes the plan: new lots, `lot_consumptions` rows keyed by the debit's
    # ledger entry (one without a lot is a debt), and what the stored lots lose.

    _ACTIVE = "(active_from IS NULL OR active_from <= ?) AND (expires_at IS NULL OR expires_at > ?)"
    """planner.is_active as SQL, for the feed's bonus balances of many cards at once."""
    _LOT_COLUMNS = (
        "lot_id, card_no, wallet, remaining, created_at, active_from, expires_at, rule_id"
    )
    """The columns _lot reads, in its order."""

    def _bonus_balances(self, now: datetime) -> dict[str, int]:
        at = self._ts(now)
        rows = self._execute(
            "SELECT card_no, CAST(SUM(remaining) AS BIGINT) FROM lots "
            f"WHERE wallet = 'bonus' AND remaining > 0 AND {self._ACTIVE} GROUP BY card_no",
            (at, at),
        ).fetchall()
        balances = {r[0]: int(r[1]) for r in rows}
        for card_no, debt in self._execute(
            f"SELECT card_no, {self._DEBT_SUM} FROM lot_consumptions "
            "WHERE wallet = 'bonus' AND kind IN ('debt', 'recover') GROUP BY card_no"
        ).fetchall():
            if int(debt):
                balances[card_no] = balances.get(card_no, 0) - int(debt)
        return balances

    _DEBT_SUM = "CAST(SUM(CASE WHEN kind = 'debt' THEN amount ELSE -amount END) AS BIGINT)"

    def _insert_ledger(self, entries: Sequence[LedgerEntry]) -> int:
        return self._apply_entries(entries)

    def _apply_entries(self, entries: Sequence[LedgerEntry]) -> int:
        """Journal the movements not yet present and apply them to the lots; count the new."""
        journaled = self._journal(entries)
        self._apply_journaled(journaled)
        return len(journaled)

    def _apply_journaled(
        self,
        journaled: Sequence[tuple[int, LedgerEntry]],
        *,
        first: Mapping[int, int] | None = None,
    ) -> None:
        """Apply journaled (entry_id, movement)s in order, as planner.plan_movements says."""
        if not journaled:
            return
        debts = self._debts({e.card_no for _, e in journaled})
        lots = self._open_lots(debited_wallets(journaled))
        self._write_plan(plan_movements(journaled, debts, lots, first=first))

    def _write_plan(self, plan: LedgerPlan) -> None:
        """Store a plan: its new lots (in journal order), its consumptions, what lots lose."""
        if plan.credits:
            ts = self._ts
            self._bulk_insert(
                "lots",
                _LOT_INSERT,
                [
                    (
                        entry_id,
                        e.card_no,
                        e.wallet,
                        e.kind,
                        e.rule_id,
                        e.source,
                        e.amount,
                        remaining,
                        ts(e.active_from),
                        ts(e.expires_at),
                        ts(e.created_at),
                    )
                    for entry_id, e, remaining in plan.new_lots()
                ],
            )
        if plan.consumptions:
            consumed = plan.new_lots_consumed()
            ids = self._lot_ids(sorted(consumed)) if consumed else {}
            self._bulk_insert(
                "lot_consumptions",
                _CONSUMPTION_INSERT,
                [
                    (
                        c.entry_id,
                        c.lot_id if c.new_lot is None else ids[c.new_lot],
                        c.card_no,
                        c.wallet,
                        c.kind,
                        c.amount,
                        self._ts(c.created_at),
                    )
                    for c in plan.consumptions
                ],
            )
            taken = plan.taken()
            if taken:
                self._take_from_lots(taken)

    def _ledger_row(self, e: LedgerEntry) -> tuple[Any, ...]:
        """A movement as the ledger table stores it, in its column order (no entry_id)."""
        return (
            e.card_no,
            e.wallet,
            e.kind,
            e.amount,
            e.rule_id,
            e.source,
            self._ts(e.active_from),
            self._ts(e.expires_at),
            self._ts(e.created_at),
        )

    def _journal(self, entries: Sequence[LedgerEntry]) -> list[tuple[int, LedgerEntry]]:
        """Insert the movements not yet in the journal; (entry_id, movement) of those, in order."""
        journaled: list[tuple[int, LedgerEntry]] = []
        for e in entries:
            row = self._execute(
                "INSERT INTO ledger (card_no, wallet, kind, amount, rule_id, source, active_from, "
                "expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING entry_id",
                self._ledger_row(e),
            ).fetchone()
            if row is not None:
                journaled.append((int(row[0]), e))
        return journaled

    def _debts(self, card_nos: Iterable[str]) -> dict[WalletKey, int]:
        """The outstanding debt of every (card_no, wallet) of these cards that owes one."""
        cards = sorted(card_nos)
        debts: dict[WalletKey, int] = {}
        for start in range(0, len(cards), _IN_CHUNK):
            chunk = cards[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows = self._execute(
                f"SELECT card_no, wallet, {self._DEBT_SUM} FROM lot_consumptions "
                f"WHERE card_no IN ({marks}) AND kind IN ('debt', 'recover') "
                "GROUP BY card_no, wallet",
                chunk,
            ).fetchall()
            debts.update(((r[0], r[1]), int(r[2])) for r in rows if int(r[2] or 0) > 0)
        return debts

    def _open_lots(self, keys: Iterable[WalletKey]) -> dict[WalletKey, list[Lot]]:
        """The lots with something left of these (card_no, wallet)s, locked to the commit."""
        wanted = set(keys)
        cards = sorted({card_no for card_no, _ in wanted})
        lots: dict[WalletKey, list[Lot]] = {}
        for start in range(0, len(cards), _IN_CHUNK):
            chunk = cards[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for row in self._execute(
                f"SELECT {self._LOT_COLUMNS} FROM lots WHERE card_no IN ({marks}) "
                f"AND remaining > 0 ORDER BY lot_id{self._FOR_UPDATE}",
                chunk,
            ).fetchall():
                if (row[1], row[2]) in wanted:
                    lots.setdefault((row[1], row[2]), []).append(self._lot(row))
        return lots

    def _lot(self, row: Sequence[Any]) -> Lot:
        """A lot from a row of _LOT_COLUMNS."""
        return Lot(
            lot_id=int(row[0]),
            card_no=row[1],
            wallet=row[2],
            remaining=int(row[3]),
            created_at=self._dt(row[4]),
            active_from=None if row[5] is None else self._dt(row[5]),
            expires_at=None if row[6] is None else self._dt(row[6]),
            rule_id=row[7],
        )

    def _lot_ids(self, entry_ids: Sequence[int]) -> dict[int, int]:
        """entry_id -> lot_id of the lots these journal entries created."""
        ids: dict[int, int] = {}
        for start in range(0, len(entry_ids), _IN_CHUNK):
            chunk = entry_ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            ids.update(
                (int(r[0]), int(r[1]))
                for r in self._execute(
                    f"SELECT entry_id, lot_id FROM lots WHERE entry_id IN ({marks})", chunk
                ).fetchall()
            )
        return ids

    def _take_from_lots(self, taken: Mapping[int, int]) -> None:
        """Lower each stored lot (lot_id -> amount) by what the plan took from it."""
        self._executemany(
            "UPDATE lots SET remaining = remaining - ? WHERE lot_id = ?",
            [(take, lot_id) for lot_id, take in taken.items()],
        )

    def _apply_entry(
        self,
        entry_id: int,
        card_no: str,
        wallet: str,
        kind: str,
        amount: int,
        rule_id: str,
        source: str,
        active_from: Any,
        expires_at: Any,
        created_at: Any,
    ) -> None:
        """Apply one journaled movement given as stored (a lot, or a FIFO debit)."""
        entry = LedgerEntry(
            card_no=card_no,
            wallet=wallet,
            kind=kind,
            amount=int(amount),
            rule_id=rule_id,
            source=source,
            created_at=self._dt(created_at),
            active_from=None if active_from is None else self._dt(active_from),
            expires_at=None if expires_at is None else self._dt(expires_at),
        )
        self._apply_journaled([(entry_id, entry)])

    _add_lot = _apply_entry
    """A journaled credit given as stored: its lot, which repays the wallet's debt first."""

    def _debt(self, card_no: str, wallet: str) -> int:
        row = self._execute(
            f"SELECT {self._DEBT_SUM} FROM lot_consumptions "
            "WHERE card_no = ? AND wallet = ? AND kind IN ('debt', 'recover')",
            (card_no, wallet),
        ).fetchone()
        return int(row[0] or 0)

    def add_ledger_entries(self, entries: Sequence[LedgerEntry]) -> int:
        with self._guard("add ledger entries"), self._transaction():
            self._lock_cards(e.card_no for e in entries)
            new = 0
            for start in range(0, len(entries), _CHUNK):
                new += self._apply_entries(entries[start : start + _CHUNK])
        return new

    def expire_lots(self, now: datetime) -> int:
        at = self._ts(now)
        expired = 0
        after = ""
        while True:
            # Chunks of cards, each its own transaction: a big backlog never holds every lock.
            # Cards in order, each visited once: the run ends whatever the plans decide.
            with self._guard("expire lots"), self._transaction():
                cards = [
                    r[0]
                    for r in self._execute(
                        "SELECT DISTINCT card_no FROM lots WHERE remaining > 0 "
                        f"AND expires_at <= ? AND card_no > ? ORDER BY card_no "
                        f"LIMIT {_EXPIRE_CHUNK}",
                        (at, after),
                    ).fetchall()
                ]
                if not cards:
                    return expired
                after = cards[-1]
                self._lock_cards(cards)
                marks = ", ".join("?" for _ in cards)
                # Read again under the card locks: a concurrent spend may have taken some.
                lots = self._execute(
                    f"SELECT {self._LOT_COLUMNS} FROM lots WHERE card_no IN ({marks}) "
                    f"AND remaining > 0 AND expires_at <= ? ORDER BY lot_id{self._FOR_UPDATE}",
                    (*cards, at),
                ).fetchall()
                burns = plan_expiry((self._lot(r) for r in lots), now)
                # The journal keeps one expiry per lot: one already there is not burnt again.
                journaled = {
                    e.source: entry_id for entry_id, e in self._journal([b.entry for b in burns])
                }
                plan = LedgerPlan(
                    consumptions=tuple(
                        burn.consumed(journaled[burn.entry.source])
                        for burn in burns
                        if burn.entry.source in journaled
                    )
                )
                self._write_plan(plan)
                expired += len(plan.consumptions)

    def balance(
        self, card_no: str, now: datetime, *, burning_within: timedelta = BURNING_WITHIN
    ) -> Balance | None:
        with self._guard("read balance"), self._snapshot():
            card = self._execute(
                "SELECT customer_id FROM cards WHERE card_no = ?", (card_no,)
            ).fetchone()
            if card is None:
                return None
            lots = self._execute(
                f"SELECT {self._LOT_COLUMNS} FROM lots WHERE card_no = ? AND remaining > 0",
                (card_no,),
            ).fetchall()
            debts = self._execute(
                f"SELECT wallet, {self._DEBT_SUM} FROM lot_consumptions "
                "WHERE card_no = ? AND kind IN ('debt', 'recover') GROUP BY wallet",
                (card_no,),
            ).fetchall()
        return derive_balance(
            card_no,
            card[0],
            [self._lot(r) for r in lots],
            {r[0]: int(r[1]) for r in debts},
            now,
            burning_within,
        )

    def history(self, card_no: str, *, limit: int = 100) -> list[LedgerEntry] | None:
        with self._guard("read history"), self._snapshot():
            if (
                self._execute("SELECT 1 FROM cards WHERE card_no = ?", (card_no,)).fetchone()
                is None
            ):
                return None
            rows = self._execute(
                "SELECT wallet, kind, amount, rule_id, source, created_at, active_from, "
                "expires_at FROM ledger WHERE card_no = ? "
                "ORDER BY created_at DESC, entry_id DESC LIMIT ?",
                (card_no, limit),
            ).fetchall()
        return [
            LedgerEntry(
                card_no=card_no,
                wallet=r[0],
                kind=r[1],
                amount=int(r[2]),
                rule_id=r[3],
                source=r[4],
                created_at=self._dt(r[5]),
                active_from=None if r[6] is None else self._dt(r[6]),
                expires_at=None if r[7] is None else self._dt(r[7]),
            )
            for r in rows
        ]

    def lot_totals(self) -> tuple[int, int, int]:
        """(journal sum, lots remaining, outstanding debt) over every card and wallet.

        The ledger's invariant: journal sum == lots remaining - debt.
        """
        with self._guard("read lot totals"), self._snapshot():
            row = self._execute(
                "SELECT (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger), "
                "(SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) FROM lots), "
                f"(SELECT COALESCE({self._DEBT_SUM}, 0) FROM lot_consumptions "
                "WHERE kind IN ('debt', 'recover'))"
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def existing_cards(self) -> set[str]:
        with self._guard("read card numbers"):
            return {str(row[0]) for row in self._execute("SELECT card_no FROM cards").fetchall()}

    # -- health ------------------------------------------------------------------------------------

    def counts(self) -> Counts:
        with self._guard("count rows"):
            row = self._execute(
                "SELECT (SELECT COUNT(*) FROM sales), (SELECT COUNT(*) FROM quarantine), "
                "(SELECT COUNT(*) FROM ledger), (SELECT version FROM master_version WHERE id = 1)"
            ).fetchone()
        return Counts(
            sales=int(row[0]),
            quarantined=int(row[1]),
            ledger_entries=int(row[2]),
            master_version=int(row[3] or 0),
        )

    # -- plumbing ------------------------------------------------------------------------------

    def sale_payloads(self, date_from: datetime, date_to: datetime) -> list[bytes]:
        """Stored sale payloads closed in [date_from, date_to), in (closed_at, sale_id) order."""
        with self._guard("read sales"):
            rows = self._execute(
                "SELECT payload FROM sales WHERE closed_at >= ? AND closed_at < ? "
                "ORDER BY closed_at, sale_id",
                (self._ts(date_from), self._ts(date_to)),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def pricing_master(self) -> dict[str, list[tuple[Any, ...]]]:
        """What pricing needs: products (id, department, category, brand, product_type),
        stores (id, format), promotions (doc, version), settings (name, value)."""
        queries = {
            "products": (
                "SELECT product_id, department, category, brand, product_type FROM products"
            ),
            "stores": "SELECT store_id, format FROM stores",
            "promotions": "SELECT doc, version FROM promotions ORDER BY promotion_id",
            "settings": "SELECT name, value FROM settings ORDER BY name",
        }
        with self._guard("read pricing master"), self._snapshot():
            return {
                name: [tuple(r) for r in self._execute(sql).fetchall()]
                for name, sql in queries.items()
            }


_LINE_COLUMNS = (
    "sale_id",
    "line_no",
    "product_id",
    "qty_milli",
    "unit_price_minor",
    "amount_minor",
    "discount_minor",
    "weighed",
    "known_product",
)
_LOT_INSERT = (
    "entry_id",
    "card_no",
    "wallet",
    "kind",
    "rule_id",
    "source",
    "amount",
    "remaining",
    "active_from",
    "expires_at",
    "created_at",
)
_CONSUMPTION_INSERT = ("entry_id", "lot_id", "card_no", "wallet", "kind", "amount", "created_at")


class _Batch:
    """A store batch in ingest order, each sale prepared on first use and only once."""

    __slots__ = ("_prepared", "sales")

    def __init__(self, sales: Sequence[Sale]) -> None:
        self.sales = sales
        self._prepared: list[_Prepared] = []

    def card_nos(self) -> Iterator[str]:
        return (s.card_no for s in self.sales if s.card_no)

    def prepared(self, start: int, stop: int) -> list[_Prepared]:
        """The _Prepared of sales[start:stop]."""
        done = self._prepared
        if len(done) < stop:
            done.extend(_Prepared(s, check_sale(s)) for s in self.sales[len(done) : stop])
        return done[start:stop]


class _Prepared:
    """A sale with its canonical bytes, their hashes, and what check_sale says of it."""

    __slots__ = ("fingerprint", "payload", "problem", "sale")

    def __init__(self, sale: Sale, problem: str | None) -> None:
        self.sale = sale
        self.problem = problem
        # Encoding is the costliest step of ingest: done once here, hashed exactly as
        # sync_protocol's sale_fingerprint and (below) chain_hash do (a test pins the equality).
        self.payload = encode_sale(sale)
        self.fingerprint = hashlib.sha256(self.payload).hexdigest()

    def chain_hash(self) -> str:
        # Only a stored sale needs it, and only once claimed: not on the claim's critical path.
        return hashlib.sha256(self.sale.prev_hash.encode("ascii") + self.payload).hexdigest()


def lots_from_ledger(storage: SqlStorage) -> None:
    """Migration step: replay the journal held before lots existed into lots and consumptions."""
    rows = storage._execute(
        "SELECT entry_id, card_no, wallet, kind, amount, rule_id, source, active_from, "
        "expires_at, created_at FROM ledger ORDER BY entry_id"
    ).fetchall()
    for row in rows:
        storage._apply_entry(int(row[0]), *row[1:])
