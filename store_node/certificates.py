"""Gift certificate holds of this store's registers, and the offline single-holder rule.

A register paying with a certificate holds the amount here before calculate/confirm. Online,
the Center (the one authority of the balance) holds it (`POST /v1/certificate-holds`, the hold
id is `<receipt_id>:<code>`); the hold is committed when the sale arrives here and the commit
passed on to the Center (`certificate_center_ops`, retried), or released when the receipt is
cancelled or the hold expires. With the Center unreachable, a certificate is redeemable only at
its holder store (the store that sold it, or redeemed it online last: the Center names the
holder in its answers) and only up to the balance this store knows (`certificate_known`); any
other store refuses it, so what the chain can lose offline is bounded by one store's balance.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from store_node.dbthread import DbThread
from store_node.errors import InvalidRequest, MalformedRequest, RequestError, StorageError
from store_node.migrations import Migrations
from sync_protocol import ProtocolError, decode_sale

__all__ = [
    "CERTIFICATE_METHOD",
    "CertificateBook",
    "CertificateGrant",
    "CertificateRefused",
    "CertificateRequest",
    "CertificateWorker",
    "center_hold_id",
    "parse_hold",
    "parse_release",
]

CERTIFICATE_METHOD = "certificate"
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,39}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_SCAN_BATCH = 500
_KEEP = timedelta(days=7)

MIGRATIONS = Migrations("certificates", error=StorageError)


@MIGRATIONS
def m004_gift_certificates(conn: sqlite3.Connection) -> None:
    """Certificate holds, what this store knows of each certificate, the Center's queue."""
    conn.execute(
        "CREATE TABLE certificate_holds (hold_id TEXT NOT NULL, code TEXT NOT NULL,"
        " register_id TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount > 0),"
        " state TEXT NOT NULL CHECK (state IN ('held', 'committed', 'released')),"
        " online INTEGER NOT NULL, center_available INTEGER, sale_id TEXT,"
        " expires_at TEXT NOT NULL, PRIMARY KEY (hold_id, code))"
    )
    conn.execute("CREATE INDEX certificate_holds_code ON certificate_holds (code, state)")
    conn.execute(
        "CREATE TABLE certificate_known (code TEXT PRIMARY KEY, balance INTEGER NOT NULL,"
        " holder INTEGER NOT NULL, expires_at TEXT, updated_at TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE certificate_center_ops (center_hold_id TEXT PRIMARY KEY,"
        " op TEXT NOT NULL CHECK (op IN ('commit', 'release')), sale_id TEXT,"
        " queued_at TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE certificate_scan (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " received_no INTEGER NOT NULL)"
    )


class CertificateRefused(RequestError):
    """A certificate cannot pay this amount here now; the message names the code and why."""

    kind = "certificate_refused"
    status = 409


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """A register's request to hold `amount` of certificate `code` for an open receipt."""

    register_id: str
    receipt_id: str
    code: str
    amount: int


@dataclass(frozen=True, slots=True)
class CertificateGrant:
    """A hold granted: online (the Center's word) or offline (this store is the holder)."""

    code: str
    amount: int
    online: bool
    balance: int
    """What the certificate had before this receipt (after other receipts' holds)."""
    expires_at: datetime

    @property
    def remaining(self) -> int:
        return self.balance - self.amount


