"""Who owns a customer-owned row: the distribution column of the Citus plan (distribution.py).

A card's rows (ledger, lots, lot consumptions, adjustments) belong to the card's customer; a
receipt's rows (sales, lines, coupon redemptions, returns) to its owner: the card's customer, or
`store:<store_id>` for a sale without a card. A card the Center does not know (yet) owns itself,
`card:<card_no>`, until it is issued: then, and whenever a card moves to another customer (a
merge, a master upsert), `move_cards` moves its rows to the new owner in the same transaction.
The card directory (`card_directory`, one row per card number, distributed by it) keeps card
numbers unique and answers "whose card is this?" without asking every shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from center.storage.database import Database
from center.storage.migrations import Migration

if TYPE_CHECKING:
    from center.storage.sql import SqlStorage

__all__ = [
    "CARD_OWNED",
    "POSTGRES_MIGRATION",
    "RECEIPT_OWNED",
    "SQLITE_MIGRATION",
    "card_owner",
    "lookup_card_owners",
    "move_cards",
    "register_cards",
    "sale_owner",
    "store_owner",
]

_CHUNK = 500
"""Values per `IN (...)` list: well under SQLite's limit of bound parameters."""

CARD_OWNED = ("ledger", "lots", "lot_consumptions", "adjustments")
"""Tables whose rows carry a `card_no` and belong to its owner (`customer_id`)."""
RECEIPT_OWNED = ("sale_lines", "coupon_redemptions", "returns")
"""Tables whose rows belong to the owner of a stored sale (`owner_id`), by its sale_id."""
_RECEIPT_KEY = {"sale_lines": "sale_id", "coupon_redemptions": "sale_id", "returns": "return_id"}


def store_owner(store_id: str) -> str:
    """The owner of a sale without a card: its store, so card-less receipts spread by store."""
    return f"store:{store_id}"


def card_owner(card_no: str, owners: Mapping[str, str]) -> str:
    """The owner of a card's rows: its customer (from `owners`), or the card itself while the
    Center does not know it."""
    return owners.get(card_no) or f"card:{card_no}"


def sale_owner(card_no: str | None, store_id: str, owners: Mapping[str, str]) -> str:
    """The owner of a receipt: its card's owner, or its store without a card."""
    return store_owner(store_id) if not card_no else card_owner(card_no, owners)


