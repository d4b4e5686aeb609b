"""The receipts' storage: ingest (claims, conflicts, quarantine), reconciliation, stored sales.

A store batch is one transaction: the batch's cards are locked, each checked sale is claimed by
its unique keys (sale_id, and (register_id, seq)), a claimed sale's lines and ledger movements
are stored in bulk, and a sale that lost its claim is a duplicate or is quarantined with the
reason (sync_protocol.classify_sale, the rule the store node uses too). PostgreSQL claims in
pipelined runs and stores rows with COPY (center/ingest/store_postgres.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from center.ingest.partitions import MONTHS_AHEAD, create_partitions
from center.ingest.sales import check_sale, ledger_movements
from center.ingest.verify import Verification, VerifyContext
from center.ledger.model import LedgerEntry
from center.storage.base import RegisterSummary
from center.storage.database import Database
from center.storage.migrations import Migration
from center.storage.owners import sale_owner
from sync_protocol import (
    Ack,
    Rejection,
    Sale,
    Verdict,
    classify_sale,
    encode_sale,
    payload_chain_hash,
    payload_fingerprint,
)

__all__ = [
    "POSTGRES_TIME_INDEXES",
    "SQLITE_TIME_INDEXES",
    "IngestBatch",
    "PreparedSale",
    "SalesRepository",
]

# The fraud scan, `sale_payloads` and the reports filter sales on closed_at; the analytics feeder
# reads them in (received_at, sale_id) order from a watermark. Without these, every such query
# reads the whole table. On PostgreSQL the month partitions only narrow closed_at to a month; an
# index on the partitioned table is built on every partition, present and future.
_TIME_INDEXES = (
    "CREATE INDEX IF NOT EXISTS sales_closed_at ON sales (closed_at)",
    "CREATE INDEX IF NOT EXISTS sales_received_at ON sales (received_at, sale_id)",
)
SQLITE_TIME_INDEXES = Migration("m025_sales_time_indexes", _TIME_INDEXES)
"""Indexes on the sales' closed_at and received_at, on SQLite."""
POSTGRES_TIME_INDEXES = Migration("m025_sales_time_indexes", _TIME_INDEXES)
"""Indexes on the sales' closed_at and received_at, on PostgreSQL (every partition)."""


class SaleLedger(Protocol):
    """What ingest needs of the ledger: the owners of the batch's cards, and the movements of
    new sales applied in its transaction."""

    def card_owners(self, card_nos: Iterable[str]) -> dict[str, str]: ...

    def apply_entries(
        self, entries: Sequence[LedgerEntry], *, owners: Mapping[str, str] | None = None
    ) -> int: ...


class SaleCoupons(Protocol):
    """What ingest needs of the coupons: the redemptions of new sales, in its transaction."""

    def record_coupon_redemptions(self, sales: Sequence[Sale], owners: Mapping[str, str]) -> None:
        """`owners`: card_no -> owner of every card of `sales` (center/storage/owners.py)."""


class SaleCertificates(Protocol):
    """What ingest needs of gift certificates: activations and redemptions of new sales."""

    def apply_sales(self, sales: Sequence[Sale]) -> None: ...


class SaleTill(Protocol):
    """What ingest needs of the till messages: the ones new sales showed, marked shown."""

    def record_shown(self, sales: Sequence[Sale]) -> None: ...


class SaleReturns(Protocol):
    """What ingest needs of the returns: new return sales (and pending ones now ready) applied,
    in its transaction."""

    def apply_returns(self, sales: Sequence[Sale], owners: Mapping[str, str]) -> None:
        """`owners`: card_no -> owner of every card of `sales` (center/storage/owners.py)."""


class SaleVerification(Protocol):
    """What ingest needs of verification (center/ingest/verify_store.py): a context read
    before the transaction (None: off), the verdicts of the new sales inside it."""

    def prepare(self, sales: Sequence[Sale], now: datetime) -> VerifyContext | None: ...

    def verify(
        self, sales: Sequence[Sale], ctx: VerifyContext, received: Any
    ) -> dict[str, Verification]: ...


class SaleLeases(Protocol):
    """What ingest needs of the spending leases: new sales' spends taken off their store's
    lease, in its transaction."""

    def settle_sales(self, sales: Sequence[Sale]) -> None: ...


