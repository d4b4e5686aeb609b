"""Gift certificates at the Center: batches, codes, holds of store nodes, movements by sale.

`certificates` keeps one row per code with its stored status (issued, active, blocked,
returned), its balance and its holder store (the store that sold it or last redeemed it
online: the only store that may redeem it with the Center unreachable). `certificate_holds`
keeps what store nodes hold for open receipts (committed: a confirmed sale on its way);
`certificate_movements` is the history, one row per (kind, sale, code), linked to the sales.
Ingest applies the certificate lines and tenders of new sales in its own transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from center.access.audit import AuditLog
from center.certificates.model import (
    BatchRequest,
    CertificateHold,
    CertificateView,
    certificate_payments,
    check_redeemable,
    new_code,
    state_of,
)
from center.errors import Conflict, UnknownObject
from center.storage.database import Database
from center.storage.migrations import Migration
from sync_protocol import Sale

__all__ = [
    "POSTGRES_MIGRATION",
    "SALE_INDEX_MIGRATION",
    "SQLITE_MIGRATION",
    "CertificateRepository",
]


def _steps(ts: str, big: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE certificate_batches (
            batch_id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            product_id TEXT NOT NULL,
            nominal_minor {big},
            valid_days INTEGER NOT NULL,
            prefix TEXT NOT NULL,
            count INTEGER NOT NULL,
            created_by TEXT NOT NULL,
            created_at {ts} NOT NULL
        )""",
        "CREATE INDEX certificate_batches_product ON certificate_batches (product_id)",
        f"""CREATE TABLE certificates (
            code TEXT PRIMARY KEY,
            batch_id TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('issued', 'active', 'blocked', 'returned')),
            initial_minor {big} NOT NULL DEFAULT 0,
            balance_minor {big} NOT NULL DEFAULT 0,
            activated_at {ts},
            expires_at {ts},
            sold_sale_id TEXT,
            holder_store_id TEXT,
            note TEXT
        )""",
        "CREATE INDEX certificates_batch ON certificates (batch_id, code)",
        "CREATE INDEX certificates_holder ON certificates (holder_store_id)",
        f"""CREATE TABLE certificate_holds (
            hold_id TEXT NOT NULL,
            code TEXT NOT NULL,
            store_id TEXT NOT NULL,
            amount_minor {big} NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('held', 'committed')),
            sale_id TEXT,
            expires_at {ts} NOT NULL,
            PRIMARY KEY (hold_id, code)
        )""",
        "CREATE INDEX certificate_holds_code ON certificate_holds (code)",
        f"""CREATE TABLE certificate_movements (
            movement_id TEXT NOT NULL,
            code TEXT NOT NULL,
            kind TEXT NOT NULL,
            amount_minor {big} NOT NULL,
            balance_after {big} NOT NULL,
            sale_id TEXT,
            store_id TEXT,
            at {ts} NOT NULL,
            note TEXT,
            PRIMARY KEY (code, movement_id)
        )""",
        "CREATE INDEX certificate_movements_code ON certificate_movements (code, at)",
    )


SQLITE_MIGRATION = Migration("m030_gift_certificates", _steps("TEXT", "INTEGER"))
"""Gift certificate batches, codes, holds and movements, on SQLite."""
POSTGRES_MIGRATION = Migration("m030_gift_certificates", _steps("TIMESTAMPTZ", "BIGINT"))
SALE_INDEX_MIGRATION = Migration(
    "m037_callcenter",
    ("CREATE INDEX certificate_movements_sale ON certificate_movements (sale_id)",),
)
"""The customer card lists the certificates its receipts sold or were paid with (both
backends: the same statement)."""
"""Gift certificate batches, codes, holds and movements, on PostgreSQL."""

_COLUMNS = (
    "c.code, c.batch_id, c.status, c.initial_minor, c.balance_minor, c.activated_at, "
    "c.expires_at, c.sold_sale_id, c.holder_store_id, c.note, b.product_id, b.nominal_minor, "
    "b.valid_days, b.title"
)