def center_hold_id(receipt_id: str, code: str) -> str:
    """The Center's hold id of one certificate on one receipt."""
    return f"{receipt_id}:{code}"


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _major(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def _text(body: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidRequest(f"body.{key}: expected letters, digits or ._:-, got {value!r:.80}")
    return value


def _code(body: Mapping[str, Any]) -> str:
    raw = body.get("code")
    code = raw.strip().upper() if isinstance(raw, str) else ""
    if not _CODE.match(code):
        raise InvalidRequest(f"body.code: expected a certificate code, got {raw!r:.60}")
    return code


def parse_hold(body: Any) -> CertificateRequest:
    """Check a POST /v1/certificate-holds body; InvalidRequest names the field."""
    if not isinstance(body, dict):
        raise MalformedRequest("body: expected a JSON object")
    extra = sorted(set(body) - {"register_id", "receipt_id", "code", "amount_minor"})
    if extra:
        raise InvalidRequest(f"body.{extra[0]}: unknown field")
    amount = body.get("amount_minor")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= 10**11:
        raise InvalidRequest(f"body.amount_minor: expected a positive amount, got {amount!r:.40}")
    return CertificateRequest(
        _text(body, "register_id", _ID), _text(body, "receipt_id", _ID), _code(body), amount
    )


def parse_release(body: Any) -> tuple[str, str, str | None]:
    """(register_id, receipt_id, code or None for all) of a release."""
    if not isinstance(body, dict):
        raise MalformedRequest("body: expected a JSON object")
    extra = sorted(set(body) - {"register_id", "receipt_id", "code"})
    if extra:
        raise InvalidRequest(f"body.{extra[0]}: unknown field")
    code = _code(body) if body.get("code") is not None else None
    return _text(body, "register_id", _ID), _text(body, "receipt_id", _ID), code


class CertificateBook:
    """Owns one SQLite connection to store.db; used from one thread at a time."""

    def __init__(self, path: Path, *, store_id: str, ttl_s: float) -> None:
        self.store_id = store_id
        self.ttl = timedelta(seconds=ttl_s)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            MIGRATIONS.apply(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StorageError(f"{path}: cannot set up the certificate tables: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- holds -----------------------------------------------------------------------------

    def _held_here(self, code: str, hold_id: str, now: datetime) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM certificate_holds WHERE code = ? "
            "AND hold_id <> ? AND state = 'held' AND expires_at > ?",
            (code, hold_id, _ts(now)),
        ).fetchone()
        return int(row[0])

    def grant_online(
        self, request: CertificateRequest, answer: Mapping[str, Any], now: datetime
    ) -> CertificateGrant:
        """Record a hold the Center granted; `answer` is its entry for the code."""
        available = int(answer.get("available_minor", answer.get("balance_minor", 0)))
        holder = answer.get("holder_store_id") == self.store_id
        expires = now + self.ttl
        with self._tx() as conn:
            self._scan(conn, now)
            self._put(conn, request, True, available, expires)
            conn.execute(
                "INSERT INTO certificate_known (code, balance, holder, expires_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (code) DO UPDATE SET"
                " balance = excluded.balance, holder = excluded.holder,"
                " expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                (request.code, available, int(holder), answer.get("expires_at"), _ts(now)),
            )
        return CertificateGrant(request.code, request.amount, True, available, expires)

    def forget_holder(self, code: str, now: datetime) -> None:
        """The Center refused the code: this store holds no offline right to it any more."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE certificate_known SET holder = 0, updated_at = ? WHERE code = ?",
                (_ts(now), code),
            )

    def grant_offline(self, request: CertificateRequest, now: datetime) -> CertificateGrant:
        """Hold with the Center unreachable: only the holder store, only up to what it knows."""
        hold_id = center_hold_id(request.receipt_id, request.code)
        expires = now + self.ttl
        with self._tx() as conn:
            self._scan(conn, now)
            row = conn.execute(
                "SELECT balance, holder, expires_at FROM certificate_known WHERE code = ?",
                (request.code,),
            ).fetchone()
            if row is None or not row[1]:
                raise CertificateRefused(
                    f"code: the Center cannot be asked now, and certificate {request.code} is "
                    f"held by another store (it is redeemable offline only in the store that "
                    "sold it or last redeemed it online)"
                )
            if row[2] and datetime.fromisoformat(row[2]) <= now:
                raise CertificateRefused(f"code: certificate {request.code} expired at {row[2]}")
            free = int(row[0]) - self._held_here(request.code, hold_id, now)
            if request.amount > free:
                raise CertificateRefused(
                    f"amount_minor: certificate {request.code} has {_major(free)} available "
                    f"offline here, {_major(request.amount)} asked"
                )
            self._put(conn, request, False, free, expires)
        return CertificateGrant(request.code, request.amount, False, free, expires)

    def _put(
        self,
        conn: sqlite3.Connection,
        request: CertificateRequest,
        online: bool,
        available: int,
        expires: datetime,
    ) -> None:
        hold_id = center_hold_id(request.receipt_id, request.code)
        conn.execute(
            "INSERT INTO certificate_holds (hold_id, code, register_id, amount, state, online,"
            " center_available, sale_id, expires_at) VALUES (?, ?, ?, ?, 'held', ?, ?, NULL, ?)"
            " ON CONFLICT (hold_id, code) DO UPDATE SET amount = excluded.amount,"
            " state = 'held', online = excluded.online,"
            " center_available = excluded.center_available, expires_at = excluded.expires_at",
            (hold_id, request.code, request.register_id, request.amount, int(online),
             available, _ts(expires)),
        )  # fmt: skip

    def release(self, register_id: str, receipt_id: str, code: str | None) -> list[str]:
        """Release the receipt's held certificates (one code or all); the Center ones queued."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT hold_id, code, online FROM certificate_holds WHERE register_id = ?"
                " AND hold_id LIKE ? AND state = 'held'",
                (register_id, receipt_id + ":%"),
            ).fetchall()
            released = []
            for hold_id, held_code, online in rows:
                if code is not None and held_code != code:
                    continue
                conn.execute(
                    "UPDATE certificate_holds SET state = 'released' WHERE hold_id = ?"
                    " AND code = ?",
                    (hold_id, held_code),
                )
                if online:
                    self._queue(conn, hold_id, "release", None)
                released.append(str(held_code))
        return released

    def _queue(self, conn: sqlite3.Connection, hold_id: str, op: str, sale_id: str | None) -> None:
        conn.execute(
            "INSERT INTO certificate_center_ops (center_hold_id, op, sale_id, queued_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (center_hold_id) DO UPDATE SET op = excluded.op,"
            " sale_id = excluded.sale_id",
            (hold_id, op, sale_id, _ts(datetime.now(UTC))),
        )

    # -- sales that arrived ----------------------------------------------------------------

    def settle(self, now: datetime) -> int:
        """Commit the holds of sales received since the last scan, note the certificates sold
        here, and let expired holds go; how many sales were read."""
        with self._tx() as conn:
            return self._scan(conn, now)

    def _scan(self, conn: sqlite3.Connection, now: datetime) -> int:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sales'"
        ).fetchone()
        if found is None:
            return 0
        read = 0
        while True:
            row = conn.execute("SELECT received_no FROM certificate_scan WHERE id = 1").fetchone()
            last = int(row[0]) if row else 0
            rows = conn.execute(
                "SELECT received_no, payload FROM sales WHERE received_no > ?"
                " ORDER BY received_no LIMIT ?",
                (last, _SCAN_BATCH),
            ).fetchall()
            if not rows:
                break
            for _, payload in rows:
                try:
                    sale = decode_sale(bytes(payload))
                except ProtocolError:
                    continue
                read += 1
                if sale.return_of is None:
                    self._apply_sale(conn, sale, now)
            conn.execute(
                "INSERT INTO certificate_scan (id, received_no) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET received_no = excluded.received_no",
                (int(rows[-1][0]),),
            )
        conn.execute(
            "UPDATE certificate_holds SET state = 'released' WHERE state = 'held'"
            " AND expires_at <= ?",
            (_ts(now),),
        )
        conn.execute(
            "DELETE FROM certificate_holds WHERE state <> 'held' AND expires_at <= ?",
            (_ts(now - _KEEP),),
        )
        return read

    def _apply_sale(self, conn: sqlite3.Connection, sale: Any, now: datetime) -> None:
        at = _ts(now)
        for line in sale.lines:
            if line.certificate_code:
                conn.execute(
                    "INSERT OR IGNORE INTO certificate_known (code, balance, holder, expires_at,"
                    " updated_at) VALUES (?, ?, 1, NULL, ?)",
                    (line.certificate_code, line.amount_minor, at),
                )
        for payment in sale.payments:
            if payment.method != CERTIFICATE_METHOD or not payment.code:
                continue
            code = payment.code
            hold = conn.execute(
                "SELECT hold_id, online, center_available FROM certificate_holds"
                " WHERE register_id = ? AND code = ? AND state = 'held'"
                " ORDER BY expires_at DESC LIMIT 1",
                (sale.register_id, code),
            ).fetchone()
            if hold is not None:
                conn.execute(
                    "UPDATE certificate_holds SET state = 'committed', sale_id = ?"
                    " WHERE hold_id = ? AND code = ?",
                    (sale.sale_id, hold[0], code),
                )
            if hold is not None and hold[1]:
                self._queue(conn, hold[0], "commit", sale.sale_id)
                # The Center makes this store the holder at the commit.
                conn.execute(
                    "INSERT INTO certificate_known (code, balance, holder, expires_at,"
                    " updated_at) VALUES (?, ?, 1, NULL, ?) ON CONFLICT (code) DO UPDATE SET"
                    " balance = excluded.balance, holder = 1, updated_at = excluded.updated_at",
                    (code, int(hold[2]) - payment.amount_minor, at),
                )
            else:
                conn.execute(
                    "UPDATE certificate_known SET balance = balance - ?, updated_at = ?"
                    " WHERE code = ?",
                    (payment.amount_minor, at, code),
                )

    def refresh_holders(self, rows: list[tuple[str, int, str | None]], now: datetime) -> int:
        """Take the Center's list of the certificates this store holds, (code, available,
        expires_at): every other one loses its offline right here (another store redeemed it
        online). A balance never goes up this way (sales made here may not be at the Center
        yet); how many this store holds."""
        at = _ts(now)
        with self._tx() as conn:
            self._scan(conn, now)
            conn.execute("UPDATE certificate_known SET holder = 0 WHERE holder = 1")
            for code, available, expires_at in rows:
                conn.execute(
                    "INSERT INTO certificate_known (code, balance, holder, expires_at, updated_at)"
                    " VALUES (?, ?, 1, ?, ?) ON CONFLICT (code) DO UPDATE SET holder = 1,"
                    " balance = MIN(certificate_known.balance, excluded.balance),"
                    " expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                    (code, available, expires_at, at),
                )
        return len(rows)

    # -- the Center's queue ----------------------------------------------------------------

    def center_ops(self, limit: int = 100) -> list[tuple[str, str, str | None]]:
        """(center hold id, op, sale id) still to tell the Center, oldest first."""
        rows = self._conn.execute(
            "SELECT center_hold_id, op, sale_id FROM certificate_center_ops"
            " ORDER BY queued_at LIMIT ?",
            (limit,),
        ).fetchall()
        return [(str(r[0]), str(r[1]), r[2]) for r in rows]

    def center_op_done(self, hold_id: str, op: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM certificate_center_ops WHERE center_hold_id = ? AND op = ?",
                (hold_id, op),
            )

    def known(self, code: str) -> dict[str, Any] | None:
        """What this store knows of a certificate (for /health and tests)."""
        row = self._conn.execute(
            "SELECT balance, holder, expires_at, updated_at FROM certificate_known WHERE code = ?",
            (code,),
        ).fetchone()
        if row is None:
            return None
        return {"balance_minor": int(row[0]), "holder": bool(row[1]), "expires_at": row[2]}


class CertificateWorker(DbThread[CertificateBook]):
    """Runs every CertificateBook call on one dedicated thread, one at a time."""

    def __init__(self, path: Path, *, store_id: str, ttl_s: float) -> None:
        super().__init__(
            path,
            lambda: CertificateBook(path, store_id=store_id, ttl_s=ttl_s),
            thread_name="certificates",
        )