class SaleBudgets(Protocol):
    """What ingest needs of supplier budgets: what new sales gave of a budgeted promotion
    booked (returns give back), in its transaction."""

    def book_sales(
        self,
        sales: Sequence[Sale],
        received: Any,
        accruals: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        """`accruals`: sale_id -> rule -> the verified accrual (None: verification off)."""


def _accrued(verdict: Verification) -> dict[str, int]:
    """rule -> what the Center's verified movements of a sale accrue by it."""
    out: dict[str, int] = {}
    for m in verdict.verified:
        if m.kind == "accrue" and m.rule_id:
            out[m.rule_id] = out.get(m.rule_id, 0) + m.amount
    return out


class SalesRepository:
    """Stored sales over the Database: ingest, quarantine, reconciliation and payloads."""

    def __init__(
        self,
        db: Database,
        *,
        ledger: SaleLedger,
        coupons: SaleCoupons,
        returns: SaleReturns,
        verifier: SaleVerification | None = None,
        leases: SaleLeases | None = None,
        certificates: SaleCertificates | None = None,
        till: SaleTill | None = None,
        budgets: SaleBudgets | None = None,
    ) -> None:
        self.db = db
        self.budgets = budgets
        self.ledger = ledger
        self.coupons = coupons
        self.returns = returns
        self.verifier = verifier
        self.leases = leases
        self.certificates = certificates
        self.till = till

    def ingest(
        self,
        sales: Sequence[Sale],
        received_at: datetime,
        *,
        payloads: Sequence[bytes] | None = None,
    ) -> Ack:
        """Store a batch of sales in one transaction and say what happened to each.

        `payloads` are the sales' canonical bytes as they arrived (sync_protocol's
        decode_sale_batch): stored as they are, never encoded again."""
        if payloads is not None and len(payloads) != len(sales):
            raise ValueError(f"{len(sales)} sales but {len(payloads)} payloads")
        held: Sequence[bytes | None] = [None] * len(sales) if payloads is None else payloads
        # One order for every writer, so concurrent batches lock rows in the same order.
        ordered = sorted(
            zip(sales, held, strict=True), key=lambda p: (p[0].register_id, p[0].seq, p[0].sale_id)
        )
        # Encoding and checks are pure: done once, when the transaction first needs them (a
        # backend may send a run's claim before encoding the next), not again on a retry.
        batch = IngestBatch([s for s, _ in ordered], [b for _, b in ordered])
        received = self.db.ts(received_at)
        with self.db.guard("ingest"):
            # What verification needs that no card lock guards is read before the transaction.
            ctx = None if self.verifier is None else self.verifier.prepare(sales, received_at)
            return self.db.retry_transient(lambda: self._ingest_once(batch, received, ctx))

    _SALE_KEYS = "sales"
    """The table holding the unique sale_id of stored sales (with its fingerprint)."""
    _SEQ_KEYS = "sales"
    """The table holding the unique (register_id, seq) of stored sales (with its sale_id)."""

    def _ingest_once(self, batch: IngestBatch, received: Any, ctx: VerifyContext | None) -> Ack:
        accepted: list[str] = []
        duplicates: list[str] = []
        rejected: list[Rejection] = []
        new: list[Sale] = []
        with self.db.transaction():
            prepared, claimed, owners = self._claim_sales(batch, received)
            for p in prepared:
                sale, payload, fingerprint, problem = p.sale, p.payload, p.fingerprint, p.problem
                if problem is None:
                    if sale.sale_id in claimed:
                        claimed.discard(sale.sale_id)  # a repeat within the batch is a duplicate
                        accepted.append(sale.sale_id)
                        new.append(sale)
                        continue
                    problem = self._conflict(sale, fingerprint)
                    if problem == "duplicate":
                        duplicates.append(sale.sale_id)
                        continue
                self._quarantine(sale, problem, fingerprint, payload, received)
                rejected.append(Rejection(sale_id=sale.sale_id, reason=problem))
            if new:
                verdicts = (
                    None
                    if ctx is None or self.verifier is None
                    else self.verifier.verify(new, ctx, received)
                )
                self._store_sale_details(new, owners, verdicts)
                accruals = None
                if verdicts is not None:
                    # A quarantined sale is kept (and acknowledged) but changes nothing.
                    new = [s for s in new if not verdicts[s.sale_id].quarantined]
                    accruals = {s.sale_id: _accrued(verdicts[s.sale_id]) for s in new}
                self._on_new_sales(new, owners, received, accruals)
        return Ack(accepted=tuple(accepted), duplicates=tuple(duplicates), rejected=tuple(rejected))

    def _on_new_sales(
        self,
        sales: Sequence[Sale],
        owners: Mapping[str, str],
        received: Any,
        accruals: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        """What else a newly stored sale changes, in the ingest transaction: coupons, returns."""
        self.coupons.record_coupon_redemptions(sales, owners)
        if self.certificates is not None:
            self.certificates.apply_sales(sales)
        self.returns.apply_returns(sales, owners)
        if self.leases is not None:
            self.leases.settle_sales(sales)
        if self.till is not None:
            self.till.record_shown(sales)
        if self.budgets is not None:
            self.budgets.book_sales(sales, received, accruals)

    def _sale_row(
        self, p: PreparedSale, received: Any, owners: Mapping[str, str]
    ) -> tuple[Any, ...]:
        sale = p.sale
        return (
            sale.sale_id,
            sale.store_id,
            sale.register_id,
            sale.seq,
            self.db.ts(sale.opened_at),
            self.db.ts(sale.closed_at),
            sale.card_no,
            sale.subtotal_minor,
            sale.discount_minor,
            sale.total_minor,
            len(sale.lines),
            sale.promo_version,
            p.fingerprint,
            p.payload,
            received,
            sale.prev_hash,
            p.chain_hash(),
            sale_owner(sale.card_no, sale.store_id, owners),
        )

    SALE_COLUMNS = (
        "sale_id",
        "store_id",
        "register_id",
        "seq",
        "opened_at",
        "closed_at",
        "card_no",
        "subtotal_minor",
        "discount_minor",
        "total_minor",
        "line_count",
        "promo_version",
        "fingerprint",
        "payload",
        "received_at",
        "prev_hash",
        "chain_hash",
        "owner_id",
    )

    def _claim_sales(
        self, batch: IngestBatch, received: Any
    ) -> tuple[list[PreparedSale], set[str], dict[str, str]]:
        """Lock the batch's cards, then store its checked sales whose sale_id and (register_id,
        seq) are free: every PreparedSale of the batch, in order, the sale_ids stored, and the
        owner of every card of the batch."""
        self.db.lock_cards(batch.card_nos())
        # Under the card locks: a card issued or moved meanwhile has moved its rows already.
        owners = self.ledger.card_owners(batch.card_nos())
        prepared = batch.prepared(0, len(batch.sales))
        claimed: set[str] = set()
        marks = ", ".join("?" for _ in self.SALE_COLUMNS)
        sql = (
            f"INSERT INTO sales ({', '.join(self.SALE_COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT DO NOTHING RETURNING sale_id"
        )
        for p in prepared:
            if p.problem is not None:
                continue
            if self.db.execute(sql, self._sale_row(p, received, owners)).fetchone() is not None:
                claimed.add(p.sale.sale_id)
        return prepared, claimed, owners

    def _conflict(self, sale: Sale, fingerprint: str) -> str:
        """Why a checked sale was not stored: "duplicate", or the reason to quarantine it (the
        store node classifies with the same rule: sync_protocol.classify_sale)."""
        same_id = self.db.execute(
            f"SELECT fingerprint FROM {self._SALE_KEYS} WHERE sale_id = ?", (sale.sale_id,)
        ).fetchone()
        holder = None
        if same_id is None:
            holder = self.db.execute(
                f"SELECT sale_id FROM {self._SEQ_KEYS} WHERE register_id = ? AND seq = ?",
                (sale.register_id, sale.seq),
            ).fetchone()
        found = classify_sale(
            sale_id=sale.sale_id,
            register_id=sale.register_id,
            seq=sale.seq,
            fingerprint=fingerprint,
            held_fingerprint=None if same_id is None else same_id[0],
            # The claim failed, so one key is taken: "?" if its row is not visible (yet).
            seq_holder="?" if holder is None else holder[0],
        )
        return "duplicate" if found.verdict is Verdict.DUPLICATE else found.reason

    def _store_sale_details(
        self,
        sales: Sequence[Sale],
        owners: Mapping[str, str],
        verdicts: Mapping[str, Verification] | None = None,
    ) -> None:
        """The lines and ledger movements of newly stored sales, in bulk; `owners` holds the
        owner of every card of `sales`; with `verdicts`, the Center's movements are booked,
        never the claimed ones."""
        entries: list[LedgerEntry] = []

        def lines() -> Iterator[tuple[Any, ...]]:
            # One pass that also collects the ledger movements. On PostgreSQL the COPY sends
            # rows as they are made: the server stores the first lines while the rest, and the
            # movements, are built.
            for sale in sales:
                sale_id = sale.sale_id
                owner = sale_owner(sale.card_no, sale.store_id, owners)
                for line in sale.lines:
                    discounts = line.discounts
                    yield (
                        sale_id,
                        line.line_no,
                        line.product_id,
                        line.qty_milli,
                        line.unit_price_minor,
                        line.amount_minor,
                        sum([d.amount_minor for d in discounts]) if discounts else 0,
                        int(line.weighed),
                        int(line.known_product),
                        owner,
                    )
                if sale.card_no:
                    entries.extend(
                        LedgerEntry(
                            card_no=sale.card_no,
                            wallet=m.wallet,
                            kind=m.kind,
                            amount=m.amount,
                            rule_id=m.rule_id,
                            source=sale_id,
                            created_at=sale.closed_at,
                            active_from=m.active_from,
                            expires_at=m.expires_at,
                        )
                        for m in (
                            ledger_movements(sale)
                            if verdicts is None
                            else verdicts[sale_id].verified
                        )
                    )

        self.db.bulk_insert("sale_lines", _LINE_COLUMNS, lines())
        if entries:
            self.ledger.apply_entries(entries, owners=owners)

    def _quarantine(
        self, sale: Sale, reason: str, fingerprint: str, payload: bytes, received: Any
    ) -> None:
        self.db.execute(
            "INSERT INTO quarantine (sale_id, store_id, register_id, seq, reason, fingerprint, "
            "payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                sale.sale_id,
                sale.store_id,
                sale.register_id,
                sale.seq,
                reason,
                fingerprint,
                payload,
                received,
            ),
        )

    def quarantined(self) -> list[tuple[str, str]]:
        """(sale_id, reason) of every quarantined payload, oldest first."""
        with self.db.guard("read quarantine"):
            rows = self.db.execute("SELECT sale_id, reason FROM quarantine ORDER BY entry_id")
            return [(r[0], r[1]) for r in rows.fetchall()]

    def load_sale(self, sale_id: str) -> bytes | None:
        """The stored canonical payload of a sale."""
        with self.db.guard("read sale"):
            row = self.db.execute(
                "SELECT payload FROM sales WHERE sale_id = ?", (sale_id,)
            ).fetchone()
            return bytes(row[0]) if row else None

    # -- reconciliation ------------------------------------------------------------------------

    def reconciliation(
        self, store_id: str, register_id: str | None = None
    ) -> list[RegisterSummary]:
        """Per-register figures of one store, with gaps in seq and breaks in the hash chain."""
        where = "store_id = ?" + (" AND register_id = ?" if register_id is not None else "")
        params: tuple[Any, ...] = (store_id,) if register_id is None else (store_id, register_id)
        with self.db.guard("reconciliation"):
            totals = self.db.execute(
                "SELECT register_id, COUNT(*), CAST(SUM(line_count) AS BIGINT), "
                "CAST(SUM(total_minor) AS BIGINT), CAST(SUM(discount_minor) AS BIGINT), "
                f"MIN(seq), MAX(seq) FROM sales WHERE {where} "
                "GROUP BY register_id ORDER BY register_id",
                params,
            ).fetchall()
            # LAG's default 0 makes a missing start (seq 1..) a gap too.
            gap_rows = self.db.execute(
                "SELECT register_id, prev + 1, seq - 1 FROM ("
                "SELECT register_id, seq, LAG(seq, 1, 0) OVER "
                f"(PARTITION BY register_id ORDER BY seq) AS prev FROM sales WHERE {where}"
                ") AS ordered WHERE seq - prev > 1 ORDER BY register_id, seq",
                params,
            ).fetchall()
            # A sale whose predecessor (seq - 1) is held must carry that sale's chain_hash.
            # Rows stored before the chain columns existed have chain_hash "" and are skipped;
            # runs of "" prev_hash are journals written before the chain (PROTOCOL.md).
            break_rows = self.db.execute(
                "SELECT register_id, seq FROM ("
                "SELECT register_id, seq, prev_hash, "
                "LAG(seq, 1, 0) OVER (PARTITION BY register_id ORDER BY seq) AS prev_seq, "
                "LAG(chain_hash, 1, '') OVER (PARTITION BY register_id ORDER BY seq) AS link, "
                "LAG(prev_hash, 1, '') OVER (PARTITION BY register_id ORDER BY seq) AS prev_prev "
                f"FROM sales WHERE {where}"
                ") AS ordered WHERE (seq = 1 AND prev_hash <> '') OR (seq - prev_seq = 1 "
                "AND link <> '' AND prev_hash <> link AND NOT (prev_hash = '' AND prev_prev = ''))"
                " ORDER BY register_id, seq",
                params,
            ).fetchall()
        gaps: dict[str, list[tuple[int, int]]] = {}
        for reg, start, end in gap_rows:
            gaps.setdefault(reg, []).append((int(start), int(end)))
        breaks: dict[str, list[int]] = {}
        for reg, seq in break_rows:
            breaks.setdefault(reg, []).append(int(seq))
        return [
            RegisterSummary(
                store_id=store_id,
                register_id=reg,
                receipts=int(receipts),
                lines=int(lines or 0),
                total_minor=int(total or 0),
                discount_minor=int(discount or 0),
                min_seq=int(min_seq),
                max_seq=int(max_seq),
                gaps=tuple(gaps.get(reg, ())),
                chain_breaks=tuple(breaks.get(reg, ())),
            )
            for reg, receipts, lines, total, discount, min_seq, max_seq in totals
        ]

    def sale_payloads(self, date_from: datetime, date_to: datetime) -> list[bytes]:
        """Stored sale payloads closed in [date_from, date_to), in (closed_at, sale_id) order."""
        with self.db.guard("read sales"):
            rows = self.db.execute(
                "SELECT payload FROM sales WHERE closed_at >= ? AND closed_at < ? "
                "ORDER BY closed_at, sale_id",
                (self.db.ts(date_from), self.db.ts(date_to)),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    # -- receipt partitions (PostgreSQL) -------------------------------------------------------

    def ensure_partitions(self, now: datetime, *, months_ahead: int = MONTHS_AHEAD) -> list[str]:
        """Create the monthly receipt partitions missing from this month to `months_ahead`
        (and for months parked in the default partition); the names created. No-op on SQLite."""
        if not self.db.dialect.partitions:
            return []
        with self.db.guard("create partitions"), self.db.transaction():
            return create_partitions(self.db, now, months_ahead)


_LINE_COLUMNS = (
    "sale_id",
    "line_no",
    "product_id",
    "qty_milli",
    "unit_price_minor",
    "amount_minor",
    "discount_minor",
    "weighed",
    "known_product",
    "owner_id",
)


class IngestBatch:
    """A store batch in ingest order, each sale prepared on first use and only once."""

    __slots__ = ("_prepared", "payloads", "sales")

    def __init__(self, sales: Sequence[Sale], payloads: Sequence[bytes | None] = ()) -> None:
        self.sales = sales
        self.payloads = payloads or [None] * len(sales)
        self._prepared: list[PreparedSale] = []

    def card_nos(self) -> Iterator[str]:
        return (s.card_no for s in self.sales if s.card_no)

    def prepared(self, start: int, stop: int) -> list[PreparedSale]:
        """The PreparedSale of sales[start:stop]."""
        done = self._prepared
        if len(done) < stop:
            done.extend(
                PreparedSale(s, check_sale(s), b)
                for s, b in zip(
                    self.sales[len(done) : stop], self.payloads[len(done) : stop], strict=True
                )
            )
        return done[start:stop]


class PreparedSale:
    """A sale with its canonical bytes, their hashes, and what check_sale says of it."""

    __slots__ = ("fingerprint", "payload", "problem", "sale")

    def __init__(self, sale: Sale, problem: str | None, payload: bytes | None = None) -> None:
        self.sale = sale
        self.problem = problem
        # The bytes the sale arrived in, when the caller kept them; encoding (the costliest step
        # of ingest) only for a sale handed over decoded.
        self.payload = encode_sale(sale) if payload is None else payload
        self.fingerprint = payload_fingerprint(self.payload)

    def chain_hash(self) -> str:
        # Only a stored sale needs it, and only once claimed: not on the claim's critical path.
        return payload_chain_hash(self.sale.prev_hash, self.payload)
