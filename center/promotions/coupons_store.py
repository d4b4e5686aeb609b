"""Coupon batches, issue, export and chain-wide single-use redemption.

Codes are generated in chunks inside one transaction (a batch exists whole or not at all).
Ingest records every redeemed code of a known batch once per sale; a single-use code redeemed
by two different sales (two stores offline at once) keeps both sales and shows in the
double-redemption report.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from center.access.audit import AuditLog
from center.errors import Conflict, InvalidRequest, UnknownObject
from center.feed.versions import MasterVersions
from center.promotions.coupons import (
    BatchRequest,
    IssueRequest,
    generate_codes,
    generate_signed_codes,
    normalise_code,
)
from center.promotions.coupons_holds import default_offline
from center.promotions.coupons_holds_store import CouponHoldRepository
from center.storage.database import Database
from center.storage.migrations import Migration
from center.storage.owners import sale_owner
from sync_protocol import Sale

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "CouponRepository"]

GENERATE_CHUNK = 50_000
"""Codes inserted per statement."""
_IN_CHUNK = 500
MAX_DOUBLE_REPORT = 1000
# The coupon's customer: the one it was issued to, else the owner of the card that got it.
_CUSTOMER = (
    "COALESCE(c.customer_id, (SELECT k.customer_id FROM cards k WHERE k.card_no = "
    "c.issued_card_no))"
)

_TABLES = (
    """CREATE TABLE coupon_batches (
            batch_id TEXT PRIMARY KEY,
            promotion_id TEXT NOT NULL,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            count {int} NOT NULL,
            single_use {int} NOT NULL,
            signed {int} NOT NULL DEFAULT 0,
            valid_from TEXT,
            valid_to TEXT,
            created_by TEXT NOT NULL,
            at {ts} NOT NULL
        )""",
    """CREATE TABLE coupons (
            code TEXT PRIMARY KEY,
            batch_id TEXT NOT NULL,
            customer_id TEXT,
            status TEXT NOT NULL,
            issued_at {ts},
            redeemed_sale_id TEXT,
            redeemed_at {ts},
            store_id TEXT,
            redemptions {int} NOT NULL DEFAULT 0
        )""",
    """CREATE TABLE coupon_redemptions (
            code TEXT NOT NULL,
            sale_id TEXT NOT NULL,
            store_id TEXT NOT NULL,
            at {ts} NOT NULL,
            PRIMARY KEY (code, sale_id)
        )""",
)
_INDEXES = (
    "CREATE INDEX coupons_batch ON coupons (batch_id, code)",
    "CREATE INDEX coupons_batch_customer ON coupons (batch_id, customer_id)",
    "CREATE INDEX coupons_double ON coupons (redemptions) WHERE redemptions > 1",
)

SQLITE_MIGRATION = Migration(
    "m009_coupons",
    (
        *(t.format(int="INTEGER", ts="TEXT") for t in _TABLES),
        *_INDEXES,
    ),
)
"""Coupon batches, codes and redemptions, on SQLite."""
POSTGRES_MIGRATION = Migration(
    "m009_coupons",
    (
        *(t.format(int="BIGINT", ts="TIMESTAMPTZ") for t in _TABLES),
        *_INDEXES,
    ),
)
"""Coupon batches, codes and redemptions, on PostgreSQL."""


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class CouponRepository:
    """Coupon batches, their codes and redemptions, over the shared Database."""

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog,
        versions: MasterVersions,
        holds: CouponHoldRepository | None = None,
    ) -> None:
        self.db = db
        self.audit = audit
        self.versions = versions
        self.holds = holds if holds is not None else CouponHoldRepository(db, audit=audit)

    def require_promotion(self, promotion_id: str) -> None:
        """A batch belongs to a published or drafted promotion; 404 naming the field if not."""
        known = self.db.execute(
            "SELECT 1 FROM promotions WHERE promotion_id = ? "
            "UNION ALL SELECT 1 FROM promotion_drafts WHERE promotion_id = ?",
            (promotion_id, promotion_id),
        ).fetchone()
        if known is None:
            raise UnknownObject(
                "body.promotion_id", f"unknown promotion {promotion_id!r}; create it first"
            )

    def insert_batch(self, batch_id: str, request: BatchRequest, actor: str, at: Any) -> None:
        """The batch's row; its codes follow (issuable once this row is committed)."""
        self.db.execute(
            "INSERT INTO coupon_batches (batch_id, promotion_id, name, prefix, count, "
            "single_use, signed, valid_from, valid_to, created_by, at, origin, offline) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'head_office', ?)",
            (
                batch_id,
                request.promotion_id,
                request.name,
                request.prefix,
                request.count,
                int(request.single_use),
                int(request.signed),
                None if request.valid_from is None else request.valid_from.isoformat(),
                None if request.valid_to is None else request.valid_to.isoformat(),
                actor,
                at,
                request.offline or default_offline(origin="head_office", signed=request.signed),
            ),
        )

    # -- batches -------------------------------------------------------------------------------

    def create_coupon_batch(
        self, request: BatchRequest, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Generate ``request.count`` new unique codes as one batch; its view."""
        batch_id = f"cb-{uuid.uuid4().hex[:16]}"
        at = self.db.ts(now)
        with self.db.guard("create coupon batch"), self.db.transaction():
            self.require_promotion(request.promotion_id)
            generate = self.code_maker(request)
            self.insert_batch(batch_id, request, actor, at)
            # Sorted, the codes go into the indexes in order: random order costs a page
            # write per code once the index outgrows the cache (41 s instead of ~8 s for 1M).
            codes = sorted(generate(request.count))
            made = 0
            for start in range(0, len(codes), GENERATE_CHUNK):
                made += self.insert_codes(batch_id, codes[start : start + GENERATE_CHUNK])
            del codes
            while made < request.count:  # a clash with an older batch's code: draw again
                made += self.insert_codes(batch_id, generate(request.count - made))
            view = self.batch_view(batch_id)
            assert view is not None
            after = {k: v for k, v in view.items() if k != "counts"}
            self.audit.record("coupon_batch", batch_id, "create", None, after, actor, at)
        return view

    def code_maker(self, request: BatchRequest) -> Callable[[int], list[str]]:
        """How this batch's codes are made: random, or signed with the chain's coupon_key."""
        if not request.signed:
            return lambda count: generate_codes(request.prefix, count)
        row = self.db.execute("SELECT value FROM settings WHERE name = 'coupon_key'").fetchone()
        if row is None or not row[0]:
            raise Conflict(
                "body.signed",
                "the chain settings have no coupon_key to sign codes with; set it first",
            )
        key = str(row[0])
        return lambda count: generate_signed_codes(key, request.prefix, count, request.valid_to)

    def insert_codes(self, batch_id: str, codes: list[str]) -> int:
        """Insert the codes not already held by any batch; how many were new."""
        if self.db.dialect.bulk_staging:
            self.db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS coupon_staging (code TEXT) ON COMMIT DELETE ROWS"
            )
            self.db.bulk_insert("coupon_staging", ("code",), [(c,) for c in codes])
            cursor = self.db.execute(
                "INSERT INTO coupons (code, batch_id, status) "
                "SELECT code, ?, 'issued' FROM coupon_staging ORDER BY code "
                "ON CONFLICT DO NOTHING",
                (batch_id,),
            )
            self.db.execute("DELETE FROM coupon_staging")
            return int(cursor.rowcount)
        return self.db.dialect.count_inserted(
            self.db.execute,
            lambda: self.db.executemany(
                "INSERT INTO coupons (code, batch_id, status) VALUES (?, ?, 'issued') "
                "ON CONFLICT DO NOTHING",
                [(c, batch_id) for c in codes],
            ),
        )

    def batch_view(self, batch_id: str) -> dict[str, Any] | None:
        """A batch with its code counts, in the caller's transaction; None if unknown."""
        row = self.db.execute(
            "SELECT batch_id, promotion_id, name, prefix, count, single_use, valid_from, "
            "valid_to, created_by, at, signed, origin, offline FROM coupon_batches "
            "WHERE batch_id = ?",
            (batch_id,),
        ).fetchone()
        if row is None:
            return None
        counts = self.db.execute(
            "SELECT COUNT(*), COUNT(customer_id), "
            "COALESCE(SUM(CASE WHEN status = 'redeemed' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN status = 'void' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN redemptions > 1 THEN 1 ELSE 0 END), 0) "
            "FROM coupons WHERE batch_id = ?",
            (batch_id,),
        ).fetchone()
        return {
            "batch_id": row[0],
            "promotion_id": row[1],
            "name": row[2],
            "prefix": row[3],
            "count": int(row[4]),
            "single_use": bool(row[5]),
            "signed": bool(row[10]),
            "origin": row[11],
            "offline": row[12],
            "valid_from": row[6],
            "valid_to": row[7],
            "created_by": row[8],
            "at": self.db.dt(row[9]).isoformat(),
            "counts": {
                "codes": int(counts[0]),
                "assigned": int(counts[1]),
                "free": int(counts[0]) - int(counts[1]),
                "redeemed": int(counts[2]),
                "void": int(counts[3]),
                "double_redeemed": int(counts[4]),
            },
        }

    def list_coupon_batches(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest batches (no code counts: those are read per batch), newest first."""
        with self.db.guard("list coupon batches"):
            rows = self.db.execute(
                "SELECT batch_id, promotion_id, name, prefix, count, single_use, valid_from, "
                "valid_to, created_by, at, origin FROM coupon_batches "
                "ORDER BY at DESC, batch_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {
                "batch_id": r[0],
                "promotion_id": r[1],
                "name": r[2],
                "prefix": r[3],
                "count": int(r[4]),
                "single_use": bool(r[5]),
                "valid_from": r[6],
                "valid_to": r[7],
                "created_by": r[8],
                "at": self.db.dt(r[9]).isoformat(),
                "origin": r[10],
            }
            for r in rows
        ]

    def coupon_batch(self, batch_id: str) -> dict[str, Any] | None:
        """A batch with its code counts; None if unknown."""
        with self.db.guard("read coupon batch"), self.db.snapshot():
            return self.batch_view(batch_id)

    def coupon_export_page(
        self, batch_id: str, after: str, limit: int
    ) -> list[tuple[str, str, str, str]]:
        """(code, customer_id, a card of the customer, status) after ``after``, by code."""
        with self.db.guard("export coupons"):
            rows = self.db.execute(
                "SELECT code, customer_id, status, "
                "(SELECT MIN(card_no) FROM cards WHERE cards.customer_id = coupons.customer_id "
                "AND cards.status = 'active') "
                "FROM coupons WHERE batch_id = ? AND code > ? ORDER BY code LIMIT ?",
                (batch_id, after, limit),
            ).fetchall()
        return [(r[0], r[1] or "", r[3] or "", r[2]) for r in rows]

    # -- issue ---------------------------------------------------------------------------------

    def _customers_of(self, request: IssueRequest) -> list[str]:
        if request.segment_id is not None:
            known = self.db.execute(
                "SELECT 1 FROM segments WHERE segment_id = ?", (request.segment_id,)
            ).fetchone()
            if known is None:
                raise UnknownObject("body.segment_id", f"unknown segment {request.segment_id!r}")
            rows = self.db.execute(
                "SELECT customer_id FROM segment_members WHERE segment_id = ? ORDER BY customer_id",
                (request.segment_id,),
            ).fetchall()
            return [r[0] for r in rows]
        if request.card_nos:
            owners: dict[str, str] = {}
            for part in _chunks(request.card_nos):
                marks = ", ".join("?" for _ in part)
                for card_no, customer_id in self.db.execute(
                    f"SELECT card_no, customer_id FROM cards WHERE card_no IN ({marks})", part
                ).fetchall():
                    owners[card_no] = customer_id
            unknown = [c for c in request.card_nos if c not in owners]
            if unknown:
                raise InvalidRequest(
                    "body.card_nos",
                    f"{len(unknown)} unknown card(s): {', '.join(unknown[:10])}; nothing issued",
                )
            return list(dict.fromkeys(owners[c] for c in request.card_nos))
        held: set[str] = set()
        for part in _chunks(request.customer_ids):
            marks = ", ".join("?" for _ in part)
            held.update(
                r[0]
                for r in self.db.execute(
                    f"SELECT customer_id FROM customers WHERE customer_id IN ({marks})", part
                ).fetchall()
            )
        unknown = [c for c in request.customer_ids if c not in held]
        if unknown:
            raise InvalidRequest(
                "body.customer_ids",
                f"{len(unknown)} unknown customer(s): {', '.join(unknown[:10])}; nothing issued",
            )
        return list(request.customer_ids)

    def issue_coupons(
        self, batch_id: str, request: IssueRequest, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Give one free code of the batch to each customer who has none of it yet."""
        at = self.db.ts(now)
        with self.db.guard("issue coupons"), self.db.transaction():
            found = self.db.execute(
                f"SELECT origin FROM coupon_batches WHERE batch_id = ?{self.db.dialect.for_update}",
                (batch_id,),
            ).fetchone()
            if found is None:
                raise UnknownObject("batch_id", f"unknown coupon batch {batch_id!r}")
            if found[0] == "register":
                raise Conflict(
                    "batch_id",
                    f"batch {batch_id} holds the codes registers issued; it has none to issue",
                )
            customers = self._customers_of(request)
            holding = {
                r[0]
                for r in self.db.execute(
                    "SELECT DISTINCT customer_id FROM coupons "
                    "WHERE batch_id = ? AND customer_id IS NOT NULL",
                    (batch_id,),
                ).fetchall()
            }
            wanted = [c for c in customers if c not in holding]
            free = [
                r[0]
                for r in self.db.execute(
                    "SELECT code FROM coupons WHERE batch_id = ? AND customer_id IS NULL "
                    "AND status = 'issued' ORDER BY code LIMIT ?",
                    (batch_id, len(wanted)),
                ).fetchall()
            ]
            if len(free) < len(wanted):
                raise Conflict(
                    "batch_id",
                    f"batch {batch_id} has {len(free)} free codes, {len(wanted)} customers need "
                    "one; nothing issued (generate another batch)",
                )
            pairs = list(zip(wanted, free, strict=True))
            if pairs:
                self.db.executemany(
                    "UPDATE coupons SET customer_id = ?, issued_at = ? WHERE code = ?",
                    [(customer, at, code) for customer, code in pairs],
                )
                # Card rows carry the coupons issued to their customer (feed.py).
                version = self.versions.bump()
                for part in _chunks(wanted):
                    marks = ", ".join("?" for _ in part)
                    self.db.execute(
                        f"UPDATE cards SET version = ? WHERE customer_id IN ({marks})",
                        (version, *part),
                    )
            summary = {
                "requested": len(customers),
                "issued": len(pairs),
                "already_held": len(customers) - len(wanted),
                "segment_id": request.segment_id,
            }
            self.audit.record("coupon_batch", batch_id, "issue", None, summary, actor, at)
        return {
            **summary,
            "batch_id": batch_id,
            "codes": [{"customer_id": c, "code": code} for c, code in pairs[:1000]],
        }

    # -- lookups and reports -------------------------------------------------------------------

    def coupon(self, code: str) -> dict[str, Any] | None:
        """One code's batch, holder, validity and redemptions; None if no batch holds it."""
        normal = normalise_code(code)
        with self.db.guard("read coupon"), self.db.snapshot():
            row = self.db.execute(
                "SELECT c.code, c.batch_id, b.promotion_id, "
                f"{_CUSTOMER}, c.status, "
                "b.single_use, b.valid_from, b.valid_to, c.redemptions, c.redeemed_sale_id, "
                "c.redeemed_at, c.store_id, b.origin, b.offline, c.issued_store_id, "
                "c.issued_sale_id, c.issued_card_no FROM coupons c "
                "JOIN coupon_batches b ON b.batch_id = c.batch_id WHERE c.code = ?",
                (normal,),
            ).fetchone()
            hold = self.holds.hold_of(normal)
            if row is None:
                if hold is None:
                    return None
                # Held or taken by a sale not here yet, and in no batch (yet): say so.
                return {"code": normal, "status": "held", "single_use": True, "hold": hold}
            redemptions = self._redemptions([normal]).get(normal, [])
        return {
            "code": row[0],
            "batch_id": row[1],
            "promotion_id": row[2],
            "customer_id": row[3],
            "status": row[4],
            "single_use": bool(row[5]),
            "valid_from": row[6],
            "valid_to": row[7],
            "redemptions": int(row[8]),
            "redeemed_sale_id": row[9],
            "redeemed_at": None if row[10] is None else self.db.dt(row[10]).isoformat(),
            "store_id": row[11],
            "origin": row[12],
            "offline": row[13],
            "issued_store_id": row[14],
            "issued_sale_id": row[15],
            "issued_card_no": row[16],
            "redeemed_by": redemptions,
            "hold": hold,
        }

    def _redemptions(self, codes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for part in _chunks(codes):
            marks = ", ".join("?" for _ in part)
            for code, sale_id, store_id, at, register_id, card_no, customer_id in self.db.execute(
                "SELECT r.code, r.sale_id, r.store_id, r.at, s.register_id, s.card_no, "
                "(SELECT k.customer_id FROM cards k WHERE k.card_no = s.card_no) "
                "FROM coupon_redemptions r LEFT JOIN sales s ON s.sale_id = r.sale_id "
                f"WHERE r.code IN ({marks}) ORDER BY r.code, r.at, r.sale_id",
                part,
            ).fetchall():
                out.setdefault(code, []).append(
                    {
                        "sale_id": sale_id,
                        "store_id": store_id,
                        "register_id": register_id,
                        "card_no": card_no,
                        "customer_id": customer_id,
                        "at": self.db.dt(at).isoformat(),
                    }
                )
        return out

    def coupon_double_redemptions(self, limit: int = MAX_DOUBLE_REPORT) -> list[dict[str, Any]]:
        """Single-use codes redeemed by more than one sale, with every redemption."""
        with self.db.guard("read double redemptions"), self.db.snapshot():
            rows = self.db.execute(
                f"SELECT c.code, c.batch_id, b.promotion_id, {_CUSTOMER}, c.redemptions, "
                "b.origin, c.issued_store_id, c.issued_sale_id "
                "FROM coupons c JOIN coupon_batches b ON b.batch_id = c.batch_id "
                "WHERE c.redemptions > 1 AND b.single_use = 1 ORDER BY c.code LIMIT ?",
                (limit,),
            ).fetchall()
            redemptions = self._redemptions([r[0] for r in rows])
        out = []
        for r in rows:
            sales = redemptions.get(r[0], [])
            out.append(
                {
                    "code": r[0],
                    "batch_id": r[1],
                    "promotion_id": r[2],
                    "customer_id": r[3],
                    "redemptions": int(r[4]),
                    "origin": r[5],
                    "issued_store_id": r[6],
                    "issued_sale_id": r[7],
                    "stores": sorted({s["store_id"] for s in sales}),
                    "sales": sales,
                }
            )
        return out

    # -- ingest --------------------------------------------------------------------------------

    def record_coupon_redemptions(self, sales: Sequence[Sale], owners: Mapping[str, str]) -> None:
        """Called by ingest inside its transaction with the sales it newly stored: codes
        registers issued, redemptions, then the holds those sales settle; `owners` holds the
        owner of each of their cards (a redemption lives with its receipt)."""
        self.holds.record_register_codes(sales)
        self._record_redemptions(sales, owners)
        self.holds.settle_sales(sales)

    def _record_redemptions(self, sales: Sequence[Sale], owners: Mapping[str, str]) -> None:
        uses = [
            (normalise_code(code), sale)
            for sale in sales
            for code in dict.fromkeys(sale.coupons_redeemed)
        ]
        if not uses:
            return
        known: dict[str, str | None] = {}  # code -> the customer it was issued to
        codes = sorted({code for code, _ in uses})
        for part in _chunks(codes):
            marks = ", ".join("?" for _ in part)
            known.update(
                (r[0], r[1])
                for r in self.db.execute(
                    "SELECT code, customer_id FROM coupons "
                    f"WHERE code IN ({marks}) ORDER BY code{self.db.dialect.for_update}",
                    part,
                ).fetchall()
            )
        holders: set[str] = set()
        for code, sale in uses:
            if code not in known:
                continue  # a promo code or register-signed code: no batch to track
            at = self.db.ts(sale.closed_at)
            owner = sale_owner(sale.card_no, sale.store_id, owners)
            new = self.db.execute(
                "INSERT INTO coupon_redemptions (code, sale_id, store_id, at, owner_id) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING code",
                (code, sale.sale_id, sale.store_id, at, owner),
            ).fetchone()
            if new is None:
                continue
            # The first redemption (by sale time) stays the coupon's; a later one only counts.
            self.db.execute(
                "UPDATE coupons SET redemptions = redemptions + 1, "
                "status = CASE WHEN status = 'void' THEN status ELSE 'redeemed' END, "
                "redeemed_sale_id = CASE WHEN redeemed_at IS NULL OR redeemed_at > ? "
                "THEN ? ELSE redeemed_sale_id END, "
                "store_id = CASE WHEN redeemed_at IS NULL OR redeemed_at > ? "
                "THEN ? ELSE store_id END, "
                "redeemed_at = CASE WHEN redeemed_at IS NULL OR redeemed_at > ? "
                "THEN ? ELSE redeemed_at END WHERE code = ?",
                (at, sale.sale_id, at, sale.store_id, at, at, code),
            )
            holder = known[code]
            if holder is not None:
                holders.add(holder)
        if holders and self.db.dialect.single_writer:
            # Card rows carry their customer's coupons (feed.py). SQLite has one writer, so
            # ingest bumps like any master write; PostgreSQL ingest takes no global lock and
            # the feed finds redemptions by their transaction id (coupon_redemptions.feed_pos).
            version = self.versions.bump()
            for part in _chunks(sorted(holders)):
                marks = ", ".join("?" for _ in part)
                self.db.execute(
                    f"UPDATE cards SET version = ? WHERE customer_id IN ({marks})",
                    (version, *part),
                )
