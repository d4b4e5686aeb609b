"""The review queue: sales whose claimed loyalty the Center did not book as claimed.

A case is written in the ingest transaction of its sale (center/ingest/verify_store.py), once
per sale: `verify` when the Center booked its own movements (or doubts the sale for another
reason), `quarantine` when the sale's date put it out of the books. A loyalty manager approves
a case (the claimed movements are booked, as adjustments keyed by the case, so a retry books
nothing twice) or rejects it (the verified result stays); either way an audit row names them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from center.access.audit import AuditLog
from center.errors import Conflict, InvalidRequest, UnknownObject
from center.ingest.verify import Verification, movement_doc, wallet_deltas
from center.storage.database import Database
from center.storage.migrations import Migration
from sync_protocol import Sale

__all__ = [
    "CASE_KINDS",
    "CASE_STATES",
    "POSTGRES_MIGRATION",
    "SQLITE_MIGRATION",
    "Adjust",
    "ReviewRepository",
]

CASE_STATES = ("open", "approved", "rejected")
CASE_KINDS = ("verify", "quarantine")
MAX_LIST = 1000
MAX_NOTE_LEN = 500

Adjust = Callable[..., dict[str, Any]]
"""ReturnsRepository.adjust: a manual ledger movement, idempotent by key, audited."""


def _migration(ts: str, ident: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE review_cases (
            case_id {ident},
            sale_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            store_id TEXT NOT NULL,
            register_id TEXT NOT NULL,
            cashier TEXT NOT NULL,
            card_no TEXT,
            closed_at {ts} NOT NULL,
            claimed TEXT NOT NULL,
            verified TEXT NOT NULL,
            reason TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at {ts} NOT NULL,
            reviewed_by TEXT,
            reviewed_at {ts},
            note TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX review_cases_state ON review_cases (state, case_id)",
        "CREATE INDEX review_cases_store ON review_cases (store_id, case_id)",
    )


SQLITE_MIGRATION = Migration(
    "m027_sale_verification", _migration("TEXT", "INTEGER PRIMARY KEY AUTOINCREMENT")
)
"""The review queue of sales verified at ingest, on SQLite."""
POSTGRES_MIGRATION = Migration(
    "m027_sale_verification",
    _migration("TIMESTAMPTZ", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
)
"""The review queue of sales verified at ingest, on PostgreSQL."""

_COLUMNS = (
    "case_id, sale_id, kind, store_id, register_id, cashier, card_no, closed_at, claimed, "
    "verified, reason, state, created_at, reviewed_by, reviewed_at, note"
)
QUARANTINED_SQL = (
    "SELECT sale_id FROM review_cases WHERE kind = 'quarantine' AND state <> 'approved'"
)
"""The sales out of the books (and out of every customer state) until a person approves."""


class ReviewRepository:
    """Review cases over the Database: written by ingest, listed and decided by people."""

    def __init__(self, db: Database, *, audit: AuditLog, adjust: Adjust) -> None:
        self.db = db
        self.audit = audit
        self.adjust = adjust

    def record(self, cases: Sequence[tuple[Sale, Verification]], at: Any) -> None:
        """Open a case for each (sale, verdict), inside the caller's (ingest) transaction."""
        self.db.executemany(
            "INSERT INTO review_cases (sale_id, kind, store_id, register_id, cashier, card_no, "
            "closed_at, claimed, verified, reason, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?) ON CONFLICT DO NOTHING",
            [
                (
                    sale.sale_id,
                    "quarantine" if verdict.quarantined else "verify",
                    sale.store_id,
                    sale.register_id,
                    # Sales carry no cashier yet: the register answers for them.
                    sale.register_id,
                    sale.card_no,
                    self.db.ts(sale.closed_at),
                    json.dumps(movement_doc(verdict.claimed)),
                    json.dumps(movement_doc(verdict.verified)),
                    "; ".join(verdict.reasons),
                    at,
                )
                for sale, verdict in cases
            ],
        )

    def list_cases(
        self,
        *,
        state: str | None = None,
        store_id: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Cases matching every filter given, newest first (`before` = a case_id to page)."""
        if state is not None and state not in CASE_STATES:
            raise InvalidRequest(
                "state", f"expected one of {', '.join(CASE_STATES)}, got {state!r}"
            )
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("store_id", store_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("case_id < ?")
            params.append(before)
        sql = f"SELECT {_COLUMNS} FROM review_cases"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY case_id DESC LIMIT ?"
        params.append(max(1, min(limit, MAX_LIST)))
        with self.db.guard("list review cases"):
            rows = self.db.execute(sql, params).fetchall()
        return [self._case(r) for r in rows]

    def case(self, case_id: int) -> dict[str, Any]:
        """One case; UnknownObject naming `case_id` if there is none."""
        with self.db.guard("read review case"):
            row = self._row(case_id)
        return self._case(row)

    def _row(self, case_id: int) -> Sequence[Any]:
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM review_cases WHERE case_id = ?", (case_id,)
        ).fetchone()
        if row is None:
            raise UnknownObject("case_id", f"no review case {case_id}")
        return tuple(row)

    def _case(self, r: Sequence[Any]) -> dict[str, Any]:
        dt = self.db.dt
        claimed = json.loads(r[8])
        verified = json.loads(r[9])
        return {
            "case_id": int(r[0]),
            "sale_id": r[1],
            "kind": r[2],
            "store_id": r[3],
            "register_id": r[4],
            "cashier": r[5],
            "card_no": r[6],
            "closed_at": dt(r[7]).isoformat(),
            "claimed": claimed,
            "verified": verified,
            "difference": wallet_deltas(claimed, verified),
            "reason": r[10],
            "state": r[11],
            "created_at": dt(r[12]).isoformat(),
            "reviewed_by": r[13],
            "reviewed_at": None if r[14] is None else dt(r[14]).isoformat(),
            "note": r[15],
        }

    def decide(
        self, case_id: int, decision: str, note: str, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Approve (book the claimed movements: claimed minus verified, per wallet, as
        adjustments keyed by the case) or reject (keep the verified result) an open case."""
        if decision not in ("approved", "rejected"):
            raise InvalidRequest("decision", f"expected approved or rejected, got {decision!r}")
        if len(note) > MAX_NOTE_LEN:
            raise InvalidRequest("note", f"at most {MAX_NOTE_LEN} characters, got {len(note)}")
        with self.db.guard("decide review case"):
            before = self._case(self._row(case_id))
            if before["state"] != "open":
                if before["state"] == decision:
                    return {**before, "replayed": True}
                raise Conflict(
                    "case_id",
                    f"case {case_id} was already {before['state']} by {before['reviewed_by']}",
                )
            booked: dict[str, int] = {}
            if decision == "approved" and before["card_no"]:
                # Adjustments are idempotent by key: a retry after a failure books the rest.
                for wallet, units in before["difference"].items():
                    self.adjust(
                        before["card_no"],
                        wallet,
                        units,
                        f"review case {case_id} approved: sale {before['sale_id']} as claimed",
                        actor,
                        now,
                        idempotency_key=f"review:{case_id}:{wallet}",
                    )
                    booked[wallet] = units
            at = self.db.ts(now)
            with self.db.transaction():
                self.db.execute(
                    "UPDATE review_cases SET state = ?, reviewed_by = ?, reviewed_at = ?, "
                    "note = ? WHERE case_id = ? AND state = 'open'",
                    (decision, actor, at, note, case_id),
                )
                after = self._case(self._row(case_id))
                self.audit.record(
                    "review_case",
                    str(case_id),
                    "approve" if decision == "approved" else "reject",
                    {"state": before["state"]},
                    {"state": after["state"], "note": note, "booked": booked},
                    actor,
                    at,
                )
        return {**after, "booked": booked, "replayed": False}
