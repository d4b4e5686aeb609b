"""Personal messages for the customer's next purchase (the "till" channel): published into the
card rows' state for every register, marked shown by the sale that showed them (in the ingest
transaction), reported delivered to the outbox (m040_till_messages)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from center.communications.model import OutMessage, Receipt
from center.feed.versions import MasterVersions
from center.storage.database import Database
from center.storage.migrations import Migration
from sync_protocol import Sale, TillMessage

__all__ = [
    "POSTGRES_MIGRATION",
    "SQLITE_MIGRATION",
    "TillMessages",
    "till_parts",
]

MAX_SLIP_CHARS = 480
"""A slip prints at most this much of a message (about 10 lines of 48 characters)."""
MAX_DISPLAY_CHARS = 40
"""A two-line customer display of 20 characters."""


def _steps(ts: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE till_messages (
            message_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            slip TEXT NOT NULL,
            display TEXT NOT NULL,
            cashier TEXT NOT NULL,
            published_at {ts} NOT NULL,
            shown_at {ts},
            shown_sale_id TEXT,
            shown_store_id TEXT,
            reported INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (customer_id, message_id)
        )""",
        "CREATE INDEX till_messages_id ON till_messages (message_id)",
        "CREATE INDEX till_messages_pending ON till_messages (customer_id, shown_at)",
        "CREATE INDEX till_messages_unreported ON till_messages (reported, shown_at)",
    )


SQLITE_MIGRATION = Migration("m040_till_messages", _steps("TEXT"))
"""Personal messages for the next purchase, on SQLite."""
POSTGRES_MIGRATION = Migration("m040_till_messages", _steps("TIMESTAMPTZ"))
"""Personal messages for the next purchase, on PostgreSQL."""


def till_parts(subject: str, body: str) -> tuple[str, str, str]:
    """(slip, display, cashier) of a rendered message: the body on the slip, its first line
    on the customer display, the subject (else that line) to the cashier."""
    body = body.strip()
    first = body.splitlines()[0].strip() if body else ""
    cashier = subject.strip() or first
    return body[:MAX_SLIP_CHARS], (subject.strip() or first)[:MAX_DISPLAY_CHARS], cashier[:200]


class TillMessages:
    """The till channel's book over the Database."""

    def __init__(self, db: Database, *, versions: MasterVersions) -> None:
        self.db = db
        self.versions = versions

    def publish(self, message: OutMessage, now: datetime) -> bool:
        """Put `message` in its customer's card rows (a new master version for the cards);
        False when the customer has no card to show it with. Publishing twice changes nothing."""
        slip, display, cashier = till_parts(message.subject, message.body)
        with self.db.guard("publish a till message"), self.db.transaction():
            if (
                self.db.execute(
                    "SELECT 1 FROM cards WHERE customer_id = ? AND status = 'active'",
                    (message.customer_id,),
                ).fetchone()
                is None
            ):
                return False
            if (
                self.db.execute(
                    "SELECT 1 FROM till_messages WHERE customer_id = ? AND message_id = ?",
                    (message.customer_id, message.message_id),
                ).fetchone()
                is None
            ):
                self.db.execute(
                    "INSERT INTO till_messages (message_id, customer_id, slip, display, cashier, "
                    "published_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        message.message_id,
                        message.customer_id,
                        slip,
                        display,
                        cashier,
                        self.db.ts(now),
                    ),
                )
                self._touch(message.customer_id)
        return True

    def pending(self, customer_ids: Sequence[str]) -> dict[str, tuple[TillMessage, ...]]:
        """The messages not shown yet of each customer that has any, oldest first."""
        out: dict[str, list[TillMessage]] = {}
        if not customer_ids:
            return {}
        marks = ", ".join("?" for _ in customer_ids)
        for customer_id, message_id, slip, display, cashier in self.db.execute(
            "SELECT customer_id, message_id, slip, display, cashier FROM till_messages "
            f"WHERE customer_id IN ({marks}) AND shown_at IS NULL "
            "ORDER BY published_at, message_id",
            list(customer_ids),
        ).fetchall():
            out.setdefault(str(customer_id), []).append(
                TillMessage(str(message_id), str(slip), str(display), str(cashier))
            )
        return {k: tuple(v) for k, v in out.items()}

    def record_shown(self, sales: Sequence[Sale]) -> None:
        """Mark the messages new sales showed (inside the ingest transaction); the first sale
        that showed one is kept, and the customer's cards get a row without it."""
        for sale in sales:
            if not sale.shown_messages:
                continue
            marks = ", ".join("?" for _ in sale.shown_messages)
            rows = self.db.execute(
                f"SELECT message_id, customer_id FROM till_messages WHERE message_id IN ({marks}) "
                "AND shown_at IS NULL",
                list(sale.shown_messages),
            ).fetchall()
            for message_id, customer_id in rows:
                self.db.execute(
                    "UPDATE till_messages SET shown_at = ?, shown_sale_id = ?, shown_store_id = ? "
                    "WHERE message_id = ?",
                    (self.db.ts(sale.closed_at), sale.sale_id, sale.store_id, message_id),
                )
                self._touch(str(customer_id))

    def receipts(self) -> list[Receipt]:
        """Delivery reports for the messages shown since the last call (each reported once)."""
        with self.db.guard("report till messages"), self.db.transaction():
            rows = self.db.execute(
                "SELECT message_id, shown_store_id, shown_sale_id FROM till_messages "
                "WHERE reported = 0 AND shown_at IS NOT NULL ORDER BY shown_at"
            ).fetchall()
            for message_id, _, _ in rows:
                self.db.execute(
                    "UPDATE till_messages SET reported = 1 WHERE message_id = ?", (message_id,)
                )
        return [
            Receipt(str(m), "delivered", f"shown at store {store} in sale {sale}")
            for m, store, sale in rows
        ]

    def _touch(self, customer_id: str) -> None:
        """Card rows carry the messages: the customer's cards get a new master version."""
        version = self.versions.bump()
        self.db.execute(
            "UPDATE cards SET version = ? WHERE customer_id = ?", (version, customer_id)
        )
