"""Spending leases at the Center: grants to store nodes, their returns, and settling at ingest.

`spending_leases` has one row per (card, wallet, store). Every change takes the card's ledger
lock (the one ingest takes), reads the card's balance and the other stores' leases in the same
transaction and applies the pure rules of `center/ledger/leases.py`, so two stores asking at
once are served one after the other and the invariant holds after each.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from center.ledger.leases import (
    LEASE_SETTINGS,
    Lease,
    LeaseRequest,
    LeaseReturn,
    LeaseSettings,
    counts,
    outstanding,
    read_settings,
    returned,
    size_grant,
)
from center.ledger.model import BURNING_WITHIN
from center.ledger.planner import derive_balance
from center.ledger.store import DEBT_SUM_SQL, LOT_COLUMNS, LedgerRepository
from center.storage.database import Database
from center.storage.migrations import Migration
from sync_protocol import Sale

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "LeaseRepository"]


def _steps(ts: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE spending_leases (
            card_no TEXT NOT NULL,
            wallet TEXT NOT NULL,
            store_id TEXT NOT NULL,
            lease_id TEXT NOT NULL,
            amount BIGINT NOT NULL CHECK (amount >= 0),
            granted_at {ts} NOT NULL,
            expires_at {ts} NOT NULL,
            PRIMARY KEY (card_no, wallet, store_id)
        )""",
        "CREATE INDEX spending_leases_store ON spending_leases (store_id)",
    )


SQLITE_MIGRATION = Migration("m028_spending_leases", _steps("TEXT"))
"""Offline spending leases of store nodes on cards' wallets, on SQLite."""
POSTGRES_MIGRATION = Migration("m028_spending_leases", _steps("TIMESTAMPTZ"))
"""Offline spending leases of store nodes on cards' wallets, on PostgreSQL."""


