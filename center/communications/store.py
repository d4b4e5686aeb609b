"""The communications repository: consent history, the outbox, templates, campaign assignment.

The outbox is claim-before-send: a message is marked `sending` in its own committed transaction
before its first byte leaves, then `sent` (or retried, failed) after the server answered. A
process killed in between leaves it `sending`; once its lease runs out it is sent again with the
same idempotency key and Message-ID (see ARCHITECTURE.md, "The outbox").
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from center.access.audit import AuditLog
from center.communications.abx import CustomerOutcome
from center.communications.contacts import ContactRow, consents_of, unknown_customers
from center.communications.model import Consent, OutMessage, Receipt, SendOutcome
from center.communications.rules import decide, normal_address, retry_after
from center.communications.templates import Template, parse_template
from center.crm.model import search_keys
from center.errors import UnknownObject
from center.feed.versions import MasterVersions
from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = [
    "DEFAULT_ZONE",
    "POSTGRES_MIGRATION",
    "SQLITE_MIGRATION",
    "CommunicationsRepository",
    "NewMessage",
]

DEFAULT_ZONE = "Europe/Moscow"
"""The zone of a customer whose store names none."""
MAX_ATTEMPTS = 6


def _steps(ts: str, int_: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE comm_consents (
            customer_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            purpose TEXT NOT NULL,
            granted {int_} NOT NULL,
            source TEXT NOT NULL,
            evidence TEXT NOT NULL,
            at {ts} NOT NULL,
            seq {int_} NOT NULL,
            PRIMARY KEY (customer_id, channel, purpose, seq)
        )""",
        f"""CREATE TABLE comm_messages (
            message_id TEXT PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            customer_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            campaign_id TEXT NOT NULL DEFAULT '',
            grp TEXT NOT NULL DEFAULT '',
            zone TEXT NOT NULL,
            address TEXT NOT NULL,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            attempts {int_} NOT NULL DEFAULT 0,
            not_before {ts} NOT NULL,
            expires_at {ts},
            claimed_at {ts},
            sent_at {ts},
            delivered_at {ts},
            parts {int_} NOT NULL DEFAULT 0,
            parts_delivered {int_} NOT NULL DEFAULT 0,
            unsubscribe_token TEXT NOT NULL UNIQUE,
            fallback_of TEXT,
            created_at {ts} NOT NULL,
            updated_at {ts} NOT NULL
        )""",
        "CREATE INDEX comm_messages_due ON comm_messages (state, not_before)",
        "CREATE INDEX comm_messages_customer ON comm_messages (customer_id, channel, sent_at)",
        "CREATE INDEX comm_messages_campaign ON comm_messages (campaign_id, customer_id)",
        """CREATE TABLE comm_parts (
            provider_ref TEXT PRIMARY KEY,
            message_id TEXT NOT NULL,
            state TEXT NOT NULL
        )""",
        f"""CREATE TABLE comm_templates (
            template_id TEXT PRIMARY KEY,
            doc TEXT NOT NULL,
            updated_at {ts} NOT NULL
        )""",
        f"""CREATE TABLE comm_assignments (
            campaign_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            grp TEXT NOT NULL,
            stratum TEXT NOT NULL,
            assigned_at {ts} NOT NULL,
            PRIMARY KEY (campaign_id, customer_id)
        )""",
    )


SQLITE_MIGRATION = Migration("m023_communications", _steps("TEXT", "INTEGER"))
"""Consent, outbox, templates, campaign assignment, on SQLite."""
POSTGRES_MIGRATION = Migration("m023_communications", _steps("TIMESTAMPTZ", "BIGINT"))
"""Consent, outbox, templates, campaign assignment, on PostgreSQL."""

