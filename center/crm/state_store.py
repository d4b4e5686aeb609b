"""The customer-state repository: checkpoints of the state folded from each card's sales.

A card's state is always computed, never trusted from storage alone: its checkpoint (the
``customer_states`` row, possibly old or absent) plus every sale of the card that the
checkpoint's ``seen`` does not cover, plus the CRM's fields and the ledger's wallets as they
are now. Checkpoints only save work; ``save`` keeps one only when it folded more sales than the
stored one, so two writers never move it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from center.crm.state import checkpoint_part, derive_state
from center.crm.tiers_store import TierRepository
from center.ingest.review_store import QUARANTINED_SQL
from center.ledger.store import ACTIVE_SQL, DEBT_SUM_SQL
from center.storage.database import Database
from center.storage.migrations import Migration
from sync_protocol import (
    CardState,
    ProtocolError,
    Sale,
    TillMessage,
    decode_sale,
    read_state,
    state_row,
)

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "CustomerStateRepository", "Derived"]

_CHUNK = 500
RECEIVED_SLACK = timedelta(hours=1)
"""Sales received this long before a checkpoint are read again (and skipped by ``seen``): an
ingest transaction still running when the checkpoint was derived commits with an earlier
received_at than the checkpoint's."""

SQLITE_MIGRATION = Migration(
    "m019_customer_state",
    (
        """CREATE TABLE customer_states (
        card_no TEXT PRIMARY KEY,
        doc TEXT NOT NULL,
        folded INTEGER NOT NULL,
        derived_at TEXT NOT NULL
    )""",
    ),
)
"""Checkpoints of each card's state folded from its sales, on SQLite."""

POSTGRES_MIGRATION = Migration(
    "m019_customer_state",
    (
        """CREATE TABLE customer_states (
        card_no TEXT PRIMARY KEY,
        doc TEXT NOT NULL,
        folded BIGINT NOT NULL,
        derived_at TIMESTAMPTZ NOT NULL
    )""",
    ),
)
"""Checkpoints of each card's state folded from its sales, on PostgreSQL."""


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class Derived(NamedTuple):
    """A card's state and the newest received_at of the sales folded into it (None: none)."""

    state: CardState
    through: datetime | None


class PendingMessages(Protocol):
    """The personal messages for the next purchase not shown yet (the communications' till)."""

    def pending(self, customer_ids: Sequence[str]) -> dict[str, tuple[TillMessage, ...]]: ...


