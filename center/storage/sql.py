"""The Center's storage: one repository per aggregate over one shared Database, and the schema.

The repositories (ledger, sales, returns, feed...) live with their domains and are built here in
dependency order; SqliteStorage and PostgresStorage pick the Database and the backend's
repository classes. Statements use `?` placeholders on both backends.
"""

from __future__ import annotations

import json
from abc import ABC
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, TypeVar

from center.access.audit import AuditLog
from center.access.nonces_store import NonceStore
from center.access.users_store import UserStore
from center.crm.customers_store import CustomerStore
from center.crm.store import CrmStore
from center.feed.store import FeedRepository
from center.feed.versions import MasterVersions
from center.ingest.store import SalesRepository
from center.ledger.returns_store import ReturnsRepository
from center.ledger.store import LedgerRepository
from center.promotions.coupon_jobs_store import CouponJobStore
from center.promotions.coupons_store import CouponStore
from center.promotions.offers_store import OfferStore
from center.promotions.segments_store import SegmentStore
from center.promotions.store import PromotionStore
from center.storage.base import Counts
from center.storage.database import Database
from center.storage.dialect import Dialect
from center.storage.hooks import Migration
from center.storage.migrations import MigrationList, apply_migrations, recorded
from sync_protocol import Heartbeat

__all__ = ["Migration", "SqlStorage", "lots_from_ledger"]

_T = TypeVar("_T")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class SqlStorage(
    CrmStore,
    UserStore,
    PromotionStore,
    CouponStore,
    SegmentStore,
    CustomerStore,
    OfferStore,
    NonceStore,
    CouponJobStore,
    ABC,
):
    """Storage over one DB-API connection; subclasses supply the dialect hooks."""

    backend: str = ""
    migrations = MigrationList((), numbered=0)
    """This backend's migrations, in order (center/storage/migrations.py)."""
    ledger_repository: type[LedgerRepository] = LedgerRepository
    """The ledger's repository class for this backend's Database."""
    sales_repository: type[SalesRepository] = SalesRepository
    """The sales' repository class for this backend's Database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        """The one connection every part of the storage uses (center/storage/database.py)."""
        # One repository per aggregate; the parts not yet a repository of their own are this
        # object's mixins.
        self.versions = MasterVersions(db)
        self.ledger = self.ledger_repository(db)
        self.customers: Any = self
        self.audit = AuditLog(db)
        self.promotions: Any = self
        self.coupons: Any = self
        self.coupon_jobs: Any = self
        self.segments: Any = self
        self.offers: Any = self
        self.users: Any = self
        self.nodes: Any = self
        # Built last: they depend on the repositories above.
        self.feed = FeedRepository(db, versions=self.versions, ledger=self.ledger)
        # Ingest applies returns, and a head-office return is ingested: the returns reach the
        # sales by name, once both exist.
        self.returns = ReturnsRepository(
            db,
            ledger=self.ledger,
            audit=self.audit,
            ingest=lambda sales, received_at: self.sales.ingest(sales, received_at),
        )
        self.sales = self.sales_repository(
            db, ledger=self.ledger, coupons=self.coupons, returns=self.returns
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

    # -- for the parts not yet repositories of their own ---------------------------------------

    def _bump_master(self) -> int:
        return self.versions.bump()

    def _audit(
        self, kind: str, object_id: str, action: str, before: Any, after: Any, actor: str, at: Any
    ) -> None:
        self.audit.record(kind, object_id, action, before, after, actor, at)

    # -- enrolment and node credentials --------------------------------------------------------

    def add_enrolment_token(
        self, token_hash: str, store_id: str, created_at: datetime, expires_at: datetime
    ) -> None:
        with self._guard("add enrolment token"), self._transaction():
            self._execute(
                "INSERT INTO enrolment_tokens (token_hash, store_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (token_hash, store_id, self._ts(created_at), self._ts(expires_at)),
            )

    def redeem_enrolment_token(
        self, token_hash: str, node_id: str, secret: str, now: datetime
    ) -> tuple[str, str | None]:
        at = self._ts(now)
        with self._guard("redeem enrolment token"), self._transaction():
            # The conditional UPDATE is the single-use guarantee, even for concurrent redeems.
            row = self._execute(
                "UPDATE enrolment_tokens SET used_at = ?, node_id = ? "
                "WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING store_id",
                (at, node_id, token_hash, at),
            ).fetchone()
            if row is None:
                held = self._execute(
                    "SELECT used_at FROM enrolment_tokens WHERE token_hash = ?", (token_hash,)
                ).fetchone()
                if held is None:
                    return "unknown", None
                return ("used" if held[0] is not None else "expired"), None
            self._execute(
                "INSERT INTO nodes (node_id, store_id, secret, enrolled_at) VALUES (?, ?, ?, ?)",
                (node_id, row[0], secret, at),
            )
            return "enrolled", str(row[0])

    def node_credential(self, node_id: str) -> tuple[str, str] | None:
        with self._guard("read node credential"):
            row = self._execute(
                "SELECT store_id, secret FROM nodes WHERE node_id = ?", (node_id,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    # -- heartbeats and health -----------------------------------------------------------------

    def record_heartbeat(self, heartbeat: Heartbeat, received_at: datetime) -> None:
        with self._guard("record heartbeat"), self._transaction():
            self._execute(
                "INSERT INTO heartbeats (node_id, role, store_id, sent_at, received_at, last_seq, "
                "queue_depth, oldest_queued_at, master_version, devices) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET "
                "role = excluded.role, store_id = excluded.store_id, sent_at = excluded.sent_at, "
                "received_at = excluded.received_at, last_seq = excluded.last_seq, "
                "queue_depth = excluded.queue_depth, oldest_queued_at = excluded.oldest_queued_at, "
                "master_version = excluded.master_version, devices = excluded.devices",
                (
                    heartbeat.node_id,
                    heartbeat.role,
                    heartbeat.store_id,
                    self._ts(heartbeat.sent_at),
                    self._ts(received_at),
                    heartbeat.last_seq,
                    heartbeat.queue_depth,
                    self._ts(heartbeat.oldest_queued_at),
                    heartbeat.master_version,
                    _json(dict(heartbeat.devices)),
                ),
            )

    def heartbeats(self) -> list[dict[str, Any]]:
        """The latest heartbeat of every node, by node_id."""
        with self._guard("read heartbeats"):
            rows = self._execute(
                "SELECT node_id, role, store_id, last_seq, queue_depth, master_version, devices "
                "FROM heartbeats ORDER BY node_id"
            ).fetchall()
        return [
            {
                "node_id": r[0],
                "role": r[1],
                "store_id": r[2],
                "last_seq": int(r[3]),
                "queue_depth": int(r[4]),
                "master_version": int(r[5]),
                "devices": json.loads(r[6]),
            }
            for r in rows
        ]

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


def lots_from_ledger(storage: SqlStorage) -> None:
    """Migration step: replay the journal held before lots existed into lots and consumptions."""
    rows = storage.db.execute(
        "SELECT entry_id, card_no, wallet, kind, amount, rule_id, source, active_from, "
        "expires_at, created_at FROM ledger ORDER BY entry_id"
    ).fetchall()
    for row in rows:
        storage.ledger.apply_entry(int(row[0]), *row[1:])
