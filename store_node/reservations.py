"""Holds on a card's bonus and on single-use coupon codes, taken by this store's registers.

While a register reaches its store node, the node is the balance authority for its store: a
register reserves what a receipt will spend (bonus, single-use coupons) before the sale, commits
the hold with the sale id after it, and releases it when the receipt is cancelled; a hold that is
neither committed nor released gives its points back after `[reservations] ttl_s`. What a card
may spend here is its balance in the master cache (the Center's word as of the last master
fetch) minus the bonus spent in sales this node holds that the Center's balance does not include
yet, minus the other live holds. The tables live in the node's store.db, next to the sales they
read; every check and its write happen in one `BEGIN IMMEDIATE` transaction on one thread, so two
registers racing for the same points are served one after the other.

Single-use coupon codes have one authority for the whole chain, the Center: online, a code is
held at the Center for the reservation (its id is the Center's hold id) before it is held here,
and the Center hears of the commit (only the codes the sale redeemed) or the release through
`center_coupon_ops`, a queue retried until delivered. With the Center unreachable, the coupon
type's offline policy decides (`coupon_policies`, fetched from the Center): `never`,
`issuing_store` (a code issued by a sale of this store) or `any_store`.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from store_node import budgets, leases
from store_node.dbthread import DbThread
from store_node.errors import (
    Conflict,
    InvalidRequest,
    MalformedRequest,
    RequestError,
    StorageError,
    UnknownObject,
)
from store_node.migrations import Migrations
from sync_protocol import MalformedMessage, ProtocolError, check_card_no, decode_sale

__all__ = [
    "OFFLINE_POLICIES",
    "CardBalance",
    "CenterOp",
    "CouponTaken",
    "Grant",
    "InsufficientBalance",
    "OfflinePolicy",
    "Reservation",
    "ReservationBook",
    "ReservationClosed",
    "ReservationNotFound",
    "ReservationRequest",
    "ReservationWorker",
    "Verdict",
    "parse_request",
]


Verdict = Literal["held", "free", "used", "unreachable"]
"""The Center's word on a single-use coupon code: held for this reservation (or, from a Center
of an older release, free / used), or no word at all (the offline policy decides)."""

OfflinePolicy = Literal["never", "issuing_store", "any_store"]
OFFLINE_POLICIES: tuple[OfflinePolicy, ...] = ("never", "issuing_store", "any_store")

MAX_CODES = 20
_ID_MAX = 128
_SCAN_BATCH = 500
_KEEP_CLOSED = timedelta(days=7)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY,
    register_id TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    card_no TEXT,
    wallet TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    state TEXT NOT NULL CHECK (state IN ('held', 'committed', 'released')),
    sale_id TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    closed_at TEXT,
    UNIQUE (register_id, receipt_id)
);
CREATE INDEX IF NOT EXISTS reservations_card ON reservations (card_no, state);
CREATE TABLE IF NOT EXISTS reservation_coupons (
    code TEXT PRIMARY KEY,
    reservation_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'used'))
);
CREATE TABLE IF NOT EXISTS reservation_sale_spends (
    sale_id TEXT PRIMARY KEY,
    card_no TEXT NOT NULL,
    amount INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reservation_sale_spends_card ON reservation_sale_spends (card_no);
CREATE TABLE IF NOT EXISTS reservation_sale_coupons (
    code TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    PRIMARY KEY (code, sale_id)
);
CREATE TABLE IF NOT EXISTS reservation_scan (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    received_no INTEGER NOT NULL
);
"""

# Its own set: the book opens store.db on its own thread, after (or without) the sales box.
MIGRATIONS = Migrations("reservations", error=StorageError)


@MIGRATIONS
def m001_baseline(conn: sqlite3.Connection) -> None:
    """The tables of the release before migrations; those in a store.db it wrote are adopted."""
    MIGRATIONS.create_or_adopt(conn, _SCHEMA)


@MIGRATIONS
def m002_single_use_codes(conn: sqlite3.Connection) -> None:
    """Codes issued by this store's sales, the Center's holds and their queue, the policies."""
    conn.execute("ALTER TABLE reservations ADD COLUMN center_codes INTEGER NOT NULL DEFAULT 0")
    conn.execute(
        "CREATE TABLE reservation_issued_codes (code TEXT PRIMARY KEY, sale_id TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE center_coupon_ops (reservation_id TEXT PRIMARY KEY,"
        " op TEXT NOT NULL CHECK (op IN ('commit', 'release')), sale_id TEXT,"
        " codes TEXT NOT NULL, queued_at TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE coupon_policies (prefix TEXT PRIMARY KEY, origin TEXT NOT NULL,"
        " offline TEXT NOT NULL, fetched_at TEXT NOT NULL)"
    )
    # The codes issued by the sales scanned before (later ones come with the scan).
    if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sales'"
    ).fetchone():
        for sale_id, payload in conn.execute(
            "SELECT sale_id, payload FROM sales WHERE received_no <= COALESCE("
            "(SELECT received_no FROM reservation_scan WHERE id = 1), 0)"
        ).fetchall():
            try:
                issued = decode_sale(bytes(payload)).coupons_issued
            except ProtocolError:
                continue
            conn.executemany(
                "INSERT OR IGNORE INTO reservation_issued_codes (code, sale_id) VALUES (?, ?)",
                [(normalize_code(code), sale_id) for code in issued],
            )