def lookup_card_owners(db: Database, card_nos: Iterable[str]) -> dict[str, str]:
    """card_no -> customer_id of the known cards among `card_nos` (unknown ones are absent)."""
    cards = sorted(set(card_nos))
    found: dict[str, str] = {}
    for start in range(0, len(cards), _CHUNK):
        chunk = cards[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        found.update(
            (str(r[0]), str(r[1]))
            for r in db.execute(
                f"SELECT card_no, customer_id FROM card_directory WHERE card_no IN ({marks})",
                chunk,
            ).fetchall()
        )
    return found


def register_cards(db: Database, cards: Sequence[tuple[str, str]]) -> None:
    """Enter new (card_no, customer_id)s in the directory (a taken number fails on its key)
    and give each card's earlier rows, made while it was unknown, to its customer. In the
    caller's transaction; the cards' ledger locks are taken so that no ingest writes a row
    for them as unknown cards meanwhile."""
    if not cards:
        return
    db.lock_cards(card_no for card_no, _ in cards)
    db.bulk_insert("card_directory", ("card_no", "customer_id"), cards)
    owners = dict(cards)
    # Only a sale makes rows for an unknown card (adjustments and replacements need a known
    # one; a return's rows follow its sale): cards never sold to have nothing to move.
    sold: list[str] = []
    numbers = sorted(owners)
    for start in range(0, len(numbers), _CHUNK):
        chunk = numbers[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        sold.extend(
            str(r[0])
            for r in db.execute(
                f"SELECT DISTINCT card_no FROM sales WHERE card_no IN ({marks})", chunk
            ).fetchall()
        )
    if sold:
        _move_rows(db, {card_no: owners[card_no] for card_no in sold})


def move_cards(db: Database, moves: Mapping[str, str]) -> None:
    """Cards (card_no -> new customer_id) now belong to another customer: the directory and
    every row of theirs follow, in the caller's transaction (cards' ledger locks taken)."""
    if not moves:
        return
    db.lock_cards(moves)
    db.executemany(
        "UPDATE card_directory SET customer_id = ? WHERE card_no = ?",
        [(owner, card_no) for card_no, owner in sorted(moves.items())],
    )
    _move_rows(db, moves)


def _move_rows(db: Database, moves: Mapping[str, str]) -> None:
    # On a cluster a changed distribution column is a move between shards (Citus refuses to
    # UPDATE it): these become INSERT ... SELECT and DELETE there. Merges are rare.
    rows: list[tuple[Any, ...]] = [(owner, card_no, owner) for card_no, owner in moves.items()]
    for table in CARD_OWNED:
        db.executemany(
            f"UPDATE {table} SET customer_id = ? WHERE card_no = ? AND customer_id <> ?", rows
        )
    db.executemany("UPDATE sales SET owner_id = ? WHERE card_no = ? AND owner_id <> ?", rows)
    for table in RECEIPT_OWNED:
        key = _RECEIPT_KEY[table]
        db.executemany(
            f"UPDATE {table} SET owner_id = ? WHERE {key} IN "
            "(SELECT sale_id FROM sales WHERE card_no = ?) AND owner_id <> ?",
            rows,
        )


# -- m018_distribution_keys ------------------------------------------------------------------

STORE_OWNER_SQL = "'store:' || store_id"
"""store_owner as SQL, over a row with `store_id`."""
CARD_SELF_SQL = "'card:' || card_no"
"""card_owner of an unknown card as SQL, over a row with `card_no`."""

_BACKFILL: tuple[str, ...] = (
    "CREATE TABLE card_directory (card_no TEXT PRIMARY KEY, customer_id TEXT NOT NULL)",
    "INSERT INTO card_directory (card_no, customer_id) SELECT card_no, customer_id FROM cards",
    # Filled below; the default only lets SQLite add a NOT NULL column (PostgreSQL drops it).
    *(f"ALTER TABLE {t} ADD COLUMN customer_id TEXT NOT NULL DEFAULT ''" for t in CARD_OWNED),
    *(
        f"ALTER TABLE {t} ADD COLUMN owner_id TEXT NOT NULL DEFAULT ''"
        for t in ("sales", *RECEIPT_OWNED)
    ),
    *(
        stmt
        for t in CARD_OWNED
        for stmt in (
            f"UPDATE {t} SET customer_id = d.customer_id FROM card_directory AS d "
            f"WHERE d.card_no = {t}.card_no",
            f"UPDATE {t} SET customer_id = {CARD_SELF_SQL} WHERE customer_id = ''",
        )
    ),
    f"UPDATE sales SET owner_id = {STORE_OWNER_SQL} WHERE card_no IS NULL",
    # Pays for the wider keys at ingest: ledger_card_time (card_no, created_at) serves every
    # read of a card's journal; no query filters the journal by (card_no, wallet).
    "DROP INDEX ledger_card",
    "UPDATE sales SET owner_id = d.customer_id FROM card_directory AS d "
    "WHERE d.card_no = sales.card_no",
    f"UPDATE sales SET owner_id = {CARD_SELF_SQL} WHERE owner_id = ''",
    *(
        f"UPDATE {t} SET owner_id = s.owner_id FROM sales AS s "
        f"WHERE s.sale_id = {t}.{_RECEIPT_KEY[t]}"
        for t in RECEIPT_OWNED
    ),
)

_KEYS: Mapping[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    # table: (primary key, unique keys); the distribution column last, so every lookup by the
    # old keys still uses the key's index (Citus needs the column in the key, not first).
    "cards": (("card_no", "customer_id"), ()),
    "ledger": (
        ("entry_id", "customer_id"),
        (("source", "wallet", "kind", "rule_id", "customer_id"),),
    ),
    "lots": (
        ("lot_id", "customer_id"),
        (("entry_id", "customer_id"), ("source", "wallet", "kind", "rule_id", "customer_id")),
    ),
    "lot_consumptions": (
        ("consumption_id", "customer_id"),
        (("entry_id", "lot_id", "customer_id"),),
    ),
    "sales": (("sale_id", "closed_at", "owner_id"), ()),
    "sale_lines": (("sale_id", "line_no", "owner_id"), ()),
    "coupon_redemptions": (("code", "sale_id", "owner_id"), ()),
    "returns": (("return_id", "owner_id"), ()),
    "adjustments": (("idempotency_key", "customer_id"), ()),
    "questionnaire_answers": (("answer_id", "customer_id"), ()),
    # Idempotency stays one claim per sale_id; the (register_id, seq) claim is register_seqs.
    "sale_ids": (("sale_id",), ()),
}


def _rekey(storage: SqlStorage) -> None:
    """Migration step (PostgreSQL): every table of _KEYS gets exactly the keys it names; a
    key it already has is kept (no index rebuilt for nothing)."""
    execute = storage.db.execute
    for table, (primary, uniques) in _KEYS.items():
        wanted = {("p", primary), *(("u", u) for u in uniques)}
        held = {
            (str(r[1]), tuple(str(c) for c in r[2])): str(r[0])
            for r in execute(
                "SELECT c.conname, c.contype, ARRAY(SELECT a.attname::text FROM "
                "unnest(c.conkey) WITH ORDINALITY AS k(attnum, i) JOIN pg_attribute a "
                "ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.i) "
                "FROM pg_constraint c WHERE c.conrelid = CAST(? AS regclass) "
                "AND c.contype IN ('p', 'u')",
                (table,),
            ).fetchall()
        }
        changes = [f"DROP CONSTRAINT {name}" for key, name in held.items() if key not in wanted]
        changes.extend(
            f"ADD {'PRIMARY KEY' if kind == 'p' else 'UNIQUE'} ({', '.join(columns)})"
            for kind, columns in sorted(wanted - set(held))
        )
        if changes:
            execute(f"ALTER TABLE {table} {', '.join(changes)}")


SQLITE_MIGRATION = Migration("m018_distribution_keys", _BACKFILL)
"""m018 on SQLite: the same columns, filled the same; its keys stay (one database, no shards)."""
POSTGRES_MIGRATION = Migration(
    "m018_distribution_keys",
    (
        *_BACKFILL,
        *(f"ALTER TABLE {t} ALTER COLUMN customer_id DROP DEFAULT" for t in CARD_OWNED),
        *(f"ALTER TABLE {t} ALTER COLUMN owner_id DROP DEFAULT" for t in ("sales", *RECEIPT_OWNED)),
        """CREATE TABLE register_seqs (
            register_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            sale_id TEXT NOT NULL,
            PRIMARY KEY (register_id, seq)
        )""",
        "INSERT INTO register_seqs (register_id, seq, sale_id) "
        "SELECT register_id, seq, sale_id FROM sale_ids",
        _rekey,
    ),
)
"""m018 on PostgreSQL: the columns, and every distributed table keyed by its column."""
