"""The store node's durable state in one SQLite file: sales, quarantine, registers, master cache."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from store_node import master_cache
from store_node.dbthread import DbThread
from store_node.errors import StorageError
from store_node.master_cache import MASTER_SCHEMA, MasterState
from store_node.migrations import Migrations, database_file
from store_node.recovery import (
    MAX_RESEND_RANGES,
    RECOVERY_WAIT,
    JournalAnswer,
    Ranges,
    Recovery,
    describe_ranges,
    missing_seqs,
    present_ranges,
)
from sync_protocol import (
    Ack,
    Classification,
    Heartbeat,
    MasterDelta,
    MasterSnapshot,
    RefusedSale,
    Rejection,
    Sale,
    Verdict,
    classify_sale,
    decode,
    decode_sale,
    encode,
    encode_sale,
    payload_fingerprint,
    sale_card_problem,
)

__all__ = [
    "BoxWorker",
    "CachedMaster",
    "CenterStatus",
    "OutboxStatus",
    "PendingSale",
    "RegisterState",
    "RegisterSummary",
    "SalesBox",
    "check_sale",
]

# Kept in meta as 'schema_version' by the release before migrations (written, never read).
_SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sales (
    received_no INTEGER PRIMARY KEY AUTOINCREMENT,
    sale_id TEXT NOT NULL UNIQUE,
    store_id TEXT NOT NULL,
    register_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    payload BLOB NOT NULL,
    total_minor INTEGER NOT NULL,
    line_count INTEGER NOT NULL,
    closed_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    forwarded_at TEXT,
    center_rejected_at TEXT,
    center_reason TEXT,
    UNIQUE (register_id, seq)
);
CREATE INDEX IF NOT EXISTS sales_pending ON sales (received_no)
    WHERE forwarded_at IS NULL AND center_rejected_at IS NULL;
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sale_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    register_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (sale_id, fingerprint)
);
CREATE TABLE IF NOT EXISTS registers (
    register_id TEXT PRIMARY KEY,
    first_seen_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    queue_depth INTEGER NOT NULL DEFAULT 0,
    oldest_queued_at TEXT,
    devices TEXT NOT NULL DEFAULT '{}',
    master_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS master (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    fetched_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS center_status (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_ok_at TEXT,
    last_error TEXT,
    last_error_at TEXT
);
"""
_SCHEMA += MASTER_SCHEMA  # the master cache's tables (store_node/master_cache.py)

MIGRATIONS = Migrations("salesbox", error=StorageError)


@MIGRATIONS
def m001_baseline(conn: sqlite3.Connection) -> None:
    """The tables of the release before migrations; a store.db it wrote is adopted as is."""
    meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    version = None
    if meta is not None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = None if row is None else str(row[0])
    if version not in (None, _SCHEMA_VERSION):
        raise StorageError(
            f"{database_file(conn)}: meta schema_version {version!r} is not one this node "
            f"knows ({_SCHEMA_VERSION!r}); upgrade the store node"
        )
    MIGRATIONS.create_or_adopt(conn, _SCHEMA)
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (_SCHEMA_VERSION,)
    )


_RECOVERY_SCHEMA = """
CREATE TABLE IF NOT EXISTS register_journals (
    register_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0,
    acked_seq INTEGER NOT NULL DEFAULT 0,
    verified_through INTEGER NOT NULL DEFAULT 0,
    reported_at TEXT
);
CREATE TABLE IF NOT EXISTS center_coverage (
    register_id TEXT PRIMARY KEY,
    max_seq INTEGER NOT NULL,
    gaps TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);
"""


@MIGRATIONS
def m002_recovery(conn: sqlite3.Connection) -> None:
    """What the registers say they had acknowledged, and what the Center holds (recovery)."""
    MIGRATIONS.create_or_adopt(conn, _RECOVERY_SCHEMA)


