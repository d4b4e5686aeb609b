"""Fraud signals: what a scan reads, the signals it keeps (once per key), their review.

A scan reads the rows of its windows in one snapshot, runs the pure detectors
(`center/fraud/detectors.py`) and writes their signals in one transaction: a signal whose key
(detector, subject, window) is new is inserted `open`; one already held and still open gets the
sales a later scan found beside it; a reviewed one is left as its reviewer left it. A review
writes an `audit` row (kind `fraud_signal`) in its own transaction.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from center.access.audit import AuditLog
from center.errors import InvalidRequest, UnknownObject
from center.fraud.detectors import detect_all, revision_versions
from center.fraud.model import (
    DETECTORS,
    REVIEW_STATUSES,
    SEVERITIES,
    Adjustment,
    CouponUse,
    FraudSettings,
    Grant,
    Money,
    Receipt,
    ReturnEvent,
    Revision,
    ScanInput,
    Signal,
)
from center.storage.database import Database
from center.storage.migrations import Migration
from sync_protocol import ProtocolError, decode_sale

__all__ = ["MAX_LIST", "POSTGRES_MIGRATION", "SQLITE_MIGRATION", "FraudRepository"]

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total), as center.storage.base.Progress (which imports this module)."""
MAX_LIST = 1000
"""Most signals one list returns."""
MAX_NOTE_LEN = 500
DEFAULTS = FraudSettings()
"""The thresholds a scan uses unless given others."""


