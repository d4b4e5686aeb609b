"""Bulk ingest on PostgreSQL: a few statements per batch, not a few per sale (imports psycopg).

The claims are what make a sale unique across the receipt partitions (center/ingest/partitions.py)
and, on a Citus cluster, across the shards of the receipts' owners: one row per sale_id in
`sale_ids` and one per (register_id, seq) in `register_seqs`, each table distributed by its own
key. One statement per run claims both: the sale_ids it could claim go on to claim their
(register_id, seq); a sale_id whose seq was taken gives its claim back before anything else is
written, so a sale is stored only with both. Claims go in pipelined runs, rows in one COPY.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from center.ingest.store import (
    IngestBatch,
    PreparedSale,
    SaleBudgets,
    SaleCertificates,
    SaleCoupons,
    SaleLeases,
    SaleLedger,
    SaleReturns,
    SalesRepository,
    SaleTill,
    SaleVerification,
)
from center.storage.database import Database
from center.storage.owners import card_owner
from center.storage.postgres_database import PostgresDatabase

__all__ = ["PostgresSalesRepository"]

_CLAIM_RUN = 100
"""Sales per claim statement: the server claims one run while the next is encoded."""


class PostgresSalesRepository(SalesRepository):
    """Stored sales over a PostgreSQL database: claims in `sale_ids` and `register_seqs`,
    pipelined, rows by COPY."""

    _SALE_KEYS = "sale_ids"
    _SEQ_KEYS = "register_seqs"

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
        assert isinstance(db, PostgresDatabase)
        super().__init__(
            db,
            ledger=ledger,
            coupons=coupons,
            returns=returns,
            verifier=verifier,
            leases=leases,
            certificates=certificates,
            till=till,
            budgets=budgets,
        )
        self._pg = db

    def _claim_sales(
        self, batch: IngestBatch, received: Any
    ) -> tuple[list[PreparedSale], set[str], dict[str, str]]:
        # The claims are what make a sale unique across partitions; rows go in the
        # batch's (register_id, seq) order, the same for every writer, so they never deadlock.
        # Card locks first, then run by run, in one pipeline: the server claims a run while this
        # process encodes the next, and nobody waits for a round trip in between.
        prepared: list[PreparedSale] = []
        cursors = []
        pg = self._pg
        cards = sorted(set(batch.card_nos()))
        with pg.conn.pipeline():
            pg.lock_cards(cards)
            # Read under the card locks: a card issued or moved meanwhile has moved its rows.
            known = pg.execute_binary(
                "SELECT card_no, customer_id FROM card_directory WHERE card_no = ANY(?::text[])",
                (cards,),
            )
            for start in range(0, len(batch.sales), _CLAIM_RUN):
                run = batch.prepared(start, start + _CLAIM_RUN)
                prepared.extend(run)
                checked = [p for p in run if p.problem is None]
                if not checked:
                    continue
                cursors.append(
                    pg.execute_binary(
                        "WITH claimed AS (INSERT INTO sale_ids (sale_id, register_id, seq, "
                        "fingerprint, closed_at) SELECT * FROM unnest(?::text[], ?::text[], "
                        "?::bigint[], ?::text[], ?::timestamptz[]) ON CONFLICT DO NOTHING "
                        "RETURNING sale_id, register_id, seq), "
                        "seqs AS (INSERT INTO register_seqs (register_id, seq, sale_id) "
                        "SELECT register_id, seq, sale_id FROM claimed ON CONFLICT DO NOTHING "
                        "RETURNING sale_id) "
                        "SELECT c.sale_id, s.sale_id IS NOT NULL FROM claimed AS c "
                        "LEFT JOIN seqs AS s ON s.sale_id = c.sale_id",
                        (
                            [p.sale.sale_id for p in checked],
                            [p.sale.register_id for p in checked],
                            [p.sale.seq for p in checked],
                            [p.fingerprint for p in checked],
                            [p.sale.closed_at for p in checked],
                        ),
                    )
                )
            found = {str(r[0]): str(r[1]) for r in known.fetchall()}
            answers = [(r[0], bool(r[1])) for cursor in cursors for r in cursor.fetchall()]
        claimed = {sale_id for sale_id, with_seq in answers if with_seq}
        lost = [sale_id for sale_id, with_seq in answers if not with_seq]
        if lost:  # rare: a new sale_id on a taken (register_id, seq), a conflict
            pg.execute_binary("DELETE FROM sale_ids WHERE sale_id = ANY(?::text[])", (lost,))
        owners = {card_no: card_owner(card_no, found) for card_no in cards}

        def rows() -> Iterator[tuple[Any, ...]]:  # made while COPY sends the ones before
            pending = set(claimed)
            for p in prepared:
                if p.sale.sale_id in pending:
                    pending.discard(p.sale.sale_id)  # a repeat within the batch is a duplicate
                    yield self._sale_row(p, received, owners)

        pg.bulk_insert("sales", self.SALE_COLUMNS, rows())
        return prepared, claimed, owners
