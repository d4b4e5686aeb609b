"""Bulk ingest on PostgreSQL: a few statements per batch, not a few per sale (imports psycopg).

The claim in `sale_ids` is what makes a sale unique across the receipt partitions
(center/ingest/partitions.py); claims go in pipelined runs, rows in one COPY.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from center.ingest.store import (
    IngestBatch,
    PreparedSale,
    SaleCoupons,
    SaleLedger,
    SaleReturns,
    SalesRepository,
)
from center.storage.database import Database
from center.storage.postgres_database import PostgresDatabase

__all__ = ["PostgresSalesRepository"]

_CLAIM_RUN = 100
"""Sales per claim statement: the server claims one run while the next is encoded."""


class PostgresSalesRepository(SalesRepository):
    """Stored sales over a PostgreSQL database: claims in `sale_ids`, pipelined, rows by COPY."""

    _SALE_KEYS = "sale_ids"

    def __init__(
        self,
        db: Database,
        *,
        ledger: SaleLedger,
        coupons: SaleCoupons,
        returns: SaleReturns,
    ) -> None:
        assert isinstance(db, PostgresDatabase)
        super().__init__(db, ledger=ledger, coupons=coupons, returns=returns)
        self._pg = db

    def _claim_sales(
        self, batch: IngestBatch, received: Any
    ) -> tuple[list[PreparedSale], set[str]]:
        # The claim in sale_ids is what makes a sale unique across partitions; rows go in the
        # batch's (register_id, seq) order, the same for every writer, so they never deadlock.
        # Card locks first, then run by run, in one pipeline: the server claims a run while this
        # process encodes the next, and nobody waits for a round trip in between.
        prepared: list[PreparedSale] = []
        cursors = []
        pg = self._pg
        with pg.conn.pipeline():
            pg.lock_cards(batch.card_nos())
            for start in range(0, len(batch.sales), _CLAIM_RUN):
                run = batch.prepared(start, start + _CLAIM_RUN)
                prepared.extend(run)
                checked = [p for p in run if p.problem is None]
                if not checked:
                    continue
                cursors.append(
                    pg.execute_binary(
                        "INSERT INTO sale_ids (sale_id, register_id, seq, fingerprint, "
                        "closed_at) SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[], "
                        "?::text[], ?::timestamptz[]) ON CONFLICT DO NOTHING RETURNING sale_id",
                        (
                            [p.sale.sale_id for p in checked],
                            [p.sale.register_id for p in checked],
                            [p.sale.seq for p in checked],
                            [p.fingerprint for p in checked],
                            [p.sale.closed_at for p in checked],
                        ),
                    )
                )
            claimed = {r[0] for cursor in cursors for r in cursor.fetchall()}

        def rows() -> Iterator[tuple[Any, ...]]:  # made while COPY sends the ones before
            pending = set(claimed)
            for p in prepared:
                if p.sale.sale_id in pending:
                    pending.discard(p.sale.sale_id)  # a repeat within the batch is a duplicate
                    yield self._sale_row(p, received)

        pg.bulk_insert("sales", self.SALE_COLUMNS, rows())
        return prepared, claimed
