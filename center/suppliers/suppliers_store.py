"""The supplier cabinet's state (`storage.suppliers`): supplier organisations, the people bound
to them, their campaigns with the audience split (treated / control) at launch, and each
supplier's account, an append-only ledger of integer minor units whose balance is its sum.

Every change writes its audit row (kind "supplier", object the supplier id) in its transaction.
Every read a supplier makes is scoped by its supplier id: another supplier's campaign is
"unknown", never someone else's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from center.access.audit import AuditLog
from center.errors import Conflict, InvalidRequest, UnknownObject
from center.promotions.segments_store import SegmentRepository
from center.storage.database import Database
from center.storage.migrations import Migration
from center.suppliers.model import (
    AccountEntry,
    Audience,
    CampaignInput,
    account_balances,
    parse_campaign,
)

__all__ = [
    "POSTGRES_MIGRATION",
    "SQLITE_MIGRATION",
    "SupplierRepository",
]

_IN_CHUNK = 500


def _steps(ts: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE suppliers (
        supplier_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at {ts} NOT NULL
    )""",
        """CREATE TABLE supplier_people (
        username TEXT PRIMARY KEY,
        supplier_id TEXT NOT NULL
    )""",
        f"""CREATE TABLE supplier_campaigns (
        campaign_id TEXT PRIMARY KEY,
        supplier_id TEXT NOT NULL,
        doc TEXT NOT NULL,
        state TEXT NOT NULL,
        estimate_minor BIGINT,
        estimate TEXT,
        budget_minor BIGINT,
        promotion_id TEXT,
        segment_id TEXT,
        created_by TEXT NOT NULL,
        created_at {ts} NOT NULL,
        updated_at {ts} NOT NULL,
        launched_at {ts}
    )""",
        "CREATE INDEX supplier_campaigns_supplier ON supplier_campaigns (supplier_id)",
        """CREATE TABLE supplier_campaign_members (
        campaign_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        grp TEXT NOT NULL,
        PRIMARY KEY (campaign_id, customer_id)
    )""",
        f"""CREATE TABLE supplier_account (
        supplier_id TEXT NOT NULL,
        entry_no BIGINT NOT NULL,
        kind TEXT NOT NULL,
        available_minor BIGINT NOT NULL,
        reserved_minor BIGINT NOT NULL,
        campaign_id TEXT NOT NULL,
        note TEXT NOT NULL,
        actor TEXT NOT NULL,
        at {ts} NOT NULL,
        PRIMARY KEY (supplier_id, entry_no)
    )""",
    )


SQLITE_MIGRATION = Migration("m035_supplier_cabinet", _steps("TEXT"))
"""Suppliers, their people, campaigns, audience splits and accounts, on SQLite."""
POSTGRES_MIGRATION = Migration("m035_supplier_cabinet", _steps("TIMESTAMPTZ"))
"""The same on PostgreSQL."""


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


