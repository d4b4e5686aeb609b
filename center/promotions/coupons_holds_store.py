"""Single-use codes at the Center: holds for store nodes, register-issued codes, policies.

`coupon_holds` has one row per code a store holds or a committed sale took; ingest settles a
committed hold when its sale arrives (the redemption is then in `coupon_redemptions`). Codes
registers issue (`Sale.coupons_issued`, signed with the chain's coupon_key) are kept in
`coupons` under a batch per prefix (`register:<PREFIX>`, origin "register"), with the store,
sale and card that issued them; a redemption arriving before its issuing sale creates the row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from center.access.audit import AuditLog
from center.errors import InvalidRequest, UnknownObject
from center.promotions.coupons import normalise_code
from center.promotions.coupons_holds import (
    CommitRequest,
    CouponTaken,
    HoldRequest,
    allowed_offline,
    default_offline,
    merge_policies,
    register_batch_id,
)
from center.storage.database import Database
from center.storage.migrations import Migration
from loyalty_engine import verify_code
from sync_protocol import Sale

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "CouponHoldRepository"]

_IN_CHUNK = 500


def _steps(ts: str) -> tuple[str, ...]:
    return (
        "ALTER TABLE coupon_batches ADD COLUMN origin TEXT NOT NULL DEFAULT 'head_office'",
        "ALTER TABLE coupon_batches ADD COLUMN offline TEXT NOT NULL DEFAULT 'never'",
        # Signed batches were redeemable offline at any register before policies existed.
        "UPDATE coupon_batches SET offline = 'any_store' WHERE signed = 1",
        "ALTER TABLE coupons ADD COLUMN issued_store_id TEXT",
        "ALTER TABLE coupons ADD COLUMN issued_sale_id TEXT",
        "ALTER TABLE coupons ADD COLUMN issued_card_no TEXT",
        f"""CREATE TABLE coupon_holds (
            code TEXT PRIMARY KEY,
            hold_id TEXT NOT NULL,
            store_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('held', 'committed')),
            sale_id TEXT,
            held_at {ts} NOT NULL,
            expires_at {ts} NOT NULL
        )""",
        "CREATE INDEX coupon_holds_hold ON coupon_holds (hold_id)",
        "CREATE INDEX coupon_holds_sale ON coupon_holds (sale_id) WHERE sale_id IS NOT NULL",
    )


SQLITE_MIGRATION = Migration("m021_single_use_codes", _steps("TEXT"))
"""Holds, register-issued codes and offline policies of single-use codes, on SQLite."""
POSTGRES_MIGRATION = Migration("m021_single_use_codes", _steps("TIMESTAMPTZ"))
"""Holds, register-issued codes and offline policies of single-use codes, on PostgreSQL."""


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" for _ in items)


class CouponHoldRepository:
    """Holds on single-use codes, register-issued codes and the offline policies."""

    def __init__(self, db: Database, *, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit
        self._has_holds = False

    def _holds_exist(self) -> bool:
        """Whether m021 ran (a storage of an older schema still ingests); once seen, kept."""
        if not self._has_holds:
            self._has_holds = self.db.dialect.has_table(self.db.execute, "coupon_holds")
        return self._has_holds

    # -- holds --------------------------------------------------------------------------------

    def hold(self, request: HoldRequest, now: datetime) -> dict[str, Any]:
        """Hold exactly ``request.codes`` for the hold (its other held codes go), all or none;
        CouponTaken naming the first code another store holds or a sale redeemed."""
        at = self.db.ts(now)
        expires = now + timedelta(seconds=request.ttl_s)
        until = self.db.ts(expires)
        codes = sorted(request.codes)
        with self.db.guard("hold coupons"), self.db.transaction():
            known = self._known(codes)
            answers = []
            for code in codes:
                info = known.get(code)
                if info is not None and not info["single_use"]:
                    answers.append({"code": code, "held": False, "origin": info["origin"]})
                    continue
                if info is not None:
                    self._refuse_redeemed(code, info)
                taken = self.db.execute(
                    "INSERT INTO coupon_holds (code, hold_id, store_id, state, sale_id, held_at, "
                    "expires_at) VALUES (?, ?, ?, 'held', NULL, ?, ?) "
                    "ON CONFLICT (code) DO UPDATE SET hold_id = excluded.hold_id, "
                    "store_id = excluded.store_id, state = 'held', sale_id = NULL, "
                    "held_at = excluded.held_at, expires_at = excluded.expires_at "
                    # The same store may take over its own held code: its node checked its
                    # own holds first (one at a time), so another hold of it is a stale one
                    # whose release has not arrived.
                    "WHERE coupon_holds.state = 'held' AND ("
                    "coupon_holds.store_id = excluded.store_id OR coupon_holds.expires_at <= ?) "
                    "RETURNING code",
                    (code, request.hold_id, request.store_id, at, until, at),
                ).fetchone()
                if taken is None:
                    self._refuse_held(code)
                origin = "head_office" if info is None else info["origin"]
                answers.append({"code": code, "held": True, "origin": origin})
            self._drop_others(request.store_id, request.hold_id, codes)
        return {
            "hold_id": request.hold_id,
            "store_id": request.store_id,
            "expires_at": expires.isoformat(),
            "codes": answers,
        }

    def _drop_others(self, store_id: str, hold_id: str, keep: Sequence[str]) -> None:
        held = [
            str(r[0])
            for r in self.db.execute(
                "SELECT code FROM coupon_holds WHERE hold_id = ? AND store_id = ? "
                "AND state = 'held'",
                (hold_id, store_id),
            ).fetchall()
        ]
        for code in held:
            if code not in keep:
                self.db.execute(
                    "DELETE FROM coupon_holds WHERE code = ? AND hold_id = ? AND state = 'held'",
                    (code, hold_id),
                )

    def _known(self, codes: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The codes the registry holds, locked, with their batch's single use and origin."""
        found: dict[str, dict[str, Any]] = {}
        for part in _chunks(codes):
            for row in self.db.execute(
                "SELECT c.code, c.status, c.redemptions, c.redeemed_sale_id, c.store_id, "
                "b.single_use, b.origin FROM coupons c "
                "JOIN coupon_batches b ON b.batch_id = c.batch_id "
                f"WHERE c.code IN ({_marks(part)}) ORDER BY c.code"
                f"{self.db.dialect.for_update.replace('FOR UPDATE', 'FOR UPDATE OF c')}",
                part,
            ).fetchall():
                found[row[0]] = {
                    "status": row[1],
                    "redemptions": int(row[2]),
                    "sale_id": row[3],
                    "store_id": row[4],
                    "single_use": bool(row[5]),
                    "origin": row[6],
                }
        return found

    @staticmethod
    def _refuse_redeemed(code: str, info: dict[str, Any]) -> None:
        if info["status"] == "void":
            raise CouponTaken("codes", f"{code} is void")
        if info["redemptions"] > 0 or info["status"] == "redeemed":
            raise CouponTaken(
                "codes",
                f"{code} was already redeemed by sale {info['sale_id']} at store "
                f"{info['store_id']}",
            )

    def _refuse_held(self, code: str) -> None:
        row = self.db.execute(
            "SELECT store_id, state, sale_id, expires_at FROM coupon_holds WHERE code = ?",
            (code,),
        ).fetchone()
        if row is not None and row[1] == "committed":
            raise CouponTaken(
                "codes",
                f"{code} was already redeemed by sale {row[2]} at store {row[0]} (the sale is "
                "on its way to the Center)",
            )
        store = "?" if row is None else row[0]
        until = "" if row is None else f" until {self.db.dt(row[3]).isoformat()}"
        raise CouponTaken("codes", f"{code} is held by store {store} for another receipt{until}")

    def commit(self, hold_id: str, request: CommitRequest, now: datetime) -> dict[str, Any]:
        """The sale redeemed ``request.codes`` of the hold (taken until the sale arrives);
        the hold's other codes go. Idempotent; a code the hold lost meanwhile is listed."""
        at = self.db.ts(now)
        with self.db.guard("commit coupon hold"), self.db.transaction():
            committed: list[str] = []
            lost: list[str] = []
            for code in sorted(request.codes):
                row = self.db.execute(
                    "UPDATE coupon_holds SET state = 'committed', sale_id = ?, expires_at = ? "
                    "WHERE code = ? AND hold_id = ? AND store_id = ? "
                    "AND (state = 'held' OR sale_id = ?) RETURNING code",
                    (request.sale_id, at, code, hold_id, request.store_id, request.sale_id),
                ).fetchone()
                if row is None and not self._recorded(code, request.sale_id):
                    lost.append(code)
                else:
                    # Recorded already: an earlier delivery of this commit, then the sale.
                    committed.append(code)
            self._drop_others(request.store_id, hold_id, request.codes)
            # The sale may be here already (ingest came first): nothing left to hold for it.
            self._settle(
                [(code, request.sale_id) for code in committed],
                self._redeemed_here(request.sale_id),
            )
        return {"hold_id": hold_id, "committed": committed, "lost": lost}

    def _recorded(self, code: str, sale_id: str) -> bool:
        found = self.db.execute(
            "SELECT 1 FROM coupon_redemptions WHERE code = ? AND sale_id = ?", (code, sale_id)
        ).fetchone()
        return found is not None

    def _redeemed_here(self, sale_id: str) -> set[str] | None:
        """The codes a stored sale redeemed; None when the sale is not here yet."""
        row = self.db.execute("SELECT 1 FROM sales WHERE sale_id = ?", (sale_id,)).fetchone()
        if row is None:
            return None
        return {
            str(r[0])
            for r in self.db.execute(
                "SELECT code FROM coupon_redemptions WHERE sale_id = ?", (sale_id,)
            ).fetchall()
        }

    def _settle(self, holds: Sequence[tuple[str, str]], redeemed: set[str] | None) -> None:
        """Drop committed holds whose sale is stored: its redemption (if it redeemed the code
        and the registry knows it) now refuses the code by itself."""
        if redeemed is None:
            return
        for code, sale_id in holds:
            known = self.db.execute("SELECT 1 FROM coupons WHERE code = ?", (code,)).fetchone()
            if code in redeemed and known is None:
                continue  # no registry row to record it: the committed hold stays the record
            self.db.execute(
                "DELETE FROM coupon_holds WHERE code = ? AND sale_id = ? AND state = 'committed'",
                (code, sale_id),
            )

    def release(self, hold_id: str, store_id: str) -> dict[str, Any]:
        """Free the hold's held codes (idempotent; committed ones stay)."""
        with self.db.guard("release coupon hold"), self.db.transaction():
            released = [
                str(r[0])
                for r in self.db.execute(
                    "DELETE FROM coupon_holds WHERE hold_id = ? AND store_id = ? "
                    "AND state = 'held' RETURNING code",
                    (hold_id, store_id),
                ).fetchall()
            ]
        return {"hold_id": hold_id, "released": sorted(released)}

    def hold_of(self, code: str) -> dict[str, Any] | None:
        """The live hold on a code (in the caller's snapshot), or None."""
        row = self.db.execute(
            "SELECT store_id, state, sale_id, expires_at FROM coupon_holds WHERE code = ?",
            (normalise_code(code),),
        ).fetchone()
        if row is None:
            return None
        return {
            "store_id": row[0],
            "state": row[1],
            "sale_id": row[2],
            "expires_at": self.db.dt(row[3]).isoformat(),
        }

    # -- policies -------------------------------------------------------------------------

    def policies(self) -> list[dict[str, str]]:
        """The offline policy of each prefix (most restrictive of its batches)."""
        with self.db.guard("read coupon policies"), self.db.snapshot():
            rows = self.db.execute(
                "SELECT prefix, origin, offline FROM coupon_batches ORDER BY prefix"
            ).fetchall()
        return merge_policies((str(r[0]), str(r[1]), str(r[2])) for r in rows)

    def set_offline(self, batch_id: str, offline: str, actor: str, now: datetime) -> dict[str, Any]:
        """Change a batch's offline policy (audited); 404 unknown batch, 422 not for its origin."""
        at = self.db.ts(now)
        with self.db.guard("update coupon batch"), self.db.transaction():
            row = self.db.execute(
                "SELECT origin, offline FROM coupon_batches WHERE batch_id = ?"
                f"{self.db.dialect.for_update}",
                (batch_id,),
            ).fetchone()
            if row is None:
                raise UnknownObject("batch_id", f"unknown coupon batch {batch_id!r}")
            origin, before = str(row[0]), str(row[1])
            if offline not in allowed_offline(origin):
                raise InvalidRequest(
                    "body.offline",
                    f"a {origin} batch takes one of {list(allowed_offline(origin))}, "
                    f"got {offline!r}",
                )
            self.db.execute(
                "UPDATE coupon_batches SET offline = ? WHERE batch_id = ?", (offline, batch_id)
            )
            self.audit.record(
                "coupon_batch",
                batch_id,
                "offline",
                {"offline": before},
                {"offline": offline},
                actor,
                at,
            )
        return {"batch_id": batch_id, "origin": origin, "offline": offline}

    # -- ingest ---------------------------------------------------------------------------

    def record_register_codes(self, sales: Sequence[Sale]) -> None:
        """Keep the signed codes new sales issued and the unknown signed codes they redeemed
        (in ingest's transaction, before the redemptions are recorded)."""
        issued = [(normalise_code(code), sale) for sale in sales for code in sale.coupons_issued]
        redeemed = sorted(
            {normalise_code(code) for sale in sales for code in sale.coupons_redeemed}
        )
        if (not issued and not redeemed) or not self._holds_exist():
            return
        key_row = self.db.execute("SELECT value FROM settings WHERE name = 'coupon_key'").fetchone()
        key = "" if key_row is None else str(key_row[0])
        if not key:
            return
        signed = {
            code: prefix
            for code in sorted({c for c, _ in issued} | set(redeemed))
            if (prefix := verify_code(key, code)) is not None
        }
        if not signed:
            return
        known: set[str] = set()
        codes = sorted(signed)
        for part in _chunks(codes):
            known.update(
                str(r[0])
                for r in self.db.execute(
                    f"SELECT code FROM coupons WHERE code IN ({_marks(part)})", part
                ).fetchall()
            )
        first = self.db.ts(min(sale.closed_at for sale in sales))
        for prefix in sorted(set(signed.values())):
            self._ensure_register_batch(prefix, first)
        rows = []
        for code, sale in sorted(issued, key=lambda p: p[0]):
            if code in signed:
                rows.append(
                    (
                        code,
                        register_batch_id(signed[code]),
                        self.db.ts(sale.closed_at),
                        sale.store_id,
                        sale.sale_id,
                        sale.card_no,
                    )
                )
        if rows:
            self.db.executemany(
                "INSERT INTO coupons (code, batch_id, status, issued_at, issued_store_id, "
                "issued_sale_id, issued_card_no) VALUES (?, ?, 'issued', ?, ?, ?, ?) "
                "ON CONFLICT (code) DO UPDATE SET issued_at = excluded.issued_at, "
                "issued_store_id = excluded.issued_store_id, "
                "issued_sale_id = excluded.issued_sale_id, "
                "issued_card_no = excluded.issued_card_no "
                "WHERE coupons.batch_id = excluded.batch_id",
                rows,
            )
        issued_codes = {row[0] for row in rows}
        early = [
            (code, register_batch_id(signed[code]))
            for code in redeemed
            if code in signed and code not in known and code not in issued_codes
        ]
        if early:
            # Redeemed before its issuing sale arrived: the row exists from now on.
            self.db.executemany(
                "INSERT INTO coupons (code, batch_id, status) VALUES (?, ?, 'issued') "
                "ON CONFLICT (code) DO NOTHING",
                early,
            )

    def _ensure_register_batch(self, prefix: str, at: Any) -> None:
        batch_id = register_batch_id(prefix)
        if self.db.execute(
            "SELECT 1 FROM coupon_batches WHERE batch_id = ?", (batch_id,)
        ).fetchone():
            return
        single_use, promotion_id = self._register_rules(prefix)
        self.db.execute(
            "INSERT INTO coupon_batches (batch_id, promotion_id, name, prefix, count, "
            "single_use, signed, valid_from, valid_to, created_by, at, origin, offline) "
            "VALUES (?, ?, ?, ?, 0, ?, 1, NULL, NULL, 'ingest', ?, 'register', ?) "
            "ON CONFLICT DO NOTHING",
            (
                batch_id,
                promotion_id,
                f"Issued by registers under {prefix}",
                prefix,
                int(single_use),
                at,
                default_offline(origin="register", signed=True),
            ),
        )

    def _register_rules(self, prefix: str) -> tuple[bool, str]:
        """(single use, the issuing promotion) of codes registers issue under ``prefix``: a
        coupon rule taking them as multi-use makes them multi-use."""
        single_use, issuer = True, ""
        for promotion_id, doc_text in self.db.execute(
            "SELECT promotion_id, doc FROM promotions ORDER BY promotion_id"
        ).fetchall():
            try:
                doc = json.loads(doc_text) if isinstance(doc_text, str) else dict(doc_text)
            except (TypeError, ValueError):
                continue
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "issue_coupon" and str(doc.get("prefix", "")).upper() == prefix:
                issuer = issuer or str(promotion_id)
            if (
                doc.get("kind") == "coupon"
                and str(doc.get("signed_prefix", "")).upper() == prefix
                and doc.get("multi_use") is True
            ):
                single_use = False
        return single_use, issuer or f"register:{prefix}"

    def settle_sales(self, sales: Sequence[Sale]) -> None:
        """Drop the committed holds of newly stored sales (after their redemptions)."""
        if not self._holds_exist():
            return
        by_sale = {sale.sale_id: sale for sale in sales}
        ids = sorted(by_sale)
        holds: list[tuple[str, str]] = []
        for part in _chunks(ids):
            holds.extend(
                (str(r[0]), str(r[1]))
                for r in self.db.execute(
                    "SELECT code, sale_id FROM coupon_holds "
                    f"WHERE sale_id IN ({_marks(part)}) ORDER BY code",
                    part,
                ).fetchall()
            )
        for code, sale_id in holds:
            redeemed = {normalise_code(c) for c in by_sale[sale_id].coupons_redeemed}
            self._settle([(code, sale_id)], redeemed)