_MESSAGE_COLUMNS = (
    "message_id, idempotency_key, customer_id, channel, kind, campaign_id, grp, zone, address, "
    "subject, body, state, reason, attempts, not_before, expires_at, claimed_at, sent_at, "
    "delivered_at, parts, parts_delivered, unsubscribe_token, fallback_of, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to put in the outbox; `idempotency_key` makes enqueueing it twice a no-op."""

    idempotency_key: str
    customer_id: str
    channel: str
    kind: str
    address: str
    subject: str
    body: str
    zone: str = DEFAULT_ZONE
    campaign_id: str = ""
    group: str = ""
    not_before: datetime | None = None
    expires_at: datetime | None = None
    fallback_of: str | None = None
    state: str = "queued"
    reason: str = ""


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return DEFAULT_ZONE
    return name


class CommunicationsRepository:
    """Consent history, the outbox and its states, templates, campaign assignment."""

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog | None = None,
        versions: MasterVersions | None = None,
    ) -> None:
        self.db = db
        self.audit = audit or AuditLog(db)
        self.versions = versions or MasterVersions(db)

    # -- consent -------------------------------------------------------------------------------

    def record_consents(self, consents: Sequence[Consent]) -> None:
        """Append grants and withdrawals; a withdrawal of advertising consent also skips the
        customer's queued marketing on that channel in the same transaction."""
        with self.db.guard("record consent"), self.db.transaction():
            self._record(consents)

    def record_in_tx(self, consents: Sequence[Consent]) -> None:
        """record_consents inside the caller's transaction (a sign-up with its consents)."""
        self._record(consents)

    def _record(self, consents: Sequence[Consent]) -> None:
        for c in consents:
            seq = int(c.at.timestamp() * 1_000_000)
            last = self.db.execute(
                "SELECT MAX(seq) FROM comm_consents WHERE customer_id = ? AND channel = ? "
                "AND purpose = ?",
                (c.customer_id, c.channel, c.purpose),
            ).fetchone()[0]
            seq = max(seq, int(last or 0) + 1)
            self.db.execute(
                "INSERT INTO comm_consents (customer_id, channel, purpose, granted, source, "
                "evidence, at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.customer_id,
                    c.channel,
                    c.purpose,
                    int(c.granted),
                    c.source,
                    c.evidence,
                    self.db.ts(c.at),
                    seq,
                ),
            )
            if not c.granted:
                self.db.execute(
                    "UPDATE comm_messages SET state = 'skipped', reason = ?, updated_at = ? "
                    "WHERE customer_id = ? AND channel = ? AND kind = 'marketing' "
                    "AND state = 'queued'",
                    (f"{c.purpose} consent withdrawn", self.db.ts(c.at), c.customer_id, c.channel),
                )

    def current_consents(
        self, customer_ids: Iterable[str]
    ) -> dict[str, dict[tuple[str, str], bool]]:
        """customer_id -> {(channel, purpose): granted} as of the latest record of each."""
        found: dict[str, dict[tuple[str, str], bool]] = {}
        ids = list(customer_ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ", ".join("?" for _ in part)
            rows = self.db.execute(
                "SELECT c.customer_id, c.channel, c.purpose, c.granted FROM comm_consents c "
                "JOIN (SELECT customer_id, channel, purpose, MAX(seq) AS seq FROM comm_consents "
                f"WHERE customer_id IN ({marks}) GROUP BY customer_id, channel, purpose) m "
                "ON m.customer_id = c.customer_id AND m.channel = c.channel "
                "AND m.purpose = c.purpose AND m.seq = c.seq",
                part,
            ).fetchall()
            for customer_id, channel, purpose, granted in rows:
                found.setdefault(customer_id, {})[(channel, purpose)] = bool(granted)
        return found

    def consent_history(self, customer_id: str) -> list[dict[str, Any]]:
        """Every grant and withdrawal of the customer, oldest first."""
        with self.db.guard("read consent"), self.db.snapshot():
            rows = self.db.execute(
                "SELECT channel, purpose, granted, source, evidence, at FROM comm_consents "
                "WHERE customer_id = ? ORDER BY seq, channel, purpose",
                (customer_id,),
            ).fetchall()
        return [
            {
                "channel": r[0],
                "purpose": r[1],
                "granted": bool(r[2]),
                "source": r[3],
                "evidence": r[4],
                "at": self.db.dt(r[5]).isoformat(),
            }
            for r in rows
        ]

    def unsubscribe(self, token: str, now: datetime, evidence: str) -> dict[str, Any] | None:
        """Withdraw advertising consent on the channel of the message carrying `token`."""
        with self.db.guard("unsubscribe"), self.db.transaction():
            row = self.db.execute(
                "SELECT customer_id, channel, message_id FROM comm_messages "
                "WHERE unsubscribe_token = ?",
                (token,),
            ).fetchone()
            if row is None:
                return None
            customer_id, channel, message_id = row
            self._record(
                [
                    Consent(
                        customer_id,
                        channel,
                        "advertising",
                        False,
                        "one-click unsubscribe",
                        f"message {message_id}; {evidence}"[:500],
                        now,
                    )
                ]
            )
        return {"customer_id": customer_id, "channel": channel, "unsubscribed": True}

    # -- contacts ------------------------------------------------------------------------------

    def load_contacts(
        self,
        rows: Sequence[ContactRow],
        *,
        csv_lines: bool,
        source: str,
        actor: str,
        now: datetime,
    ) -> dict[str, int]:
        """Set customers' contact attributes and record their consents, all in one transaction
        (InvalidLines naming every unknown customer, nothing written); the customers get one
        new master version, so store nodes receive the change."""
        at = self.db.ts(now)
        with self.db.guard("load contacts"), self.db.transaction():
            held: dict[str, dict[str, Any]] = {}
            ids = [r.customer_id for r in rows]
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ", ".join("?" for _ in part)
                for customer_id, attributes in self.db.execute(
                    f"SELECT customer_id, attributes FROM customers WHERE customer_id IN ({marks})",
                    part,
                ).fetchall():
                    held[customer_id] = (
                        json.loads(attributes) if isinstance(attributes, str) else dict(attributes)
                    )
            unknown_customers(rows, held, csv_lines=csv_lines)
            changed = 0
            version = self.versions.bump()
            for row in rows:
                before = held[row.customer_id]
                after = {k: v for k, v in {**before, **row.attributes}.items() if v != ""}
                if after == before:
                    continue
                changed += 1
                self.db.execute(
                    "UPDATE customers SET attributes = ?, version = ? WHERE customer_id = ?",
                    (json.dumps(after, ensure_ascii=False), version, row.customer_id),
                )
                self.db.execute(
                    "DELETE FROM customer_index WHERE customer_id = ?", (row.customer_id,)
                )
                self.db.execute(
                    "INSERT INTO customer_index (customer_id, last_name, first_name, "
                    "middle_name, phone_rev, email) VALUES (?, ?, ?, ?, ?, ?)",
                    (row.customer_id, *search_keys(after)),
                )
                self.audit.record("customer", row.customer_id, "contacts", before, after, actor, at)
            evidence = f"bulk load by {actor} from {source}"
            consents = consents_of(rows, source, evidence, now)
            self._record(consents)
        return {"customers": len(rows), "changed": changed, "consents": len(consents)}

    def contacts(self, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """customer_id -> its attributes plus `zone` (its store's time zone, or the default)."""
        stores = {
            r[0]: (_zone(r[2] or DEFAULT_ZONE), r[1] or r[0])
            for r in self.db.execute("SELECT store_id, name, timezone FROM stores").fetchall()
        }
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(customer_ids), 500):
            part = list(customer_ids[start : start + 500])
            marks = ", ".join("?" for _ in part)
            for customer_id, attributes in self.db.execute(
                f"SELECT customer_id, attributes FROM customers WHERE customer_id IN ({marks})",
                part,
            ).fetchall():
                attrs = json.loads(attributes) if isinstance(attributes, str) else attributes
                store_id = str(attrs.get("store_id", ""))
                own = attrs.get("timezone")
                found[customer_id] = {
                    **attrs,
                    # Quiet hours follow the customer's own time zone, else their store's.
                    "zone": _zone(own)
                    if isinstance(own, str) and own
                    else stores.get(store_id, (DEFAULT_ZONE, ""))[0],
                    "store_name": stores.get(store_id, ("", ""))[1],
                }
        return found

    # -- the outbox ----------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[NewMessage], now: datetime) -> int:
        """Put messages in the outbox; one whose idempotency key is known is left as it is.
        Returns how many were new. Rows go in batches of one statement each."""
        with self.db.guard("enqueue messages"), self.db.transaction():
            return self.enqueue_in_tx(messages, now)

    def enqueue_in_tx(self, messages: Sequence[NewMessage], now: datetime) -> int:
        """enqueue inside the caller's transaction (a sign-in code with its challenge)."""
        at = self.db.ts(now)
        sql = (
            f"INSERT INTO comm_messages ({_MESSAGE_COLUMNS}) VALUES "
            f"({', '.join('?' for _ in range(25))}) "
            "ON CONFLICT (idempotency_key) DO NOTHING"
        )
        added = 0
        for start in range(0, len(messages), 5000):
            part = messages[start : start + 5000]
            known: set[str] = set()
            for at_key in range(0, len(part), 500):
                keys = [m.idempotency_key for m in part[at_key : at_key + 500]]
                marks = ", ".join("?" for _ in keys)
                known.update(
                    r[0]
                    for r in self.db.execute(
                        "SELECT idempotency_key FROM comm_messages "
                        f"WHERE idempotency_key IN ({marks})",
                        keys,
                    ).fetchall()
                )
            rows = [
                (
                    os.urandom(16).hex(),
                    m.idempotency_key,
                    m.customer_id,
                    m.channel,
                    m.kind,
                    m.campaign_id,
                    m.group,
                    m.zone,
                    m.address,
                    m.subject,
                    m.body,
                    m.state,
                    m.reason,
                    0,
                    at if m.not_before is None else self.db.ts(m.not_before),
                    None if m.expires_at is None else self.db.ts(m.expires_at),
                    None,
                    None,
                    None,
                    0,
                    0,
                    secrets.token_urlsafe(24),
                    m.fallback_of,
                    at,
                    at,
                )
                for m in part
                if m.idempotency_key not in known
            ]
            # A key twice in one call goes in once (ON CONFLICT), counted once.
            added += len({r[1] for r in rows})
            if rows:
                self.db.executemany(sql, rows)
        return added

    def due(
        self, now: datetime, *, limit: int, lease: timedelta, channels: Sequence[str]
    ) -> list[str]:
        """Ids of messages to claim: queued and due, or `sending` with a lapsed lease (their
        sender died between claim and result)."""
        marks = ", ".join("?" for _ in channels)
        with self.db.guard("read due messages"), self.db.snapshot():
            rows = self.db.execute(
                "SELECT message_id FROM comm_messages WHERE channel IN "
                f"({marks}) AND ((state = 'queued' AND not_before <= ?) OR "
                "(state = 'sending' AND claimed_at <= ?)) ORDER BY not_before, message_id "
                f"LIMIT {int(limit)}",
                (*channels, self.db.ts(now), self.db.ts(now - lease)),
            ).fetchall()
        return [r[0] for r in rows]

    def claim(
        self, message_id: str, now: datetime, *, daily_cap: int, lease: timedelta
    ) -> OutMessage | None:
        """Check the message against expiry, address, consent, quiet hours and the daily cap,
        and either mark it `sending` (committed, returned) or record why not (None)."""
        with self.db.guard("claim message"), self.db.transaction():
            return self._claim(message_id, now, daily_cap=daily_cap, lease=lease)

    def claim_many(
        self, message_ids: Sequence[str], now: datetime, *, daily_cap: int, lease: timedelta
    ) -> list[OutMessage | None]:
        """claim() of several messages in one transaction (one commit for the batch): all of
        them are `sending` before the first leaves."""
        with self.db.guard("claim messages"), self.db.transaction():
            return [self._claim(m, now, daily_cap=daily_cap, lease=lease) for m in message_ids]

    def _claim(
        self, message_id: str, now: datetime, *, daily_cap: int, lease: timedelta
    ) -> OutMessage | None:
        row = self.db.execute(
            "SELECT idempotency_key, customer_id, channel, kind, address, subject, body, "
            "state, not_before, claimed_at, expires_at, zone, unsubscribe_token, attempts "
            f"FROM comm_messages WHERE message_id = ?{self.db.dialect.for_update}",
            (message_id,),
        ).fetchone()
        if row is None:
            return None
        key, customer_id, channel, kind, address, subject, body, state = row[:8]
        if state == "queued":
            if self.db.dt(row[8]) > now:
                return None
        elif state != "sending" or self.db.dt(row[9]) > now - lease:
            return None  # another sender has it, or it is done
        zone = row[11]
        day_start = now.astimezone(ZoneInfo(zone)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        sent_today = int(
            self.db.execute(
                "SELECT COUNT(*) FROM comm_messages WHERE customer_id = ? AND channel = ? "
                "AND kind = 'marketing' AND sent_at >= ? AND message_id <> ?",
                (customer_id, channel, self.db.ts(day_start), message_id),
            ).fetchone()[0]
        )
        consents = self.current_consents([customer_id]).get(customer_id, {})
        decision = decide(
            kind=kind,
            channel=channel,
            address=address,
            consents=consents,
            sent_today=sent_today,
            daily_cap=daily_cap,
            now=now,
            zone=zone,
            expires_at=None if row[10] is None else self.db.dt(row[10]),
        )
        at = self.db.ts(now)
        if decision.action in ("skip", "expire"):
            new_state = "skipped" if decision.action == "skip" else "expired"
            self.db.execute(
                "UPDATE comm_messages SET state = ?, reason = ?, updated_at = ? "
                "WHERE message_id = ?",
                (new_state, decision.reason, at, message_id),
            )
            return None
        if decision.action == "defer":
            self.db.execute(
                "UPDATE comm_messages SET state = 'queued', reason = ?, not_before = ?, "
                "updated_at = ? WHERE message_id = ?",
                (decision.reason, self.db.ts(decision.until), at, message_id),
            )
            return None
        self.db.execute(
            "UPDATE comm_messages SET state = 'sending', claimed_at = ?, "
            "attempts = attempts + 1, updated_at = ? WHERE message_id = ?",
            (at, at, message_id),
        )
        usable = normal_address(channel, address) or address
        sms_failover = channel == "viber" and (
            kind == "transactional"
            or all(consents.get(("sms", p), False) for p in ("advertising", "personal_data"))
        )
        return OutMessage(
            message_id, key, customer_id, channel, kind, usable, subject, body, row[12],
            sms_failover,
        )  # fmt: skip

    def record_outcome(self, message_id: str, outcome: SendOutcome, now: datetime) -> str:
        """Store what the server said: sent, a retry after backoff, or failed. The new state."""
        at = self.db.ts(now)
        with self.db.guard("record send outcome"), self.db.transaction():
            return self._record_outcome(message_id, outcome, now, at)

    def record_outcomes(
        self, outcomes: Sequence[tuple[str, SendOutcome]], now: datetime
    ) -> list[str]:
        """record_outcome() of a batch in one transaction; the new states in order."""
        at = self.db.ts(now)
        with self.db.guard("record send outcomes"), self.db.transaction():
            return [self._record_outcome(m, o, now, at) for m, o in outcomes]

    def _record_outcome(self, message_id: str, outcome: SendOutcome, now: datetime, at: Any) -> str:
        row = self.db.execute(
            "SELECT attempts FROM comm_messages WHERE message_id = ?" + self.db.dialect.for_update,
            (message_id,),
        ).fetchone()
        if row is None:
            raise UnknownObject("message_id", f"unknown message {message_id!r}")
        attempts = int(row[0])
        if outcome.accepted:
            for ref in outcome.provider_refs:
                self.db.execute(
                    "INSERT INTO comm_parts (provider_ref, message_id, state) "
                    "VALUES (?, ?, 'sent') ON CONFLICT (provider_ref) DO NOTHING",
                    (ref, message_id),
                )
            self.db.execute(
                "UPDATE comm_messages SET state = 'sent', sent_at = ?, parts = ?, reason = '', "
                "updated_at = ? WHERE message_id = ?",
                (at, len(outcome.provider_refs), at, message_id),
            )
            return "sent"
        if outcome.permanent or attempts >= MAX_ATTEMPTS:
            self.db.execute(
                "UPDATE comm_messages SET state = 'failed', reason = ?, updated_at = ? "
                "WHERE message_id = ?",
                (outcome.reason[:500], at, message_id),
            )
            return "failed"
        self.db.execute(
            "UPDATE comm_messages SET state = 'queued', reason = ?, not_before = ?, "
            "updated_at = ? WHERE message_id = ?",
            (outcome.reason[:500], self.db.ts(now + retry_after(attempts)), at, message_id),
        )
        return "queued"

    def apply_receipts(self, receipts: Sequence[Receipt], now: datetime) -> int:
        """Apply delivery reports: a message is delivered once every part is; failed or expired
        as soon as one part is. Returns how many messages changed state."""
        changed = 0
        at = self.db.ts(now)
        with self.db.guard("apply receipts"), self.db.transaction():
            for receipt in receipts:
                row = self.db.execute(
                    "SELECT p.message_id, p.state, m.state FROM comm_parts p JOIN comm_messages m "
                    "ON m.message_id = p.message_id WHERE p.provider_ref = ?",
                    (receipt.provider_ref,),
                ).fetchone()
                if row is None or row[1] != "sent":
                    continue  # unknown or already reported: a receipt may come twice
                message_id, _, state = row
                self.db.execute(
                    "UPDATE comm_parts SET state = ? WHERE provider_ref = ?",
                    (receipt.state, receipt.provider_ref),
                )
                if state != "sent":
                    continue
                if receipt.state == "delivered":
                    self.db.execute(
                        "UPDATE comm_messages SET parts_delivered = parts_delivered + 1, "
                        "updated_at = ? WHERE message_id = ?",
                        (at, message_id),
                    )
                    cursor = self.db.execute(
                        "UPDATE comm_messages SET state = 'delivered', delivered_at = ? "
                        "WHERE message_id = ? AND parts_delivered >= parts",
                        (at, message_id),
                    )
                else:
                    cursor = self.db.execute(
                        "UPDATE comm_messages SET state = ?, reason = ?, updated_at = ? "
                        "WHERE message_id = ?",
                        (
                            receipt.state,
                            f"receipt {receipt.detail or receipt.state}",
                            at,
                            message_id,
                        ),
                    )
                changed += max(int(cursor.rowcount or 0), 0)
        return changed

    def mark_engaged(self, token: str, state: str, now: datetime) -> bool:
        """Record an open or a click of the message carrying `token` (never moves backwards)."""
        earlier = ("sent", "delivered") if state == "opened" else ("sent", "delivered", "opened")
        with self.db.guard("record engagement"), self.db.transaction():
            cursor = self.db.execute(
                f"UPDATE comm_messages SET state = ?, updated_at = ? WHERE unsubscribe_token = ? "
                f"AND state IN ({', '.join('?' for _ in earlier)})",
                (state, self.db.ts(now), token, *earlier),
            )
            return int(cursor.rowcount or 0) > 0

    def message(self, message_id: str) -> dict[str, Any] | None:
        """One message with its state and reason."""
        with self.db.guard("read message"), self.db.snapshot():
            rows = self._messages("message_id = ?", [message_id])
        return rows[0] if rows else None

    def messages(
        self, *, customer_id: str | None = None, campaign_id: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Messages of a customer or a campaign, newest first."""
        where, params = [], []
        if customer_id is not None:
            where.append("customer_id = ?")
            params.append(customer_id)
        if campaign_id is not None:
            where.append("campaign_id = ?")
            params.append(campaign_id)
        with self.db.guard("read messages"), self.db.snapshot():
            return self._messages(
                " AND ".join(where) or "1 = 1",
                params,
                order=f" ORDER BY created_at DESC LIMIT {int(limit)}",
            )

    def _messages(self, where: str, params: Sequence[Any], order: str = "") -> list[dict[str, Any]]:
        names = [n.strip() for n in _MESSAGE_COLUMNS.split(",")]
        rows = self.db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM comm_messages WHERE {where}{order}", params
        ).fetchall()
        found = []
        for row in rows:
            item = dict(zip(names, row, strict=True))
            for name in (
                "not_before",
                "expires_at",
                "claimed_at",
                "sent_at",
                "delivered_at",
                "created_at",
                "updated_at",
            ):
                if item[name] is not None:
                    item[name] = self.db.dt(item[name]).isoformat()
            item["group"] = item.pop("grp")
            del item["unsubscribe_token"]
            found.append(item)
        return found

    def reasons(self, campaign_id: str) -> dict[str, dict[str, int]]:
        """channel -> reason -> messages, of a campaign's messages that ended unsent or failed."""
        with self.db.guard("count campaign reasons"), self.db.snapshot():
            rows = self.db.execute(
                "SELECT channel, reason, COUNT(*) FROM comm_messages WHERE campaign_id = ? "
                "AND state IN ('skipped', 'failed', 'expired') GROUP BY channel, reason",
                (campaign_id,),
            ).fetchall()
        found: dict[str, dict[str, int]] = {}
        for channel, reason, count in rows:
            found.setdefault(channel, {})[reason or ""] = int(count)
        return found

    def state_counts(self, campaign_id: str) -> dict[str, dict[str, dict[str, int]]]:
        """group -> channel -> state -> messages, for one campaign."""
        with self.db.guard("count campaign states"), self.db.snapshot():
            rows = self.db.execute(
                "SELECT grp, channel, state, COUNT(*) FROM comm_messages WHERE campaign_id = ? "
                "GROUP BY grp, channel, state",
                (campaign_id,),
            ).fetchall()
        found: dict[str, dict[str, dict[str, int]]] = {}
        for grp, channel, state, count in rows:
            found.setdefault(grp, {}).setdefault(channel, {})[state] = int(count)
        return found

    # -- templates ------------------------------------------------------------------------------

    def put_template(self, template_id: str, doc: Mapping[str, Any], now: datetime) -> Template:
        """Store a template after checking its variables (InvalidRequest names the bad one)."""
        template = parse_template(template_id, doc)
        stored = json.dumps(
            {"subject": template.subject, "body": template.body}, ensure_ascii=False
        )
        with self.db.guard("store template"), self.db.transaction():
            self.db.execute(
                "INSERT INTO comm_templates (template_id, doc, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (template_id) DO UPDATE SET doc = excluded.doc, "
                "updated_at = excluded.updated_at",
                (template_id, stored, self.db.ts(now)),
            )
        return template

    def template(self, template_id: str) -> Template | None:
        with self.db.guard("read template"), self.db.snapshot():
            row = self.db.execute(
                "SELECT doc FROM comm_templates WHERE template_id = ?", (template_id,)
            ).fetchone()
        return None if row is None else parse_template(template_id, json.loads(row[0]))

    # -- campaigns -----------------------------------------------------------------------------

    def assign(self, campaign_id: str, rows: Sequence[tuple[str, str, str]], now: datetime) -> None:
        """Record (customer_id, group, stratum) of a campaign; a known customer keeps its group."""
        at = self.db.ts(now)
        with self.db.guard("assign campaign groups"), self.db.transaction():
            for start in range(0, len(rows), 5000):
                self.db.executemany(
                    "INSERT INTO comm_assignments (campaign_id, customer_id, grp, stratum, "
                    "assigned_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (campaign_id, customer_id) DO NOTHING",
                    [(campaign_id, c, g, s, at) for c, g, s in rows[start : start + 5000]],
                )

    def burning(self, now: datetime, within: timedelta) -> list[tuple[str, int, datetime, int]]:
        """(customer_id, burning amount, earliest expiry, bonus balance) of every customer with
        active bonus lots expiring in (now, now + within]."""
        at, until = self.db.ts(now), self.db.ts(now + within)
        with self.db.guard("find burning bonuses"), self.db.snapshot():
            rows = self.db.execute(
                "SELECT c.customer_id, CAST(SUM(l.remaining) AS BIGINT), MIN(l.expires_at) "
                "FROM lots l JOIN cards c ON c.card_no = l.card_no "
                "WHERE l.wallet = 'bonus' AND l.remaining > 0 AND l.expires_at > ? "
                "AND l.expires_at <= ? AND (l.active_from IS NULL OR l.active_from <= ?) "
                "GROUP BY c.customer_id ORDER BY c.customer_id",
                (at, until, at),
            ).fetchall()
            balances = {
                r[0]: int(r[1])
                for r in self.db.execute(
                    "SELECT c.customer_id, CAST(SUM(l.remaining) AS BIGINT) FROM lots l "
                    "JOIN cards c ON c.card_no = l.card_no WHERE l.wallet = 'bonus' "
                    "AND l.remaining > 0 AND (l.expires_at IS NULL OR l.expires_at > ?) "
                    "AND (l.active_from IS NULL OR l.active_from <= ?) GROUP BY c.customer_id",
                    (at, at),
                ).fetchall()
            }
        return [(r[0], int(r[1]), self.db.dt(r[2]), balances.get(r[0], 0)) for r in rows]

    def balances(self, customer_ids: Sequence[str], now: datetime) -> dict[str, int]:
        """customer_id -> spendable bonus balance now (active, unexpired lots of every card)."""
        at = self.db.ts(now)
        found: dict[str, int] = {}
        for start in range(0, len(customer_ids), 500):
            part = list(customer_ids[start : start + 500])
            marks = ", ".join("?" for _ in part)
            for customer_id, balance in self.db.execute(
                "SELECT c.customer_id, CAST(SUM(l.remaining) AS BIGINT) FROM lots l "
                "JOIN cards c ON c.card_no = l.card_no WHERE l.wallet = 'bonus' "
                "AND l.remaining > 0 AND (l.expires_at IS NULL OR l.expires_at > ?) "
                "AND (l.active_from IS NULL OR l.active_from <= ?) "
                f"AND c.customer_id IN ({marks}) GROUP BY c.customer_id",
                (at, at, *part),
            ).fetchall():
                found[customer_id] = int(balance)
        return found

    def trigger_candidates(
        self, trigger: str, now: datetime, *, days: int, segment_id: str = ""
    ) -> list[tuple[str, str]]:
        """(customer_id, occasion) of every customer a trigger finds now (triggers.TRIGGERS)."""
        since = self.db.ts(now - timedelta(days=days))
        with self.db.guard(f"find {trigger} customers"), self.db.snapshot():
            if trigger == "welcome":
                rows = self.db.execute(
                    "SELECT object_id, 'welcome' FROM audit WHERE kind = 'customer' "
                    "AND action = 'create' AND at > ? ORDER BY object_id",
                    (since,),
                ).fetchall()
            elif trigger == "inactivity":
                rows = self.db.execute(
                    "SELECT c.customer_id, MAX(s.closed_at) FROM sales s "
                    "JOIN cards c ON c.card_no = s.card_no GROUP BY c.customer_id "
                    "HAVING MAX(s.closed_at) <= ? ORDER BY c.customer_id",
                    (since,),
                ).fetchall()
                rows = [(r[0], "quiet-since-" + self.db.dt(r[1]).date().isoformat()) for r in rows]
            elif trigger == "purchase":
                rows = self.db.execute(
                    "SELECT c.customer_id, MAX(s.sale_id) FROM sales s "
                    "JOIN cards c ON c.card_no = s.card_no WHERE s.closed_at > ? "
                    "AND s.closed_at <= ? GROUP BY c.customer_id ORDER BY c.customer_id",
                    (since, self.db.ts(now)),
                ).fetchall()
                rows = [(r[0], "sale-" + str(r[1])) for r in rows]
            elif trigger == "segment":
                rows = self.db.execute(
                    "SELECT customer_id, 'segment' FROM segment_members WHERE segment_id = ? "
                    "ORDER BY customer_id",
                    (segment_id,),
                ).fetchall()
            elif trigger == "birthday":
                rows = []
                for customer_id, attributes in self.db.execute(
                    "SELECT customer_id, attributes FROM customers WHERE status = 'active' "
                    "AND attributes LIKE ? ORDER BY customer_id",
                    ('%"birth_date"%',),
                ).fetchall():
                    attrs = json.loads(attributes) if isinstance(attributes, str) else attributes
                    rows.append((customer_id, str(attrs.get("birth_date"))))
            else:
                raise UnknownObject("body.trigger", f"unknown trigger {trigger!r}")
        return [(str(r[0]), str(r[1])) for r in rows]

    def failed_without_fallback(self, campaign_id: str, channel: str) -> list[dict[str, Any]]:
        """Messages of a campaign on `channel` that ended undelivered and have no fallback yet."""
        with self.db.guard("find fallbacks"), self.db.snapshot():
            rows = self.db.execute(
                "SELECT m.message_id, m.customer_id, m.grp, m.expires_at FROM comm_messages m "
                "WHERE m.campaign_id = ? AND m.channel = ? "
                "AND m.state IN ('failed', 'expired', 'skipped') AND NOT EXISTS ("
                "SELECT 1 FROM comm_messages f WHERE f.fallback_of = m.message_id)",
                (campaign_id, channel),
            ).fetchall()
        return [
            {
                "message_id": r[0],
                "customer_id": r[1],
                "group": r[2],
                "expires_at": None if r[3] is None else self.db.dt(r[3]),
            }
            for r in rows
        ]

    def abx_outcomes(
        self, campaign_id: str, now: datetime, *, pre_days: int = 90, window_days: int = 30
    ) -> list[CustomerOutcome]:
        """Each assigned customer's revenue from assignment to the end of the window (or now),
        and spend in the `pre_days` before the campaign's first assignment (the CUPED
        covariate)."""
        with self.db.guard("campaign outcomes"), self.db.snapshot():
            first = self.db.execute(
                "SELECT MIN(assigned_at) FROM comm_assignments WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchone()[0]
            if first is None:
                return []
            start = self.db.dt(first)
            until = min(now, start + timedelta(days=window_days))
            rows = self.db.execute(
                "SELECT a.customer_id, a.grp, "
                "CAST(COALESCE(SUM(CASE WHEN s.closed_at > a.assigned_at AND s.closed_at <= ? "
                "THEN s.total_minor END), 0) AS BIGINT), "
                "CAST(COALESCE(SUM(CASE WHEN s.closed_at > ? AND s.closed_at <= ? "
                "THEN s.total_minor END), 0) AS BIGINT), "
                "COUNT(CASE WHEN s.closed_at > a.assigned_at AND s.closed_at <= ? THEN 1 END) "
                "FROM comm_assignments a LEFT JOIN cards c ON c.customer_id = a.customer_id "
                "LEFT JOIN sales s ON s.card_no = c.card_no WHERE a.campaign_id = ? "
                "GROUP BY a.customer_id, a.grp",
                (
                    self.db.ts(until),
                    self.db.ts(start - timedelta(days=pre_days)),
                    self.db.ts(start),
                    self.db.ts(until),
                    campaign_id,
                ),
            ).fetchall()
        return [CustomerOutcome(r[1], int(r[2]), int(r[3]), int(r[4]) > 0) for r in rows]

    def results(self, campaign_id: str, now: datetime) -> dict[str, dict[str, int]]:
        """group -> customers, buyers (a sale after assignment, up to `now`) and their revenue
        in minor units: conversion of each variant against the control group X."""
        with self.db.guard("campaign results"), self.db.snapshot():
            rows = self.db.execute(
                "SELECT a.grp, COUNT(DISTINCT a.customer_id), COUNT(DISTINCT s.card_no), "
                "CAST(COALESCE(SUM(s.total_minor), 0) AS BIGINT) FROM comm_assignments a "
                "LEFT JOIN cards c ON c.customer_id = a.customer_id "
                "LEFT JOIN sales s ON s.card_no = c.card_no AND s.closed_at > a.assigned_at "
                "AND s.closed_at <= ? WHERE a.campaign_id = ? GROUP BY a.grp ORDER BY a.grp",
                (self.db.ts(now), campaign_id),
            ).fetchall()
        return {
            r[0]: {"customers": int(r[1]), "buyers": int(r[2]), "revenue_minor": int(r[3])}
            for r in rows
        }