@MIGRATIONS
def m003_spending_leases(conn: sqlite3.Connection) -> None:
    """The Center's spending leases on cards (store_node/leases.py)."""
    for statement in leases.SCHEMA:
        conn.execute(statement)


@MIGRATIONS
def m005_budget_leases(conn: sqlite3.Connection) -> None:
    """The Center's supplier budget leases, the registers' holds on them and what the sales
    held here gave of each (store_node/budgets.py)."""
    for statement in budgets.SCHEMA:
        conn.execute(statement)


class InsufficientBalance(RequestError):
    """The card cannot spend this much here now; the message names the shortfall."""

    kind = "insufficient_balance"
    status = 409


class CouponTaken(RequestError):
    """A single-use coupon code is held by another receipt, redeemed, or cannot be checked."""

    kind = "coupon_unavailable"
    status = 409


class ReservationNotFound(UnknownObject):
    """No reservation has this id."""

    kind = "not_found"
    status = 404


class ReservationClosed(Conflict):
    """The reservation was released or committed already and cannot change that way."""

    kind = "conflict"
    status = 409


def _ts(moment: datetime) -> str:
    # The sales table's form (salesbox._ts): fixed-width UTC, so text order is time order.
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: times of facts must be aware UTC")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def normalize_code(code: str) -> str:
    """Codes are compared trimmed and upper-cased, as the engine does."""
    return code.strip().upper()


@dataclass(frozen=True, slots=True)
class ReservationRequest:
    """A register's request to hold bonus and single-use coupons for one open receipt."""

    register_id: str
    receipt_id: str
    card_no: str | None
    wallet: str = "bonus"
    amount: int = 0
    coupon_codes: tuple[str, ...] = ()
    signed_codes: tuple[str, ...] = ()
    """The subset of coupon_codes the register verified as register-issued (signed) codes."""


@dataclass(frozen=True, slots=True)
class CardBalance:
    """A card's balance in the master cache and when that cache last heard from the Center."""

    balance: int | None
    synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class Grant:
    """A hold granted: the points and codes are this receipt's until expires_at."""

    reservation_id: str
    expires_at: datetime
    amount: int
    available: int
    coupon_codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CenterOp:
    """A commit or release of the Center's hold on a reservation's codes, not yet delivered."""

    reservation_id: str
    op: str
    sale_id: str | None
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reservation:
    """One reservation as stored (state as of `now`: an expired hold reads as released)."""

    reservation_id: str
    register_id: str
    receipt_id: str
    card_no: str | None
    wallet: str
    amount: int
    state: str
    sale_id: str | None
    expires_at: datetime
    coupon_codes: tuple[str, ...]