def _migration(ts: str, ident: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE fraud_signals (
            signal_id {ident},
            signal_key TEXT NOT NULL UNIQUE,
            detector TEXT NOT NULL,
            subject_kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            window_key TEXT NOT NULL,
            severity TEXT NOT NULL,
            reason TEXT NOT NULL,
            sale_ids TEXT NOT NULL,
            refs TEXT NOT NULL,
            status TEXT NOT NULL,
            detected_at {ts} NOT NULL,
            updated_at {ts} NOT NULL,
            reviewed_by TEXT,
            reviewed_at {ts},
            review_note TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX fraud_signals_status ON fraud_signals (status, signal_id)",
        "CREATE INDEX fraud_signals_detector ON fraud_signals (detector, signal_id)",
        "CREATE INDEX fraud_signals_subject ON fraud_signals (subject, signal_id)",
    )


SQLITE_MIGRATION = Migration(
    "m024_fraud_signals", _migration("TEXT", "INTEGER PRIMARY KEY AUTOINCREMENT")
)
"""Fraud signals, on SQLite."""
POSTGRES_MIGRATION = Migration(
    "m024_fraud_signals",
    _migration("TIMESTAMPTZ", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
)
"""Fraud signals, on PostgreSQL."""

_COLUMNS = (
    "signal_id, detector, subject_kind, subject, window_key, severity, reason, sale_ids, refs, "
    "status, detected_at, updated_at, reviewed_by, reviewed_at, review_note"
)


class FraudRepository:
    """Fraud signals over the shared Database; reviews audited."""

    def __init__(self, db: Database, *, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    # -- reading what the detectors need ---------------------------------------------------------

    def scan_input(self, now: datetime, settings: FraudSettings) -> ScanInput:
        """The rows of every detector's window, read in one snapshot."""
        ts, dt = self.db.ts, self.db.dt
        since = ts(now - timedelta(days=settings.history_days))
        recent = now - timedelta(hours=settings.recent_hours)
        burst_since = ts(recent - timedelta(minutes=settings.burst_window_minutes))
        coupon_since = ts(now - timedelta(days=settings.coupon_window_days))
        until = ts(now)
        with self.db.guard("read fraud scan input"), self.db.snapshot():
            receipts = self._receipts(now, settings)
            revisions = tuple(
                Revision(r[0], int(r[1]), int(r[2]), r[3])
                for r in self.db.execute(
                    "SELECT promotion_id, revision, published_version, author "
                    "FROM promotion_revisions WHERE published_version IS NOT NULL"
                ).fetchall()
            )
            grants = self._grants(revisions, since, until)
            returns = tuple(
                ReturnEvent(r[0], r[1], r[2], r[3], dt(r[4]), int(r[5]))
                for r in self.db.execute(
                    "SELECT r.return_id, s.store_id, s.register_id, "
                    "COALESCE(r.card_no, s.card_no), r.returned_at, r.refund_minor "
                    "FROM returns r JOIN sales s ON s.sale_id = r.return_id "
                    "WHERE r.returned_at >= ? AND r.returned_at <= ?",
                    (burst_since, until),
                ).fetchall()
            )
            adjustments = tuple(
                Adjustment(r[0], r[1], r[2], int(r[3]), dt(r[4]))
                for r in self.db.execute(
                    "SELECT idempotency_key, card_no, actor, amount, created_at FROM adjustments "
                    "WHERE created_at >= ? AND created_at <= ?",
                    (burst_since, until),
                ).fetchall()
            )
            # Promo codes are in no batch table: the sales themselves say what they redeemed.
            # The encoder omits an empty list, so only payloads naming the field are decoded.
            uses: list[CouponUse] = []
            for sale_id, card_no, payload in self.db.execute(
                "SELECT sale_id, card_no, payload FROM sales WHERE card_no IS NOT NULL "
                f"AND closed_at >= ? AND closed_at <= ? AND {self.db.dialect.contains('payload')}",
                (coupon_since, until, b"coupons_redeemed"),
            ).fetchall():
                try:
                    sale = decode_sale(bytes(payload))
                except ProtocolError:
                    continue  # stored sales were decoded once at ingest; recompute reports it
                uses.extend(
                    CouponUse(code.strip().upper(), card_no, sale_id, sale.closed_at)
                    for code in dict.fromkeys(sale.coupons_redeemed)
                )
            settings_rows = dict(
                self.db.execute(
                    "SELECT name, value FROM settings "
                    "WHERE name IN ('currency', 'currency_exponent')"
                ).fetchall()
            )
        exponent = str(settings_rows.get("currency_exponent", "2"))
        return ScanInput(
            receipts=receipts,
            grants=grants,
            revisions=revisions,
            returns=returns,
            adjustments=adjustments,
            coupon_uses=tuple(uses),
            money=Money(
                currency=str(settings_rows.get("currency", "")),
                exponent=int(exponent) if exponent.isdigit() else 2,
            ),
        )

    def _receipts(self, now: datetime, settings: FraudSettings) -> tuple[Receipt, ...]:
        """Card sales of the recent window, and the history of the cards and registers in it:
        a card's sales of the history window, a register's last `register_history` sales in it
        (enough for a median; a busy register has thousands)."""
        ts, dt = self.db.ts, self.db.dt
        oldest = ts(now - timedelta(days=settings.history_days))
        lower = ts(
            now
            - timedelta(hours=settings.recent_hours)
            - timedelta(minutes=settings.min_minutes_between_stores)
        )
        select = (
            "SELECT s.sale_id, s.store_id, s.register_id, s.card_no, s.closed_at, "
            "COALESCE((SELECT SUM(l.amount) FROM ledger l WHERE l.source = s.sale_id "
            "AND l.kind = 'accrue'), 0) FROM sales s WHERE s.card_no IS NOT NULL AND "
        )
        found: dict[str, Receipt] = {}

        def keep(rows: Sequence[Sequence[Any]]) -> None:
            for r in rows:
                found[r[0]] = Receipt(r[0], r[1], r[2], r[3], dt(r[4]), int(r[5]))

        keep(
            self.db.execute(
                select + "s.closed_at >= ? AND s.closed_at <= ?", (lower, ts(now))
            ).fetchall()
        )
        recent = list(found.values())
        cards = sorted({r.card_no for r in recent if r.accrued_minor > 0})
        for start in range(0, len(cards), 500):
            part = cards[start : start + 500]
            marks = ", ".join("?" for _ in part)
            keep(
                self.db.execute(
                    select + f"s.card_no IN ({marks}) AND s.closed_at >= ? AND s.closed_at < ?",
                    (*part, oldest, lower),
                ).fetchall()
            )
        for store_id, register_id in sorted(
            {(r.store_id, r.register_id) for r in recent if r.accrued_minor > 0}
        ):
            keep(
                self.db.execute(
                    select + "s.store_id = ? AND s.register_id = ? AND s.closed_at >= ? "
                    "AND s.closed_at < ? ORDER BY s.seq DESC LIMIT ?",
                    (store_id, register_id, oldest, lower, settings.register_history),
                ).fetchall()
            )
        return tuple(found.values())

    def _grants(self, revisions: Sequence[Revision], since: Any, until: Any) -> tuple[Grant, ...]:
        """Accruals per (rule, master version) of promotions with two published revisions or
        more, summed by the database."""
        counts: dict[str, int] = {}
        for r in revisions:
            counts[r.promotion_id] = counts.get(r.promotion_id, 0) + 1
        revised = sorted(p for p, n in counts.items() if n > 1)
        grants: list[Grant] = []
        for start in range(0, len(revised), 500):
            part = revised[start : start + 500]
            marks = ", ".join("?" for _ in part)
            grants.extend(
                Grant(r[0], int(r[1]), int(r[2]), int(r[3]))
                for r in self.db.execute(
                    "SELECT l.rule_id, s.promo_version, COUNT(DISTINCT s.sale_id), "
                    "CAST(SUM(l.amount) AS BIGINT) "
                    "FROM ledger l JOIN sales s ON s.sale_id = l.source "
                    f"WHERE l.kind = 'accrue' AND l.rule_id IN ({marks}) "
                    "AND s.closed_at >= ? AND s.closed_at <= ? "
                    "GROUP BY l.rule_id, s.promo_version",
                    (*part, since, until),
                ).fetchall()
            )
        return tuple(grants)

    def _revision_sales(
        self, signal: Signal, rows: ScanInput, now: datetime, settings: FraudSettings
    ) -> Signal:
        """A revision_jump signal with the receipts its revision granted on (oldest first)."""
        revision = int(signal.window.removeprefix("revision "))
        low, high = revision_versions(rows.revisions, signal.subject, revision)
        params: list[Any] = [
            signal.subject,
            low,
            self.db.ts(now - timedelta(days=settings.history_days)),
            self.db.ts(now),
        ]
        bound = ""
        if high is not None:
            bound = " AND s.promo_version < ?"
            params.append(high)
        params.append(settings.max_sale_ids)
        with self.db.guard("read fraud signal sales"):
            ids = self.db.execute(
                "SELECT s.sale_id FROM ledger l JOIN sales s ON s.sale_id = l.source "
                "WHERE l.kind = 'accrue' AND l.rule_id = ? AND s.promo_version >= ? "
                f"AND s.closed_at >= ? AND s.closed_at <= ?{bound} "
                "GROUP BY s.sale_id, s.closed_at ORDER BY s.closed_at, s.sale_id LIMIT ?",
                params,
            ).fetchall()
        return dataclasses.replace(signal, sale_ids=tuple(r[0] for r in ids))

    # -- a scan --------------------------------------------------------------------------------

    def scan(
        self,
        now: datetime,
        settings: FraudSettings = DEFAULTS,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Run every detector over the windows ending at `now` and keep their signals;
        counts of signals found, new and updated."""
        if progress is not None:
            progress("read", 0, 1)
        rows = self.scan_input(now, settings)
        if progress is not None:
            progress("read", 1, 1)
            progress("detect", 0, 1)
        found = [
            self._revision_sales(s, rows, now, settings) if s.detector == "revision_jump" else s
            for s in detect_all(rows, settings, now)
        ]
        if progress is not None:
            progress("detect", 1, 1)
        new, updated = self.record_signals(found, now, progress)
        return {
            "found": len(found),
            "new": new,
            "updated": updated,
            "receipts": len(rows.receipts),
            "at": now.isoformat(),
        }

    def record_signals(
        self, signals: Sequence[Signal], now: datetime, progress: Progress | None = None
    ) -> tuple[int, int]:
        """Keep each signal once by its key, in one transaction; (new, updated)."""
        new = updated = 0
        at = self.db.ts(now)
        with self.db.guard("record fraud signals"), self.db.transaction():
            for i, signal in enumerate(signals):
                held = self.db.execute(
                    "SELECT signal_id, status, sale_ids, refs FROM fraud_signals "
                    f"WHERE signal_key = ?{self.db.dialect.for_update}",
                    (signal.key,),
                ).fetchone()
                if held is None:
                    inserted = self.db.execute(
                        "INSERT INTO fraud_signals (signal_key, detector, subject_kind, subject, "
                        "window_key, severity, reason, sale_ids, refs, status, detected_at, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?) "
                        "ON CONFLICT DO NOTHING RETURNING signal_id",
                        (
                            signal.key,
                            signal.detector,
                            signal.subject_kind,
                            signal.subject,
                            signal.window,
                            signal.severity,
                            signal.reason,
                            json.dumps(list(signal.sale_ids)),
                            json.dumps(list(signal.refs)),
                            at,
                            at,
                        ),
                    ).fetchone()
                    new += inserted is not None
                elif held[1] == "open":
                    sales = list(dict.fromkeys([*json.loads(held[2]), *signal.sale_ids]))
                    refs = list(dict.fromkeys([*json.loads(held[3]), *signal.refs]))
                    if sales != json.loads(held[2]) or refs != json.loads(held[3]):
                        self.db.execute(
                            "UPDATE fraud_signals SET severity = ?, reason = ?, sale_ids = ?, "
                            "refs = ?, updated_at = ? WHERE signal_id = ?",
                            (
                                signal.severity,
                                signal.reason,
                                json.dumps(sales),
                                json.dumps(refs),
                                at,
                                held[0],
                            ),
                        )
                        updated += 1
                if progress is not None:
                    progress("record", i + 1, len(signals))
        return new, updated

    # -- reading signals -----------------------------------------------------------------------

    def _signal(self, r: Sequence[Any]) -> dict[str, Any]:
        dt = self.db.dt
        return {
            "signal_id": int(r[0]),
            "detector": r[1],
            "subject_kind": r[2],
            "subject": r[3],
            "window": r[4],
            "severity": r[5],
            "reason": r[6],
            "sale_ids": json.loads(r[7]),
            "refs": json.loads(r[8]),
            "status": r[9],
            "detected_at": dt(r[10]).isoformat(),
            "updated_at": dt(r[11]).isoformat(),
            "reviewed_by": r[12],
            "reviewed_at": None if r[13] is None else dt(r[13]).isoformat(),
            "review_note": r[14],
        }

    def list_signals(
        self,
        *,
        status: str | None = None,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Signals matching every filter given, newest first (`before` = a signal_id to page)."""
        for name, value, known in (
            ("status", status, REVIEW_STATUSES),
            ("detector", detector, DETECTORS),
            ("severity", severity, SEVERITIES),
        ):
            if value is not None and value not in known:
                raise InvalidRequest(name, f"expected one of {', '.join(known)}, got {value!r}")
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", status),
            ("detector", detector),
            ("severity", severity),
            ("subject", subject),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("signal_id < ?")
            params.append(before)
        sql = f"SELECT {_COLUMNS} FROM fraud_signals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY signal_id DESC LIMIT ?"
        params.append(max(1, min(limit, MAX_LIST)))
        with self.db.guard("list fraud signals"):
            rows = self.db.execute(sql, params).fetchall()
        return [self._signal(r) for r in rows]

    def signal(self, signal_id: int) -> dict[str, Any]:
        """One signal with the sales behind it (as the Center holds them) and its review history."""
        with self.db.guard("read fraud signal"), self.db.snapshot():
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM fraud_signals WHERE signal_id = ?", (signal_id,)
            ).fetchone()
            if row is None:
                raise UnknownObject("signal_id", f"unknown fraud signal {signal_id}")
            found = self._signal(row)
            sales: dict[str, dict[str, Any]] = {}
            ids: list[str] = found["sale_ids"]
            for start in range(0, len(ids), 200):
                part = ids[start : start + 200]
                marks = ", ".join("?" for _ in part)
                for r in self.db.execute(
                    "SELECT s.sale_id, s.store_id, s.register_id, s.seq, s.closed_at, "
                    "s.card_no, s.total_minor, s.promo_version, "
                    "COALESCE((SELECT SUM(l.amount) FROM ledger l WHERE l.source = s.sale_id "
                    "AND l.kind = 'accrue'), 0) "
                    f"FROM sales s WHERE s.sale_id IN ({marks})",
                    part,
                ).fetchall():
                    sales[r[0]] = {
                        "sale_id": r[0],
                        "store_id": r[1],
                        "register_id": r[2],
                        "seq": int(r[3]),
                        "closed_at": self.db.dt(r[4]).isoformat(),
                        "card_no": r[5],
                        "total_minor": int(r[6]),
                        "promo_version": int(r[7]),
                        "accrued_minor": int(r[8]),
                    }
        found["sales"] = [sales[i] for i in ids if i in sales]
        found["history"] = self.audit.audit_history("fraud_signal", str(signal_id))
        return found

    # -- review --------------------------------------------------------------------------------

    def review(
        self, signal_id: int, status: str, note: str, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Set a signal's status (confirmed, dismissed, or open again) with the reviewer's
        note; one audit row naming the person, in the same transaction."""
        if status not in REVIEW_STATUSES:
            raise InvalidRequest(
                "status", f"expected one of {', '.join(REVIEW_STATUSES)}, got {status!r}"
            )
        if len(note) > MAX_NOTE_LEN:
            raise InvalidRequest("note", f"at most {MAX_NOTE_LEN} characters, got {len(note)}")
        at = self.db.ts(now)
        with self.db.guard("review fraud signal"), self.db.transaction():
            row = self.db.execute(
                "SELECT status, review_note FROM fraud_signals "
                f"WHERE signal_id = ?{self.db.dialect.for_update}",
                (signal_id,),
            ).fetchone()
            if row is None:
                raise UnknownObject("signal_id", f"unknown fraud signal {signal_id}")
            self.db.execute(
                "UPDATE fraud_signals SET status = ?, review_note = ?, reviewed_by = ?, "
                "reviewed_at = ?, updated_at = ? WHERE signal_id = ?",
                (status, note, actor, at, at, signal_id),
            )
            self.audit.record(
                "fraud_signal",
                str(signal_id),
                "review",
                {"status": row[0], "note": row[1]},
                {"status": status, "note": note},
                actor,
                at,
            )
        return self.signal(signal_id)
