"""The tier repository: the programme (a chain setting published down the master feed), each
customer's level with its history, the review that applies upgrades and downgrades.

The rule itself is sync_protocol's (``advance_tier``, ``upgraded_tier``): the register applies
upgrades at once from the card state's window counters; here the Center, the authority, keeps
every change with its day and reason and alone downgrades.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from center.access.audit import AuditLog
from center.crm.state import CardTier
from center.errors import InvalidLines
from center.feed.versions import MasterVersions
from center.storage.database import Database
from center.storage.migrations import Migration
from sync_protocol import (
    TIERS_SETTING,
    TierChange,
    TierProgramme,
    TierStatus,
    advance_tier,
    check_programme,
    kept_until,
    programme_doc,
    programme_text,
    tier_progress,
    upgraded_tier,
    window_totals,
)

__all__ = [
    "POSTGRES_MIGRATION",
    "REVIEW_BATCH",
    "REVIEW_EVERY_S",
    "SQLITE_MIGRATION",
    "TierRepository",
]

REVIEW_BATCH = 2000
"""Most customers one scheduled review takes (one transaction); the rest wait for the next."""
REVIEW_EVERY_S = 300.0
"""How often the scheduler reviews customers with new sales or a decision due."""
_RECEIVED_SLACK = timedelta(hours=1)
"""Sales received this long before the last review are looked at again: an ingest transaction
still open at the review commits with an earlier received_at (a second look changes nothing)."""
_CHUNK = 500

_TABLES = (
    """CREATE TABLE customer_tiers (
        customer_id TEXT PRIMARY KEY,
        tier TEXT NOT NULL,
        since TEXT,
        review_on TEXT,
        as_of TEXT
    )""",
    """CREATE TABLE tier_changes (
        customer_id TEXT NOT NULL,
        change_no INTEGER NOT NULL,
        changed_on TEXT NOT NULL,
        from_tier TEXT NOT NULL,
        to_tier TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (customer_id, change_no)
    )""",
    "CREATE INDEX customer_tiers_review ON customer_tiers (review_on)",
)
SQLITE_MIGRATION = Migration(
    "m029_tiers",
    (
        *_TABLES,
        "CREATE TABLE tier_reviews (id INTEGER PRIMARY KEY CHECK (id = 1), through TEXT, "
        "cursor TEXT, pass_started TEXT)",
        "INSERT INTO tier_reviews (id, through) VALUES (1, NULL)",
    ),
)
"""Customers' levels, their changes and the review mark, on SQLite (days as YYYY-MM-DD)."""
POSTGRES_MIGRATION = Migration(
    "m029_tiers",
    (
        *_TABLES,
        "CREATE TABLE tier_reviews (id INTEGER PRIMARY KEY CHECK (id = 1), through TIMESTAMPTZ, "
        "cursor TEXT, pass_started TIMESTAMPTZ)",
        "INSERT INTO tier_reviews (id, through) VALUES (1, NULL)",
    ),
)
"""The same on PostgreSQL."""


def _day(value: Any) -> date | None:
    return date.fromisoformat(str(value)) if value else None


def _text(value: date | None) -> str | None:
    return value.isoformat() if value else None


