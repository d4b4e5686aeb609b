"""The ledger's storage: the journal of movements, the lots it makes, their debits and debt.

`ledger` is the append-only journal of movements, unique by (source, wallet, kind, rule_id): a
replayed movement inserts nothing and so changes nothing else. What a new movement does to the
lots (a lot per credit, FIFO debits, debt and its recovery, expiry, balances) is decided once, by
center/ledger/planner.py; the code here reads the state a plan needs and writes the plan: new
lots, `lot_consumptions` rows keyed by the debit's ledger entry (one without a lot is a debt),
and what the stored lots lose. PostgreSQL reads and writes the same in bulk
(center/ledger/store_postgres.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from center.ledger.model import BURNING_WITHIN, Balance, LedgerEntry
from center.ledger.planner import (
    LedgerPlan,
    Lot,
    WalletKey,
    debited_wallets,
    derive_balance,
    plan_expiry,
    plan_movements,
)
from center.storage.database import Database
from center.storage.owners import card_owner, lookup_card_owners

__all__ = ["ACTIVE_SQL", "DEBT_SUM_SQL", "LOT_COLUMNS", "LedgerRepository"]

_CHUNK = 5000
_EXPIRE_CHUNK = 500
"""Cards per expiry transaction: bounds the locks one transaction holds."""
_IN_CHUNK = 500
"""Values per `IN (...)` list: well under SQLite's limit of bound parameters."""

ACTIVE_SQL = "(active_from IS NULL OR active_from <= ?) AND (expires_at IS NULL OR expires_at > ?)"
"""planner.is_active as SQL (params: now, now), for bonus balances of many cards at once."""
DEBT_SUM_SQL = "CAST(SUM(CASE WHEN kind = 'debt' THEN amount ELSE -amount END) AS BIGINT)"
"""The outstanding debt of the `lot_consumptions` rows of kind 'debt' or 'recover' summed."""
LOT_COLUMNS = "lot_id, card_no, wallet, remaining, created_at, active_from, expires_at, rule_id"
"""The columns LedgerRepository.lot reads, in its order."""