def _text(body: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= _ID_MAX or not value.isprintable():
        raise InvalidRequest(f"body.{key}: expected a string of 1..{_ID_MAX} printable characters")
    return value


def _codes(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    raw = body.get(key, [])
    if not isinstance(raw, list) or len(raw) > MAX_CODES:
        raise InvalidRequest(f"body.{key}: expected a list of at most {MAX_CODES} coupon codes")
    codes: list[str] = []
    for index, code in enumerate(raw):
        if not isinstance(code, str) or not 0 < len(code.strip()) <= _ID_MAX:
            raise InvalidRequest(f"body.{key}[{index}]: expected a coupon code string")
        if normalize_code(code) not in codes:
            codes.append(normalize_code(code))
    return tuple(codes)


def parse_request(body: Any) -> ReservationRequest:
    """Check a POST /v1/reservations body; InvalidRequest names the offending field."""
    if not isinstance(body, dict):
        raise InvalidRequest("body: expected a JSON object")
    known = {"receipt_id", "register_id", "card_no", "wallet", "amount", "coupon_codes"}
    known.add("signed_codes")
    for key in sorted(set(body) - known):
        raise InvalidRequest(f"body.{key}: unknown field (known: {', '.join(sorted(known))})")
    receipt_id = _text(body, "receipt_id")
    register_id = _text(body, "register_id")
    card_no = body.get("card_no")
    if card_no is not None:
        try:
            card_no = check_card_no(card_no, where="body.card_no")
        except MalformedMessage as exc:
            raise MalformedRequest(str(exc)) from exc
    wallet = body.get("wallet", "bonus")
    if wallet != "bonus":
        raise InvalidRequest(f"body.wallet: only the 'bonus' wallet can be spent, got {wallet!r}")
    amount = body.get("amount", 0)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount < 2**53:
        raise InvalidRequest(f"body.amount: expected a non-negative integer, got {amount!r}")
    codes = _codes(body, "coupon_codes")
    signed = _codes(body, "signed_codes")
    if set(signed) - set(codes):
        raise InvalidRequest("body.signed_codes: every signed code must be in coupon_codes too")
    if amount and card_no is None:
        raise InvalidRequest("body.card_no: bonus can be reserved only on a card")
    if not amount and not codes:
        raise InvalidRequest("body.amount: nothing to reserve (amount 0 and no coupon_codes)")
    assert receipt_id is not None and register_id is not None
    return ReservationRequest(
        register_id=register_id,
        receipt_id=receipt_id,
        card_no=card_no,
        wallet=wallet,
        amount=amount,
        coupon_codes=codes,
        signed_codes=signed,
    )


class ReservationBook:
    """Owns one SQLite connection to store.db; used from one thread at a time."""

    def __init__(self, path: Path, *, ttl_s: float) -> None:
        self.path = path
        self.ttl = timedelta(seconds=ttl_s)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            # The sales box writes the same file from its own thread.
            self._conn.execute("PRAGMA busy_timeout=5000")
            MIGRATIONS.apply(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StorageError(f"{path}: cannot set up the reservation tables: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

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

    # -- what the sales held here spend ---------------------------------------------------

    def _has_sales_table(self) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sales'"
        ).fetchone()
        return row is not None

    def _scan_sales(self) -> None:
        """Index the bonus spends and coupons of sales received since the last scan."""
        if not self._has_sales_table():
            return
        conn = self._conn
        while True:
            row = conn.execute("SELECT received_no FROM reservation_scan WHERE id = 1").fetchone()
            last = int(row[0]) if row else 0
            rows = conn.execute(
                "SELECT received_no, sale_id, payload FROM sales WHERE received_no > ?"
                " ORDER BY received_no LIMIT ?",
                (last, _SCAN_BATCH),
            ).fetchall()
            if not rows:
                return
            for _, sale_id, payload in rows:
                try:
                    sale = decode_sale(bytes(payload))
                except ProtocolError:
                    continue  # stored only after decoding, so this cannot happen
                spent = sum(
                    m.amount for m in sale.loyalty if m.kind == "spend" and m.wallet == "bonus"
                )
                if spent and sale.card_no:
                    conn.execute(
                        "INSERT OR IGNORE INTO reservation_sale_spends (sale_id, card_no, amount)"
                        " VALUES (?, ?, ?)",
                        (sale_id, sale.card_no, spent),
                    )
                budgets.index_sale(conn, sale)
                for code in sale.coupons_redeemed:
                    conn.execute(
                        "INSERT OR IGNORE INTO reservation_sale_coupons (code, sale_id)"
                        " VALUES (?, ?)",
                        (normalize_code(code), sale_id),
                    )
                for code in sale.coupons_issued:
                    conn.execute(
                        "INSERT OR IGNORE INTO reservation_issued_codes (code, sale_id)"
                        " VALUES (?, ?)",
                        (normalize_code(code), sale_id),
                    )
            conn.execute(
                "INSERT INTO reservation_scan (id, received_no) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET received_no = excluded.received_no",
                (int(rows[-1][0]),),
            )

    def _unsent_spends(self, card_no: str, synced_at: datetime | None) -> int:
        """Bonus spent on the card in sales held here that the cached balance does not reflect."""
        if not self._has_sales_table():
            return 0
        # A sale the Center acknowledged before the master cache was last fetched is in the
        # cached balance; everything later (or not sent, or not acknowledged) is not.
        since = _ts(synced_at) if synced_at is not None else ""
        row = self._conn.execute(
            "SELECT COALESCE(SUM(sp.amount), 0) FROM reservation_sale_spends sp"
            " JOIN sales s ON s.sale_id = sp.sale_id"
            " WHERE sp.card_no = ? AND s.center_rejected_at IS NULL"
            " AND (s.forwarded_at IS NULL OR s.forwarded_at >= ?)",
            (card_no, since),
        ).fetchone()
        return int(row[0])

    def _held(self, card_no: str, now: datetime, exclude: str | None) -> int:
        """Points held by live reservations, and committed ones whose sale is not here yet."""
        sales_join = (
            " OR (state = 'committed' AND NOT EXISTS"
            " (SELECT 1 FROM sales s WHERE s.sale_id = reservations.sale_id))"
            if self._has_sales_table()
            else " OR state = 'committed'"
        )
        row = self._conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM reservations"
            " WHERE card_no = ? AND reservation_id IS NOT ?"
            f" AND ((state = 'held' AND expires_at > ?){sales_join})",
            (card_no, exclude, _ts(now)),
        ).fetchone()
        return int(row[0])

    # -- coupons --------------------------------------------------------------------------

    def unseen_codes(self, codes: Sequence[str]) -> list[str]:
        """The codes this store has never held nor seen redeemed (a Center of an older
        release, which keeps no holds, is asked about these only)."""
        self._scan_sales_tx()
        unseen = []
        for code in codes:
            held = self._conn.execute(
                "SELECT 1 FROM reservation_coupons WHERE code = ?", (code,)
            ).fetchone()
            sold = self._conn.execute(
                "SELECT 1 FROM reservation_sale_coupons WHERE code = ?", (code,)
            ).fetchone()
            if held is None and sold is None:
                unseen.append(code)
        return unseen

    def _scan_sales_tx(self) -> None:
        with self._tx():
            self._scan_sales()

    def prepare(self, request: ReservationRequest, *, now: datetime) -> tuple[str, bool]:
        """(the receipt's reservation id, whether the Center holds codes for it); a new id for
        a new receipt. Refuses a code taken here before the Center is asked (CouponTaken)."""
        with self._tx():
            self._scan_sales()
            self._expire(now)
            row = self._conn.execute(
                "SELECT reservation_id, state, sale_id, center_codes FROM reservations"
                " WHERE register_id = ? AND receipt_id = ?",
                (request.register_id, request.receipt_id),
            ).fetchone()
            if row is not None and row[1] == "committed":
                raise ReservationClosed(
                    f"receipt_id: receipt {request.receipt_id} of register "
                    f"{request.register_id} was already sold as sale {row[2]} "
                    f"(reservation {row[0]})"
                )
            reservation_id = str(uuid.uuid4()) if row is None else str(row[0])
            existing = None if row is None else reservation_id
            for code in request.coupon_codes:
                self._check_local(code, existing, now)
        return reservation_id, bool(row is not None and row[3] and row[1] == "held")

    def _check_local(self, code: str, reservation_id: str | None, now: datetime) -> None:
        """CouponTaken if a sale held here redeemed ``code`` or another receipt holds it."""
        conn = self._conn
        sold = conn.execute(
            "SELECT sale_id FROM reservation_sale_coupons WHERE code = ? LIMIT 1", (code,)
        ).fetchone()
        if sold is not None:
            raise CouponTaken(f"coupon_codes: {code} was already redeemed by sale {sold[0]}")
        row = conn.execute(
            "SELECT c.state, r.reservation_id, r.register_id, r.receipt_id, r.state,"
            " r.expires_at, r.sale_id FROM reservation_coupons c"
            " JOIN reservations r ON r.reservation_id = c.reservation_id WHERE c.code = ?",
            (code,),
        ).fetchone()
        if row is None or row[1] == reservation_id:
            return
        code_state, _, register_id, receipt_id, state, expires_at, sale_id = row
        if code_state == "used" or state == "committed":
            if self._sale_here_without(sale_id, code):
                return  # an older register's commit: its sale, now here, did not redeem it
            raise CouponTaken(
                f"coupon_codes: {code} was already redeemed by sale {sale_id} "
                f"(register {register_id})"
            )
        if state == "held" and expires_at > _ts(now):
            raise CouponTaken(
                f"coupon_codes: {code} is held by register {register_id} for receipt "
                f"{receipt_id} until {expires_at}"
            )

    def _sale_here_without(self, sale_id: str | None, code: str) -> bool:
        """Whether sale ``sale_id`` is held here and did not redeem ``code``."""
        if sale_id is None or not self._has_sales_table():
            return False
        here = self._conn.execute("SELECT 1 FROM sales WHERE sale_id = ?", (sale_id,)).fetchone()
        if here is None:
            return False
        redeemed = self._conn.execute(
            "SELECT 1 FROM reservation_sale_coupons WHERE code = ? AND sale_id = ?",
            (code, sale_id),
        ).fetchone()
        return redeemed is None

    def _check_code(
        self,
        code: str,
        reservation_id: str | None,
        now: datetime,
        verdict: Verdict | None,
        signed: bool,
    ) -> None:
        self._check_local(code, reservation_id, now)
        if verdict == "used":
            raise CouponTaken(f"coupon_codes: the Center says {code} was already redeemed")
        if verdict == "unreachable" and not self._holds(reservation_id, code):
            # A code the receipt already holds stays its own while the Center is away.
            self._check_offline(code, signed)

    def _holds(self, reservation_id: str | None, code: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM reservation_coupons WHERE code = ? AND reservation_id = ?"
            " AND state = 'held'",
            (code, reservation_id),
        ).fetchone()
        return row is not None

    def policy(self, code: str, *, signed: bool) -> tuple[str, OfflinePolicy]:
        """(origin, offline policy) of a code's type: the Center's word for its prefix, else
        register-issued (signed) codes only in the issuing store, head-office codes never."""
        prefix = code.split("-", 1)[0]
        row = self._conn.execute(
            "SELECT origin, offline FROM coupon_policies WHERE prefix = ?", (prefix,)
        ).fetchone()
        if row is not None and row[1] in OFFLINE_POLICIES:
            return str(row[0]), row[1]
        return ("register", "issuing_store") if signed else ("head_office", "never")

    def _check_offline(self, code: str, signed: bool) -> None:
        origin, offline = self.policy(code, signed=signed)
        if offline == "any_store":
            return
        if offline == "issuing_store":
            issued = self._conn.execute(
                "SELECT sale_id FROM reservation_issued_codes WHERE code = ?", (code,)
            ).fetchone()
            if issued is not None:
                return
            raise CouponTaken(
                f"coupon_codes: the Center cannot be asked now and {code} ({origin} coupon) "
                "is redeemable offline only in the store that issued it; no sale of this "
                "store issued it"
            )
        raise CouponTaken(
            f"coupon_codes: the Center cannot be asked now and {code} ({origin} coupon) is "
            "not redeemable offline (its batch's offline policy is 'never')"
        )

    def save_policies(self, policies: Sequence[tuple[str, str, str]], *, now: datetime) -> int:
        """Replace the coupon types' offline policies with the Center's (prefix, origin,
        offline); how many were kept (unknown policies are dropped)."""
        kept = [p for p in policies if p[2] in OFFLINE_POLICIES]
        with self._tx():
            self._conn.execute("DELETE FROM coupon_policies")
            self._conn.executemany(
                "INSERT OR REPLACE INTO coupon_policies (prefix, origin, offline, fetched_at)"
                " VALUES (?, ?, ?, ?)",
                [(prefix, origin, offline, _ts(now)) for prefix, origin, offline in kept],
            )
        return len(kept)

    # -- what the Center still has to hear ----------------------------------------------

    def _queue_center(
        self, reservation_id: str, op: str, sale_id: str | None, codes: Sequence[str], now: datetime
    ) -> None:
        self._conn.execute(
            "INSERT INTO center_coupon_ops (reservation_id, op, sale_id, codes, queued_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (reservation_id) DO UPDATE SET op = excluded.op,"
            " sale_id = excluded.sale_id, codes = excluded.codes, queued_at = excluded.queued_at",
            (reservation_id, op, sale_id, json.dumps(list(codes)), _ts(now)),
        )

    def center_ops(self, limit: int = 100) -> list[CenterOp]:
        """Commits and releases of Center holds not yet delivered, oldest first."""
        rows = self._conn.execute(
            "SELECT reservation_id, op, sale_id, codes FROM center_coupon_ops"
            " ORDER BY queued_at LIMIT ?",
            (limit,),
        ).fetchall()
        return [CenterOp(str(r[0]), str(r[1]), r[2], tuple(json.loads(r[3]))) for r in rows]

    def center_op_done(self, reservation_id: str, op: str) -> None:
        """The Center has it (a newer op queued meanwhile for the same hold stays)."""
        with self._tx():
            self._conn.execute(
                "DELETE FROM center_coupon_ops WHERE reservation_id = ? AND op = ?",
                (reservation_id, op),
            )

    # -- reservations ---------------------------------------------------------------------

    def reserve(
        self,
        request: ReservationRequest,
        card: CardBalance,
        verdicts: Mapping[str, Verdict],
        *,
        now: datetime,
        new_id: str | None = None,
        center: bool | None = None,
    ) -> Grant:
        """Hold the points and codes for the receipt (replacing its earlier hold), or refuse.

        ``new_id``: the id a new reservation takes (the one the Center's hold was asked under);
        ``center``: whether the Center now holds the codes (None: it was not asked).
        """
        conn = self._conn
        with self._tx():
            self._scan_sales()
            self._expire(now)
            row = conn.execute(
                "SELECT reservation_id, state, sale_id, center_codes FROM reservations"
                " WHERE register_id = ? AND receipt_id = ?",
                (request.register_id, request.receipt_id),
            ).fetchone()
            reservation_id = None if row is None else str(row[0])
            if row is not None and row[1] == "committed":
                raise ReservationClosed(
                    f"receipt_id: receipt {request.receipt_id} of register {request.register_id} "
                    f"was already sold as sale {row[2]} (reservation {row[0]})"
                )
            available = 0
            if request.card_no is not None:
                available = self._available(request.card_no, card, now, reservation_id)
            if request.amount > available:
                raise InsufficientBalance(self._shortfall(request, card, now, reservation_id))
            for code in request.coupon_codes:
                self._check_code(
                    code,
                    reservation_id,
                    now,
                    verdicts.get(code),
                    code in request.signed_codes,
                )
            expires_at = now + self.ttl
            held_at_center = bool(row[3]) if row is not None else False
            if center is not None:
                held_at_center = center
            if reservation_id is None:
                reservation_id = new_id or str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO reservations (reservation_id, register_id, receipt_id, card_no,"
                    " wallet, amount, state, created_at, expires_at, center_codes)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'held', ?, ?, ?)",
                    (
                        reservation_id,
                        request.register_id,
                        request.receipt_id,
                        request.card_no,
                        request.wallet,
                        request.amount,
                        _ts(now),
                        _ts(expires_at),
                        int(held_at_center),
                    ),
                )
            else:
                conn.execute(
                    "UPDATE reservations SET card_no = ?, wallet = ?, amount = ?, state = 'held',"
                    " expires_at = ?, closed_at = NULL, center_codes = ?"
                    " WHERE reservation_id = ?",
                    (
                        request.card_no,
                        request.wallet,
                        request.amount,
                        _ts(expires_at),
                        int(held_at_center),
                        reservation_id,
                    ),
                )
                conn.execute(
                    "DELETE FROM reservation_coupons WHERE reservation_id = ?", (reservation_id,)
                )
            for code in request.coupon_codes:
                conn.execute(
                    "INSERT INTO reservation_coupons (code, reservation_id, state)"
                    " VALUES (?, ?, 'held') ON CONFLICT (code) DO UPDATE SET"
                    " reservation_id = excluded.reservation_id, state = 'held'",
                    (code, reservation_id),
                )
        return Grant(reservation_id, expires_at, request.amount, available, request.coupon_codes)

    def _available(
        self, card_no: str, card: CardBalance, now: datetime, exclude: str | None
    ) -> int:
        if card.balance is None:
            return 0
        available = (
            card.balance
            - self._unsent_spends(card_no, card.synced_at)
            - self._held(card_no, now, exclude)
        )
        lease_left = self._lease_left(card_no, now, exclude)
        return available if lease_left is None else min(available, lease_left)

    def _lease_left(self, card_no: str, now: datetime, exclude: str | None) -> int | None:
        """What the card's spending lease still lets this store spend (None: no leases yet)."""
        if not leases.supported(self._conn):
            return None
        lease = leases.lease_of(self._conn, card_no, "bonus")
        if lease is None or lease.expires_at <= now:
            return 0
        return (
            lease.amount
            - self._unsent_spends(card_no, lease.requested_at)
            - self._held(card_no, now, exclude)
        )

    # -- spending leases (store_node/leases.py) -------------------------------------------

    def lease_need(
        self, card_no: str, *, now: datetime, exclude: tuple[str, str] | None
    ) -> tuple[int, int]:
        """(bonus of the card spent in sales the Center has not acknowledged, bonus held here
        leaving out the hold of receipt `exclude` = (register_id, receipt_id))."""
        with self._tx():
            self._scan_sales()
            rid = None
            if exclude is not None:
                row = self._conn.execute(
                    "SELECT reservation_id FROM reservations WHERE register_id = ?"
                    " AND receipt_id = ?",
                    exclude,
                ).fetchone()
                rid = None if row is None else str(row[0])
            return self._unsent_spends(card_no, now), self._held(card_no, now, rid)

    def lease_covers(
        self, card_no: str, amount: int, *, now: datetime, exclude: tuple[str, str]
    ) -> bool:
        """Whether the card's live lease here already covers `amount` more for receipt
        `exclude` = (register_id, receipt_id) (False too before any lease was granted)."""
        with self._tx():
            self._scan_sales()
            row = self._conn.execute(
                "SELECT reservation_id FROM reservations WHERE register_id = ? AND receipt_id = ?",
                exclude,
            ).fetchone()
            left = self._lease_left(card_no, now, None if row is None else str(row[0]))
            return left is not None and left >= amount

    def save_lease(
        self, card_no: str, grant: leases.LeaseGrant, *, requested_at: datetime
    ) -> leases.NodeLease:
        """Keep the Center's lease on the card's bonus, asked for at `requested_at`."""
        with self._tx():
            return leases.save(self._conn, card_no, "bonus", grant, requested_at)

    def leases_due(self, *, now: datetime) -> list[tuple[leases.NodeLease, int]]:
        """Leases that ended here, each with what sales not at the Center spend of it."""
        with self._tx():
            self._scan_sales()
            return [
                (
                    lease,
                    self._unsent_spends(lease.card_no, now) + self._held(lease.card_no, now, None),
                )
                for lease in leases.due(self._conn, now)
            ]

    def leases_returned(self, done: list[leases.NodeLease]) -> None:
        """The Center took these leases back."""
        with self._tx():
            leases.forget(self._conn, done)

    # -- supplier budget leases (store_node/budgets.py) --------------------------------------

    def budget_take(
        self,
        want: Mapping[str, int],
        *,
        hold_id: str,
        register_id: str,
        now: datetime,
        hold: bool,
    ) -> dict[str, int]:
        """promotion_id -> what the receipt may give of it now (`min(want, left)`); with
        `hold`, that much is held for the sale `hold_id` until it reaches this node."""
        with self._tx():
            self._scan_sales()
            took = {
                pid: min(amount, budgets.left(self._conn, pid, now, hold_id))
                for pid, amount in want.items()
            }
            if hold:
                budgets.hold(self._conn, hold_id, register_id, took, now)
            return took

    def budget_need(self, promotion_id: str, *, now: datetime, exclude: str) -> tuple[int, int]:
        """(what this store's sales the Center has not acknowledged gave of the promotion,
        what other confirms hold of it)."""
        with self._tx():
            self._scan_sales()
            return (
                budgets.unsent(self._conn, promotion_id, None),
                budgets.held(self._conn, promotion_id, now, exclude),
            )

    def save_budget_lease(
        self, promotion_id: str, grant: budgets.BudgetGrant, *, requested_at: datetime
    ) -> budgets.NodeBudgetLease:
        """Keep the Center's lease on the promotion's budget, asked for at `requested_at`."""
        with self._tx():
            return budgets.save(self._conn, promotion_id, grant, requested_at)

    def budget_leases_due(self, *, now: datetime) -> list[tuple[budgets.NodeBudgetLease, int]]:
        """Budget leases that ended here, each with what sales not at the Center (and holds of
        sales not here yet) give of it."""
        with self._tx():
            self._scan_sales()
            return [
                (
                    lease,
                    budgets.unsent(self._conn, lease.promotion_id, None)
                    + budgets.held(self._conn, lease.promotion_id, now),
                )
                for lease in budgets.due(self._conn, now)
            ]

    def budget_leases_returned(self, done: list[budgets.NodeBudgetLease]) -> None:
        """The Center took these budget leases back."""
        with self._tx():
            budgets.forget(self._conn, done)

    def _shortfall(
        self, request: ReservationRequest, card: CardBalance, now: datetime, exclude: str | None
    ) -> str:
        card_no = request.card_no
        if card_no is None:
            return "card_no: bonus can be reserved only on a card"
        if card.balance is None:
            return (
                f"amount: card {card_no} is not in this store's master data, so none of the "
                f"{request.amount} requested can be spent here"
            )
        unsent = self._unsent_spends(card_no, card.synced_at)
        held = self._held(card_no, now, exclude)
        available = max(0, card.balance - unsent - held)
        lease_left = self._lease_left(card_no, now, exclude)
        if lease_left is not None and lease_left < available:
            lease = leases.lease_of(self._conn, card_no, "bonus")
            granted = 0 if lease is None or lease.expires_at <= now else lease.amount
            left = max(0, lease_left)
            return (
                f"amount: {request.amount} exceeds the {left} this store may spend of card "
                f"{card_no} now: its spending lease from the Center is {granted} (none live "
                "when 0: the Center could not be asked), less this store's spends and holds "
                f"under it; short by {request.amount - left}"
            )
        return (
            f"amount: {request.amount} exceeds the {available} available on card {card_no} "
            f"(balance {card.balance} - {unsent} spent in sales not yet at the Center - "
            f"{held} held by other receipts); short by {request.amount - available}"
        )

    def _get(self, reservation_id: str) -> tuple[Any, ...]:
        row = self._conn.execute(
            "SELECT reservation_id, register_id, receipt_id, card_no, wallet, amount, state,"
            " sale_id, expires_at FROM reservations WHERE reservation_id = ?",
            (reservation_id,),
        ).fetchone()
        if row is None:
            raise ReservationNotFound(f"reservation_id: no reservation {reservation_id!r}")
        return tuple(row)

    def _owned(self, reservation_id: str, register_id: str | None) -> tuple[Any, ...]:
        row = self._get(reservation_id)
        if register_id is not None and row[1] != register_id:
            # Not found rather than forbidden: another register's ids are not its business.
            raise ReservationNotFound(
                f"reservation_id: register {register_id} holds no reservation {reservation_id!r}"
            )
        return row

    def get(self, reservation_id: str, *, now: datetime, register_id: str | None) -> Reservation:
        """The reservation as of `now` (ReservationNotFound for another register's)."""
        row = self._owned(reservation_id, register_id)
        codes = tuple(
            str(code)
            for (code,) in self._conn.execute(
                "SELECT code FROM reservation_coupons WHERE reservation_id = ? ORDER BY code",
                (reservation_id,),
            )
        )
        state = str(row[6])
        if state == "held" and row[8] <= _ts(now):
            state = "released"
            codes = ()
        return Reservation(
            reservation_id=str(row[0]),
            register_id=str(row[1]),
            receipt_id=str(row[2]),
            card_no=row[3],
            wallet=str(row[4]),
            amount=int(row[5]),
            state=state,
            sale_id=row[7],
            expires_at=datetime.fromisoformat(row[8]),
            coupon_codes=codes,
        )

    def commit(
        self,
        reservation_id: str,
        sale_id: str,
        *,
        now: datetime,
        register_id: str | None,
        codes: Sequence[str] | None = None,
    ) -> Reservation:
        """Turn the hold into a spend of sale `sale_id` (idempotent for the same sale).

        ``codes``: the single-use codes the sale redeemed; the hold's others are released. An
        older register sends none: all stay used until its sale arrives (`_check_local`).
        """
        with self._tx():
            row = self._owned(reservation_id, register_id)
            state, committed_sale = row[6], row[7]
            if state == "committed":
                if committed_sale != sale_id:
                    raise ReservationClosed(
                        f"sale_id: reservation {reservation_id} was committed by sale "
                        f"{committed_sale}, not {sale_id}"
                    )
            elif state == "released":
                raise ReservationClosed(
                    f"reservation_id: reservation {reservation_id} was released; its sale "
                    f"{sale_id} is counted when it arrives"
                )
            else:
                # A hold past its expiry is still committed: the sale happened and spends anyway.
                self._conn.execute(
                    "UPDATE reservations SET state = 'committed', sale_id = ?, closed_at = ?"
                    " WHERE reservation_id = ?",
                    (sale_id, _ts(now), reservation_id),
                )
                if codes is not None:
                    used = {normalize_code(code) for code in codes}
                    for (code,) in self._conn.execute(
                        "SELECT code FROM reservation_coupons WHERE reservation_id = ?",
                        (reservation_id,),
                    ).fetchall():
                        if code not in used:
                            self._conn.execute(
                                "DELETE FROM reservation_coupons WHERE code = ?", (code,)
                            )
                self._conn.execute(
                    "UPDATE reservation_coupons SET state = 'used' WHERE reservation_id = ?",
                    (reservation_id,),
                )
                if self._center_codes(reservation_id):
                    kept = [
                        str(code)
                        for (code,) in self._conn.execute(
                            "SELECT code FROM reservation_coupons WHERE reservation_id = ?"
                            " ORDER BY code",
                            (reservation_id,),
                        )
                    ]
                    self._queue_center(reservation_id, "commit", sale_id, kept, now)
        return self.get(reservation_id, now=now, register_id=register_id)

    def _center_codes(self, reservation_id: str) -> bool:
        row = self._conn.execute(
            "SELECT center_codes FROM reservations WHERE reservation_id = ?", (reservation_id,)
        ).fetchone()
        return bool(row and row[0])

    def release(self, reservation_id: str, *, now: datetime, register_id: str | None) -> None:
        """Give the points and codes back (idempotent; a committed one cannot be released)."""
        with self._tx():
            row = self._owned(reservation_id, register_id)
            if row[6] == "committed":
                raise ReservationClosed(
                    f"reservation_id: reservation {reservation_id} was committed by sale {row[7]}"
                )
            self._conn.execute(
                "UPDATE reservations SET state = 'released', closed_at = COALESCE(closed_at, ?)"
                " WHERE reservation_id = ?",
                (_ts(now), reservation_id),
            )
            self._conn.execute(
                "DELETE FROM reservation_coupons WHERE reservation_id = ?", (reservation_id,)
            )
            if row[6] == "held" and self._center_codes(reservation_id):
                self._queue_center(reservation_id, "release", None, (), now)

    def expire(self, *, now: datetime) -> int:
        """Release every hold past its expiry (their codes become free); how many."""
        with self._tx():
            return self._expire(now)

    def _expire(self, now: datetime) -> int:
        # Runs with every reservation, so expiry needs no job of its own.
        at = _ts(now)
        expired = [
            str(rid)
            for (rid,) in self._conn.execute(
                "SELECT reservation_id FROM reservations WHERE state = 'held' AND expires_at <= ?",
                (at,),
            )
        ]
        for rid in expired:
            self._conn.execute(
                "UPDATE reservations SET state = 'released', closed_at = ?"
                " WHERE reservation_id = ?",
                (at, rid),
            )
            self._conn.execute("DELETE FROM reservation_coupons WHERE reservation_id = ?", (rid,))
        self._prune(now)
        return len(expired)

    def _prune(self, now: datetime) -> None:
        """Drop rows closed long ago; a committed one only once its sale is here (it counts)."""
        if not self._has_sales_table():
            return
        gone = [
            str(rid)
            for (rid,) in self._conn.execute(
                "SELECT reservation_id FROM reservations r WHERE closed_at < ? AND "
                "(state = 'released' OR EXISTS"
                " (SELECT 1 FROM sales s WHERE s.sale_id = r.sale_id))",
                (_ts(now - _KEEP_CLOSED),),
            )
        ]
        for rid in gone:
            self._conn.execute("DELETE FROM reservation_coupons WHERE reservation_id = ?", (rid,))
            self._conn.execute("DELETE FROM reservations WHERE reservation_id = ?", (rid,))


class ReservationWorker(DbThread[ReservationBook]):
    """Runs every ReservationBook call on one dedicated thread, one at a time."""

    def __init__(self, path: Path, *, ttl_s: float) -> None:
        # Opened after the sales box made store.db; open() creates the tables.
        super().__init__(
            path, lambda: ReservationBook(path, ttl_s=ttl_s), thread_name="reservations"
        )
        self.ttl_s = ttl_s