class CustomerStateRepository:
    """Derives card states (inside the caller's snapshot) and keeps their checkpoints."""

    def __init__(
        self,
        db: Database,
        tiers: TierRepository | None = None,
        messages: PendingMessages | None = None,
    ) -> None:
        self.db = db
        self.tiers = tiers
        self.messages = messages

    def chain_zone(self) -> tzinfo:
        """The chain's time zone (setting ``timezone``): the days of the state's day buckets."""
        row = self.db.execute("SELECT value FROM settings WHERE name = 'timezone'").fetchone()
        return _zone(str(row[0]) if row is not None else "UTC")

    def derive(self, cards: Sequence[tuple[str, str]], now: datetime) -> dict[str, Derived]:
        """The state of each (card_no, customer_id), as of the caller's snapshot."""
        tz = self.chain_zone()
        out: dict[str, Derived] = {}
        for start in range(0, len(cards), _CHUNK):
            chunk = cards[start : start + _CHUNK]
            out.update(self._derive_chunk(chunk, now, tz))
        return out

    def _derive_chunk(
        self, cards: Sequence[tuple[str, str]], now: datetime, tz: tzinfo
    ) -> dict[str, Derived]:
        nos = [c[0] for c in cards]
        marks = ", ".join("?" for _ in nos)
        # A checkpoint's derived_at is the newest received_at it folded (the ingest clock).
        checkpoints: dict[str, tuple[CardState, datetime]] = {}
        for card_no, doc, derived_at in self.db.execute(
            f"SELECT card_no, doc, derived_at FROM customer_states WHERE card_no IN ({marks})",
            nos,
        ).fetchall():
            try:
                checkpoints[str(card_no)] = (read_state(json.loads(doc)), self.db.dt(derived_at))
            except (ValueError, ProtocolError):
                continue  # a checkpoint this code cannot read: derive from every sale
        sales: dict[str, list[Sale]] = {no: [] for no in nos}
        through: dict[str, datetime | None] = {no: None for no in nos}
        for no, (_, derived_at) in checkpoints.items():
            through[no] = derived_at
        fresh = [no for no in nos if no not in checkpoints]
        held = [no for no in nos if no in checkpoints]
        queries: list[tuple[list[str], datetime | None]] = [(fresh, None)]
        if held:
            oldest = min(checkpoints[no][1] for no in held)
            queries.append((held, oldest - RECEIVED_SLACK))
        for group, since in queries:
            if not group:
                continue
            gmarks = ", ".join("?" for _ in group)
            # A quarantined sale (dated where no register could sell) counts in no state.
            sql = (
                f"SELECT card_no, payload, received_at FROM sales WHERE card_no IN ({gmarks}) "
                f"AND sale_id NOT IN ({QUARANTINED_SQL})"
            )
            params: list[Any] = list(group)
            if since is not None:
                sql += " AND received_at >= ?"
                params.append(self.db.ts(since))
            for card_no, payload, received_at in self.db.execute(sql, params).fetchall():
                no = str(card_no)
                try:
                    sales[no].append(decode_sale(bytes(payload)))
                except ProtocolError:
                    continue  # ingest stored it, so it decodes; a damaged row counts as nothing
                at = self.db.dt(received_at)
                last = through[no]
                through[no] = at if last is None or at > last else last
        attributes = self._attributes(sorted({c[1] for c in cards}))
        tiers = self.tiers.card_tiers([c[1] for c in cards], now) if self.tiers else {}
        wallets = self.wallets(nos, now)
        customer_ids = sorted({c[1] for c in cards})
        messages = self.messages.pending(customer_ids) if self.messages is not None else {}
        return {
            card_no: Derived(
                derive_state(
                    checkpoints[card_no][0] if card_no in checkpoints else CardState(),
                    sales[card_no],
                    attributes=attributes.get(customer_id, {}),
                    wallets=wallets.get(card_no, {}),
                    tz=tz,
                    tier=tiers.get(customer_id),
                    messages=messages.get(customer_id, ()),
                ),
                through[card_no],
            )
            for card_no, customer_id in cards
        }

    def _attributes(self, customers: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        if not customers:
            return out
        marks = ", ".join("?" for _ in customers)
        for customer_id, text in self.db.execute(
            f"SELECT customer_id, attributes FROM customers WHERE customer_id IN ({marks})",
            list(customers),
        ).fetchall():
            try:
                doc = json.loads(text) if isinstance(text, str) else text
            except ValueError:
                doc = {}
            out[str(customer_id)] = doc if isinstance(doc, Mapping) else {}
        return out

    def wallets(self, nos: Sequence[str], now: datetime) -> dict[str, dict[str, int]]:
        """Every wallet's spendable balance per card: active lots less outstanding debt."""
        if not nos:
            return {}
        at = self.db.ts(now)
        marks = ", ".join("?" for _ in nos)
        out: dict[str, dict[str, int]] = {}
        for card_no, wallet, amount in self.db.execute(
            "SELECT card_no, wallet, CAST(SUM(remaining) AS BIGINT) FROM lots "
            f"WHERE card_no IN ({marks}) AND remaining > 0 AND {ACTIVE_SQL} "
            "GROUP BY card_no, wallet",
            (*nos, at, at),
        ).fetchall():
            out.setdefault(str(card_no), {})[str(wallet)] = int(amount or 0)
        for card_no, wallet, debt in self.db.execute(
            f"SELECT card_no, wallet, {DEBT_SUM_SQL} FROM lot_consumptions WHERE card_no IN "
            f"({marks}) AND kind IN ('debt', 'recover') GROUP BY card_no, wallet",
            nos,
        ).fetchall():
            held = out.setdefault(str(card_no), {})
            held[str(wallet)] = held.get(str(wallet), 0) - int(debt or 0)
        return out

    def save(self, states: Mapping[str, Derived]) -> int:
        """Keep checkpoints that folded more than the stored ones; how many were offered."""
        rows = [
            (
                no,
                json.dumps(state_row(checkpoint_part(d.state)), sort_keys=True),
                d.state.folded,
                self.db.ts(d.through),
            )
            for no, d in sorted(states.items())
            if d.state.folded and d.through is not None
        ]
        if not rows:
            return 0
        with self.db.guard("save customer states"), self.db.transaction():
            self.db.executemany(
                "INSERT INTO customer_states (card_no, doc, folded, derived_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (card_no) DO UPDATE SET doc = excluded.doc, "
                "folded = excluded.folded, derived_at = excluded.derived_at "
                "WHERE customer_states.folded < excluded.folded",
                rows,
            )
        return len(rows)