@MIGRATIONS
def m003_sales_card_no(conn: sqlite3.Connection) -> None:
    """Sales name their card, so the customer state can count the store's own sales."""
    conn.execute("ALTER TABLE sales ADD COLUMN card_no TEXT")
    rows = conn.execute("SELECT received_no, payload FROM sales").fetchall()
    for received_no, payload in rows:
        card_no = decode_sale(bytes(payload)).card_no
        if card_no is not None:
            conn.execute(
                "UPDATE sales SET card_no = ? WHERE received_no = ?", (card_no, received_no)
            )
    conn.execute("CREATE INDEX sales_card ON sales (card_no) WHERE card_no IS NOT NULL")


def _ts(moment: datetime) -> str:
    # One fixed-width UTC form so that text order is time order in SQL.
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: times of facts must be aware UTC")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class PendingSale:
    """A stored sale not yet acknowledged by the Center, in the order it was received."""

    received_no: int
    sale_id: str
    register_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RegisterState:
    """What the node knows about one register, plus its sales still waiting for the Center."""

    register_id: str
    last_seen_at: datetime
    last_seq: int
    queue_depth: int
    oldest_queued_at: datetime | None
    devices: dict[str, str]
    master_version: int
    pending: int
    oldest_pending_at: datetime | None


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """Sales waiting for the Center, and those the Center or this node refused."""

    pending: int
    oldest_pending_at: datetime | None
    rejected_by_center: int
    quarantined: int


@dataclass(frozen=True, slots=True)
class CenterStatus:
    """The last successful exchange with the Center and the last failure, if any."""

    last_ok_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CachedMaster:
    """The whole master cache as one encoded snapshot (built once per version, for readers
    that want every row; registers are served deltas by `serve_master`)."""

    version: int
    payload: bytes
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class RegisterSummary:
    """Reconciliation totals of the sales this node holds for one register."""

    register_id: str
    receipts: int
    lines: int
    total_minor: int
    max_seq: int
    pending: int


def check_sale(sale: Sale, store_id: str) -> str | None:
    """Why this node must refuse the sale (field named), or None when it may be stored.

    Field types, UUID form, seq and money sums are already enforced by sync_protocol.decode.
    """
    if sale.store_id != store_id:
        return f"store_id: sale belongs to store {sale.store_id!r}, this node serves {store_id!r}"
    card_problem = sale_card_problem(sale.card_no)
    if card_problem is not None:
        return card_problem
    return None


