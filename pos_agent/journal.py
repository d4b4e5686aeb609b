"""journal.db: open receipts, confirmed sales, the outbox and offline bonus spending.

Every write that belongs together (a sale, its outbox row, its bonus spend, closing its
receipt) happens in ONE `BEGIN IMMEDIATE` transaction on a WAL database with
synchronous=FULL, so a power cut leaves either all of it or none of it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from pos_agent.errors import (
    InvalidField,
    JournalError,
    ReceiptClosed,
    ReceiptNotFound,
    SpendRefused,
)
from pos_agent.migrations import Migrations, database_file
from pos_agent.receipts import CouponUsed
from sync_protocol import Sale, chain_hash, decode_sale, encode_sale, payload_chain_hash

__all__ = [
    "HeldReservation",
    "Journal",
    "JournalStats",
    "OfflineSpend",
    "OutboxRow",
    "RejectedSale",
    "ReservationOp",
    "SalesSummary",
]

# The release before migrations refuses a journal whose user_version is above this: a migration
# that such a release must not open raises it.
_USER_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counter (name, value) VALUES ('sale_seq', 0);
CREATE TABLE IF NOT EXISTS open_receipts (
    receipt_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS closed_receipts (
    receipt_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL CHECK (outcome IN ('confirmed', 'cancelled')),
    sale_id TEXT,
    closed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sales (
    sale_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE CHECK (seq >= 1),
    receipt_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    card_no TEXT,
    line_count INTEGER NOT NULL,
    subtotal_minor INTEGER NOT NULL,
    discount_minor INTEGER NOT NULL,
    total_minor INTEGER NOT NULL,
    closed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    sale_id TEXT NOT NULL UNIQUE REFERENCES sales (sale_id),
    queued_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'rejected')),
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS local_spend (
    sale_id TEXT PRIMARY KEY REFERENCES sales (sale_id),
    card_no TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    spent_at TEXT NOT NULL,
    acked_version INTEGER
);
CREATE INDEX IF NOT EXISTS local_spend_card ON local_spend (card_no);
CREATE TABLE IF NOT EXISTS used_coupons (
    code TEXT PRIMARY KEY,
    sale_id TEXT NOT NULL REFERENCES sales (sale_id),
    used_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS receipt_reservations (
    receipt_id TEXT PRIMARY KEY,
    reservation_id TEXT NOT NULL,
    card_no TEXT,
    amount INTEGER NOT NULL,
    codes TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reservation_ops (
    reservation_id TEXT PRIMARY KEY,
    op TEXT NOT NULL CHECK (op IN ('commit', 'release')),
    sale_id TEXT,
    queued_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS offline_spend (
    sale_id TEXT PRIMARY KEY REFERENCES sales (sale_id),
    card_no TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    day TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS offline_spend_card ON offline_spend (card_no, day);
"""

MIGRATIONS = Migrations("journal", error=JournalError)


@MIGRATIONS
def m001_baseline(conn: sqlite3.Connection) -> None:
    """The tables of the release before migrations; a journal.db it wrote is adopted as is."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > _USER_VERSION:
        raise JournalError(
            f"{database_file(conn)}: schema version {version} is newer than {_USER_VERSION}; "
            "upgrade the agent"
        )
    MIGRATIONS.create_or_adopt(conn, _SCHEMA)
    conn.execute(f"PRAGMA user_version = {_USER_VERSION}")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One queued sale, in the encoding it was committed with."""

    seq: int
    sale_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RejectedSale:
    """A sale the store node refused; kept at the register and reported, never resent."""

    seq: int
    sale_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class JournalStats:
    """The queue as /health and heartbeats report it."""

    queue_depth: int
    last_seq: int
    oldest_queued_at: datetime | None
    rejected: tuple[RejectedSale, ...]


@dataclass(frozen=True, slots=True)
class SalesSummary:
    """Totals over every confirmed sale kept at the register (for reconciliation)."""

    receipts: int
    lines: int
    total_minor: int
    max_seq: int
    queued: int


@dataclass(frozen=True, slots=True)
class HeldReservation:
    """The store node's hold on bonus and single-use coupons for one open receipt."""

    receipt_id: str
    reservation_id: str
    card_no: str | None
    amount: int
    codes: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ReservationOp:
    """A commit or release the store node still has to hear about."""

    reservation_id: str
    op: str
    sale_id: str | None


@dataclass(frozen=True, slots=True)
class OfflineSpend:
    """A spend allowed without the store node: counted against the card's daily allowance."""

    day: str
    allowance: int


