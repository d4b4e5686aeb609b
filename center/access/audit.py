"""The history of every object: who changed it, when, from what to what (one audit row per change,
written in the change's own transaction)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from center.errors import InvalidRequest
from center.storage.database import Database

__all__ = ["AUDIT_KINDS", "MAX_AUDIT", "AuditLog", "AuditQuery"]

AUDIT_KINDS = (
    "card",
    "customer",
    "promotion",
    "coupon_batch",
    "segment",
    "user",
    # the chain's master data (center/feed/master_store.py)
    "store",
    "product",
    "register",
    "master_list",
    "setting",
    "master_load",
    # fraud signals reviewed (center/fraud/store.py)
    "fraud_signal",
    "review_case",
    # gift certificates (center/certificates/store.py)
    "certificate_batch",
    "certificate",
    # supplier organisations, their campaigns and accounts (center/suppliers/)
    "supplier",
    # the member API: sign-in, reads and changes by the customer (center/members/)
    "member",
    # advertising blocks (center/advertising/store.py)
    "ad_block",
)
"""Kinds of object with a history."""
MAX_AUDIT = 1000
"""Most rows one history read returns."""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What the audit search looks for; every part is optional (empty = any)."""

    person: str = ""
    """A user name: changes made by them, through the API or any page ("<name> via <page>")."""
    action: str = ""
    kind: str = ""
    object_id: str = ""
    since: datetime | None = None
    until: datetime | None = None
    """Changes at or after `since` and before `until`."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class AuditLog:
    """The audit rows of every object kind, over the shared Database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(
        self, kind: str, object_id: str, action: str, before: Any, after: Any, actor: str, at: Any
    ) -> None:
        """Write one audit row inside the caller's transaction (`at` as the database stores it)."""
        self.db.execute(
            "INSERT INTO audit (kind, object_id, action, before, after, actor, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                object_id,
                action,
                None if before is None else _json(before),
                None if after is None else _json(after),
                actor,
                at,
            ),
        )

    def audit_history(self, kind: str, object_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The audit rows of one object, oldest first."""
        if kind not in AUDIT_KINDS:
            raise InvalidRequest("kind", f"expected one of {', '.join(AUDIT_KINDS)}, got {kind!r}")
        with self.db.guard("read audit"):
            rows = self.db.execute_planned(
                "SELECT audit_id, action, before, after, actor, at FROM audit "
                "WHERE kind = ? AND object_id = ? ORDER BY audit_id LIMIT ?",
                (kind, object_id, min(limit, MAX_AUDIT)),
            ).fetchall()
        return [
            {
                "audit_id": int(r[0]),
                "kind": kind,
                "id": object_id,
                "action": r[1],
                "before": None if r[2] is None else json.loads(r[2]),
                "after": None if r[3] is None else json.loads(r[3]),
                "actor": r[4],
                "at": self.db.dt(r[5]).isoformat(),
            }
            for r in rows
        ]

    def search(
        self, query: AuditQuery, *, before_id: int | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The newest matching rows before `before_id` and the cursor of the next page (None at
        the end): keyset pagination on audit_id, never a count or an offset over the table."""
        if query.kind and query.kind not in AUDIT_KINDS:
            raise InvalidRequest("kind", f"expected one of {', '.join(AUDIT_KINDS)}")
        where: list[str] = []
        params: list[Any] = []
        if before_id is not None:
            where.append("audit_id < ?")
            params.append(before_id)
        if query.person:
            # A person's changes carry "<name> via <page>"; the API's, the bare user name.
            prefix = query.person + " via "
            where.append(f"(actor = ? OR substr(actor, 1, {len(prefix)}) = ?)")
            params += [query.person, prefix]
        for column, value in (
            ("action", query.action),
            ("kind", query.kind),
            ("object_id", query.object_id),
        ):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            where.append("at >= ?")
            params.append(self.db.ts(query.since))
        if query.until is not None:
            where.append("at < ?")
            params.append(self.db.ts(query.until))
        size = max(1, min(limit, MAX_AUDIT))
        sql = (
            "SELECT audit_id, kind, object_id, action, before, after, actor, at FROM audit"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY audit_id DESC LIMIT ?"
        )
        with self.db.guard("search audit"):
            rows = self.db.execute_planned(sql, (*params, size + 1)).fetchall()
        found = [
            {
                "audit_id": int(r[0]),
                "kind": r[1],
                "id": r[2],
                "action": r[3],
                "before": None if r[4] is None else json.loads(r[4]),
                "after": None if r[5] is None else json.loads(r[5]),
                "actor": r[6],
                "at": self.db.dt(r[7]).isoformat(),
            }
            for r in rows[:size]
        ]
        return found, (found[-1]["audit_id"] if len(rows) > size else None)