class TierRepository:
    """The programme, customers' levels and their history."""

    def __init__(
        self,
        db: Database,
        *,
        versions: MasterVersions,
        audit: AuditLog,
        publish: Callable[[Mapping[str, list[dict[str, Any]]], int], object],
    ) -> None:
        self.db = db
        self.versions = versions
        self.audit = audit
        self.publish = publish
        self.review_batch = REVIEW_BATCH
        """Writes master rows at a version inside the caller's transaction (the feed's)."""

    # -- the programme -------------------------------------------------------------------------

    def _programme_text(self) -> str:
        row = self.db.execute(
            "SELECT value FROM settings WHERE name = ?", (TIERS_SETTING,)
        ).fetchone()
        return str(row[0]) if row is not None and row[0] else ""

    def _programme(self) -> TierProgramme | None:
        text = self._programme_text()
        if not text:
            return None
        try:
            programme, problems = check_programme(json.loads(text))
        except ValueError:
            return None
        return programme if programme is not None and programme.levels and not problems else None

    def _zone(self) -> tzinfo:
        row = self.db.execute("SELECT value FROM settings WHERE name = 'timezone'").fetchone()
        try:
            return ZoneInfo(str(row[0]) if row is not None and row[0] else "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")

    def current_programme(self) -> TierProgramme | None:
        """The programme in force (None: no levels), read inside the caller's guard."""
        return self._programme()

    def card_levels(self, card_nos: Sequence[str]) -> dict[str, str]:
        """card_no -> the level the Center keeps for the card's customer (no row: none), read
        inside the caller's transaction."""
        out: dict[str, str] = {}
        for start in range(0, len(card_nos), _CHUNK):
            chunk = list(card_nos[start : start + _CHUNK])
            marks = ", ".join("?" for _ in chunk)
            for card_no, tier in self.db.execute(
                "SELECT c.card_no, t.tier FROM cards c JOIN customer_tiers t "
                f"ON t.customer_id = c.customer_id WHERE c.card_no IN ({marks})",
                chunk,
            ).fetchall():
                out[str(card_no)] = str(tier or "")
        return out

    def programme(self) -> dict[str, Any]:
        """{"version", "programme": the document, or None when no levels are defined}."""
        with self.db.guard("read tiers"), self.db.snapshot():
            programme = self._programme()
            version = self.versions.current()
        return {"version": version, "programme": programme_doc(programme) if programme else None}

    def set_programme(self, doc: Any, *, actor: str, now: datetime) -> dict[str, Any]:
        """Replace the programme (every level at once); InvalidLines naming each bad field.
        Published down the master feed as the chain setting ``tiers.programme``; audited."""
        programme, problems = check_programme(doc)
        if problems or programme is None:
            raise InvalidLines(
                problems[0][0],
                problems[0][1],
                [{"line": 0, "field": f, "message": m} for f, m in problems],
            )
        text = programme_text(programme)
        with self.db.guard("set tiers"), self.db.transaction():
            version = self.versions.lock() + 1
            held = self._programme_text()
            if held != text:
                self.publish({"settings": [{"name": TIERS_SETTING, "value": text}]}, version)
                self.db.execute("UPDATE master_version SET version = ? WHERE id = 1", (version,))
                self.audit.record(
                    "setting",
                    TIERS_SETTING,
                    "set",
                    json.loads(held) if held else None,
                    programme_doc(programme),
                    actor,
                    self.db.ts(now),
                )
            current = self.versions.current()
        return {"version": current, "programme": programme_doc(programme)}

    # -- purchase days -------------------------------------------------------------------------

    def _days(
        self, customer_ids: Sequence[str], since: date | None, tz: tzinfo
    ) -> dict[str, dict[date, int]]:
        """{customer: {day (chain zone): spend}} of each customer's sales (returns left out)
        closed on or after ``since`` (None: all)."""
        out: dict[str, dict[date, int]] = {c: {} for c in customer_ids}
        for start in range(0, len(customer_ids), _CHUNK):
            chunk = list(customer_ids[start : start + _CHUNK])
            marks = ", ".join("?" for _ in chunk)
            # Through the customer's cards (indexed by customer and card), so a merged
            # customer's sales count for the survivor.
            sql = (
                "SELECT c.customer_id, s.closed_at, s.total_minor FROM cards c "
                "JOIN sales s ON s.card_no = c.card_no "
                f"WHERE c.customer_id IN ({marks}) "
                "AND NOT EXISTS (SELECT 1 FROM returns r WHERE r.return_id = s.sale_id)"
            )
            params: list[Any] = chunk
            if since is not None:
                # A day east of UTC starts the evening before: one day of slack, cut below.
                sql += " AND s.closed_at >= ?"
                params = [*chunk, self.db.ts(datetime.combine(since, datetime.min.time(), tz))]
            for owner, closed_at, total in self.db.execute(sql, params).fetchall():
                day = self.db.dt(closed_at).astimezone(tz).date()
                if since is not None and day < since:
                    continue
                held = out[str(owner)]
                held[day] = held.get(day, 0) + int(total)
        return out

    def _statuses(self, customer_ids: Sequence[str]) -> dict[str, TierStatus]:
        out: dict[str, TierStatus] = {}
        for start in range(0, len(customer_ids), _CHUNK):
            chunk = list(customer_ids[start : start + _CHUNK])
            marks = ", ".join("?" for _ in chunk)
            for cid, tier, since, review_on, as_of in self.db.execute(
                "SELECT customer_id, tier, since, review_on, as_of FROM customer_tiers "
                f"WHERE customer_id IN ({marks})",
                chunk,
            ).fetchall():
                out[str(cid)] = TierStatus(str(tier), _day(since), _day(review_on), _day(as_of))
        return out

    def card_tiers(self, customer_ids: Iterable[str], now: datetime) -> dict[str, CardTier]:
        """Each customer's level as a card row carries it (inside the caller's snapshot): the
        kept level, upgraded at once when the window reaches a higher one, and the window's
        spend and visits. Empty when no programme is defined (the CRM attribute then rules)."""
        programme = self._programme()
        ids = sorted(set(customer_ids))
        if programme is None or not ids:
            return {}
        tz = self._zone()
        today = now.astimezone(tz).date()
        days = self._days(ids, programme.window_start(today), tz)
        statuses = self._statuses(ids)
        out: dict[str, CardTier] = {}
        for cid in ids:
            status = statuses.get(cid, TierStatus())
            spend, visits = window_totals(programme, days[cid], today)
            tier = status.tier if programme.level(status.tier) else ""
            tier = upgraded_tier(programme, tier, spend, visits)
            until = kept_until(programme, status) if tier == status.tier else None
            out[cid] = CardTier(tier, spend, visits, until.isoformat() if until else "")
        return out

    # -- the review ----------------------------------------------------------------------------

    def _history_start(self, programme: TierProgramme, status: TierStatus) -> date | None:
        if status.as_of is None:
            return None
        return programme.window_start(status.as_of - timedelta(days=1)) - timedelta(days=1)

    def _advance(
        self, programme: TierProgramme, customer_ids: Sequence[str], today: date, tz: tzinfo
    ) -> dict[str, tuple[TierStatus, TierStatus, list[TierChange]]]:
        """{customer: (stored status, status today, changes)} (no writes)."""
        statuses = self._statuses(customer_ids)
        out: dict[str, tuple[TierStatus, TierStatus, list[TierChange]]] = {}
        for cid in customer_ids:
            held = statuses.get(cid, TierStatus())
            days = self._days([cid], self._history_start(programme, held), tz)[cid]
            status, changes = advance_tier(programme, held, days, today)
            out[cid] = (held, status, changes)
        return out

    def review(self, now: datetime, customer_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Apply upgrades and downgrades up to today to the given customers, or to every one with
        a sale received since the last review or a decision due; {"reviewed", "changed"}."""
        with self.db.guard("review tiers"), self.db.transaction():
            # One review at a time: the mark row's lock orders concurrent reviewers.
            through, cursor, started = self.db.execute(
                "SELECT through, cursor, pass_started FROM tier_reviews "
                f"WHERE id = 1{self.db.dialect.for_update}"
            ).fetchone()
            programme = self._programme()
            if programme is None:
                return {"reviewed": 0, "changed": 0}
            tz = self._zone()
            today = now.astimezone(tz).date()
            more = False
            if customer_ids is None:
                # A pass over everyone due goes in batches (the first pass after a programme is
                # defined covers every customer with a sale): the mark moves when it ends.
                due = [c for c in self._due(through, programme, today) if c > (cursor or "")]
                ids, more = due[: self.review_batch], len(due) > self.review_batch
            else:
                ids = self._known(sorted(set(customer_ids)))
            moved: list[str] = []
            for cid, (held, status, changes) in self._advance(programme, ids, today, tz).items():
                if self._write(cid, held, status, changes):
                    moved.append(cid)
            resend = set(moved)
            if customer_ids is None and through is not None and not more:
                resend.update(self._slid(programme, self.db.dt(through), today, tz))
            if resend:
                resent = sorted(resend)
                # Card rows carry the level and the window's counters: a new master version
                # sends them down again (and keeps the stores' replica checksums equal).
                version = self.versions.bump()
                for start in range(0, len(resent), _CHUNK):
                    chunk = resent[start : start + _CHUNK]
                    marks = ", ".join("?" for _ in chunk)
                    self.db.execute(
                        f"UPDATE cards SET version = ? WHERE customer_id IN ({marks})",
                        (version, *chunk),
                    )
            changed = len(moved)
            if customer_ids is None:
                begun = self.db.dt(started) if started is not None else now
                if more:
                    self.db.execute(
                        "UPDATE tier_reviews SET cursor = ?, pass_started = ? WHERE id = 1",
                        (ids[-1], self.db.ts(begun)),
                    )
                else:
                    # Sales received while the pass ran are looked at again by the next one.
                    self.db.execute(
                        "UPDATE tier_reviews SET through = ?, cursor = NULL, pass_started = NULL "
                        "WHERE id = 1",
                        (self.db.ts(begun),),
                    )
        return {"reviewed": len(ids), "changed": changed}

    def _slid(self, programme: TierProgramme, last: datetime, today: date, tz: tzinfo) -> set[str]:
        """Customers with a sale on a day that left the window since the last review: their
        card rows' window counters changed with the calendar alone."""
        old = programme.window_start(last.astimezone(tz).date())
        new = programme.window_start(today)
        if new <= old:
            return set()
        rows = self.db.execute(
            "SELECT DISTINCT c.customer_id FROM sales s JOIN cards c ON c.card_no = s.card_no "
            "WHERE s.closed_at >= ? AND s.closed_at < ?",
            (
                self.db.ts(datetime.combine(old, datetime.min.time(), tz)),
                self.db.ts(datetime.combine(new, datetime.min.time(), tz)),
            ),
        ).fetchall()
        return {str(r[0]) for r in rows}

    def _known(self, customer_ids: Sequence[str]) -> list[str]:
        """Those of the ids that name a customer (a review writes nothing for the others)."""
        known: list[str] = []
        for start in range(0, len(customer_ids), _CHUNK):
            chunk = list(customer_ids[start : start + _CHUNK])
            marks = ", ".join("?" for _ in chunk)
            known.extend(
                str(r[0])
                for r in self.db.execute(
                    f"SELECT customer_id FROM customers WHERE customer_id IN ({marks})", chunk
                ).fetchall()
            )
        return sorted(known)

    def _due(self, through: Any, programme: TierProgramme, today: date) -> list[str]:
        sql = "SELECT DISTINCT c.customer_id FROM sales s JOIN cards c ON c.card_no = s.card_no"
        params: list[Any] = []
        if through is not None:
            sql += " WHERE s.received_at >= ?"
            params.append(self.db.ts(self.db.dt(through) - _RECEIVED_SLACK))
        found = {str(r[0]) for r in self.db.execute(sql, params).fetchall()}
        # A decision falls on review_on + grace: due when review_on <= today - grace.
        decided = (today - timedelta(days=programme.grace_days)).isoformat()
        found.update(
            str(r[0])
            for r in self.db.execute(
                "SELECT customer_id FROM customer_tiers WHERE review_on <= ?", (decided,)
            ).fetchall()
        )
        return sorted(found)

    def _write(
        self, cid: str, held: TierStatus, status: TierStatus, changes: list[TierChange]
    ) -> int:
        self.db.execute(
            "INSERT INTO customer_tiers (customer_id, tier, since, review_on, as_of) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer_id) DO UPDATE SET tier = excluded.tier, "
            "since = excluded.since, review_on = excluded.review_on, as_of = excluded.as_of",
            (cid, status.tier, _text(status.since), _text(status.review_on), _text(status.as_of)),
        )
        if not changes:
            return 0
        (last,) = self.db.execute(
            "SELECT COALESCE(MAX(change_no), 0) FROM tier_changes WHERE customer_id = ?", (cid,)
        ).fetchone()
        self.db.executemany(
            "INSERT INTO tier_changes (customer_id, change_no, changed_on, from_tier, to_tier, "
            "reason) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (cid, int(last) + n, c.on.isoformat(), c.from_tier, c.to_tier, c.reason)
                for n, c in enumerate(changes, start=1)
            ],
        )
        return 1

    # -- the customer's view -------------------------------------------------------------------

    def customer_tier(self, customer_id: str, now: datetime) -> dict[str, Any] | None:
        """The customer's level today, the progress to the next one, until when it is kept and
        the history of changes (reviewed ones, then those today's review would add). None when
        no programme is defined."""
        with self.db.guard("read customer tier"), self.db.snapshot():
            programme = self._programme()
            if programme is None:
                return None
            tz = self._zone()
            today = now.astimezone(tz).date()
            _, status, pending = self._advance(programme, [customer_id], today, tz)[customer_id]
            days = self._days([customer_id], programme.window_start(today), tz)[customer_id]
            history = [
                {
                    "on": str(r[0]),
                    "from": str(r[1]),
                    "to": str(r[2]),
                    "reason": str(r[3]),
                }
                for r in self.db.execute(
                    "SELECT changed_on, from_tier, to_tier, reason FROM tier_changes "
                    "WHERE customer_id = ? ORDER BY change_no",
                    (customer_id,),
                ).fetchall()
            ]
        spend, visits = window_totals(programme, days, today)
        out = tier_progress(
            programme,
            status.tier,
            spend,
            visits,
            today,
            since=status.since,
            until=kept_until(programme, status),
        )
        history += [
            {"on": c.on.isoformat(), "from": c.from_tier, "to": c.to_tier, "reason": c.reason}
            for c in pending
        ]
        out["history"] = history
        return out