_LOT_INSERT = (
    "customer_id",
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
_CONSUMPTION_INSERT = (
    "customer_id",
    "entry_id",
    "lot_id",
    "card_no",
    "wallet",
    "kind",
    "amount",
    "created_at",
)


class LedgerRepository:
    """Movements, lots, debits, debt, expiry and balances of every card, over the Database.

    The methods without a transaction of their own (apply_entries, journal, apply_journaled,
    apply_entry, debt) run in the caller's, which holds the cards' locks (Database.lock_cards).
    Every row they write carries its card's owner (center/storage/owners.py): callers that
    already know the owners pass them (`owners`, card_no -> owner), the rest are looked up.
    """

    owner_columns = True
    """False only to replay the journal into lots in m004, whose schema predates the owner
    columns (m018_distribution_keys fills them for the rows replayed)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- public operations ---------------------------------------------------------------------

    def add_ledger_entries(self, entries: Sequence[LedgerEntry]) -> int:
        """Insert ledger movements not yet present; return how many were new."""
        with self.db.guard("add ledger entries"), self.db.transaction():
            self.db.lock_cards(e.card_no for e in entries)
            new = 0
            for start in range(0, len(entries), _CHUNK):
                new += self.apply_entries(entries[start : start + _CHUNK])
        return new

    def expire_lots(self, now: datetime) -> int:
        """Burn the remainder of every lot expired at `now` (idempotent); return lots burnt."""
        at = self.db.ts(now)
        expired = 0
        after = ""
        while True:
            # Chunks of cards, each its own transaction: a big backlog never holds every lock.
            # Cards in order, each visited once: the run ends whatever the plans decide.
            with self.db.guard("expire lots"), self.db.transaction():
                cards = [
                    r[0]
                    for r in self.db.execute(
                        "SELECT DISTINCT card_no FROM lots WHERE remaining > 0 "
                        f"AND expires_at <= ? AND card_no > ? ORDER BY card_no "
                        f"LIMIT {_EXPIRE_CHUNK}",
                        (at, after),
                    ).fetchall()
                ]
                if not cards:
                    return expired
                after = cards[-1]
                self.db.lock_cards(cards)
                marks = ", ".join("?" for _ in cards)
                # Read again under the card locks: a concurrent spend may have taken some.
                lots = self.db.execute(
                    f"SELECT {LOT_COLUMNS} FROM lots WHERE card_no IN ({marks}) "
                    f"AND remaining > 0 AND expires_at <= ? ORDER BY lot_id"
                    f"{self.db.dialect.for_update}",
                    (*cards, at),
                ).fetchall()
                burns = plan_expiry((self.lot(r) for r in lots), now)
                owners = self.card_owners(cards)
                # The journal keeps one expiry per lot: one already there is not burnt again.
                journaled = {
                    e.source: entry_id
                    for entry_id, e in self.journal([b.entry for b in burns], owners=owners)
                }
                plan = LedgerPlan(
                    consumptions=tuple(
                        burn.consumed(journaled[burn.entry.source])
                        for burn in burns
                        if burn.entry.source in journaled
                    )
                )
                self._write_plan(plan, owners)
                expired += len(plan.consumptions)

    def balance(
        self, card_no: str, now: datetime, *, burning_within: timedelta = BURNING_WITHIN
    ) -> Balance | None:
        """Wallet balances, pending, burning (expiring before now + burning_within) and debt of
        a card at `now`, or None for an unknown card."""
        with self.db.guard("read balance"), self.db.snapshot():
            card = self.db.execute(
                "SELECT customer_id FROM cards WHERE card_no = ?", (card_no,)
            ).fetchone()
            if card is None:
                return None
            lots = self.db.execute(
                f"SELECT {LOT_COLUMNS} FROM lots WHERE card_no = ? AND remaining > 0",
                (card_no,),
            ).fetchall()
            debts = self.db.execute(
                f"SELECT wallet, {DEBT_SUM_SQL} FROM lot_consumptions "
                "WHERE card_no = ? AND kind IN ('debt', 'recover') GROUP BY wallet",
                (card_no,),
            ).fetchall()
        return derive_balance(
            card_no,
            card[0],
            [self.lot(r) for r in lots],
            {r[0]: int(r[1]) for r in debts},
            now,
            burning_within,
        )

    def history(self, card_no: str, *, limit: int = 100) -> list[LedgerEntry] | None:
        """The card's ledger movements, newest first, or None for an unknown card."""
        dt = self.db.dt
        with self.db.guard("read history"), self.db.snapshot():
            if (
                self.db.execute("SELECT 1 FROM cards WHERE card_no = ?", (card_no,)).fetchone()
                is None
            ):
                return None
            rows = self.db.execute(
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
                created_at=dt(r[5]),
                active_from=None if r[6] is None else dt(r[6]),
                expires_at=None if r[7] is None else dt(r[7]),
            )
            for r in rows
        ]

    def movements_of(self, source: str) -> list[LedgerEntry]:
        """Every ledger movement one sale, return or adjustment (`source`) made, oldest first."""
        dt = self.db.dt
        with self.db.guard("read movements of a source"):
            rows = self.db.execute(
                "SELECT card_no, wallet, kind, amount, rule_id, source, created_at, active_from, "
                "expires_at FROM ledger WHERE source = ? ORDER BY entry_id",
                (source,),
            ).fetchall()
        return [
            LedgerEntry(
                card_no=r[0],
                wallet=r[1],
                kind=r[2],
                amount=int(r[3]),
                rule_id=r[4],
                source=r[5],
                created_at=dt(r[6]),
                active_from=None if r[7] is None else dt(r[7]),
                expires_at=None if r[8] is None else dt(r[8]),
            )
            for r in rows
        ]

    def lot_totals(self) -> tuple[int, int, int]:
        """(journal sum, lots remaining, outstanding debt) over every card and wallet.

        The ledger's invariant: journal sum == lots remaining - debt.
        """
        with self.db.guard("read lot totals"), self.db.snapshot():
            row = self.db.execute(
                "SELECT (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger), "
                "(SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) FROM lots), "
                f"(SELECT COALESCE({DEBT_SUM_SQL}, 0) FROM lot_consumptions "
                "WHERE kind IN ('debt', 'recover'))"
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def bonus_balances(self, now: datetime) -> dict[str, int]:
        """card_no -> active bonus balance at `now` (lots minus debt) of every card holding
        some (in the caller's snapshot)."""
        at = self.db.ts(now)
        rows = self.db.execute(
            "SELECT card_no, CAST(SUM(remaining) AS BIGINT) FROM lots "
            f"WHERE wallet = 'bonus' AND remaining > 0 AND {ACTIVE_SQL} GROUP BY card_no",
            (at, at),
        ).fetchall()
        balances = {r[0]: int(r[1]) for r in rows}
        for card_no, debt in self.db.execute(
            f"SELECT card_no, {DEBT_SUM_SQL} FROM lot_consumptions "
            "WHERE wallet = 'bonus' AND kind IN ('debt', 'recover') GROUP BY card_no"
        ).fetchall():
            if int(debt):
                balances[card_no] = balances.get(card_no, 0) - int(debt)
        return balances

    # -- in the caller's transaction -----------------------------------------------------------

    def card_owners(self, card_nos: Iterable[str]) -> dict[str, str]:
        """card_no -> the owner of its rows: its customer, or the card itself while unknown."""
        cards = set(card_nos)
        known = self._known_owners(sorted(cards)) if cards else {}
        return {card_no: card_owner(card_no, known) for card_no in cards}

    def _known_owners(self, card_nos: Sequence[str]) -> dict[str, str]:
        """card_no -> customer_id of the known cards among `card_nos`."""
        return lookup_card_owners(self.db, card_nos)

    def _owners(
        self, card_nos: Iterable[str], given: Mapping[str, str] | None
    ) -> Mapping[str, str]:
        cards = set(card_nos)
        if given is not None and cards.issubset(given):
            return given
        if not self.owner_columns:
            return dict.fromkeys(cards, "")
        return self.card_owners(cards)

    def apply_entries(
        self, entries: Sequence[LedgerEntry], *, owners: Mapping[str, str] | None = None
    ) -> int:
        """Journal the movements not yet present and apply them to the lots; count the new."""
        owners = self._owners((e.card_no for e in entries), owners)
        journaled = self.journal(entries, owners=owners)
        self.apply_journaled(journaled, owners=owners)
        return len(journaled)

    def apply_journaled(
        self,
        journaled: Sequence[tuple[int, LedgerEntry]],
        *,
        first: Mapping[int, int] | None = None,
        owners: Mapping[str, str] | None = None,
    ) -> None:
        """Apply journaled (entry_id, movement)s in order, as planner.plan_movements says."""
        if not journaled:
            return
        cards = {e.card_no for _, e in journaled}
        debts = self._debts(cards)
        lots = self._open_lots(debited_wallets(journaled))
        plan = plan_movements(journaled, debts, lots, first=first)
        self._write_plan(plan, self._owners(cards, owners))

    def apply_entry(
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
        """Apply one journaled movement given as stored (a lot, which repays the wallet's debt
        first, or a FIFO debit)."""
        dt = self.db.dt
        entry = LedgerEntry(
            card_no=card_no,
            wallet=wallet,
            kind=kind,
            amount=int(amount),
            rule_id=rule_id,
            source=source,
            created_at=dt(created_at),
            active_from=None if active_from is None else dt(active_from),
            expires_at=None if expires_at is None else dt(expires_at),
        )
        self.apply_journaled([(entry_id, entry)])

    def debt(self, card_no: str, wallet: str) -> int:
        """The outstanding debt of one wallet of a card."""
        row = self.db.execute(
            f"SELECT {DEBT_SUM_SQL} FROM lot_consumptions "
            "WHERE card_no = ? AND wallet = ? AND kind IN ('debt', 'recover')",
            (card_no, wallet),
        ).fetchone()
        return int(row[0] or 0)

    def journal(
        self, entries: Sequence[LedgerEntry], *, owners: Mapping[str, str] | None = None
    ) -> list[tuple[int, LedgerEntry]]:
        """Insert the movements not yet in the journal; (entry_id, movement) of those, in order."""
        journaled: list[tuple[int, LedgerEntry]] = []
        owners = self._owners((e.card_no for e in entries), owners)
        for e in entries:
            row = self.db.execute(
                "INSERT INTO ledger (customer_id, card_no, wallet, kind, amount, rule_id, source, "
                "active_from, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING entry_id",
                (owners[e.card_no], *self._ledger_row(e)),
            ).fetchone()
            if row is not None:
                journaled.append((int(row[0]), e))
        return journaled

    def lot(self, row: Sequence[Any]) -> Lot:
        """A lot from a row of LOT_COLUMNS."""
        dt = self.db.dt
        return Lot(
            lot_id=int(row[0]),
            card_no=row[1],
            wallet=row[2],
            remaining=int(row[3]),
            created_at=dt(row[4]),
            active_from=None if row[5] is None else dt(row[5]),
            expires_at=None if row[6] is None else dt(row[6]),
            rule_id=row[7],
        )

    # -- reading the state a plan needs, and writing the plan ----------------------------------

    def _write_plan(self, plan: LedgerPlan, owners: Mapping[str, str]) -> None:
        """Store a plan: its new lots (in journal order), its consumptions, what lots lose;
        `owners` holds the owner of every card of the plan."""
        ts = self.db.ts
        skip = 0 if self.owner_columns else 1  # the owner is the first column
        if plan.credits:
            self.db.bulk_insert(
                "lots",
                _LOT_INSERT[skip:],
                [
                    (
                        owners[e.card_no],
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
                    )[skip:]
                    for entry_id, e, remaining in plan.new_lots()
                ],
            )
        if plan.consumptions:
            consumed = plan.new_lots_consumed()
            ids = self._lot_ids(sorted(consumed)) if consumed else {}
            self.db.bulk_insert(
                "lot_consumptions",
                _CONSUMPTION_INSERT[skip:],
                [
                    (
                        owners[c.card_no],
                        c.entry_id,
                        c.lot_id if c.new_lot is None else ids[c.new_lot],
                        c.card_no,
                        c.wallet,
                        c.kind,
                        c.amount,
                        ts(c.created_at),
                    )[skip:]
                    for c in plan.consumptions
                ],
            )
            taken = plan.taken()
            if taken:
                self._take_from_lots(taken)

    def _ledger_row(self, e: LedgerEntry) -> tuple[Any, ...]:
        """A movement as the ledger table stores it, in its column order (no entry_id)."""
        ts = self.db.ts
        return (
            e.card_no,
            e.wallet,
            e.kind,
            e.amount,
            e.rule_id,
            e.source,
            ts(e.active_from),
            ts(e.expires_at),
            ts(e.created_at),
        )

    def _debts(self, card_nos: Iterable[str]) -> dict[WalletKey, int]:
        """The outstanding debt of every (card_no, wallet) of these cards that owes one."""
        cards = sorted(card_nos)
        debts: dict[WalletKey, int] = {}
        for start in range(0, len(cards), _IN_CHUNK):
            chunk = cards[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.execute(
                f"SELECT card_no, wallet, {DEBT_SUM_SQL} FROM lot_consumptions "
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
            for row in self.db.execute(
                f"SELECT {LOT_COLUMNS} FROM lots WHERE card_no IN ({marks}) "
                f"AND remaining > 0 ORDER BY lot_id{self.db.dialect.for_update}",
                chunk,
            ).fetchall():
                if (row[1], row[2]) in wanted:
                    lots.setdefault((row[1], row[2]), []).append(self.lot(row))
        return lots

    def _lot_ids(self, entry_ids: Sequence[int]) -> dict[int, int]:
        """entry_id -> lot_id of the lots these journal entries created."""
        ids: dict[int, int] = {}
        for start in range(0, len(entry_ids), _IN_CHUNK):
            chunk = entry_ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            ids.update(
                (int(r[0]), int(r[1]))
                for r in self.db.execute(
                    f"SELECT entry_id, lot_id FROM lots WHERE entry_id IN ({marks})", chunk
                ).fetchall()
            )
        return ids

    def _take_from_lots(self, taken: Mapping[int, int]) -> None:
        """Lower each stored lot (lot_id -> amount) by what the plan took from it."""
        self.db.executemany(
            "UPDATE lots SET remaining = remaining - ? WHERE lot_id = ?",
            [(take, lot_id) for lot_id, take in taken.items()],
        )