class SupplierRepository:
    """Suppliers, their people, campaigns and accounts over the shared Database."""

    def __init__(self, db: Database, *, audit: AuditLog, segments: SegmentRepository) -> None:
        self.db = db
        self.audit = audit
        self.segments = segments

    # -- organisations and people --------------------------------------------------------------

    def create_supplier(
        self, supplier_id: str, name: str, actor: str, now: datetime
    ) -> dict[str, Any]:
        """A new supplier organisation (Conflict when the id exists); audited."""
        at = self.db.ts(now)
        with self.db.guard("create supplier"), self.db.transaction():
            if self._supplier_row(supplier_id) is not None:
                raise Conflict("body.supplier_id", f"supplier {supplier_id!r} already exists")
            self.db.execute(
                "INSERT INTO suppliers (supplier_id, name, created_by, created_at) "
                "VALUES (?, ?, ?, ?)",
                (supplier_id, name, actor, at),
            )
            self.audit.record("supplier", supplier_id, "create", None, {"name": name}, actor, at)
        return {"supplier_id": supplier_id, "name": name}

    def _supplier_row(self, supplier_id: str, *, lock: bool = False) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT supplier_id, name FROM suppliers WHERE supplier_id = ?"
            + (self.db.dialect.for_update if lock else ""),
            (supplier_id,),
        ).fetchone()
        return None if row is None else {"supplier_id": row[0], "name": row[1]}

    def supplier(self, supplier_id: str) -> dict[str, Any] | None:
        """The supplier's id and name, or None."""
        with self.db.guard("read supplier"):
            return self._supplier_row(supplier_id)

    def list_suppliers(self) -> list[dict[str, Any]]:
        """Every supplier with its account's balances, by id."""
        with self.db.guard("read suppliers"), self.db.snapshot():
            rows = self.db.execute(
                "SELECT supplier_id, name FROM suppliers ORDER BY supplier_id"
            ).fetchall()
            return [
                {"supplier_id": r[0], "name": r[1], **account_balances(self._entries(r[0]))}
                for r in rows
            ]

    def bind_person(self, username: str, supplier_id: str, actor: str, now: datetime) -> None:
        """Bind a person to one supplier (Conflict when bound already); audited."""
        at = self.db.ts(now)
        with self.db.guard("bind supplier person"), self.db.transaction():
            if self._supplier_row(supplier_id) is None:
                raise UnknownObject("supplier_id", f"unknown supplier {supplier_id!r}")
            bound = self.db.execute(
                "SELECT supplier_id FROM supplier_people WHERE username = ?", (username,)
            ).fetchone()
            if bound is not None:
                raise Conflict("body.username", f"{username!r} is bound to supplier {bound[0]!r}")
            self.db.execute(
                "INSERT INTO supplier_people (username, supplier_id) VALUES (?, ?)",
                (username, supplier_id),
            )
            self.audit.record(
                "supplier", supplier_id, "bind_person", None, {"username": username}, actor, at
            )

    def supplier_of(self, username: str) -> str | None:
        """The supplier a person acts for, or None (not a supplier's person)."""
        with self.db.guard("read supplier person"):
            row = self.db.execute(
                "SELECT supplier_id FROM supplier_people WHERE username = ?", (username,)
            ).fetchone()
        return None if row is None else str(row[0])

    def record_action(
        self, supplier_id: str, action: str, detail: Any, actor: str, now: datetime
    ) -> None:
        """Audit a supplier's read of aggregates (audience sizes, reports)."""
        with self.db.guard("audit supplier action"), self.db.transaction():
            self.audit.record("supplier", supplier_id, action, None, detail, actor, self.db.ts(now))

    # -- audiences -----------------------------------------------------------------------------

    def audience_query(self, audience: Audience, now: datetime) -> tuple[str, list[Any]]:
        """The statement selecting the customer_ids of an audience at `now` (card holders)."""
        parts = ["SELECT customer_id FROM cards"]
        params: list[Any] = []
        rule = audience.segment_rule()
        if rule is not None:
            sql, rule_params = self.segments.membership_query(rule, now)
            parts.append(sql)
            params.extend(rule_params)
        since = self.db.ts(now - timedelta(days=audience.window_days))
        buyers = (
            "SELECT c.customer_id FROM sales s "
            "JOIN cards c ON c.card_no = s.card_no AND c.customer_id = s.owner_id"
        )
        low, high = audience.min_avg_receipt_minor, audience.max_avg_receipt_minor
        if low is not None or high is not None:
            having = []
            bounds: list[Any] = []
            # Integer arithmetic (a sum against a bound times the count), never a float average.
            if low is not None:
                having.append("SUM(s.total_minor) >= ? * COUNT(*)")
                bounds.append(low)
            if high is not None:
                having.append("SUM(s.total_minor) <= ? * COUNT(*)")
                bounds.append(high)
            parts.append(
                f"{buyers} WHERE s.closed_at >= ? GROUP BY c.customer_id "
                f"HAVING {' AND '.join(having)}"
            )
            params.extend((since, *bounds))
        if audience.brands:
            parts.append(
                f"{buyers} WHERE s.closed_at >= ? AND EXISTS (SELECT 1 FROM sale_lines l "
                "JOIN products p ON p.product_id = l.product_id "
                f"WHERE l.sale_id = s.sale_id AND p.brand IN ({_marks(audience.brands)}))"
            )
            params.extend((since, *audience.brands))
        if audience.segments:
            parts.append(
                "SELECT customer_id FROM segment_members "
                f"WHERE segment_id IN ({_marks(audience.segments)})"
            )
            params.extend(audience.segments)
        return " INTERSECT ".join(parts), params

    def audience_size(self, audience: Audience, now: datetime) -> int:
        """How many customers the audience holds at `now`."""
        sql, params = self.audience_query(audience, now)
        with self.db.guard("count audience"):
            row = self.db.execute(f"SELECT COUNT(*) FROM ({sql}) a", params).fetchone()
        return int(row[0])

    def audience_members(self, audience: Audience, now: datetime) -> list[str]:
        """The customer_ids of the audience at `now`, sorted."""
        sql, params = self.audience_query(audience, now)
        with self.db.guard("read audience"):
            return sorted(str(r[0]) for r in self.db.execute(sql, params).fetchall())

    def cards_of(self, customer_ids: Sequence[str]) -> dict[str, str]:
        """card_no -> customer_id of the given customers' cards."""
        found: dict[str, str] = {}
        with self.db.guard("read cards"):
            for part in _chunks(list(customer_ids)):
                for card_no, customer_id in self.db.execute(
                    f"SELECT card_no, customer_id FROM cards WHERE customer_id IN ({_marks(part)})",
                    part,
                ).fetchall():
                    found[str(card_no)] = str(customer_id)
        return found

    # -- campaigns -----------------------------------------------------------------------------

    def create_campaign(
        self, supplier_id: str, campaign: CampaignInput, actor: str, now: datetime
    ) -> dict[str, Any]:
        """A new draft campaign of the supplier; audited."""
        at = self.db.ts(now)
        campaign_id = f"c{uuid.uuid4().hex[:12]}"
        doc = campaign.to_doc()
        with self.db.guard("create campaign"), self.db.transaction():
            if self._supplier_row(supplier_id) is None:
                raise UnknownObject("supplier_id", f"unknown supplier {supplier_id!r}")
            self.db.execute(
                "INSERT INTO supplier_campaigns (campaign_id, supplier_id, doc, state, created_by, "
                "created_at, updated_at) VALUES (?, ?, ?, 'draft', ?, ?, ?)",
                (campaign_id, supplier_id, json.dumps(doc, sort_keys=True), actor, at, at),
            )
            self.audit.record(
                "supplier",
                supplier_id,
                "create_campaign",
                None,
                {"campaign_id": campaign_id, **doc},
                actor,
                at,
            )
            view = self._campaign_row(supplier_id, campaign_id)
        assert view is not None
        return view

    _COLUMNS = (
        "campaign_id, supplier_id, doc, state, estimate_minor, estimate, budget_minor, "
        "promotion_id, segment_id, created_by, created_at, updated_at, launched_at"
    )

    def _view(self, row: Sequence[Any]) -> dict[str, Any]:
        return {
            "campaign_id": row[0],
            "supplier_id": row[1],
            **json.loads(row[2]),
            "state": row[3],
            "estimate_minor": None if row[4] is None else int(row[4]),
            "estimate": None if row[5] is None else json.loads(row[5]),
            "budget_minor": None if row[6] is None else int(row[6]),
            "promotion_id": row[7],
            "segment_id": row[8],
            "created_by": row[9],
            "created_at": self.db.dt(row[10]).isoformat(),
            "updated_at": self.db.dt(row[11]).isoformat(),
            "launched_at": None if row[12] is None else self.db.dt(row[12]).isoformat(),
        }

    def _campaign_row(
        self, supplier_id: str, campaign_id: str, *, lock: bool = False
    ) -> dict[str, Any] | None:
        row = self.db.execute(
            f"SELECT {self._COLUMNS} FROM supplier_campaigns "
            "WHERE campaign_id = ? AND supplier_id = ?"
            + (self.db.dialect.for_update if lock else ""),
            (campaign_id, supplier_id),
        ).fetchone()
        return None if row is None else self._view(row)

    def campaign(self, supplier_id: str, campaign_id: str) -> dict[str, Any] | None:
        """The supplier's campaign, or None (unknown, or another supplier's)."""
        with self.db.guard("read campaign"):
            return self._campaign_row(supplier_id, campaign_id)

    def campaigns(self, supplier_id: str) -> list[dict[str, Any]]:
        """The supplier's campaigns, newest first."""
        with self.db.guard("read campaigns"):
            rows = self.db.execute(
                f"SELECT {self._COLUMNS} FROM supplier_campaigns WHERE supplier_id = ? "
                "ORDER BY created_at DESC, campaign_id",
                (supplier_id,),
            ).fetchall()
        return [self._view(r) for r in rows]

    def live_campaigns(self) -> list[dict[str, Any]]:
        """Every live campaign of every supplier (the spend follower's work list)."""
        with self.db.guard("read live campaigns"):
            rows = self.db.execute(
                f"SELECT {self._COLUMNS} FROM supplier_campaigns WHERE state = 'live' "
                "ORDER BY campaign_id"
            ).fetchall()
        return [self._view(r) for r in rows]

    def set_estimate(
        self,
        supplier_id: str,
        campaign_id: str,
        estimate_minor: int,
        detail: dict[str, Any],
        actor: str,
        now: datetime,
    ) -> dict[str, Any]:
        """Keep a draft's budget estimate; audited."""
        at = self.db.ts(now)
        with self.db.guard("keep estimate"), self.db.transaction():
            found = self._campaign_row(supplier_id, campaign_id, lock=True)
            if found is None:
                raise UnknownObject("campaign_id", f"unknown campaign {campaign_id!r}")
            if found["state"] != "draft":
                raise Conflict("campaign_id", f"campaign {campaign_id!r} is {found['state']}")
            self.db.execute(
                "UPDATE supplier_campaigns SET estimate_minor = ?, estimate = ?, updated_at = ? "
                "WHERE campaign_id = ?",
                (estimate_minor, json.dumps(detail, sort_keys=True), at, campaign_id),
            )
            self.audit.record(
                "supplier",
                supplier_id,
                "estimate",
                {"campaign_id": campaign_id, "estimate_minor": found["estimate_minor"]},
                {"campaign_id": campaign_id, "estimate_minor": estimate_minor},
                actor,
                at,
            )
            view = self._campaign_row(supplier_id, campaign_id)
        assert view is not None
        return view

    def campaign_input(self, view: dict[str, Any]) -> CampaignInput:
        """A stored campaign's parameters, parsed again (they were valid when stored)."""
        doc = {
            k: view[k]
            for k in (
                "name",
                "product_ids",
                "brands",
                "percent",
                "date_from",
                "date_to",
                "audience",
                "control_percent",
            )
        }
        return parse_campaign(doc, today=datetime.fromisoformat(view["created_at"]).date())

    # -- the account ---------------------------------------------------------------------------

    def _entries(self, supplier_id: str) -> list[AccountEntry]:
        rows = self.db.execute(
            "SELECT kind, available_minor, reserved_minor, campaign_id FROM supplier_account "
            "WHERE supplier_id = ? ORDER BY entry_no",
            (supplier_id,),
        ).fetchall()
        return [AccountEntry(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]

    def _append(
        self,
        supplier_id: str,
        kind: str,
        available: int,
        reserved: int,
        campaign_id: str,
        note: str,
        actor: str,
        at: Any,
    ) -> int:
        """Append one entry (the supplier's row is locked by the caller); its number."""
        row = self.db.execute(
            "SELECT COALESCE(MAX(entry_no), 0) FROM supplier_account WHERE supplier_id = ?",
            (supplier_id,),
        ).fetchone()
        entry_no = int(row[0]) + 1
        self.db.execute(
            "INSERT INTO supplier_account (supplier_id, entry_no, kind, available_minor, "
            "reserved_minor, campaign_id, note, actor, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (supplier_id, entry_no, kind, available, reserved, campaign_id, note, actor, at),
        )
        self.audit.record(
            "supplier",
            supplier_id,
            f"account_{kind}",
            None,
            {
                "entry_no": entry_no,
                "available_minor": available,
                "reserved_minor": reserved,
                "campaign_id": campaign_id,
                "note": note,
            },
            actor,
            at,
        )
        return entry_no

    def account(self, supplier_id: str, *, limit: int = 200) -> dict[str, Any] | None:
        """The supplier's balances and its latest entries (newest first), or None."""
        with self.db.guard("read account"), self.db.snapshot():
            if self._supplier_row(supplier_id) is None:
                return None
            balances = account_balances(self._entries(supplier_id))
            rows = self.db.execute(
                "SELECT entry_no, kind, available_minor, reserved_minor, campaign_id, note, "
                "actor, at FROM supplier_account WHERE supplier_id = ? "
                "ORDER BY entry_no DESC LIMIT ?",
                (supplier_id, limit),
            ).fetchall()
        entries = [
            {
                "entry_no": int(r[0]),
                "kind": r[1],
                "available_minor": int(r[2]),
                "reserved_minor": int(r[3]),
                "campaign_id": r[4],
                "note": r[5],
                "actor": r[6],
                "at": self.db.dt(r[7]).isoformat(),
            }
            for r in rows
        ]
        return {"supplier_id": supplier_id, **balances, "entries": entries}

    def charged(self, supplier_id: str, campaign_id: str) -> int:
        """What the supplier's account was charged for a campaign (its spend entries)."""
        with self.db.guard("read campaign charges"):
            row = self.db.execute(
                "SELECT COALESCE(SUM(reserved_minor), 0) FROM supplier_account "
                "WHERE supplier_id = ? AND campaign_id = ? AND kind = 'spend'",
                (supplier_id, campaign_id),
            ).fetchone()
        return -int(row[0])

    def top_up(
        self, supplier_id: str, amount_minor: int, note: str, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Money in, entered by the chain's person; the balances after it."""
        at = self.db.ts(now)
        with self.db.guard("top up supplier account"), self.db.transaction():
            if self._supplier_row(supplier_id, lock=True) is None:
                raise UnknownObject("supplier_id", f"unknown supplier {supplier_id!r}")
            self._append(supplier_id, "top_up", amount_minor, 0, "", note, actor, at)
            return account_balances(self._entries(supplier_id))

    def reserve(
        self, supplier_id: str, campaign_id: str, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Start a launch: the draft's estimate becomes its budget, held from the account
        (Conflict naming the shortfall when the account does not cover it); state launching."""
        at = self.db.ts(now)
        with self.db.guard("reserve campaign budget"), self.db.transaction():
            if self._supplier_row(supplier_id, lock=True) is None:
                raise UnknownObject("supplier_id", f"unknown supplier {supplier_id!r}")
            found = self._campaign_row(supplier_id, campaign_id, lock=True)
            if found is None:
                raise UnknownObject("campaign_id", f"unknown campaign {campaign_id!r}")
            if found["state"] != "draft":
                raise Conflict("campaign_id", f"campaign {campaign_id!r} is {found['state']}")
            budget = found["estimate_minor"]
            if budget is None:
                raise Conflict("estimate", "estimate the budget before launching")
            if budget <= 0:
                raise Conflict(
                    "estimate",
                    "the estimate is 0: the audience bought none of these goods in the history "
                    "priced; widen the audience or the goods",
                )
            available = account_balances(self._entries(supplier_id))["available_minor"]
            if available < budget:
                raise Conflict(
                    "budget",
                    f"the account holds {available} minor units, the budget needs {budget}: "
                    f"ask the chain to top it up by {budget - available}",
                )
            self._append(supplier_id, "reserve", -budget, budget, campaign_id, "launch", actor, at)
            self.db.execute(
                "UPDATE supplier_campaigns SET state = 'launching', budget_minor = ?, "
                "updated_at = ? WHERE campaign_id = ?",
                (budget, at, campaign_id),
            )
            view = self._campaign_row(supplier_id, campaign_id)
        assert view is not None
        return view

    def abort_launch(self, supplier_id: str, campaign_id: str, actor: str, now: datetime) -> None:
        """Undo a launch that failed after its reserve: the money back, the draft again."""
        at = self.db.ts(now)
        with self.db.guard("abort launch"), self.db.transaction():
            self._supplier_row(supplier_id, lock=True)
            found = self._campaign_row(supplier_id, campaign_id, lock=True)
            if found is None or found["state"] != "launching":
                return
            budget = int(found["budget_minor"] or 0)
            self._append(
                supplier_id, "release", budget, -budget, campaign_id, "launch failed", actor, at
            )
            self.db.execute(
                "UPDATE supplier_campaigns SET state = 'draft', budget_minor = NULL, "
                "updated_at = ? WHERE campaign_id = ?",
                (at, campaign_id),
            )

    def finish_launch(
        self,
        supplier_id: str,
        campaign_id: str,
        promotion_id: str,
        segment_id: str,
        treated: Sequence[str],
        control: Sequence[str],
        actor: str,
        now: datetime,
    ) -> dict[str, Any]:
        """The launched campaign: its promotion, segment and audience split kept; live."""
        at = self.db.ts(now)
        with self.db.guard("finish launch"), self.db.transaction():
            found = self._campaign_row(supplier_id, campaign_id, lock=True)
            if found is None or found["state"] != "launching":
                raise Conflict("campaign_id", f"campaign {campaign_id!r} is not launching")
            self.db.executemany(
                "INSERT INTO supplier_campaign_members (campaign_id, customer_id, grp) "
                "VALUES (?, ?, ?)",
                [(campaign_id, c, "T") for c in treated] + [(campaign_id, c, "X") for c in control],
            )
            self.db.execute(
                "UPDATE supplier_campaigns SET state = 'live', promotion_id = ?, segment_id = ?, "
                "launched_at = ?, updated_at = ? WHERE campaign_id = ?",
                (promotion_id, segment_id, at, at, campaign_id),
            )
            self.audit.record(
                "supplier",
                supplier_id,
                "launch",
                None,
                {
                    "campaign_id": campaign_id,
                    "promotion_id": promotion_id,
                    "budget_minor": found["budget_minor"],
                    "treated": len(treated),
                    "control": len(control),
                },
                actor,
                at,
            )
            view = self._campaign_row(supplier_id, campaign_id)
        assert view is not None
        return view

    def members(self, campaign_id: str) -> dict[str, str]:
        """customer_id -> group ("T" treated, "X" control) of a launched campaign."""
        with self.db.guard("read campaign members"):
            rows = self.db.execute(
                "SELECT customer_id, grp FROM supplier_campaign_members WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def follow_spend(
        self, supplier_id: str, campaign_id: str, spent_minor: int, ended: bool, now: datetime
    ) -> dict[str, Any]:
        """Book what the campaign spent since the last time (a `spend` entry for the
        difference), and when it `ended` (its period is over or its budget spent) give back
        what it left (`release`) and finish it. The balances after it."""
        at = self.db.ts(now)
        with self.db.guard("follow campaign spend"), self.db.transaction():
            if self._supplier_row(supplier_id, lock=True) is None:
                raise UnknownObject("supplier_id", f"unknown supplier {supplier_id!r}")
            found = self._campaign_row(supplier_id, campaign_id, lock=True)
            if found is None:
                raise UnknownObject("campaign_id", f"unknown campaign {campaign_id!r}")
            if found["state"] != "live":
                return account_balances(self._entries(supplier_id))
            entries = [e for e in self._entries(supplier_id) if e.campaign_id == campaign_id]
            booked = -sum(e.reserved_minor for e in entries if e.kind == "spend")
            if spent_minor < 0:
                raise InvalidRequest("spent_minor", f"expected >= 0, got {spent_minor}")
            # The supplier pays at most its budget: anything the stores gave beyond it (the
            # bound the budget leases allow offline) is the chain's, shown on the report.
            spent_minor = min(spent_minor, int(found["budget_minor"] or 0))
            if spent_minor != booked:
                # A return can give back what a sale spent: the entry is then negative.
                self._append(
                    supplier_id,
                    "spend",
                    0,
                    booked - spent_minor,
                    campaign_id,
                    "booked sales of the promotion",
                    "center",
                    at,
                )
            if ended:
                held = sum(
                    e.reserved_minor
                    for e in self._entries(supplier_id)
                    if e.campaign_id == campaign_id
                )
                if held:
                    self._append(
                        supplier_id,
                        "release",
                        held,
                        -held,
                        campaign_id,
                        "campaign ended",
                        "center",
                        at,
                    )
                self.db.execute(
                    "UPDATE supplier_campaigns SET state = 'finished', updated_at = ? "
                    "WHERE campaign_id = ?",
                    (at, campaign_id),
                )
                self.audit.record(
                    "supplier",
                    supplier_id,
                    "finish",
                    None,
                    {"campaign_id": campaign_id, "spent_minor": spent_minor, "released": held},
                    "center",
                    at,
                )
            return account_balances(self._entries(supplier_id))