class LeaseRepository:
    """Grants, returns and settlement of spending leases, over the Database."""

    def __init__(self, db: Database, *, ledger: LedgerRepository) -> None:
        self.db = db
        self.ledger = ledger
        self._has_table = False

    def _exists(self) -> bool:
        """Whether m028 ran (a storage of an older schema still ingests); once seen, kept."""
        if not self._has_table:
            self._has_table = self.db.dialect.has_table(self.db.execute, "spending_leases")
        return self._has_table

    def settings(self) -> LeaseSettings:
        """The chain's lease settings (defaults where unset)."""
        names = list(LEASE_SETTINGS)
        rows = self.db.execute(
            f"SELECT name, value FROM settings WHERE name IN ({', '.join('?' for _ in names)})",
            names,
        ).fetchall()
        return read_settings({str(r[0]): str(r[1]) for r in rows})

    def _leases(self, card_no: str, wallet: str) -> list[Lease]:
        rows = self.db.execute(
            "SELECT store_id, amount, expires_at, lease_id FROM spending_leases "
            f"WHERE card_no = ? AND wallet = ? ORDER BY store_id{self.db.dialect.for_update}",
            (card_no, wallet),
        ).fetchall()
        return [Lease(str(r[0]), int(r[1]), self.db.dt(r[2]), str(r[3])) for r in rows]

    def _balance(self, card_no: str, wallet: str, now: datetime, ttl: timedelta) -> int | None:
        """The wallet's balance now, less what burns before a lease granted now expires."""
        card = self.db.execute(
            "SELECT customer_id FROM cards WHERE card_no = ?", (card_no,)
        ).fetchone()
        if card is None:
            return None
        lots = [
            self.ledger.lot(r)
            for r in self.db.execute(
                f"SELECT {LOT_COLUMNS} FROM lots WHERE card_no = ? AND wallet = ? "
                "AND remaining > 0",
                (card_no, wallet),
            ).fetchall()
        ]
        debts = {
            str(r[0]): int(r[1])
            for r in self.db.execute(
                f"SELECT wallet, {DEBT_SUM_SQL} FROM lot_consumptions WHERE card_no = ? "
                "AND wallet = ? AND kind IN ('debt', 'recover') GROUP BY wallet",
                (card_no, wallet),
            ).fetchall()
        }
        at = [now, now + ttl]  # the lower: lots burning meanwhile are not lent out
        return min(
            derive_balance(card_no, str(card[0]), lots, debts, moment, BURNING_WITHIN).wallets.get(
                wallet, 0
            )
            for moment in at
        )

    def grant(self, request: LeaseRequest, now: datetime) -> dict[str, Any]:
        """Set the store's lease on the card's wallet to what the rules size it now."""
        with self.db.guard("grant a spending lease"), self.db.transaction():
            self.db.lock_cards([request.card_no])
            settings = self.settings()
            ttl = timedelta(seconds=settings.ttl_s)
            balance = self._balance(request.card_no, request.wallet, now, ttl)
            leases = self._leases(request.card_no, request.wallet)
            amount = size_grant(
                0 if balance is None else balance,
                leases,
                request.store_id,
                now,
                settings,
                unsent=request.unsent_minor,
                need=request.need_minor,
            )
            if balance is None:
                amount = 0  # a card the Center does not know: nothing to lend, not even overdraft
            lease_id = str(uuid.uuid4())
            expires = now + ttl
            self.db.execute(
                "INSERT INTO spending_leases (card_no, wallet, store_id, lease_id, amount, "
                "granted_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (card_no, wallet, store_id) DO UPDATE SET lease_id = "
                "excluded.lease_id, amount = excluded.amount, granted_at = excluded.granted_at, "
                "expires_at = excluded.expires_at",
                (
                    request.card_no,
                    request.wallet,
                    request.store_id,
                    lease_id,
                    amount,
                    self.db.ts(now),
                    self.db.ts(expires),
                ),
            )
            others = outstanding(leases, now, settings, besides=request.store_id)
        return {
            "lease_id": lease_id,
            "store_id": request.store_id,
            "card_no": request.card_no,
            "wallet": request.wallet,
            "amount": amount,
            "ttl_s": settings.ttl_s,
            "expires_at": expires.isoformat(),
            "balance": balance,
            "ceiling_minor": settings.ceiling_minor,
            "other_stores_minor": others,
        }

    def give_back(
        self, store_id: str, items: Sequence[LeaseReturn], now: datetime
    ) -> dict[str, Any]:
        """The store is done with these leases: each keeps only what its unsent sales spent."""
        done: list[str] = []
        with self.db.guard("return spending leases"), self.db.transaction():
            self.db.lock_cards(sorted({item.card_no for item in items}))
            for item in items:
                row = self.db.execute(
                    "SELECT amount FROM spending_leases WHERE card_no = ? AND wallet = ? "
                    f"AND store_id = ? AND lease_id = ?{self.db.dialect.for_update}",
                    (item.card_no, item.wallet, store_id, item.lease_id),
                ).fetchone()
                if row is None:
                    continue  # renewed since (a newer grant) or returned already
                self.db.execute(
                    "UPDATE spending_leases SET amount = ?, expires_at = ? WHERE card_no = ? "
                    "AND wallet = ? AND store_id = ? AND lease_id = ?",
                    (
                        returned(int(row[0]), item.unsent_minor),
                        self.db.ts(now),
                        item.card_no,
                        item.wallet,
                        store_id,
                        item.lease_id,
                    ),
                )
                done.append(item.lease_id)
        return {"store_id": store_id, "returned": done}

    def settle_sales(self, sales: Sequence[Sale]) -> None:
        """Take each new sale's spends off its store's lease (inside the ingest transaction)."""
        spends = [
            (m.amount, sale.card_no, m.wallet, sale.store_id)
            for sale in sales
            if sale.card_no
            for m in sale.loyalty
            if m.kind == "spend" and m.amount > 0
        ]
        if not spends or not self._exists():
            return
        self.db.executemany(
            "UPDATE spending_leases SET amount = CASE WHEN amount > ? THEN amount - ? ELSE 0 END "
            "WHERE card_no = ? AND wallet = ? AND store_id = ?",
            [(amount, amount, card, wallet, store) for amount, card, wallet, store in spends],
        )

    def of_card(self, card_no: str, now: datetime) -> dict[str, Any]:
        """The card's leases per wallet and store, and whether each still counts."""
        with self.db.guard("read spending leases"), self.db.snapshot():
            settings = self.settings()
            rows = self.db.execute(
                "SELECT wallet, store_id, lease_id, amount, granted_at, expires_at "
                "FROM spending_leases WHERE card_no = ? ORDER BY wallet, store_id",
                (card_no,),
            ).fetchall()
        leases = []
        for wallet, store_id, lease_id, amount, granted_at, expires_at in rows:
            lease = Lease(str(store_id), int(amount), self.db.dt(expires_at), str(lease_id))
            leases.append(
                {
                    "wallet": wallet,
                    "store_id": store_id,
                    "lease_id": lease_id,
                    "amount": int(amount),
                    "granted_at": self.db.dt(granted_at).isoformat(),
                    "expires_at": lease.expires_at.isoformat(),
                    "counts": counts(lease, now, settings),
                }
            )
        return {
            "card_no": card_no,
            "ceiling_minor": settings.ceiling_minor,
            "outstanding_minor": sum(x["amount"] for x in leases if x["counts"]),
            "leases": leases,
        }
