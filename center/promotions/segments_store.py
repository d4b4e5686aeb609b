"""Customer segments: static lists, dynamic rules, scheduled recalculation.

Membership of a dynamic segment is one SQL statement: one SELECT per rule part, joined with
INTERSECT, so the database does the work over the sales. A recalculation replaces the members
in one transaction, records the count, writes an audit row, and when anyone joined or left
bumps the master version and the version of their cards (card rows carry the segments).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from center.access.audit import AuditLog
from center.errors import Conflict, InvalidRequest, UnknownObject
from center.feed.versions import MasterVersions
from center.promotions.segments import MembersInput, Rule, SegmentInput, parse_rule
from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "SegmentRepository"]

MAX_HISTORY = 1000
MAX_MEMBERS_PAGE = 100_000
_IN_CHUNK = 500

_TABLES = (
    """CREATE TABLE segments (
            segment_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            rule TEXT,
            members {int} NOT NULL DEFAULT 0,
            created_by TEXT NOT NULL,
            created_at {ts} NOT NULL,
            updated_at {ts} NOT NULL,
            recalculated_at {ts}
        )""",
    """CREATE TABLE segment_members (
            segment_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            PRIMARY KEY (segment_id, customer_id)
        )""",
    """CREATE TABLE segment_counts (
            segment_id TEXT NOT NULL,
            at {ts} NOT NULL,
            members {int} NOT NULL,
            PRIMARY KEY (segment_id, at)
        )""",
)
_INDEXES = ("CREATE INDEX segment_members_customer ON segment_members (customer_id)",)

SQLITE_MIGRATION = Migration(
    "m010_segments", (*(t.format(int="INTEGER", ts="TEXT") for t in _TABLES), *_INDEXES)
)
"""Customer segments, on SQLite."""
POSTGRES_MIGRATION = Migration(
    "m010_segments",
    (
        *(t.format(int="BIGINT", ts="TIMESTAMPTZ") for t in _TABLES),
        *_INDEXES,
    ),
)
"""Customer segments, on PostgreSQL."""


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


class SegmentRepository:
    """Customer segments, their members and their recalculation."""

    def __init__(self, db: Database, *, audit: AuditLog, versions: MasterVersions) -> None:
        self.db = db
        self.audit = audit
        self.versions = versions

    # -- membership SQL ------------------------------------------------------------------------

    def _attribute_sql(self) -> str:
        return self.db.dialect.json_text("attributes")

    def _attribute_key(self, name: str) -> str:
        return self.db.dialect.json_key(name)

    def membership_query(self, rule: Rule, now: datetime) -> tuple[str, list[Any]]:
        """The statement selecting the customer_ids matching ``rule`` at ``now``."""
        parts: list[str] = []
        params: list[Any] = []
        # A card's receipts live with its customer (owner_id): a co-located join on a cluster.
        buyers = (
            "SELECT c.customer_id FROM sales s "
            "JOIN cards c ON c.card_no = s.card_no AND c.customer_id = s.owner_id"
        )

        def since(days: int) -> Any:
            return self.db.ts(now - timedelta(days=days))

        if rule.attributes:
            where = []
            for name, values in rule.attributes:
                where.append(f"{self._attribute_sql()} IN ({_marks(values)})")
                params.extend((self._attribute_key(name), *values))
            parts.append(f"SELECT customer_id FROM customers WHERE {' AND '.join(where)}")
        if rule.recency_days is not None:
            parts.append(f"{buyers} WHERE s.closed_at >= ?")
            params.append(since(rule.recency_days))
        if rule.frequency is not None:
            parts.append(
                f"{buyers} WHERE s.closed_at >= ? GROUP BY c.customer_id HAVING COUNT(*) >= ?"
            )
            params.extend((since(rule.frequency.days), rule.frequency.minimum))
        if rule.monetary is not None:
            having = []
            if rule.monetary.minimum is not None:
                having.append("SUM(s.total_minor) >= ?")
                params_m: list[Any] = [rule.monetary.minimum]
            else:
                params_m = []
            if rule.monetary.maximum is not None:
                having.append("SUM(s.total_minor) <= ?")
                params_m.append(rule.monetary.maximum)
            parts.append(
                f"{buyers} WHERE s.closed_at >= ? GROUP BY c.customer_id "
                f"HAVING {' AND '.join(having)}"
            )
            params.extend((since(rule.monetary.days), *params_m))
        if rule.categories is not None:
            values = rule.categories.values
            # EXISTS: only the window's receipts are probed, never every line (2x on SQLite).
            parts.append(
                f"{buyers} WHERE s.closed_at >= ? AND EXISTS (SELECT 1 FROM sale_lines l "
                "JOIN products p ON p.product_id = l.product_id "
                f"WHERE l.sale_id = s.sale_id AND p.category IN ({_marks(values)}))"
            )
            params.extend((since(rule.categories.days), *values))
        if rule.stores is not None:
            values = rule.stores.values
            parts.append(f"{buyers} WHERE s.closed_at >= ? AND s.store_id IN ({_marks(values)})")
            params.extend((since(rule.stores.days), *values))
        if rule.churn_risk is not None:
            # The churn model's latest scores (center/models); an unscored customer has no risk.
            bounds = [
                ("risk >= ?", rule.churn_risk.minimum),
                ("risk <= ?", rule.churn_risk.maximum),
            ]
            given = [(sql, value) for sql, value in bounds if value is not None]
            parts.append(
                "SELECT customer_id FROM churn_risk WHERE " + " AND ".join(s for s, _ in given)
            )
            params.extend(value for _, value in given)
        for column, values in (
            ("preferred_store", rule.preferred_store),
            ("segment", rule.model_segment),
        ):
            if values:
                # The preference model's latest results (center/models, m038_analytics_models).
                parts.append(
                    "SELECT customer_id FROM customer_preferences "
                    f"WHERE {column} IN ({_marks(values)})"
                )
                params.extend(values)
        return " INTERSECT ".join(parts), params

    # -- helpers -------------------------------------------------------------------------------

    def _segment_row(self, segment_id: str, *, lock: bool = False) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT segment_id, name, kind, rule, members, created_by, created_at, updated_at, "
            "recalculated_at FROM segments "
            f"WHERE segment_id = ?{self.db.dialect.for_update if lock else ''}",
            (segment_id,),
        ).fetchone()
        if row is None:
            return None
        return {
            "segment_id": row[0],
            "name": row[1],
            "kind": row[2],
            "rule": None if row[3] is None else json.loads(row[3]),
            "members": int(row[4]),
            "created_by": row[5],
            "created_at": self.db.dt(row[6]).isoformat(),
            "updated_at": self.db.dt(row[7]).isoformat(),
            "recalculated_at": None if row[8] is None else self.db.dt(row[8]).isoformat(),
        }

    def _existing_segment(self, segment_id: str) -> dict[str, Any]:
        found = self._segment_row(segment_id, lock=True)
        if found is None:
            raise UnknownObject("segment_id", f"unknown segment {segment_id!r}")
        return found

    def _resolve_customers(self, customer_ids: Sequence[str], card_nos: Sequence[str]) -> set[str]:
        """The customers named directly or by card; InvalidRequest naming the unknown ones."""
        found: set[str] = set()
        for part in _chunks(customer_ids):
            found.update(
                r[0]
                for r in self.db.execute(
                    f"SELECT customer_id FROM customers WHERE customer_id IN ({_marks(part)})",
                    part,
                ).fetchall()
            )
        unknown = [c for c in customer_ids if c not in found]
        if unknown:
            raise InvalidRequest(
                "body.customer_ids",
                f"{len(unknown)} unknown customer(s): {', '.join(unknown[:10])}; nothing changed",
            )
        owners: dict[str, str] = {}
        for part in _chunks(card_nos):
            for card_no, customer_id in self.db.execute(
                f"SELECT card_no, customer_id FROM cards WHERE card_no IN ({_marks(part)})", part
            ).fetchall():
                owners[card_no] = customer_id
        unknown = [c for c in card_nos if c not in owners]
        if unknown:
            raise InvalidRequest(
                "body.card_nos",
                f"{len(unknown)} unknown card(s): {', '.join(unknown[:10])}; nothing changed",
            )
        return found | set(owners.values())

    def _replace_members(
        self, segment: dict[str, Any], members: set[str], action: str, actor: str, at: Any
    ) -> dict[str, Any]:
        """Make ``members`` the segment's members; record count, audit, bump if changed."""
        segment_id = segment["segment_id"]
        old = {
            r[0]
            for r in self.db.execute(
                "SELECT customer_id FROM segment_members WHERE segment_id = ?", (segment_id,)
            ).fetchall()
        }
        added = sorted(members - old)
        removed = sorted(old - members)
        if removed:
            self.db.executemany(
                "DELETE FROM segment_members WHERE segment_id = ? AND customer_id = ?",
                [(segment_id, c) for c in removed],
            )
        if added:
            self.db.executemany(
                "INSERT INTO segment_members (segment_id, customer_id) VALUES (?, ?)",
                [(segment_id, c) for c in added],
            )
        if added or removed:
            # Card rows carry the segments: give the moved customers' cards the new version.
            version = self.versions.bump()
            moved = added + removed
            for part in _chunks(moved):
                self.db.execute(
                    f"UPDATE cards SET version = ? WHERE customer_id IN ({_marks(part)})",
                    (version, *part),
                )
        recalculated = at if segment["kind"] == "dynamic" else None
        self.db.execute(
            "UPDATE segments SET members = ?, updated_at = ?, "
            "recalculated_at = COALESCE(?, recalculated_at) WHERE segment_id = ?",
            (len(members), at, recalculated, segment_id),
        )
        self.db.execute(
            "INSERT INTO segment_counts (segment_id, at, members) VALUES (?, ?, ?) "
            "ON CONFLICT (segment_id, at) DO UPDATE SET members = excluded.members",
            (segment_id, at, len(members)),
        )
        summary = {"members": len(members), "added": len(added), "removed": len(removed)}
        self.audit.record(
            "segment",
            segment_id,
            action,
            {"members": len(old)},
            {**summary, "added_ids": added[:100], "removed_ids": removed[:100]},
            actor,
            at,
        )
        return {"segment_id": segment_id, **summary}

    # -- operations ----------------------------------------------------------------------------

    def create_segment(self, data: SegmentInput, actor: str, now: datetime) -> dict[str, Any]:
        """Create a segment with its first members (the upload, or the rule evaluated now)."""
        at = self.db.ts(now)
        segment_id = data.segment_id or f"seg-{uuid.uuid4().hex[:12]}"
        rule = None if data.rule is None else json.dumps(data.rule.to_doc(), sort_keys=True)
        with self.db.guard("create segment"), self.db.transaction():
            if self._segment_row(segment_id) is not None:
                raise Conflict("body.segment_id", f"segment {segment_id!r} already exists")
            members = (
                self._rule_members(data.rule, now)
                if data.rule is not None
                else self._resolve_customers(data.customer_ids, data.card_nos)
            )
            self.db.execute(
                "INSERT INTO segments (segment_id, name, kind, rule, members, created_by, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                (segment_id, data.name, data.kind, rule, actor, at, at),
            )
            segment = self._segment_row(segment_id)
            assert segment is not None
            self.audit.record("segment", segment_id, "create", None, segment, actor, at)
            self._replace_members(segment, members, "members", actor, at)
            view = self._segment_row(segment_id)
        assert view is not None
        return view

    def _rule_members(self, rule: Rule, now: datetime) -> set[str]:
        sql, params = self.membership_query(rule, now)
        return {r[0] for r in self.db.execute(sql, params).fetchall()}

    def list_segments(self) -> list[dict[str, Any]]:
        """Every segment, by id, with its current member count."""
        with self.db.guard("read segments"):
            ids = [
                r[0] for r in self.db.execute("SELECT segment_id FROM segments ORDER BY segment_id")
            ]
            found = [self._segment_row(i) for i in ids]
        return [s for s in found if s is not None]

    def segment(self, segment_id: str, *, history: int = 100) -> dict[str, Any] | None:
        """One segment with its member counts over time (newest last); None if unknown."""
        with self.db.guard("read segment"), self.db.snapshot():
            found = self._segment_row(segment_id)
            if found is None:
                return None
            rows = self.db.execute(
                "SELECT at, members FROM segment_counts WHERE segment_id = ? "
                "ORDER BY at DESC LIMIT ?",
                (segment_id, min(history, MAX_HISTORY)),
            ).fetchall()
        found["history"] = [
            {"at": self.db.dt(r[0]).isoformat(), "members": int(r[1])} for r in reversed(rows)
        ]
        return found

    def set_segment_members(
        self, segment_id: str, data: MembersInput, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Replace (or add to) the members of a static segment."""
        at = self.db.ts(now)
        with self.db.guard("set segment members"), self.db.transaction():
            segment = self._existing_segment(segment_id)
            if segment["kind"] != "static":
                raise Conflict(
                    "segment_id",
                    f"segment {segment_id} is dynamic: its rule decides the members",
                )
            members = self._resolve_customers(data.customer_ids, data.card_nos)
            if data.mode == "add":
                members |= {
                    r[0]
                    for r in self.db.execute(
                        "SELECT customer_id FROM segment_members WHERE segment_id = ?",
                        (segment_id,),
                    ).fetchall()
                }
            return self._replace_members(segment, members, "members", actor, at)

    def recalculate_segment(self, segment_id: str, actor: str, now: datetime) -> dict[str, Any]:
        """Evaluate a dynamic segment's rule now and replace its members; the change counts."""
        at = self.db.ts(now)
        started = time.monotonic()
        # Evaluated in a read snapshot: the write lock (which ingest waits for) is held only
        # while the members are replaced. A rule never changes, so the result stays valid.
        with self.db.guard("recalculate segment"), self.db.snapshot():
            segment = self._segment_row(segment_id)
            if segment is None:
                raise UnknownObject("segment_id", f"unknown segment {segment_id!r}")
            if segment["kind"] != "dynamic":
                raise Conflict(
                    "segment_id", f"segment {segment_id} is static: upload its members instead"
                )
            members = self._rule_members(parse_rule(segment["rule"]), now)
        with self.db.guard("recalculate segment"), self.db.transaction():
            segment = self._existing_segment(segment_id)
            done = self._replace_members(segment, members, "recalculate", actor, at)
        return {**done, "seconds": round(time.monotonic() - started, 3)}

    def recalculate_segments(self, actor: str, now: datetime) -> list[dict[str, Any]]:
        """Recalculate every dynamic segment, each in its own transaction."""
        with self.db.guard("list dynamic segments"):
            ids = [
                r[0]
                for r in self.db.execute(
                    "SELECT segment_id FROM segments WHERE kind = 'dynamic' ORDER BY segment_id"
                ).fetchall()
            ]
        return [self.recalculate_segment(i, actor, now) for i in ids]

    def segment_members(self, segment_id: str, *, limit: int = 1000) -> list[str] | None:
        """Up to ``limit`` member customer ids, in order; None if the segment is unknown."""
        with self.db.guard("read segment members"), self.db.snapshot():
            if self._segment_row(segment_id) is None:
                return None
            rows = self.db.execute(
                "SELECT customer_id FROM segment_members WHERE segment_id = ? "
                "ORDER BY customer_id LIMIT ?",
                (segment_id, min(limit, MAX_MEMBERS_PAGE)),
            ).fetchall()
        return [r[0] for r in rows]

    def customer_segments(self, customer_ids: Iterable[str]) -> dict[str, list[str]]:
        """The segment ids of each given customer (customers in none are left out)."""
        wanted = sorted(set(customer_ids))
        out: dict[str, list[str]] = {}
        with self.db.guard("read customer segments"):
            for part in _chunks(wanted):
                for customer_id, segment_id in self.db.execute(
                    "SELECT customer_id, segment_id FROM segment_members "
                    f"WHERE customer_id IN ({_marks(part)}) ORDER BY customer_id, segment_id",
                    part,
                ).fetchall():
                    out.setdefault(customer_id, []).append(segment_id)
        return out