class CertificateRepository:
    """Gift certificates: batches, codes, holds and the movements ingest applies."""

    def __init__(self, db: Database, *, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit
        self._has_tables = False

    def _tables_exist(self) -> bool:
        """Whether m030 ran (an older schema still ingests); once seen, kept."""
        if not self._has_tables:
            self._has_tables = self.db.dialect.has_table(self.db.execute, "certificates")
        return self._has_tables

    # -- head office ---------------------------------------------------------------------------

    def create_batch(self, request: BatchRequest, actor: str, now: datetime) -> dict[str, Any]:
        """Make a batch and its codes (status issued); Conflict when the batch id is taken."""
        at = self.db.ts(now)
        with self.db.guard("create certificate batch"), self.db.transaction():
            if self.db.execute(
                "SELECT 1 FROM certificate_batches WHERE batch_id = ?", (request.batch_id,)
            ).fetchone() is not None:  # fmt: skip
                raise Conflict("body.batch_id", f"certificate batch {request.batch_id} exists")
            self.db.execute(
                "INSERT INTO certificate_batches (batch_id, title, product_id, nominal_minor, "
                "valid_days, prefix, count, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.batch_id,
                    request.title,
                    request.product_id,
                    request.nominal_minor,
                    request.valid_days,
                    request.prefix,
                    request.count,
                    actor,
                    at,
                ),
            )
            codes: set[str] = set()
            while len(codes) < request.count:
                codes.add(new_code(request.prefix))
            for code in sorted(codes):
                taken = self.db.execute(
                    "INSERT INTO certificates (code, batch_id, status) VALUES (?, ?, 'issued') "
                    "ON CONFLICT (code) DO NOTHING RETURNING code",
                    (code, request.batch_id),
                ).fetchone()
                if taken is None:  # one in 10^12: draw another
                    while taken is None:
                        code = new_code(request.prefix)
                        taken = self.db.execute(
                            "INSERT INTO certificates (code, batch_id, status) "
                            "VALUES (?, ?, 'issued') ON CONFLICT (code) DO NOTHING RETURNING code",
                            (code, request.batch_id),
                        ).fetchone()
            self.audit.record(
                "certificate_batch",
                request.batch_id,
                "create",
                None,
                {
                    "title": request.title,
                    "product_id": request.product_id,
                    "nominal_minor": request.nominal_minor,
                    "count": request.count,
                    "valid_days": request.valid_days,
                },
                actor,
                at,
            )
        view = self.batch(request.batch_id, now)
        assert view is not None
        return view

    def batches(self) -> list[dict[str, Any]]:
        """Every batch, newest first."""
        with self.db.guard("list certificate batches"):
            rows = self.db.execute(
                "SELECT batch_id, title, product_id, nominal_minor, valid_days, prefix, count, "
                "created_at FROM certificate_batches ORDER BY created_at DESC, batch_id"
            ).fetchall()
        return [self._batch_row(r) for r in rows]

    def _batch_row(self, r: Sequence[Any]) -> dict[str, Any]:
        return {
            "batch_id": r[0],
            "title": r[1],
            "product_id": r[2],
            "nominal_minor": None if r[3] is None else int(r[3]),
            "free_amount": r[3] is None,
            "valid_days": int(r[4]),
            "prefix": r[5],
            "count": int(r[6]),
            "created_at": self.db.dt(r[7]).isoformat(),
        }

    def batch(self, batch_id: str, now: datetime, *, limit: int = 1000) -> dict[str, Any] | None:
        """A batch with its codes (the first `limit`) and how many are in each state."""
        with self.db.guard("read certificate batch"):
            row = self.db.execute(
                "SELECT batch_id, title, product_id, nominal_minor, valid_days, prefix, count, "
                "created_at FROM certificate_batches WHERE batch_id = ?",
                (batch_id,),
            ).fetchone()
            if row is None:
                return None
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM certificates c "
                "JOIN certificate_batches b ON b.batch_id = c.batch_id "
                "WHERE c.batch_id = ? ORDER BY c.code",
                (batch_id,),
            ).fetchall()
        views = [self._view(r, now) for r in rows]
        states: dict[str, int] = {}
        for view in views:
            states[view["state"]] = states.get(view["state"], 0) + 1
        return {**self._batch_row(row), "states": states, "certificates": views[:limit]}

    def _cert(self, r: Sequence[Any]) -> CertificateView:
        return CertificateView(
            code=r[0],
            status=r[2],
            balance_minor=int(r[4]),
            initial_minor=int(r[3]),
            expires_at=None if r[6] is None else self.db.dt(r[6]),
        )

    def _view(self, r: Sequence[Any], now: datetime) -> dict[str, Any]:
        return {
            "code": r[0],
            "batch_id": r[1],
            "state": state_of(self._cert(r), now),
            "initial_minor": int(r[3]),
            "balance_minor": int(r[4]),
            "activated_at": None if r[5] is None else self.db.dt(r[5]).isoformat(),
            "expires_at": None if r[6] is None else self.db.dt(r[6]).isoformat(),
            "sold_sale_id": r[7],
            "holder_store_id": r[8],
            "note": r[9],
            "product_id": r[10],
            "nominal_minor": None if r[11] is None else int(r[11]),
            "title": r[13],
        }

    def _row(self, code: str, *, lock: bool = False) -> Sequence[Any] | None:
        suffix = self.db.dialect.for_update.replace("FOR UPDATE", "FOR UPDATE OF c") if lock else ""
        row: Sequence[Any] | None = self.db.execute(
            f"SELECT {_COLUMNS} FROM certificates c "
            "JOIN certificate_batches b ON b.batch_id = c.batch_id WHERE c.code = ?" + suffix,
            (code,),
        ).fetchone()
        return row

    def certificate(self, code: str, now: datetime) -> dict[str, Any] | None:
        """One code: its state, balance, holder, holds and movements (oldest first)."""
        with self.db.guard("read certificate"):
            row = self._row(code)
            if row is None:
                return None
            moves = self.db.execute(
                "SELECT kind, amount_minor, balance_after, sale_id, store_id, at, note "
                "FROM certificate_movements WHERE code = ? ORDER BY at, movement_id",
                (code,),
            ).fetchall()
            holds = self.db.execute(
                "SELECT hold_id, store_id, amount_minor, state, sale_id, expires_at "
                "FROM certificate_holds WHERE code = ? ORDER BY hold_id",
                (code,),
            ).fetchall()
        return {
            **self._view(row, now),
            "available_minor": int(row[4]) - self._held(code, None, now),
            "movements": [
                {
                    "kind": m[0],
                    "amount_minor": int(m[1]),
                    "balance_after": int(m[2]),
                    "sale_id": m[3],
                    "store_id": m[4],
                    "at": self.db.dt(m[5]).isoformat(),
                    "note": m[6],
                }
                for m in moves
            ],
            "holds": [
                {
                    "hold_id": h[0],
                    "store_id": h[1],
                    "amount_minor": int(h[2]),
                    "state": h[3],
                    "sale_id": h[4],
                    "expires_at": self.db.dt(h[5]).isoformat(),
                }
                for h in holds
            ],
        }

    def of_sales(self, sale_ids: Sequence[str], now: datetime) -> list[dict[str, Any]]:
        """The certificates these sales activated, redeemed, refunded or credited back: each
        movement with the code's state and balance now, oldest first."""
        if not sale_ids:
            return []
        marks = ", ".join("?" for _ in sale_ids)
        with self.db.guard("read certificates of sales"):
            if not self._tables_exist():
                return []
            moves = self.db.execute(
                "SELECT code, kind, amount_minor, sale_id, at FROM certificate_movements "
                f"WHERE sale_id IN ({marks}) ORDER BY at, code, movement_id",
                list(sale_ids),
            ).fetchall()
            views: dict[str, dict[str, Any]] = {}
            for code in sorted({str(m[0]) for m in moves}):
                row = self._row(code)
                if row is not None:
                    views[code] = self._view(row, now)
        return [
            {
                "code": m[0],
                "kind": m[1],
                "amount_minor": int(m[2]),
                "sale_id": m[3],
                "at": self.db.dt(m[4]).isoformat(),
                "state": views[m[0]]["state"] if m[0] in views else "",
                "balance_minor": views[m[0]]["balance_minor"] if m[0] in views else 0,
            }
            for m in moves
        ]

    def block(self, code: str, reason: str, actor: str, now: datetime) -> dict[str, Any]:
        """Block a code (no further redemption anywhere online); audited."""
        at = self.db.ts(now)
        with self.db.guard("block certificate"), self.db.transaction():
            row = self._row(code, lock=True)
            if row is None:
                raise UnknownObject("code", f"no certificate {code}")
            if row[2] == "returned":
                raise Conflict("code", f"certificate {code} was returned")
            self.db.execute(
                "UPDATE certificates SET status = 'blocked', note = ? WHERE code = ?",
                (reason, code),
            )
            self._move(code, "block", 0, int(row[4]), None, at, reason)
            self.audit.record(
                "certificate", code, "block", {"status": row[2]}, {"reason": reason}, actor, at
            )
        found = self.certificate(code, now)
        assert found is not None
        return found

    # -- holds of store nodes --------------------------------------------------------------------

    def _held(self, code: str, hold_id: str | None, now: datetime) -> int:
        """What other receipts hold of the code: live holds and committed ones (sales on their
        way), except `hold_id`'s own."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(amount_minor), 0) FROM certificate_holds WHERE code = ? "
            "AND hold_id <> ? AND (state = 'committed' OR expires_at > ?)",
            (code, hold_id or "", self.db.ts(now)),
        ).fetchone()
        return int(row[0])

    def hold(self, request: CertificateHold, now: datetime) -> dict[str, Any]:
        """Hold exactly `request.amounts` for the hold (its other codes go), all or none;
        CertificateRefused / UnknownObject naming the first code that cannot pay."""
        until = now + timedelta(seconds=request.ttl_s)
        answers = []
        with self.db.guard("hold certificates"), self.db.transaction():
            self.db.execute(
                "DELETE FROM certificate_holds WHERE hold_id = ? AND state = 'held'",
                (request.hold_id,),
            )
            for code in sorted(request.amounts):
                amount = request.amounts[code]
                row = self._row(code, lock=True)
                if row is None:
                    raise UnknownObject(f"amounts.{code}", f"no certificate {code}")
                cert = self._cert(row)
                elsewhere = self._held(code, request.hold_id, now)
                check_redeemable(cert, amount, elsewhere, now)
                self.db.execute(
                    "INSERT INTO certificate_holds (hold_id, code, store_id, amount_minor, state, "
                    "sale_id, expires_at) VALUES (?, ?, ?, ?, 'held', NULL, ?)",
                    (request.hold_id, code, request.store_id, amount, self.db.ts(until)),
                )
                answers.append(
                    {
                        "code": code,
                        "amount_minor": amount,
                        "balance_minor": cert.balance_minor,
                        "available_minor": cert.balance_minor - elsewhere,
                        "expires_at": None
                        if cert.expires_at is None
                        else cert.expires_at.isoformat(),
                        "holder_store_id": row[8],
                    }
                )
        return {
            "hold_id": request.hold_id,
            "store_id": request.store_id,
            "expires_at": until.isoformat(),
            "certificates": answers,
        }

    def commit(self, hold_id: str, store_id: str, sale_id: str, now: datetime) -> dict[str, Any]:
        """The hold's sale was confirmed: its amounts stay held until the sale arrives, and the
        store becomes each code's holder (the one store that may redeem it offline)."""
        with self.db.guard("commit certificate hold"), self.db.transaction():
            rows = self.db.execute(
                "SELECT code, amount_minor FROM certificate_holds WHERE hold_id = ? "
                "AND store_id = ? ORDER BY code",
                (hold_id, store_id),
            ).fetchall()
            for code, _amount in rows:
                booked = self.db.execute(
                    "SELECT 1 FROM certificate_movements WHERE code = ? AND movement_id = ?",
                    (code, _movement_id("redeem", sale_id, code)),
                ).fetchone()
                if booked is not None:  # the sale arrived first
                    self.db.execute(
                        "DELETE FROM certificate_holds WHERE hold_id = ? AND code = ?",
                        (hold_id, code),
                    )
                else:
                    self.db.execute(
                        "UPDATE certificate_holds SET state = 'committed', sale_id = ? "
                        "WHERE hold_id = ? AND code = ?",
                        (sale_id, hold_id, code),
                    )
                self.db.execute(
                    "UPDATE certificates SET holder_store_id = ? WHERE code = ?", (store_id, code)
                )
        return {"hold_id": hold_id, "sale_id": sale_id, "codes": [str(r[0]) for r in rows]}

    def release(self, hold_id: str, store_id: str) -> dict[str, Any]:
        """The receipt was cancelled (or the hold expired at the node): its live holds go."""
        with self.db.guard("release certificate hold"), self.db.transaction():
            self.db.execute(
                "DELETE FROM certificate_holds WHERE hold_id = ? AND store_id = ? "
                "AND state = 'held'",
                (hold_id, store_id),
            )
        return {"hold_id": hold_id, "released": True}

    def held_by(self, store_id: str, now: datetime) -> list[dict[str, Any]]:
        """The active certificates `store_id` holds (the one store that may redeem them
        offline), each with what is available after every live and committed hold."""
        at = self.db.ts(now)
        with self.db.guard("read certificate holders"):
            rows = self.db.execute(
                "SELECT c.code, c.balance_minor - COALESCE(("
                "SELECT SUM(h.amount_minor) FROM certificate_holds h WHERE h.code = c.code "
                "AND (h.state = 'committed' OR h.expires_at > ?)), 0), c.expires_at "
                "FROM certificates c WHERE c.holder_store_id = ? AND c.status = 'active' "
                "AND c.balance_minor > 0 AND (c.expires_at IS NULL OR c.expires_at > ?) "
                "ORDER BY c.code",
                (at, store_id, at),
            ).fetchall()
        return [
            {
                "code": r[0],
                "available_minor": int(r[1]),
                "expires_at": None if r[2] is None else self.db.dt(r[2]).isoformat(),
            }
            for r in rows
        ]

    # -- ingest ----------------------------------------------------------------------------------

    def apply_sales(self, sales: Sequence[Sale]) -> None:
        """Activate the certificates new sales sold, debit the ones they were paid with, and for
        returns refund an unused certificate or credit back what it paid; in ingest's
        transaction. A return of a used certificate is refused (Conflict: nothing is written)."""
        if not self._tables_exist():
            return
        for sale in sales:
            paid = certificate_payments(sale)
            sold = [line for line in sale.lines if line.certificate_code]
            if not paid and not sold:
                continue
            at = self.db.ts(sale.closed_at)
            if sale.return_of is not None:
                self._apply_return(sale, sold, paid, at)
                continue
            for line in sold:
                self._activate(sale, line.line_no, line.certificate_code, line.amount_minor, at)
            for code, amount in sorted(paid.items()):
                self._redeem(sale, code, amount, at)

    def _activate(self, sale: Sale, line_no: int, code: str, amount: int, at: Any) -> None:
        row = self._row(code, lock=True)
        line = next(x for x in sale.lines if x.line_no == line_no)
        problem = None
        if row is None:
            problem = "unknown code"
        elif row[2] != "issued":
            problem = f"already {row[2]} (sold by {row[7]})"
        elif row[10] != line.product_id:
            problem = f"the line's product {line.product_id} is not the nominal {row[10]}"
        elif row[11] is not None and int(row[11]) != amount:
            problem = f"sold for {amount}, the nominal is {int(row[11])}"
        if problem is not None:
            balance = 0 if row is None else int(row[4])
            self._move(code, "anomaly", 0, balance, sale, at, f"activation refused: {problem}")
            return
        assert row is not None
        expires = sale.closed_at + timedelta(days=int(row[12]))
        # A redemption that overtook its activation (offline at the selling store) already
        # debited the balance: it stays debited.
        balance = amount + int(row[4])
        self.db.execute(
            "UPDATE certificates SET status = 'active', initial_minor = ?, balance_minor = ?, "
            "activated_at = ?, expires_at = ?, sold_sale_id = ?, holder_store_id = ? "
            "WHERE code = ?",
            (amount, balance, at, self.db.ts(expires), sale.sale_id, sale.store_id, code),
        )
        self._move(code, "activate", amount, balance, sale, at, None)

    def _redeem(self, sale: Sale, code: str, amount: int, at: Any) -> None:
        row = self._row(code, lock=True)
        self.db.execute(
            "DELETE FROM certificate_holds WHERE code = ? AND sale_id = ?", (code, sale.sale_id)
        )
        if row is None:
            self._move(code, "anomaly", -amount, 0, sale, at, "redeemed an unknown code")
            return
        balance = int(row[4]) - amount
        note = None
        if balance < 0 or row[2] != "active":
            # Offline at a store that should not have: the sale happened, booked, and shown.
            note = f"redeemed while {row[2]} with balance {int(row[4])}"
        self.db.execute("UPDATE certificates SET balance_minor = ? WHERE code = ?", (balance, code))
        self._move(code, "redeem", -amount, balance, sale, at, note)

    def _apply_return(
        self, sale: Sale, sold: Sequence[Any], paid: Mapping[str, int], at: Any
    ) -> None:
        for line in sold:
            code = line.certificate_code
            row = self._row(code, lock=True)
            if row is None or row[2] != "active":
                continue  # never activated: nothing to take back
            used = int(row[4]) < int(row[3]) or self._held(code, None, self.db.dt(at)) > 0
            if used:
                raise Conflict(
                    f"body.lines[{line.line_no}]",
                    f"certificate {code} was used (balance {int(row[4])} of {int(row[3])}): "
                    "only an unused certificate can be returned",
                )
            self.db.execute(
                "UPDATE certificates SET status = 'returned', balance_minor = 0 WHERE code = ?",
                (code,),
            )
            self._move(code, "refund", -int(row[4]), 0, sale, at, None)
        for code, amount in sorted(paid.items()):
            row = self._row(code, lock=True)
            if row is None:
                continue
            balance = int(row[4]) + amount
            self.db.execute(
                "UPDATE certificates SET balance_minor = ? WHERE code = ?", (balance, code)
            )
            self._move(code, "return_credit", amount, balance, sale, at, None)

    def _move(
        self,
        code: str,
        kind: str,
        amount: int,
        balance_after: int,
        sale: Sale | None,
        at: Any,
        note: str | None,
    ) -> None:
        sale_id = None if sale is None else sale.sale_id
        movement_id = _movement_id(kind, sale_id or str(at), code)
        self.db.execute(
            "INSERT INTO certificate_movements (movement_id, code, kind, amount_minor, "
            "balance_after, sale_id, store_id, at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (code, movement_id) DO NOTHING",
            (
                movement_id,
                code,
                kind,
                amount,
                balance_after,
                sale_id,
                None if sale is None else sale.store_id,
                at,
                note,
            ),
        )

    def credited_back(self, original_id: str) -> dict[str, int]:
        """code -> what returns of sale `original_id` credited back to its certificates."""
        out: dict[str, int] = {}
        with self.db.guard("read certificate credits"):
            for code, amount in self.db.execute(
                "SELECT m.code, m.amount_minor FROM certificate_movements m "
                "JOIN returns r ON r.return_id = m.sale_id "
                "WHERE r.original_id = ? AND m.kind = 'return_credit'",
                (original_id,),
            ).fetchall():
                out[code] = out.get(code, 0) + int(amount)
        return out


def _movement_id(kind: str, sale_id: str, code: str) -> str:
    return f"{kind}:{sale_id}:{code}"