def _at(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: times of facts are aware UTC")
    return value.isoformat()


class Journal:
    """One connection to journal.db, owned by one thread at a time."""

    def __init__(self, path: Path, *, register_id: str, store_id: str) -> None:
        self.path = path
        self.conn = sqlite3.connect(
            path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            MIGRATIONS.apply(self.conn)
            with self._transaction():
                self._bind(register_id, store_id)
        except BaseException:
            self.conn.close()
            raise

    def _bind(self, register_id: str, store_id: str) -> None:
        # A data folder copied from another register would duplicate its sequence numbers.
        for key, value in (("register_id", register_id), ("store_id", store_id)):
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
            if row is None:
                self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [key, value])
            elif row[0] != value:
                raise JournalError(
                    f"{self.path}: belongs to {key} {row[0]!r}, not {value!r}; "
                    "each register needs its own data_dir"
                )

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so the uploader's thread and the API's
        # thread wait for each other (busy timeout) instead of failing on lock upgrade.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- open receipts -------------------------------------------------------------------

    def create_receipt(self, receipt_id: str, state: str, now: datetime) -> None:
        """Store a new open receipt."""
        self.conn.execute(
            "INSERT INTO open_receipts (receipt_id, state, updated_at) VALUES (?, ?, ?)",
            [receipt_id, state, _at(now)],
        )

    def load_receipt(self, receipt_id: str) -> str:
        """The open receipt's state; ReceiptClosed or ReceiptNotFound otherwise."""
        row = self.conn.execute(
            "SELECT state FROM open_receipts WHERE receipt_id = ?", [receipt_id]
        ).fetchone()
        if row is not None:
            return str(row[0])
        closed = self.conn.execute(
            "SELECT outcome, sale_id FROM closed_receipts WHERE receipt_id = ?", [receipt_id]
        ).fetchone()
        if closed is not None:
            raise ReceiptClosed(receipt_id, closed[0], closed[1])
        raise ReceiptNotFound(receipt_id)

    def save_receipt(self, receipt_id: str, state: str, now: datetime) -> None:
        """Replace the open receipt's state (it must still be open)."""
        cursor = self.conn.execute(
            "UPDATE open_receipts SET state = ?, updated_at = ? WHERE receipt_id = ?",
            [state, _at(now), receipt_id],
        )
        if cursor.rowcount != 1:
            self.load_receipt(receipt_id)  # raises the precise error
            raise ReceiptNotFound(receipt_id)

    def cancel_receipt(self, receipt_id: str, now: datetime) -> None:
        """Close the open receipt as cancelled; only the release of its hold is queued."""
        with self._transaction():
            self.load_receipt(receipt_id)
            self._drop_reservation(receipt_id, now)
            self.conn.execute("DELETE FROM open_receipts WHERE receipt_id = ?", [receipt_id])
            self.conn.execute(
                "INSERT INTO closed_receipts (receipt_id, outcome, sale_id, closed_at) "
                "VALUES (?, 'cancelled', NULL, ?)",
                [receipt_id, _at(now)],
            )

    def open_receipt_ids(self) -> list[str]:
        """Ids of every receipt still open (e.g. after a restart)."""
        rows = self.conn.execute("SELECT receipt_id FROM open_receipts ORDER BY updated_at")
        return [str(row[0]) for row in rows]

    # -- reservations at the store node ----------------------------------------------------

    def reservation(self, receipt_id: str) -> HeldReservation | None:
        """The store node's hold for this open receipt, if it has one."""
        row = self.conn.execute(
            "SELECT reservation_id, card_no, amount, codes, expires_at FROM receipt_reservations "
            "WHERE receipt_id = ?",
            [receipt_id],
        ).fetchone()
        if row is None:
            return None
        return HeldReservation(
            receipt_id=receipt_id,
            reservation_id=str(row[0]),
            card_no=row[1],
            amount=int(row[2]),
            codes=tuple(json.loads(row[3])),
            expires_at=datetime.fromisoformat(row[4]),
        )

    def save_reservation(self, held: HeldReservation) -> None:
        """Remember the hold granted for the receipt (the store node keeps one per receipt)."""
        with self._transaction():
            self.conn.execute(
                "INSERT INTO receipt_reservations (receipt_id, reservation_id, card_no, amount, "
                "codes, expires_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (receipt_id) DO UPDATE "
                "SET reservation_id = excluded.reservation_id, card_no = excluded.card_no, "
                "amount = excluded.amount, codes = excluded.codes, "
                "expires_at = excluded.expires_at",
                [
                    held.receipt_id,
                    held.reservation_id,
                    held.card_no,
                    held.amount,
                    json.dumps(list(held.codes)),
                    _at(held.expires_at),
                ],
            )
            self.conn.execute(
                "DELETE FROM reservation_ops WHERE reservation_id = ?", [held.reservation_id]
            )

    def drop_reservation(self, receipt_id: str, now: datetime) -> bool:
        """Forget the receipt's hold and queue its release; False when it had none."""
        with self._transaction():
            return self._drop_reservation(receipt_id, now)

    def _drop_reservation(self, receipt_id: str, now: datetime, sale_id: str | None = None) -> bool:
        held = self.reservation(receipt_id)
        if held is None:
            return False
        self.conn.execute("DELETE FROM receipt_reservations WHERE receipt_id = ?", [receipt_id])
        self.conn.execute(
            "INSERT INTO reservation_ops (reservation_id, op, sale_id, queued_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (reservation_id) DO UPDATE SET op = excluded.op, "
            "sale_id = excluded.sale_id, queued_at = excluded.queued_at",
            [held.reservation_id, "commit" if sale_id else "release", sale_id, _at(now)],
        )
        return True

    def reservation_ops(self, limit: int = 100) -> list[ReservationOp]:
        """Commits and releases not yet delivered to the store node, oldest first."""
        rows = self.conn.execute(
            "SELECT reservation_id, op, sale_id FROM reservation_ops ORDER BY queued_at LIMIT ?",
            [limit],
        )
        return [ReservationOp(str(rid), str(op), sale_id) for rid, op, sale_id in rows]

    def reservation_op_done(self, reservation_id: str) -> None:
        """The store node has the commit or release (or no longer knows the reservation)."""
        with self._transaction():
            self.conn.execute(
                "DELETE FROM reservation_ops WHERE reservation_id = ?", [reservation_id]
            )

    def offline_spent(self, card_no: str, day: str) -> int:
        """Bonus this register let the card spend without the store node on `day`."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM offline_spend WHERE card_no = ? AND day = ?",
            [card_no, day],
        ).fetchone()
        return int(row[0])

    # -- confirmed sales -----------------------------------------------------------------

    def local_spent(self, card_no: str) -> int:
        """Bonus this register spent offline on the card that the replica may not reflect yet."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM local_spend WHERE card_no = ?", [card_no]
        ).fetchone()
        return int(row[0])

    def coupon_used_by(self, code: str) -> str | None:
        """The sale of this register that redeemed single-use coupon ``code``, or ``None``."""
        row = self.conn.execute(
            "SELECT sale_id FROM used_coupons WHERE code = ?", [code]
        ).fetchone()
        return None if row is None else str(row[0])

    def coupons_of_sale(self, sale_id: str) -> tuple[str, ...]:
        """The single-use coupon codes sale ``sale_id`` redeemed (its reservation commit)."""
        rows = self.conn.execute(
            "SELECT code FROM used_coupons WHERE sale_id = ? ORDER BY code", [sale_id]
        )
        return tuple(str(row[0]) for row in rows)

    def confirm(
        self,
        receipt_id: str,
        build: Callable[[int], Sale],
        *,
        bonus_spent: int,
        bonus_balance: int,
        coupons_used: tuple[str, ...] = (),
        reserved: bool = False,
        offline: OfflineSpend | None = None,
    ) -> Sale:
        """Commit the sale built for the next seq with its outbox row, bonus spend and the
        single-use coupons it redeemed, at once (CouponUsed if one was redeemed before).

        ``reserved``: the store node holds the spend for this receipt; its commit is queued
        here and the replica balance is not checked (the node is the authority). Otherwise
        any hold of the receipt is queued for release, and a bonus spend must fit into the
        replica balance and, with ``offline``, into the card's allowance of the day.
        """
        with self._transaction():
            self.load_receipt(receipt_id)
            seq = int(
                self.conn.execute(
                    "UPDATE counter SET value = value + 1 WHERE name = 'sale_seq' RETURNING value"
                ).fetchone()[0]
            )
            # The link is made inside the write transaction, so two confirms can never
            # chain onto the same predecessor.
            sale = replace(build(seq), prev_hash=self._chain_head())
            if bonus_spent and sale.card_no is None:
                raise InvalidField("bonus_to_spend", "bonuses can be spent only with a card")
            if bonus_spent and not reserved and sale.card_no is not None:
                # Checked inside the write transaction: nothing can spend in between.
                available = bonus_balance - self.local_spent(sale.card_no)
                if bonus_spent > available:
                    raise InvalidField(
                        "bonus_to_spend",
                        f"{bonus_spent} exceeds the {max(available, 0)} available on card "
                        f"{sale.card_no} (balance {bonus_balance}, already spent offline "
                        f"{bonus_balance - available})",
                    )
            closed_at = _at(sale.closed_at)
            payload = encode_sale(sale)
            self.conn.execute(
                "INSERT INTO sales (sale_id, seq, receipt_id, payload, card_no, line_count, "
                "subtotal_minor, discount_minor, total_minor, closed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    sale.sale_id,
                    seq,
                    receipt_id,
                    payload,
                    sale.card_no,
                    len(sale.lines),
                    sale.subtotal_minor,
                    sale.discount_minor,
                    sale.total_minor,
                    closed_at,
                ],
            )
            self.conn.execute(
                "INSERT INTO outbox (seq, sale_id, queued_at) VALUES (?, ?, ?)",
                [seq, sale.sale_id, closed_at],
            )
            if bonus_spent and not reserved and offline is not None and sale.card_no:
                spent_today = self.offline_spent(sale.card_no, offline.day)
                if spent_today + bonus_spent > offline.allowance:
                    raise SpendRefused(
                        f"bonus_to_spend: {bonus_spent} exceeds what card {sale.card_no} may "
                        f"still spend offline on {offline.day}: "
                        f"{max(0, offline.allowance - spent_today)} "
                        f"(offline.max_spend_per_card_minor = {offline.allowance}, "
                        f"already spent offline {spent_today})"
                    )
                self.conn.execute(
                    "INSERT INTO offline_spend (sale_id, card_no, amount, day) VALUES (?, ?, ?, ?)",
                    [sale.sale_id, sale.card_no, bonus_spent, offline.day],
                )
            if bonus_spent and sale.card_no is not None:
                self.conn.execute(
                    "INSERT INTO local_spend (sale_id, card_no, amount, spent_at) "
                    "VALUES (?, ?, ?, ?)",
                    [sale.sale_id, sale.card_no, bonus_spent, closed_at],
                )
            self._drop_reservation(receipt_id, sale.closed_at, sale.sale_id if reserved else None)
            for code in coupons_used:
                # Checked inside the write transaction: two receipts holding the same code
                # cannot both redeem it.
                used_by = self.coupon_used_by(code)
                if used_by is not None:
                    raise CouponUsed(code, used_by)
                self.conn.execute(
                    "INSERT INTO used_coupons (code, sale_id, used_at) VALUES (?, ?, ?)",
                    [code, sale.sale_id, closed_at],
                )
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('chain_head', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [payload_chain_hash(sale.prev_hash, payload)],
            )
            self.conn.execute("DELETE FROM open_receipts WHERE receipt_id = ?", [receipt_id])
            self.conn.execute(
                "INSERT INTO closed_receipts (receipt_id, outcome, sale_id, closed_at) "
                "VALUES (?, 'confirmed', ?, ?)",
                [receipt_id, sale.sale_id, closed_at],
            )
        return sale

    def _chain_head(self) -> str:
        """chain_hash of the last confirmed sale ("" before the first one)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'chain_head'").fetchone()
        if row is not None:
            return str(row[0])
        # A journal written before the chain existed: link onto its last sale.
        last = self.conn.execute("SELECT payload FROM sales ORDER BY seq DESC LIMIT 1").fetchone()
        return "" if last is None else chain_hash(decode_sale(bytes(last[0])))

    def verify_chain(self) -> list[int]:
        """Seqs whose prev_hash does not match the sale before them (empty when intact)."""
        broken: list[int] = []
        previous: Sale | None = None
        for sale in self.sales():
            expected = "" if previous is None else chain_hash(previous)
            # Sales written before the chain existed all carry "": not a break.
            legacy = previous is not None and not previous.prev_hash and not sale.prev_hash
            if sale.prev_hash != expected and not legacy:
                broken.append(sale.seq)
            previous = sale
        return broken

    def sale(self, sale_id: str) -> Sale | None:
        """A confirmed sale, decoded from the bytes that were committed."""
        row = self.conn.execute("SELECT payload FROM sales WHERE sale_id = ?", [sale_id]).fetchone()
        return None if row is None else decode_sale(bytes(row[0]))

    def sales(self) -> list[Sale]:
        """Every confirmed sale kept at the register, in seq order."""
        rows = self.conn.execute("SELECT payload FROM sales ORDER BY seq")
        return [decode_sale(bytes(row[0])) for row in rows]

    def summary(self) -> SalesSummary:
        """Counts and totals over every confirmed sale (GET /v1/sales/summary)."""
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(line_count), 0), COALESCE(SUM(total_minor), 0), "
            "COALESCE(MAX(seq), 0) FROM sales"
        ).fetchone()
        queued = self.conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"
        ).fetchone()[0]
        return SalesSummary(
            receipts=int(row[0]),
            lines=int(row[1]),
            total_minor=int(row[2]),
            max_seq=int(row[3]),
            queued=int(queued),
        )

    # -- outbox --------------------------------------------------------------------------

    def outbox_batch(self, limit: int) -> list[OutboxRow]:
        """Up to `limit` pending sales, oldest seq first."""
        rows = self.conn.execute(
            "SELECT o.seq, o.sale_id, s.payload FROM outbox AS o JOIN sales AS s USING (sale_id) "
            "WHERE o.status = 'pending' ORDER BY o.seq LIMIT ?",
            [limit],
        )
        return [OutboxRow(int(seq), str(sale_id), bytes(payload)) for seq, sale_id, payload in rows]

    def acked_seq(self) -> int:
        """The highest seq the store node acknowledged (its outbox row is gone; 0 for none)."""
        # Walks down the seq index from the top and stops at the first acknowledged sale.
        row = self.conn.execute(
            "SELECT s.seq FROM sales AS s WHERE NOT EXISTS "
            "(SELECT 1 FROM outbox AS o WHERE o.sale_id = s.sale_id) ORDER BY s.seq DESC LIMIT 1"
        ).fetchone()
        return 0 if row is None else int(row[0])

    def sales_in(self, ranges: Iterable[tuple[int, int]], limit: int) -> list[OutboxRow]:
        """Up to `limit` kept sales whose seq lies in the inclusive ranges, in seq order, as
        committed: what a store node that lost its database asks to be sent again."""
        rows: list[OutboxRow] = []
        for first, last in sorted(ranges):
            if len(rows) >= limit:
                break
            found = self.conn.execute(
                "SELECT seq, sale_id, payload FROM sales WHERE seq BETWEEN ? AND ? "
                "ORDER BY seq LIMIT ?",
                [first, last, limit - len(rows)],
            )
            rows += [OutboxRow(int(seq), str(sid), bytes(payload)) for seq, sid, payload in found]
        return rows

    def settle(
        self,
        delivered: Iterable[str],
        rejected: Iterable[tuple[str, str]],
        *,
        master_version: int,
    ) -> tuple[int, int]:
        """Drop acknowledged outbox rows and flag rejected ones in one transaction;
        (dropped, flagged). The sales themselves stay in the journal: a store node that loses
        its database asks for them again (`sales_in`)."""
        dropped = flagged = 0
        with self._transaction():
            for sale_id in delivered:
                dropped += self.conn.execute(
                    "DELETE FROM outbox WHERE sale_id = ? AND status = 'pending'", [sale_id]
                ).rowcount
                self.conn.execute(
                    "UPDATE local_spend SET acked_version = ? "
                    "WHERE sale_id = ? AND acked_version IS NULL",
                    [master_version, sale_id],
                )
            for sale_id, reason in rejected:
                flagged += self.conn.execute(
                    "UPDATE outbox SET status = 'rejected', reason = ? "
                    "WHERE sale_id = ? AND status = 'pending'",
                    [reason[:1000], sale_id],
                ).rowcount
        return dropped, flagged

    def forget_local_spend(self, master_version: int) -> int:
        """Stop counting spends the store node acknowledged before this master version arrived."""
        # Heuristic, erring on the safe side: a spend keeps reducing the card's available
        # balance until a master version newer than the one current at its ack is applied.
        with self._transaction():
            return self.conn.execute(
                "DELETE FROM local_spend WHERE acked_version IS NOT NULL AND acked_version < ?",
                [master_version],
            ).rowcount

    def stats(self) -> JournalStats:
        """Queue depth, last seq, oldest queued time and rejected sales."""
        depth, oldest = self.conn.execute(
            "SELECT COUNT(*), MIN(queued_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        last_seq = self.conn.execute(
            "SELECT value FROM counter WHERE name = 'sale_seq'"
        ).fetchone()[0]
        rejected = tuple(
            RejectedSale(int(seq), str(sale_id), str(reason))
            for seq, sale_id, reason in self.conn.execute(
                "SELECT seq, sale_id, reason FROM outbox WHERE status = 'rejected' ORDER BY seq"
            )
        )
        return JournalStats(
            queue_depth=int(depth),
            last_seq=int(last_seq),
            oldest_queued_at=datetime.fromisoformat(oldest) if oldest else None,
            rejected=rejected,
        )
