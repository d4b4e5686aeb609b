"""Supplier budget accounts at the Center: what each budgeted promotion's sales gave, the store
leases on what is left, their returns, and booking at ingest.

`budget_accounts` has one row per budgeted promotion (spent so far), `budget_sales` one per
(promotion, sale) that gave something of it (a return: negative), `budget_leases` one per
(promotion, store). Every change locks the promotion's account row first (in promotion order),
reads spent and the other stores' leases in the same transaction and applies the pure rules of
`center/promotions/budgets.py`, so the invariant holds after each.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from center.promotions.budgets import (
    BUDGET_SETTINGS,
    BudgetLease,
    BudgetLeaseRequest,
    BudgetLeaseReturn,
    BudgetSettings,
    counts,
    funding_of,
    outstanding,
    read_settings,
    returned,
    returned_amounts,
    size_grant,
)
from center.storage.database import Database
from center.storage.migrations import Migration
from sync_protocol import ProtocolError, Sale, decode_sale, promotion_amounts

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "BudgetRepository"]

_SALES_SHOWN = 200


def _steps(ts: str) -> tuple[str, ...]:
    return (
        """CREATE TABLE budget_accounts (
            promotion_id TEXT PRIMARY KEY,
            spent BIGINT NOT NULL DEFAULT 0
        )""",
        f"""CREATE TABLE budget_sales (
            promotion_id TEXT NOT NULL,
            sale_id TEXT NOT NULL,
            store_id TEXT NOT NULL,
            amount BIGINT NOT NULL,
            booked_at {ts} NOT NULL,
            PRIMARY KEY (promotion_id, sale_id)
        )""",
        f"""CREATE TABLE budget_leases (
            promotion_id TEXT NOT NULL,
            store_id TEXT NOT NULL,
            lease_id TEXT NOT NULL,
            amount BIGINT NOT NULL CHECK (amount >= 0),
            granted_at {ts} NOT NULL,
            expires_at {ts} NOT NULL,
            PRIMARY KEY (promotion_id, store_id)
        )""",
    )


SQLITE_MIGRATION = Migration("m032_supplier_budgets", _steps("TEXT"))
"""Supplier budget accounts, the sales behind them and store budget leases, on SQLite."""
POSTGRES_MIGRATION = Migration("m032_supplier_budgets", _steps("TIMESTAMPTZ"))
"""Supplier budget accounts, the sales behind them and store budget leases, on PostgreSQL."""


class BudgetRepository:
    """Budget accounts, their store leases and the sales booked against them, over the
    Database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._has_table = False

    def _exists(self) -> bool:
        """Whether m032 ran (a storage of an older schema still ingests); once seen, kept."""
        if not self._has_table:
            self._has_table = self.db.dialect.has_table(self.db.execute, "budget_accounts")
        return self._has_table

    def settings(self) -> BudgetSettings:
        """The chain's budget lease settings (defaults where unset)."""
        names = list(BUDGET_SETTINGS)
        rows = self.db.execute(
            f"SELECT name, value FROM settings WHERE name IN ({', '.join('?' for _ in names)})",
            names,
        ).fetchall()
        return read_settings({str(r[0]): str(r[1]) for r in rows})

    # -- what a promotion's budget is -------------------------------------------------------

    def fundings(self, promotion_ids: Iterable[str]) -> dict[str, tuple[str, int | None]]:
        """promotion_id -> (funded_by, budget_minor) of its newest published revision (else its
        latest revision, else its master row); promotions the Center does not know are left
        out."""
        wanted = sorted(set(promotion_ids))
        out: dict[str, tuple[str, int | None]] = {}
        if not wanted:
            return out
        marks = ", ".join("?" for _ in wanted)
        for pid, doc in self.db.execute(
            f"SELECT promotion_id, doc FROM promotions WHERE promotion_id IN ({marks})", wanted
        ).fetchall():
            out[str(pid)] = funding_of(_doc(doc))
        newest: dict[str, tuple[int, int]] = {}
        for pid, doc, version, revision in self.db.execute(
            "SELECT promotion_id, doc, published_version, revision FROM promotion_revisions "
            f"WHERE promotion_id IN ({marks})",
            wanted,
        ).fetchall():
            # The newest published revision rules; a promotion never published (a draft of the
            # supplier cabinet) shows its latest revision's budget.
            rank = (0 if version is None else 1, int(revision))
            if rank > newest.get(str(pid), (-1, -1)):
                newest[str(pid)] = rank
                out[str(pid)] = funding_of(_doc(doc))
        return out

    def _lock(self, promotion_ids: Iterable[str]) -> dict[str, int]:
        """Lock the accounts (made when missing) in promotion order: promotion_id -> spent."""
        out: dict[str, int] = {}
        for pid in sorted(set(promotion_ids)):
            self.db.execute(
                "INSERT INTO budget_accounts (promotion_id, spent) VALUES (?, 0) "
                "ON CONFLICT (promotion_id) DO NOTHING",
                (pid,),
            )
            row = self.db.execute(
                "SELECT spent FROM budget_accounts WHERE promotion_id = ?"
                f"{self.db.dialect.for_update}",
                (pid,),
            ).fetchone()
            out[pid] = int(row[0])
        return out

    def _leases(self, promotion_id: str) -> list[BudgetLease]:
        rows = self.db.execute(
            "SELECT store_id, amount, expires_at, lease_id FROM budget_leases "
            f"WHERE promotion_id = ? ORDER BY store_id{self.db.dialect.for_update}",
            (promotion_id,),
        ).fetchall()
        return [BudgetLease(str(r[0]), int(r[1]), self.db.dt(r[2]), str(r[3])) for r in rows]

    # -- store nodes ------------------------------------------------------------------------

    def grant(self, request: BudgetLeaseRequest, now: datetime) -> dict[str, Any]:
        """Set the store's lease on the promotion's budget to what the rules size it now."""
        pid = request.promotion_id
        with self.db.guard("grant a budget lease"), self.db.transaction():
            settings = self.settings()
            funded_by, budget = self.fundings([pid]).get(pid, ("chain", None))
            spent = self._lock([pid])[pid]
            leases = self._leases(pid)
            amount = (
                0
                if budget is None
                else size_grant(
                    budget,
                    spent,
                    leases,
                    request.store_id,
                    now,
                    settings,
                    unsent=request.unsent_minor,
                    need=request.need_minor,
                )
            )
            lease_id = str(uuid.uuid4())
            expires = now + timedelta(seconds=settings.ttl_s)
            self.db.execute(
                "INSERT INTO budget_leases (promotion_id, store_id, lease_id, amount, "
                "granted_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (promotion_id, store_id) DO UPDATE SET lease_id = "
                "excluded.lease_id, amount = excluded.amount, granted_at = excluded.granted_at, "
                "expires_at = excluded.expires_at",
                (pid, request.store_id, lease_id, amount, self.db.ts(now), self.db.ts(expires)),
            )
            others = outstanding(leases, now, settings, besides=request.store_id)
        return {
            "lease_id": lease_id,
            "store_id": request.store_id,
            "promotion_id": pid,
            "funded_by": funded_by,
            "amount": amount,
            "ttl_s": settings.ttl_s,
            "expires_at": expires.isoformat(),
            "budget_minor": budget,
            "spent_minor": spent,
            "other_stores_minor": others,
        }

    def give_back(
        self, store_id: str, items: Sequence[BudgetLeaseReturn], now: datetime
    ) -> dict[str, Any]:
        """The store is done with these leases: each keeps only what its unsent sales gave."""
        done: list[str] = []
        with self.db.guard("return budget leases"), self.db.transaction():
            self._lock(item.promotion_id for item in items)
            for item in items:
                row = self.db.execute(
                    "SELECT amount FROM budget_leases WHERE promotion_id = ? AND store_id = ? "
                    f"AND lease_id = ?{self.db.dialect.for_update}",
                    (item.promotion_id, store_id, item.lease_id),
                ).fetchone()
                if row is None:
                    continue  # renewed since (a newer grant) or returned already
                self.db.execute(
                    "UPDATE budget_leases SET amount = ?, expires_at = ? WHERE promotion_id = ? "
                    "AND store_id = ? AND lease_id = ?",
                    (
                        returned(int(row[0]), item.unsent_minor),
                        self.db.ts(now),
                        item.promotion_id,
                        store_id,
                        item.lease_id,
                    ),
                )
                done.append(item.lease_id)
        return {"store_id": store_id, "returned": done}

    # -- ingest -----------------------------------------------------------------------------

    def entitlements(self, sales: Sequence[Sale]) -> dict[tuple[str, str], int]:
        """(promotion_id, store_id) -> the store's lease before the batch, for every budgeted
        promotion the batch's sales name (inside the ingest transaction; verification reads
        what each store was entitled to give)."""
        if not self._exists():
            return {}
        named = {pid for sale in sales for pid in promotion_amounts(sale)}
        budgeted = {pid for pid, (_, budget) in self.fundings(named).items() if budget is not None}
        if not budgeted:
            return {}
        marks = ", ".join("?" for _ in budgeted)
        return {
            (str(r[0]), str(r[1])): int(r[2])
            for r in self.db.execute(
                "SELECT promotion_id, store_id, amount FROM budget_leases "
                f"WHERE promotion_id IN ({marks})",
                sorted(budgeted),
            ).fetchall()
        }

    def book_sales(
        self,
        sales: Sequence[Sale],
        received: Any,
        accruals: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        """Book what each new sale gave of a budgeted promotion (a return gives back what it
        reverses) and take it off its store's lease, inside the ingest transaction.

        `accruals`: sale_id -> rule -> the Center's verified accrual; the discounts were given
        at the till whatever the Center thinks of them, the accruals are what it books."""
        if not sales or not self._exists():
            return
        given: list[tuple[Sale, dict[str, int]]] = []
        named: set[str] = set()
        for sale in sales:
            if sale.return_of is None:
                amounts = promotion_amounts(sale)
                verified = None if accruals is None else accruals.get(sale.sale_id)
                if verified is not None:
                    amounts = _with_accruals(sale, amounts, verified)
                if amounts:
                    given.append((sale, amounts))
                    named.update(amounts)
        returns = [s for s in sales if s.return_of is not None]
        back = self._returned(returns) if returns else []
        named.update(pid for _, amounts in back for pid in amounts)
        if not named:
            return
        budgeted = {pid for pid, (_, budget) in self.fundings(named).items() if budget is not None}
        rows: list[tuple[str, str, str, int]] = []
        for sale, amounts in given:
            rows.extend(
                (pid, sale.sale_id, sale.store_id, amount)
                for pid, amount in amounts.items()
                if pid in budgeted and amount > 0
            )
        for sale, amounts in back:
            rows.extend(
                (pid, sale.sale_id, sale.store_id, -amount)
                for pid, amount in amounts.items()
                if pid in budgeted and amount > 0
            )
        if not rows:
            return
        self._lock(pid for pid, _, _, _ in rows)
        for pid, sale_id, store_id, amount in rows:
            inserted = self.db.execute(
                "INSERT INTO budget_sales (promotion_id, sale_id, store_id, amount, booked_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (promotion_id, sale_id) DO NOTHING",
                (pid, sale_id, store_id, amount, received),
            ).rowcount
            if inserted != 1:
                continue  # booked already: a replay books nothing twice
            self.db.execute(
                "UPDATE budget_accounts SET spent = spent + ? WHERE promotion_id = ?",
                (amount, pid),
            )
            if amount > 0:
                self.db.execute(
                    "UPDATE budget_leases SET amount = CASE WHEN amount > ? THEN amount - ? "
                    "ELSE 0 END WHERE promotion_id = ? AND store_id = ?",
                    (amount, amount, pid, store_id),
                )

    def _returned(self, returns: Sequence[Sale]) -> list[tuple[Sale, dict[str, int]]]:
        """What each return gives back to the budgets its original booked."""
        originals = sorted({str(s.return_of) for s in returns})
        marks = ", ".join("?" for _ in originals)
        booked: dict[str, dict[str, int]] = {}
        for pid, sale_id, amount in self.db.execute(
            "SELECT promotion_id, sale_id, amount FROM budget_sales "
            f"WHERE sale_id IN ({marks}) AND amount > 0",
            originals,
        ).fetchall():
            booked.setdefault(str(sale_id), {})[str(pid)] = int(amount)
        if not booked:
            return []
        wanted = sorted(booked)
        marks = ", ".join("?" for _ in wanted)
        payloads = {
            str(r[0]): bytes(r[1])
            for r in self.db.execute(
                f"SELECT sale_id, payload FROM sales WHERE sale_id IN ({marks})", wanted
            ).fetchall()
        }
        earlier: dict[str, dict[str, int]] = {}
        for sale_id, pid, amount in self.db.execute(
            "SELECT r.original_id, b.promotion_id, b.amount FROM budget_sales b "
            "JOIN returns r ON r.return_id = b.sale_id "
            f"WHERE r.original_id IN ({marks}) AND b.amount < 0",
            wanted,
        ).fetchall():
            mine = earlier.setdefault(str(sale_id), {})
            mine[str(pid)] = mine.get(str(pid), 0) - int(amount)
        out: list[tuple[Sale, dict[str, int]]] = []
        for ret in returns:
            original_id = str(ret.return_of)
            if original_id not in booked or original_id not in payloads:
                continue
            try:
                original = decode_sale(payloads[original_id])
            except ProtocolError:
                continue
            done = earlier.setdefault(original_id, {})
            amounts = returned_amounts(original, booked[original_id], ret, done)
            for pid, amount in amounts.items():
                done[pid] = done.get(pid, 0) + amount  # a second return in the same batch
            out.append((ret, amounts))
        return out

    # -- people -----------------------------------------------------------------------------

    def budget(self, promotion_id: str, now: datetime) -> dict[str, Any] | None:
        """The promotion's budget account: spent, left, the store leases and the sales behind;
        None for a promotion the Center does not know."""
        with self.db.guard("read a budget account"), self.db.snapshot():
            found = self.fundings([promotion_id]).get(promotion_id)
            if found is None:
                return None
            settings = self.settings()
            row = self.db.execute(
                "SELECT spent FROM budget_accounts WHERE promotion_id = ?", (promotion_id,)
            ).fetchone()
            lease_rows = self.db.execute(
                "SELECT store_id, lease_id, amount, granted_at, expires_at FROM budget_leases "
                "WHERE promotion_id = ? ORDER BY store_id",
                (promotion_id,),
            ).fetchall()
            count = self.db.execute(
                "SELECT COUNT(*) FROM budget_sales WHERE promotion_id = ?", (promotion_id,)
            ).fetchone()
            sale_rows = self.db.execute(
                "SELECT sale_id, store_id, amount, booked_at FROM budget_sales "
                "WHERE promotion_id = ? ORDER BY booked_at DESC, sale_id LIMIT ?",
                (promotion_id, _SALES_SHOWN),
            ).fetchall()
        funded_by, budget = found
        spent = 0 if row is None else int(row[0])
        leases: list[dict[str, Any]] = []
        leased = 0
        for store_id, lease_id, amount, granted_at, expires_at in lease_rows:
            lease = BudgetLease(str(store_id), int(amount), self.db.dt(expires_at), str(lease_id))
            leases.append(
                {
                    "store_id": lease.store_id,
                    "lease_id": lease.lease_id,
                    "amount_minor": lease.amount,
                    "granted_at": self.db.dt(granted_at).isoformat(),
                    "expires_at": lease.expires_at.isoformat(),
                    "counts": counts(lease, now, settings),
                }
            )
            if counts(lease, now, settings):
                leased += lease.amount
        return {
            "promotion_id": promotion_id,
            "funded_by": funded_by,
            "budget_minor": budget,
            "spent_minor": spent,
            "leased_minor": leased,
            "left_minor": None if budget is None else max(0, budget - spent),
            "available_minor": None if budget is None else max(0, budget - spent - leased),
            "overspent_minor": 0 if budget is None else max(0, spent - budget),
            "leases": leases,
            "sales_count": int(count[0]) if count else 0,
            "sales": [
                {
                    "sale_id": str(r[0]),
                    "store_id": str(r[1]),
                    "amount_minor": int(r[2]),
                    "booked_at": self.db.dt(r[3]).isoformat(),
                }
                for r in sale_rows
            ],
        }

    def leases_of(self, promotion_ids: Iterable[str]) -> Mapping[str, list[BudgetLease]]:
        """promotion_id -> its store leases (tests and the chaos bench read the invariant)."""
        return {pid: self._leases(pid) for pid in sorted(set(promotion_ids))}


def _with_accruals(
    sale: Sale, amounts: Mapping[str, int], verified: Mapping[str, int]
) -> dict[str, int]:
    """The sale's amounts by promotion with its claimed accruals replaced by the verified."""
    out = dict(amounts)
    for m in sale.loyalty:
        if m.kind == "accrue" and m.rule_id in out:
            out[m.rule_id] -= m.amount
    for rule, amount in verified.items():
        out[rule] = out.get(rule, 0) + amount
    return {pid: amount for pid, amount in out.items() if amount > 0}


def _doc(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value
