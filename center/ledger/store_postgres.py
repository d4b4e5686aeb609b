"""The ledger's bulk I/O on PostgreSQL: one statement per batch over binary arrays, not one per
movement. The rules are center/ledger/planner.py; these only read and write (imports psycopg)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from center.ledger.model import LedgerEntry
from center.ledger.planner import Lot, WalletKey
from center.ledger.store import DEBT_SUM_SQL, LOT_COLUMNS, LedgerRepository
from center.storage.postgres_database import PostgresDatabase

__all__ = ["PostgresLedgerRepository"]


class PostgresLedgerRepository(LedgerRepository):
    """The ledger over a PostgreSQL database: binary arrays instead of IN lists and loops."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(db)
        self._execute_binary = db.execute_binary

    def _known_owners(self, card_nos: Sequence[str]) -> dict[str, str]:
        rows = self._execute_binary(
            "SELECT card_no, customer_id FROM card_directory WHERE card_no = ANY(?::text[])",
            (list(card_nos),),
        ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def _debts(self, card_nos: Iterable[str]) -> dict[WalletKey, int]:
        rows = self._execute_binary(
            f"SELECT card_no, wallet, {DEBT_SUM_SQL} FROM lot_consumptions "
            "WHERE card_no = ANY(?::text[]) AND kind IN ('debt', 'recover') "
            "GROUP BY card_no, wallet",
            (sorted(card_nos),),
        ).fetchall()
        return {(r[0], r[1]): int(r[2]) for r in rows if int(r[2] or 0) > 0}

    def _open_lots(self, keys: Iterable[WalletKey]) -> dict[WalletKey, list[Lot]]:
        pairs = sorted(keys)
        if not pairs:
            return {}
        lots: dict[WalletKey, list[Lot]] = {}
        for row in self._execute_binary(
            f"SELECT {LOT_COLUMNS} FROM lots WHERE (card_no, wallet) IN "
            "(SELECT * FROM unnest(?::text[], ?::text[])) AND remaining > 0 "
            "ORDER BY lot_id FOR UPDATE",
            ([k[0] for k in pairs], [k[1] for k in pairs]),
        ).fetchall():
            lots.setdefault((row[1], row[2]), []).append(self.lot(row))
        return lots

    def _lot_ids(self, entry_ids: Sequence[int]) -> dict[int, int]:
        return {
            int(r[0]): int(r[1])
            for r in self._execute_binary(
                "SELECT entry_id, lot_id FROM lots WHERE entry_id = ANY(?::bigint[])",
                (list(entry_ids),),
            ).fetchall()
        }

    def _take_from_lots(self, taken: Mapping[int, int]) -> None:
        self._execute_binary(
            "UPDATE lots SET remaining = remaining - t.take "
            "FROM unnest(?::bigint[], ?::bigint[]) AS t(lot_id, take) "
            "WHERE lots.lot_id = t.lot_id",
            (list(taken), list(taken.values())),
        )

    def journal(
        self, entries: Sequence[LedgerEntry], *, owners: Mapping[str, str] | None = None
    ) -> list[tuple[int, LedgerEntry]]:
        if not entries:
            return []
        owners = self._owners((e.card_no for e in entries), owners)
        ids = {
            (r[1], r[2], r[3], r[4]): int(r[0])
            for r in self._execute_binary(
                "INSERT INTO ledger (customer_id, card_no, wallet, kind, amount, rule_id, source, "
                "active_from, expires_at, created_at) SELECT * FROM unnest(?::text[], ?::text[], "
                "?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::timestamptz[], "
                "?::timestamptz[], ?::timestamptz[]) ON CONFLICT DO NOTHING "
                "RETURNING entry_id, source, wallet, kind, rule_id",
                (
                    [owners[e.card_no] for e in entries],
                    [e.card_no for e in entries],
                    [e.wallet for e in entries],
                    [e.kind for e in entries],
                    [e.amount for e in entries],
                    [e.rule_id for e in entries],
                    [e.source for e in entries],
                    [e.active_from for e in entries],
                    [e.expires_at for e in entries],
                    [e.created_at for e in entries],
                ),
            ).fetchall()
        }
        journaled: list[tuple[int, LedgerEntry]] = []
        for e in entries:
            entry_id = ids.pop((e.source, e.wallet, e.kind, e.rule_id), None)
            if entry_id is not None:
                journaled.append((entry_id, e))
        return journaled