class _Drifted(Exception):
    """Rolls back a delta whose checksum does not match what the cache would become."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


class SalesBox:
    """Owns one SQLite connection; every write and its related rows commit in one transaction."""

    def __init__(self, path: Path, *, store_id: str) -> None:
        self.path = path
        self.store_id = store_id
        self.created = False
        """True when this start created the file (new, emptied or replaced)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: BoxWorker runs every call on its single worker thread.
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"{path}: cannot open the database: {exc}") from exc
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._conn.close()
            raise StorageError(f"{path}: cannot use the database: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        MIGRATIONS.apply(conn)
        with self._tx():
            row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
            # A file without our store_id was created just now: new, emptied or replaced.
            self.created = row is None
            # The database's identity: a new file gets a new one (registers log the change).
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('db_id', ?)", (uuid.uuid4().hex,)
            )
            if row is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('store_id', ?)", (self.store_id,)
                )
            elif row[0] != self.store_id:
                raise StorageError(
                    f"{self.path}: database belongs to store {row[0]!r}, "
                    f"config says store_id={self.store_id!r}; use another data_dir"
                )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        self._conn.close()

    # -- sales from registers -------------------------------------------------------------

    def accept(
        self,
        sales: Sequence[Sale],
        *,
        now: datetime,
        payloads: Sequence[bytes] | None = None,
        refused: Sequence[RefusedSale] = (),
    ) -> Ack:
        """Store a batch from a register in ONE transaction and say what happened to each sale.

        ``payloads``: each sale's canonical bytes (sync_protocol.decode_sale_batch), stored as
        they are; without them each sale is encoded here. ``refused``: the batch's sales that
        did not decode (sync_protocol.split_sale_batch), quarantined and rejected in the ack.
        """
        accepted: list[str] = []
        duplicates: list[str] = []
        rejected: list[Rejection] = []
        answered: set[str] = set()
        seen: dict[str, int] = {}
        received_at = _ts(now)
        with self._tx() as conn:
            for i, sale in enumerate(sales):
                if sale.sale_id in answered:
                    continue
                answered.add(sale.sale_id)
                payload = encode_sale(sale) if payloads is None else payloads[i]
                fingerprint = payload_fingerprint(payload)
                reason = check_sale(sale, self.store_id)
                if reason is None:
                    seen.setdefault(sale.register_id, 0)
                    classified = self._classify(conn, sale, fingerprint)
                    if classified.verdict is Verdict.DUPLICATE:
                        duplicates.append(sale.sale_id)
                        seen[sale.register_id] = max(seen[sale.register_id], sale.seq)
                        continue
                    if classified.verdict is Verdict.CONFLICT:
                        reason = classified.reason
                if reason is not None:
                    rejected.append(Rejection(sale_id=sale.sale_id, reason=reason))
                    conn.execute(
                        "INSERT OR IGNORE INTO quarantine (sale_id, store_id, register_id, seq,"
                        " fingerprint, payload, reason, received_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            sale.sale_id,
                            sale.store_id,
                            sale.register_id,
                            sale.seq,
                            fingerprint,
                            payload,
                            reason,
                            received_at,
                        ),
                    )
                    continue
                conn.execute(
                    "INSERT INTO sales (sale_id, store_id, register_id, seq, fingerprint, payload,"
                    " total_minor, line_count, closed_at, received_at, card_no)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sale.sale_id,
                        sale.store_id,
                        sale.register_id,
                        sale.seq,
                        fingerprint,
                        payload,
                        sale.total_minor,
                        len(sale.lines),
                        _ts(sale.closed_at),
                        received_at,
                        sale.card_no,
                    ),
                )
                accepted.append(sale.sale_id)
                seen[sale.register_id] = max(seen[sale.register_id], sale.seq)
            for bad in refused:
                if bad.sale_id in answered:
                    continue
                answered.add(bad.sale_id)
                reason = f"does not decode: {bad.reason}".replace("\x00", "\\x00")[:500]
                rejected.append(Rejection(sale_id=bad.sale_id, reason=reason))
                conn.execute(
                    "INSERT OR IGNORE INTO quarantine (sale_id, store_id, register_id, seq,"
                    " fingerprint, payload, reason, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        bad.sale_id,
                        bad.store_id,
                        bad.register_id,
                        bad.seq,
                        payload_fingerprint(bad.payload),
                        bad.payload,
                        reason,
                        received_at,
                    ),
                )
            for register_id, max_seq in seen.items():
                conn.execute(
                    "INSERT INTO registers (register_id, first_seen_at, last_seen_at, last_seq)"
                    " VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (register_id) DO UPDATE SET"
                    " last_seen_at = excluded.last_seen_at,"
                    " last_seq = MAX(registers.last_seq, excluded.last_seq)",
                    (register_id, received_at, received_at, max_seq),
                )
        return Ack(accepted=tuple(accepted), duplicates=tuple(duplicates), rejected=tuple(rejected))

    def _classify(self, conn: sqlite3.Connection, sale: Sale, fingerprint: str) -> Classification:
        """The hops' one rule (sync_protocol.classify_sale) against the sales stored here."""
        held = conn.execute(
            "SELECT fingerprint FROM sales WHERE sale_id = ?", (sale.sale_id,)
        ).fetchone()
        holder = None
        if held is None:  # the rule reads the seq's holder only when the sale_id is free
            holder = conn.execute(
                "SELECT sale_id FROM sales WHERE register_id = ? AND seq = ?",
                (sale.register_id, sale.seq),
            ).fetchone()
        return classify_sale(
            sale_id=sale.sale_id,
            register_id=sale.register_id,
            seq=sale.seq,
            fingerprint=fingerprint,
            held_fingerprint=held[0] if held else None,
            seq_holder=holder[0] if holder else None,
        )

    def record_heartbeat(self, heartbeat: Heartbeat, *, now: datetime) -> None:
        """Remember what a register reported about itself; the node's clock sets last_seen_at."""
        seen_at = _ts(now)
        oldest = _ts(heartbeat.oldest_queued_at) if heartbeat.oldest_queued_at else None
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO registers (register_id, first_seen_at, last_seen_at, last_seq,"
                " queue_depth, oldest_queued_at, devices, master_version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (register_id) DO UPDATE SET"
                " last_seen_at = excluded.last_seen_at,"
                " last_seq = MAX(registers.last_seq, excluded.last_seq),"
                " queue_depth = excluded.queue_depth,"
                " oldest_queued_at = excluded.oldest_queued_at,"
                " devices = excluded.devices,"
                " master_version = excluded.master_version",
                (
                    heartbeat.node_id,
                    seen_at,
                    seen_at,
                    heartbeat.last_seq,
                    heartbeat.queue_depth,
                    oldest,
                    json.dumps(dict(heartbeat.devices), sort_keys=True),
                    heartbeat.master_version,
                ),
            )

    # -- forwarding to the Center ---------------------------------------------------------

    def pending(self, limit: int) -> list[PendingSale]:
        """Up to `limit` sales not yet acknowledged by the Center, oldest received first."""
        rows = self._conn.execute(
            "SELECT received_no, sale_id, register_id, payload FROM sales"
            " WHERE forwarded_at IS NULL AND center_rejected_at IS NULL"
            " ORDER BY received_no LIMIT ?",
            (limit,),
        ).fetchall()
        return [PendingSale(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def settle(
        self,
        forwarded: Sequence[str],
        rejected: Sequence[Rejection],
        *,
        now: datetime,
    ) -> int:
        """Apply a Center ack in one transaction; return how many sales changed state."""
        at = _ts(now)
        changed = 0
        with self._tx() as conn:
            for sale_id in forwarded:
                changed += conn.execute(
                    "UPDATE sales SET forwarded_at = ? WHERE sale_id = ? AND forwarded_at IS NULL",
                    (at, sale_id),
                ).rowcount
            for rejection in rejected:
                changed += conn.execute(
                    "UPDATE sales SET center_rejected_at = ?, center_reason = ?"
                    " WHERE sale_id = ? AND forwarded_at IS NULL AND center_rejected_at IS NULL",
                    (at, rejection.reason, rejection.sale_id),
                ).rowcount
            self._center_ok(conn, at)
        return changed

    def record_center_ok(self, *, now: datetime) -> None:
        """Remember a successful exchange with the Center."""
        with self._tx() as conn:
            self._center_ok(conn, _ts(now))

    def _center_ok(self, conn: sqlite3.Connection, at: str) -> None:
        conn.execute(
            "INSERT INTO center_status (id, last_ok_at) VALUES (1, ?)"
            " ON CONFLICT (id) DO UPDATE SET last_ok_at = excluded.last_ok_at",
            (at,),
        )

    def record_center_error(self, message: str, *, now: datetime) -> None:
        """Remember the last failure talking to the Center."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO center_status (id, last_error, last_error_at) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET last_error = excluded.last_error,"
                " last_error_at = excluded.last_error_at",
                (message, _ts(now)),
            )

    def center_status(self) -> CenterStatus:
        """The last successful exchange with the Center and the last failure."""
        row = self._conn.execute(
            "SELECT last_ok_at, last_error, last_error_at FROM center_status WHERE id = 1"
        ).fetchone()
        if row is None:
            return CenterStatus()
        return CenterStatus(_dt(row[0]), row[1], _dt(row[2]))

    # -- master data ----------------------------------------------------------------------

    def master(self) -> CachedMaster | None:
        """The cache as one encoded snapshot, or None before the first successful fetch."""
        held = master_cache.state(self._conn)
        if held is None:
            return None
        built: CachedMaster | None = getattr(self, "_encoded_master", None)
        if built is None or built.version != held.version or built.fetched_at != held.fetched_at:
            snapshot = master_cache.serve(self._conn, 0)
            assert snapshot is not None
            payload = encode(snapshot, sender="store-node", sent_at=held.fetched_at)
            built = CachedMaster(held.version, payload, held.fetched_at)
            self._encoded_master = built
        return built

    def master_state(self) -> MasterState | None:
        """Version and checksum of the master cache, or None before the first fetch."""
        return master_cache.state(self._conn)

    def save_master(self, version: int, payload: bytes, *, now: datetime) -> None:
        """Replace the cache with an encoded MasterSnapshot (its own version wins)."""
        snapshot = decode(payload, expect=MasterSnapshot).message
        assert isinstance(snapshot, MasterSnapshot)
        self.apply_master(snapshot, now=now)

    def apply_master(
        self, message: MasterSnapshot | MasterDelta, *, now: datetime, verify: bool = False
    ) -> tuple[int, bool]:
        """Apply a Center message in one transaction: (version, checksum matched).

        On a mismatch nothing is kept (rolled back) and the caller asks for a snapshot;
        a snapshot is kept whatever its checksum says (nothing better can be had).
        """
        try:
            with self._tx() as conn:
                version, matched = master_cache.apply_message(conn, message, now, verify=verify)
                if not matched and isinstance(message, MasterDelta):
                    raise _Drifted(version)
        except _Drifted as drifted:
            return drifted.version, False
        return version, matched

    def serve_master(
        self, since: int, *, max_rows: int = 20_000
    ) -> MasterSnapshot | MasterDelta | None:
        """What a register at `since` needs (snapshot for 0), or None before the first fetch."""
        return master_cache.serve(self._conn, since, max_rows=max_rows)

    def master_card(self, card_no: str) -> dict[str, object] | None:
        """The card as the replica holds it, else as the Center answered it online, or None;
        its customer state counts this store's sales the Center's state does not cover yet."""
        row = master_cache.card_row(self._conn, card_no) or master_cache.cached_card(
            self._conn, card_no
        )
        return None if row is None else master_cache.with_store_sales(self._conn, row)

    def remember_card(self, row: dict[str, object], *, now: datetime) -> None:
        """Keep a card the Center answered online."""
        with self._tx() as conn:
            master_cache.remember_card(conn, row, now)

    # -- recovery of a lost or older database (ARCHITECTURE.md "A lost store database") ----

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def db_id(self) -> str:
        """This database file's identity (a new file gets a new one)."""
        return self._meta("db_id") or ""

    def begin_recovery(self, reason: str, *, now: datetime) -> bool:
        """Start recovering sales from the registers' journals; False when already at it."""
        with self._tx() as conn:
            return self._begin_recovery(conn, reason, now)

    def _begin_recovery(self, conn: sqlite3.Connection, reason: str, now: datetime) -> bool:
        if self._meta("recovery_since") is not None:
            return False
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            (("recovery_since", _ts(now)), ("recovery_reason", reason[:300])),
        )
        return True

    def expect_registers(self, register_ids: Iterable[str]) -> None:
        """Registers whose journals a recovery waits for (those enrolled at this node)."""
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO register_journals (register_id) VALUES (?)",
                [(register_id,) for register_id in register_ids],
            )

    def save_center_coverage(
        self, registers: Sequence[tuple[str, int, Sequence[tuple[int, int]]]], *, now: datetime
    ) -> None:
        """Keep what the Center holds per register: (register_id, max_seq, gaps)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM center_coverage")
            conn.executemany(
                "INSERT INTO center_coverage (register_id, max_seq, gaps, fetched_at)"
                " VALUES (?, ?, ?, ?)",
                [
                    (register_id, max_seq, json.dumps([list(g) for g in gaps]), _ts(now))
                    for register_id, max_seq, gaps in registers
                ],
            )
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('center_checked_at', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_ts(now),),
            )

    def center_check_due(self) -> bool:
        """True while recovering without having asked the Center since the recovery began."""
        since = self._meta("recovery_since")
        checked = self._meta("center_checked_at")
        return since is not None and (checked is None or checked < since)

    def _missing(self, register_id: str, acked_seq: int, *, advance: bool) -> Ranges:
        """Seqs up to `acked_seq` of the register that neither this node nor the Center holds."""
        row = self._conn.execute(
            "SELECT verified_through FROM register_journals WHERE register_id = ?",
            (register_id,),
        ).fetchone()
        low = int(row[0]) if row is not None else 0
        if acked_seq <= low:
            return ()
        held = (
            int(r[0])
            for r in self._conn.execute(
                "SELECT seq FROM sales WHERE register_id = ? AND seq > ? AND seq <= ?"
                " UNION SELECT seq FROM quarantine WHERE register_id = ? AND seq > ? AND seq <= ?"
                " ORDER BY seq",
                (register_id, low, acked_seq) * 2,
            )
        )
        coverage = self._conn.execute(
            "SELECT max_seq, gaps FROM center_coverage WHERE register_id = ?", (register_id,)
        ).fetchone()
        present = (
            present_ranges(int(coverage[0]), [tuple(g) for g in json.loads(coverage[1])])
            if coverage is not None
            else []
        )
        missing = missing_seqs(low, acked_seq, held, present)
        if advance:
            # Everything below the first missing seq is held or at the Center: never re-read.
            through = missing[0][0] - 1 if missing else acked_seq
            self._conn.execute(
                "UPDATE register_journals SET verified_through = MAX(verified_through, ?)"
                " WHERE register_id = ?",
                (through, register_id),
            )
        return missing

    def report_journal(
        self, register_id: str, *, last_seq: int, acked_seq: int, now: datetime
    ) -> JournalAnswer:
        """Record how far a register's sales were acknowledged and say what it must re-send.

        Acknowledged seqs that this database lacks start a recovery; they are asked for only
        once the Center has said what it holds, so nothing it has is sent again.
        """
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO register_journals (register_id, last_seq, acked_seq, reported_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (register_id) DO UPDATE SET"
                " last_seq = excluded.last_seq, acked_seq = excluded.acked_seq,"
                " reported_at = excluded.reported_at",
                (register_id, last_seq, acked_seq, _ts(now)),
            )
            missing = self._missing(register_id, acked_seq, advance=True)
            started = None
            if missing:
                started = (
                    f"register {register_id} had sales up to seq {acked_seq} acknowledged "
                    f"that this store.db lacks (seqs {describe_ranges(missing)}): "
                    "it is older than the one that acknowledged them"
                )
                if not self._begin_recovery(conn, started, now):
                    started = None
            recovering = self._meta("recovery_since") is not None
            resend = missing if recovering and not self.center_check_due() else ()
        return JournalAnswer(self.db_id, recovering, resend[:MAX_RESEND_RANGES], started)

    def recovery(self, now: datetime, *, advance: bool = False) -> Recovery | None:
        """The recovery under way, or None; `advance` keeps what was found verified."""
        since = self._meta("recovery_since")
        if since is None:
            return None
        rows = self._conn.execute(
            "SELECT register_id, acked_seq, reported_at FROM register_journals"
            " UNION SELECT register_id, 0, NULL FROM registers"
            " WHERE register_id NOT IN (SELECT register_id FROM register_journals)"
            " ORDER BY register_id"
        ).fetchall()
        waiting = tuple(str(r[0]) for r in rows if r[2] is None or r[2] < since)
        started = _dt(since)
        assert started is not None
        unreported: tuple[str, ...] = ()
        if now - started >= RECOVERY_WAIT:
            waiting, unreported = (), waiting
        missing = {}
        for register_id, acked_seq, _ in rows:
            ranges = self._missing(str(register_id), int(acked_seq), advance=advance)
            if ranges:
                missing[str(register_id)] = ranges
        return Recovery(
            since=started,
            reason=self._meta("recovery_reason") or "",
            center_checked=not self.center_check_due(),
            waiting_for=waiting,
            missing=missing,
            unreported=unreported,
        )

    def settle_recovery(self, now: datetime) -> tuple[Recovery | None, bool]:
        """End the recovery once the Center was asked, every register reported and nothing
        acknowledged is missing; (the recovery as it stands, whether it ended now)."""
        if self._meta("recovery_since") is None:
            return None, False
        with self._tx() as conn:
            state = self.recovery(now, advance=True)
            if state is None or not state.center_checked or state.waiting_for or state.missing:
                return state, False
            conn.execute("DELETE FROM meta WHERE key IN ('recovery_since', 'recovery_reason')")
        return state, True

    # -- reporting ------------------------------------------------------------------------

    def registers(self) -> list[RegisterState]:
        """Every register this node has seen, with its sales still waiting for the Center."""
        rows = self._conn.execute(
            "SELECT r.register_id, r.last_seen_at, r.last_seq, r.queue_depth, r.oldest_queued_at,"
            " r.devices, r.master_version, COUNT(s.sale_id), MIN(s.received_at)"
            " FROM registers r LEFT JOIN sales s ON s.register_id = r.register_id"
            " AND s.forwarded_at IS NULL AND s.center_rejected_at IS NULL"
            " GROUP BY r.register_id ORDER BY r.register_id"
        ).fetchall()
        states = []
        for row in rows:
            last_seen_at = _dt(row[1])
            assert last_seen_at is not None
            states.append(
                RegisterState(
                    register_id=row[0],
                    last_seen_at=last_seen_at,
                    last_seq=row[2],
                    queue_depth=row[3],
                    oldest_queued_at=_dt(row[4]),
                    devices=json.loads(row[5]),
                    master_version=row[6],
                    pending=row[7],
                    oldest_pending_at=_dt(row[8]),
                )
            )
        return states

    def outbox(self) -> OutboxStatus:
        """Counts of sales waiting for, or refused by, the Center, and of quarantined sales."""
        pending, oldest = self._conn.execute(
            "SELECT COUNT(*), MIN(received_at) FROM sales"
            " WHERE forwarded_at IS NULL AND center_rejected_at IS NULL"
        ).fetchone()
        (rejected,) = self._conn.execute(
            "SELECT COUNT(*) FROM sales WHERE center_rejected_at IS NOT NULL"
        ).fetchone()
        (quarantined,) = self._conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()
        return OutboxStatus(pending, _dt(oldest), rejected, quarantined)

    def quarantined(self, limit: int = 20) -> list[dict[str, object]]:
        """The latest sales this node refused (newest first): who sent them and why."""
        rows = self._conn.execute(
            "SELECT sale_id, register_id, seq, reason, received_at FROM quarantine"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ("sale_id", "register_id", "seq", "reason", "received_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def last_sale(self, register_id: str) -> tuple[int, datetime, int] | None:
        """(seq, closed_at, total_minor) of a register's latest sale held here, or None."""
        row = self._conn.execute(
            "SELECT seq, closed_at, total_minor FROM sales WHERE register_id = ? "
            "ORDER BY seq DESC LIMIT 1",
            (register_id,),
        ).fetchone()
        if row is None:
            return None
        closed_at = _dt(row[1])
        assert closed_at is not None
        return int(row[0]), closed_at, int(row[2])

    def summary(self) -> list[RegisterSummary]:
        """Per-register totals of the sales held here (quarantined ones excluded)."""
        rows = self._conn.execute(
            "SELECT register_id, COUNT(*), SUM(line_count), SUM(total_minor), MAX(seq),"
            " SUM(forwarded_at IS NULL AND center_rejected_at IS NULL)"
            " FROM sales GROUP BY register_id ORDER BY register_id"
        ).fetchall()
        return [RegisterSummary(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def counts(self) -> dict[str, int]:
        """Row counts per table, for tests and diagnostics."""
        tables = ("sales", "quarantine", "registers", "master")
        return {
            table: self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in tables
        }


class BoxWorker(DbThread[SalesBox]):
    """Runs every SalesBox call on one dedicated thread, so fsyncs never block the event loop."""

    def __init__(self, path: Path, *, store_id: str) -> None:
        super().__init__(path, lambda: SalesBox(path, store_id=store_id), thread_name="salesbox")
        self.store_id = store_id
