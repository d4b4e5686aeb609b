"""Customers and cards: records, cards' life, call-center search, merges, deactivation,
questionnaires and the customer card, over the shared Database (one repository).

Every change is one transaction that also writes its `audit` row and bumps the master version
(customers and cards are in the stores' snapshot). A replacement moves the old card's lots to the
new card as ledger movements keyed by the old card and lot, so a replay moves nothing twice. A
merge moves the merged customer's cards to the survivor; balances follow because lots belong to
cards. The merged customer stays, marked `merged_into`, so its id keeps resolving.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from difflib import SequenceMatcher
from typing import Any, Protocol

from center.access.audit import AuditLog
from center.crm.customers_store import (
    HISTORY,
    MAX_RECEIPTS_PAGE,
    RECEIPTS_PAGE,
    check_answers,
    customer_coupons,
    favourite_categories,
    parse_cursor,
    receipts_page,
)
from center.crm.model import CustomerInput, SearchQuery, new_card_no, search_keys
from center.errors import Conflict, InvalidRequest, MalformedRequest, UnknownObject
from center.feed.versions import MasterVersions
from center.ledger.model import Balance
from center.storage.database import Database
from center.storage.migrations import Migration
from center.storage.owners import move_cards, register_cards

__all__ = [
    "CRM_SEARCH_LIMIT",
    "POSTGRES_MIGRATION",
    "SQLITE_MIGRATION",
    "CardLedger",
    "CustomerRepository",
]

CRM_SEARCH_LIMIT = 20
FUZZY_MIN = 4
"""A name word this long that matches no prefix is looked up as a misspelt last name."""
FUZZY_NAMES = 5
"""Distinct last names a misspelling may stand for."""
FUZZY_SIMILARITY = 0.2
"""PostgreSQL: the least pg_trgm similarity of a misspelling to the name it stands for."""
FUZZY_SCAN = 2000
FUZZY_RATIO = 0.75
"""SQLite's fallback: a difflib ratio this close to one of FUZZY_SCAN names of the same two
first letters (PostgreSQL uses pg_trgm's similarity)."""
RECENT_RECEIPTS = 20
MAX_MERGE_CHAIN = 10
"""Merges followed from a merged customer to the one that survives them all."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
"""A questionnaire id."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class CardLedger(Protocol):
    """What the customers need of the ledger: a card's balance, and the two steps a card
    replacement takes to move a balance (the journal rows themselves it writes alone)."""

    def balance(self, card_no: str, now: datetime) -> Balance | None:
        """Balances of a card at `now`, or None for an unknown card."""
        ...

    def debt(self, card_no: str, wallet: str) -> int:
        """The outstanding debt of one wallet of a card."""
        ...

    def apply_entry(
        self,
        entry_id: int,
        card_no: str,
        wallet: str,
        kind: str,
        amount: int,
        rule_id: str,
        source: str,
        active_from: Any,
        expires_at: Any,
        created_at: Any,
    ) -> None:
        """The lot of a journaled credit given as stored (it repays the wallet's debt first)."""
        ...


class CustomerRepository:
    """Customers, their cards, search, merges and views, over the shared Database."""

    def __init__(
        self, db: Database, *, audit: AuditLog, versions: MasterVersions, ledger: CardLedger
    ) -> None:
        self.db = db
        self.audit = audit
        self.versions = versions
        self.ledger = ledger

    # -- helpers -------------------------------------------------------------------------------

    def _card(self, card_no: str, *, lock: bool = False) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT card_no, customer_id, status, card_type, block_reason, replaced_by "
            f"FROM cards WHERE card_no = ?{self.db.dialect.for_update if lock else ''}",
            (card_no,),
        ).fetchone()
        if row is None:
            return None
        return {
            "card_no": row[0],
            "customer_id": row[1],
            "status": row[2],
            "type": row[3],
            "block_reason": row[4],
            "replaced_by": row[5],
        }

    def _existing_card(self, card_no: str) -> dict[str, Any]:
        card = self._card(card_no, lock=True)
        if card is None:
            raise UnknownObject("card_no", f"unknown card {card_no!r}")
        return card

    def _set_card(
        self, card: dict[str, Any], action: str, actor: str, at: Any, **changes: Any
    ) -> dict[str, Any]:
        after = {**card, **changes}
        version = self.versions.bump()
        self.db.execute(
            "UPDATE cards SET status = ?, block_reason = ?, replaced_by = ?, version = ? "
            "WHERE card_no = ?",
            (
                after["status"],
                after["block_reason"],
                after["replaced_by"],
                version,
                card["card_no"],
            ),
        )
        self.audit.record("card", card["card_no"], action, card, after, actor, at)
        return after

    def _insert_card(
        self, customer_id: str, card_no: str | None, card_type: str, status: str, at: Any
    ) -> dict[str, Any]:
        if card_no is None:
            card_no = new_card_no()
            while self._card(card_no) is not None:
                card_no = new_card_no()
        elif self._card(card_no) is not None:
            raise Conflict("card_no", f"card {card_no!r} is already issued")
        version = self.versions.bump()
        self.db.execute(
            "INSERT INTO cards (card_no, customer_id, status, version, card_type, block_reason, "
            "issued_at) VALUES (?, ?, ?, ?, ?, '', ?)",
            (card_no, customer_id, status, version, card_type, at),
        )
        register_cards(self.db, [(card_no, customer_id)])
        card = self._card(card_no)
        assert card is not None
        return card

    def _customer_row(self, customer_id: str, field: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT attributes, status, merged_into FROM customers WHERE customer_id = ?"
            f"{self.db.dialect.for_update}",
            (customer_id,),
        ).fetchone()
        if row is None:
            raise UnknownObject(field, f"unknown customer {customer_id!r}")
        return {"attributes": json.loads(row[0]), "status": row[1], "merged_into": row[2]}

    def _columns(self, table: str) -> set[str]:
        """The columns of a table another feature may or may not have created yet."""
        return self.db.dialect.columns_of(self.db.execute, table)

    # -- customers -----------------------------------------------------------------------------

    def create_customer(self, customer: CustomerInput, actor: str, now: datetime) -> str:
        """Create a customer with its search keys and audit row; return its id."""
        at = self.db.ts(now)
        customer_id = customer.customer_id or f"c-{uuid.uuid4().hex[:16]}"
        attributes = dict(customer.attributes)
        with self.db.guard("create customer"), self.db.transaction():
            held = self.db.execute(
                "SELECT 1 FROM customers WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            if held is not None:
                raise Conflict("body.customer_id", f"customer {customer_id!r} already exists")
            version = self.versions.bump()
            self.db.execute(
                "INSERT INTO customers (customer_id, attributes, version) VALUES (?, ?, ?)",
                (customer_id, _json(attributes), version),
            )
            self.db.execute(
                "INSERT INTO customer_index (customer_id, last_name, first_name, middle_name, "
                "phone_rev, email) VALUES (?, ?, ?, ?, ?, ?)",
                (customer_id, *search_keys(attributes)),
            )
            self.audit.record(
                "customer",
                customer_id,
                "create",
                None,
                {"customer_id": customer_id, "attributes": attributes},
                actor,
                at,
            )
        return customer_id

    def customer_view(self, customer_id: str, now: datetime) -> dict[str, Any] | None:
        """Profile, cards, balance per wallet over all cards and the last receipts; None if
        unknown."""
        with self.db.guard("read customer"):
            with self.db.snapshot():
                row = self.db.execute(
                    "SELECT attributes FROM customers WHERE customer_id = ?", (customer_id,)
                ).fetchone()
                if row is None:
                    return None
                cards = [
                    {
                        "card_no": r[0],
                        "status": r[1],
                        "type": r[2],
                        "block_reason": r[3],
                        "replaced_by": r[4],
                    }
                    for r in self.db.execute(
                        "SELECT card_no, status, card_type, block_reason, replaced_by FROM cards "
                        "WHERE customer_id = ? ORDER BY card_no",
                        (customer_id,),
                    ).fetchall()
                ]
                receipts: list[dict[str, Any]] = []
                if cards:
                    marks = ", ".join("?" for _ in cards)
                    receipts = [
                        {
                            "sale_id": r[0],
                            "store_id": r[1],
                            "closed_at": self.db.dt(r[2]).isoformat(),
                            "card_no": r[3],
                            "total_minor": int(r[4]),
                            "discount_minor": int(r[5]),
                            "lines": int(r[6]),
                            "kind": "sale" if r[7] is None else "return",
                            "return_of": r[7],
                        }
                        for r in self.db.execute(
                            "SELECT s.sale_id, s.store_id, s.closed_at, s.card_no, "
                            "s.total_minor, s.discount_minor, s.line_count, r.original_id "
                            "FROM sales s LEFT JOIN returns r ON r.return_id = s.sale_id "
                            "AND r.owner_id = s.owner_id "
                            f"WHERE s.card_no IN ({marks}) "
                            f"ORDER BY s.closed_at DESC, s.sale_id DESC LIMIT {RECENT_RECEIPTS}",
                            [c["card_no"] for c in cards],
                        ).fetchall()
                    ]
            wallets: dict[str, int] = {"bonus": 0}
            for card in cards:
                found = self.ledger.balance(card["card_no"], now)
                if found is not None:
                    for wallet, amount in found.wallets.items():
                        wallets[wallet] = wallets.get(wallet, 0) + amount
        return {
            "customer_id": customer_id,
            "attributes": json.loads(row[0]),
            "cards": cards,
            "wallets": dict(sorted(wallets.items())),
            "receipts": receipts,
        }

    # -- cards ---------------------------------------------------------------------------------

    def issue_card(
        self, customer_id: str, card_no: str | None, card_type: str, actor: str, now: datetime
    ) -> dict[str, Any]:
        """A new card for a customer: electronic ones are active at once, physical ones once
        activated."""
        at = self.db.ts(now)
        status = "active" if card_type == "electronic" else "issued"
        with self.db.guard("issue card"), self.db.transaction():
            held = self.db.execute(
                "SELECT 1 FROM customers WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            if held is None:
                raise UnknownObject("body.customer_id", f"unknown customer {customer_id!r}")
            card = self._insert_card(customer_id, card_no, card_type, status, at)
            self.audit.record("card", card["card_no"], "issue", None, card, actor, at)
        return card

    def activate_card(self, card_no: str, actor: str, now: datetime) -> dict[str, Any]:
        """An issued card becomes active (an active one stays so)."""
        with self.db.guard("activate card"), self.db.transaction():
            card = self._existing_card(card_no)
            if card["status"] == "active":
                return card
            if card["status"] != "issued":
                raise Conflict("card_no", f"card {card_no} is {card['status']}; unblock it")
            return self._set_card(card, "activate", actor, self.db.ts(now), status="active")

    def block_card(self, card_no: str, reason: str, actor: str, now: datetime) -> dict[str, Any]:
        """Block a card with a reason (the stores see `blocked` in the next snapshot)."""
        with self.db.guard("block card"), self.db.transaction():
            card = self._existing_card(card_no)
            if card["status"] == "blocked":
                if card["block_reason"] == reason:
                    return card
                if card["block_reason"] == "replaced":
                    raise Conflict("card_no", f"card {card_no} was replaced")
            return self._set_card(
                card, "block", actor, self.db.ts(now), status="blocked", block_reason=reason
            )

    def unblock_card(self, card_no: str, actor: str, now: datetime) -> dict[str, Any]:
        """Lift a block; a replaced card stays blocked."""
        with self.db.guard("unblock card"), self.db.transaction():
            card = self._existing_card(card_no)
            if card["status"] != "blocked":
                return card
            if card["replaced_by"]:
                raise Conflict(
                    "card_no",
                    f"card {card_no} was replaced by {card['replaced_by']}; not unblocked",
                )
            return self._set_card(
                card, "unblock", actor, self.db.ts(now), status="active", block_reason=""
            )

    def replace_card(
        self, card_no: str, new_card_no_: str | None, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Issue a replacement (active), block the old card as "replaced" and move its balance.

        Replaying the same replacement answers the same new card and moves nothing.
        """
        at = self.db.ts(now)
        with self.db.guard("replace card"), self.db.transaction():
            old = self._existing_card(card_no)
            if old["replaced_by"]:
                if new_card_no_ not in (None, old["replaced_by"]):
                    raise Conflict(
                        "card_no", f"card {card_no} was replaced by {old['replaced_by']}"
                    )
                new = self._card(old["replaced_by"])
                assert new is not None
                return {"old": old, "new": new, "moved": {}}
            new = self._insert_card(old["customer_id"], new_card_no_, old["type"], "active", at)
            self.audit.record("card", new["card_no"], "issue", None, new, actor, at)
            self.db.lock_cards(sorted([card_no, new["card_no"]]))
            moved = self._move_balance(card_no, new["card_no"], at)
            old = self._set_card(
                old,
                "replace",
                actor,
                at,
                status="blocked",
                block_reason="replaced",
                replaced_by=new["card_no"],
            )
        return {"old": old, "new": new, "moved": moved}

    def _move_balance(self, old: str, new: str, at: Any) -> dict[str, int]:
        """Move the unexpired lots and the debt of `old` to `new` (cards of one customer, the
        owner of the rows written); amounts moved per wallet."""
        card = self._card(old)
        assert card is not None
        owner = str(card["customer_id"])
        moved: dict[str, int] = {}
        lots = self.db.execute(
            "SELECT lot_id, wallet, rule_id, remaining, active_from, expires_at FROM lots "
            "WHERE card_no = ? AND remaining > 0 AND (expires_at IS NULL OR expires_at > ?) "
            f"ORDER BY lot_id{self.db.dialect.for_update}",
            (old, at),
        ).fetchall()
        for lot_id, wallet, rule_id, remaining, active_from, expires_at in lots:
            source = f"replace:{old}:lot:{lot_id}"
            out = self._ledger(
                owner, old, wallet, "transfer_out", -int(remaining), rule_id, source, at
            )
            if out is None:
                continue  # already moved by an earlier run
            self.db.execute(
                "INSERT INTO lot_consumptions (entry_id, lot_id, card_no, wallet, kind, amount, "
                "created_at, customer_id) VALUES (?, ?, ?, ?, 'transfer', ?, ?, ?)",
                (out, lot_id, old, wallet, int(remaining), at, owner),
            )
            self.db.execute("UPDATE lots SET remaining = 0 WHERE lot_id = ?", (lot_id,))
            entry = self._ledger(
                owner, new, wallet, "transfer_in", int(remaining), rule_id, source, at,
                active_from, expires_at,
            )  # fmt: skip
            assert entry is not None
            self.ledger.apply_entry(
                entry, new, wallet, "transfer_in", int(remaining), rule_id, source,
                active_from, expires_at, at,
            )  # fmt: skip
            moved[wallet] = moved.get(wallet, 0) + int(remaining)
        wallets = self.db.execute(
            "SELECT DISTINCT wallet FROM lot_consumptions WHERE card_no = ? AND kind = 'debt'",
            (old,),
        ).fetchall()
        for (wallet,) in wallets:
            debt = self.ledger.debt(old, wallet)
            if debt <= 0:
                continue
            source = f"replace:{old}:debt"
            out = self._ledger(owner, old, wallet, "transfer_out", debt, "", source, at)
            if out is None:
                continue
            entry = self._ledger(owner, new, wallet, "transfer_in", -debt, "", source, at)
            assert entry is not None
            self._executemany_consumptions(
                owner,
                [(out, old, wallet, "recover", debt, at), (entry, new, wallet, "debt", debt, at)],
            )
            moved[wallet] = moved.get(wallet, 0) - debt
        return moved

    def _executemany_consumptions(self, owner: str, rows: Sequence[tuple[Any, ...]]) -> None:
        for entry_id, card_no, wallet, kind, amount, at in rows:
            self.db.execute(
                "INSERT INTO lot_consumptions (entry_id, lot_id, card_no, wallet, kind, amount, "
                "created_at, customer_id) VALUES (?, NULL, ?, ?, ?, ?, ?, ?)",
                (entry_id, card_no, wallet, kind, amount, at, owner),
            )

    def _ledger(
        self,
        owner: str,
        card_no: str,
        wallet: str,
        kind: str,
        amount: int,
        rule_id: str,
        source: str,
        at: Any,
        active_from: Any = None,
        expires_at: Any = None,
    ) -> int | None:
        row = self.db.execute(
            "INSERT INTO ledger (card_no, wallet, kind, amount, rule_id, source, active_from, "
            "expires_at, created_at, customer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING entry_id",
            (card_no, wallet, kind, amount, rule_id, source, active_from, expires_at, at, owner),
        ).fetchone()
        return None if row is None else int(row[0])

    # -- search and audit ----------------------------------------------------------------------

    def search_customers(self, query: SearchQuery) -> list[dict[str, Any]]:
        """Up to CRM_SEARCH_LIMIT customers matching by name prefixes, e-mail prefix, phone
        suffix or card prefix, by customer_id."""
        limit = CRM_SEARCH_LIMIT
        ids: set[str] = set()
        with self.db.guard("search customers"), self.db.snapshot():
            if query.email:
                sql = "SELECT customer_id FROM customer_index WHERE email LIKE ?"
                ids.update(r[0] for r in self._rows(sql + f" LIMIT {limit}", [query.email + "%"]))
            if query.digits:
                sql = "SELECT customer_id FROM customer_index WHERE phone_rev LIKE ?"
                pattern = [query.digits[::-1] + "%"]
                ids.update(r[0] for r in self._rows(sql + f" LIMIT {limit}", pattern))
                sql = "SELECT customer_id FROM cards WHERE card_no LIKE ?"
                ids.update(r[0] for r in self._rows(sql + f" LIMIT {limit}", [query.digits + "%"]))
            fuzzy: list[str] = []
            if query.words:
                where = " AND ".join(
                    "(last_name LIKE ? OR first_name LIKE ? OR middle_name LIKE ?)"
                    for _ in query.words
                )
                params = [p for w in query.words for p in (w + "%",) * 3]
                sql = f"SELECT customer_id FROM customer_index WHERE {where} LIMIT {limit}"
                ids.update(r[0] for r in self._rows(sql, params))
                if not ids and len(query.words[0]) >= FUZZY_MIN:
                    fuzzy = self._similar_last_names(query.words, limit)
            # Exact matches by id, then the misspelling matches best first; a merged
            # customer's keys find the customer it was merged into.
            found = self._survivors([*sorted(ids), *fuzzy])[:limit]
            if not found:
                return []
            marks = ", ".join("?" for _ in found)
            attributes = {
                r[0]: json.loads(r[1])
                for r in self._rows(
                    f"SELECT customer_id, attributes FROM customers WHERE customer_id IN ({marks})",
                    found,
                )
            }
            cards: dict[str, list[dict[str, str]]] = {}
            for r in self._rows(
                "SELECT customer_id, card_no, status FROM cards "
                f"WHERE customer_id IN ({marks}) ORDER BY card_no",
                found,
            ):
                cards.setdefault(r[0], []).append({"card_no": r[1], "status": r[2]})
        return [
            {
                "customer_id": customer_id,
                "attributes": attributes.get(customer_id, {}),
                "cards": cards.get(customer_id, []),
            }
            for customer_id in found
        ]

    def _survivors(self, ids: Sequence[str]) -> list[str]:
        """The ids with each merged customer replaced by the one it was merged into (through
        a chain of merges), duplicates dropped, order kept."""
        target = {i: i for i in ids}
        pending = set(ids)
        for _ in range(MAX_MERGE_CHAIN):
            if not pending:
                break
            marks = ", ".join("?" for _ in pending)
            hops = dict(
                self._rows(
                    "SELECT customer_id, merged_into FROM customers "
                    f"WHERE customer_id IN ({marks}) AND merged_into IS NOT NULL",
                    sorted(pending),
                )
            )
            for original, now_at in target.items():
                if now_at in hops:
                    target[original] = hops[now_at]
            pending = set(hops.values())
        return list(dict.fromkeys(target[i] for i in ids))

    def _similar_last_names(self, words: Sequence[str], limit: int) -> list[str]:
        """Customers whose last name is like the first word (a misspelling of it), the others
        being name prefixes; best match first."""
        rest = " ".join(
            "AND (last_name LIKE ? OR first_name LIKE ? OR middle_name LIKE ?)" for _ in words[1:]
        )
        rest_params = [p for w in words[1:] for p in (w + "%",) * 3]
        if self.db.dialect.trigram_search:
            # Trigram similarity over the distinct last names (a small table, GIN-indexed),
            # then the customers of the best few names: never a pass over every customer.
            sql = (
                "SELECT c.customer_id FROM (SELECT name, similarity(name, ?) AS score "
                "FROM customer_names WHERE name %% ? ORDER BY score DESC, name "
                f"LIMIT {FUZZY_NAMES}) AS n CROSS JOIN LATERAL (SELECT customer_id "
                f"FROM customer_index WHERE last_name = n.name {rest} LIMIT {limit}) AS c "
                f"ORDER BY n.score DESC, n.name, c.customer_id LIMIT {limit}"
            )
            # Lower than pg_trgm's default 0.3: two swapped letters of a 6-letter name score 0.27.
            self.db.execute(f"SET LOCAL pg_trgm.similarity_threshold = {FUZZY_SIMILARITY}")
            return [r[0] for r in self._rows(sql, [words[0], words[0], *rest_params])]
        # SQLite: the distinct last names sharing the first two letters, ranked in Python.
        names = [
            r[0]
            for r in self._rows(
                "SELECT DISTINCT last_name FROM customer_index WHERE last_name LIKE ? "
                f"LIMIT {FUZZY_SCAN}",
                [words[0][:2] + "%"],
            )
        ]
        scored = sorted((-SequenceMatcher(None, words[0], name).ratio(), name) for name in names)
        best = [name for score, name in scored if -score >= FUZZY_RATIO][:FUZZY_NAMES]
        found: list[str] = []
        for name in best:
            sql = f"SELECT customer_id FROM customer_index WHERE last_name = ? {rest} LIMIT ?"
            rows = self._rows(sql, [name, *rest_params, limit - len(found)])
            found.extend(sorted(r[0] for r in rows))
            if len(found) >= limit:
                break
        return found

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        # Planned for these values: a prefix LIKE needs its pattern to use an index, and
        # PostgreSQL's generic plan of a prepared statement would scan.
        return list(self.db.execute_planned(sql, params).fetchall())

    # -- merge ---------------------------------------------------------------------------------

    def merge_customers(
        self, survivor_id: str, merged_id: str, actor: str, now: datetime, *, reason: str = ""
    ) -> dict[str, Any]:
        """Move the merged customer's cards (and so balances) and attributes to the survivor;
        the reason, if given, is kept in both customers' audit rows."""
        if survivor_id == merged_id:
            raise InvalidRequest(
                "body.merged_id", f"a customer can't merge into itself: {merged_id}"
            )
        at = self.db.ts(now)
        with self.db.guard("merge customers"), self.db.transaction():
            survivor = self._customer_row(survivor_id, "customer_id")
            merged = self._customer_row(merged_id, "body.merged_id")
            if merged["merged_into"] == survivor_id:
                return {
                    "survivor_id": survivor_id,
                    "merged_id": merged_id,
                    "cards": [],
                    "attributes": survivor["attributes"],
                    "replayed": True,
                }
            if merged["merged_into"]:
                raise Conflict(
                    "body.merged_id",
                    f"customer {merged_id} was already merged into {merged['merged_into']}",
                )
            if survivor["merged_into"]:
                raise Conflict(
                    "customer_id",
                    f"customer {survivor_id} was merged into {survivor['merged_into']}; "
                    "merge into that one",
                )
            cards = [
                str(r[0])
                for r in self.db.execute(
                    f"SELECT card_no FROM cards WHERE customer_id = ? ORDER BY card_no"
                    f"{self.db.dialect.for_update}",
                    (merged_id,),
                ).fetchall()
            ]
            version = self.versions.bump()
            self.db.execute(
                "UPDATE cards SET customer_id = ?, version = ? WHERE customer_id = ?",
                (survivor_id, version, merged_id),
            )
            # Their rows (ledger, lots, receipts...) follow: one customer, one shard.
            move_cards(self.db, dict.fromkeys(cards, survivor_id))
            # The survivor's own cards now carry the merged balance, coupons and offers too.
            self.db.execute(
                "UPDATE cards SET version = ? WHERE customer_id = ?", (version, survivor_id)
            )
            for card_no in cards:
                self.audit.record(
                    "card",
                    card_no,
                    "move",
                    {"customer_id": merged_id},
                    {"customer_id": survivor_id},
                    actor,
                    at,
                )
            attributes = {**merged["attributes"], **survivor["attributes"]}
            self.db.execute(
                "UPDATE customers SET attributes = ?, version = ? WHERE customer_id = ?",
                (_json(attributes), version, survivor_id),
            )
            self.db.execute(
                "UPDATE customers SET status = 'merged', merged_into = ?, version = ? "
                "WHERE customer_id = ?",
                (survivor_id, version, merged_id),
            )
            # Search finds the survivor by the keys it now holds, and by the merged customer's
            # own keys (kept: the call center hears old names and phones), which search
            # resolves through merged_into.
            self.db.execute("DELETE FROM customer_index WHERE customer_id = ?", (survivor_id,))
            self.db.execute(
                "INSERT INTO customer_index (customer_id, last_name, first_name, middle_name, "
                "phone_rev, email) VALUES (?, ?, ?, ?, ?, ?)",
                (survivor_id, *search_keys(attributes)),
            )
            # Questionnaires the survivor never answered come along (with their history).
            self.db.execute(
                "UPDATE questionnaire_answers SET customer_id = ? WHERE customer_id = ? "
                "AND questionnaire_id NOT IN (SELECT questionnaire_id FROM "
                "questionnaire_answers WHERE customer_id = ?)",
                (survivor_id, merged_id, survivor_id),
            )
            if "customer_id" in self._columns("coupons"):
                self.db.execute(
                    "UPDATE coupons SET customer_id = ? WHERE customer_id = ?",
                    (survivor_id, merged_id),
                )
            self.audit.record(
                "customer",
                survivor_id,
                "merge",
                {"attributes": survivor["attributes"]},
                {"attributes": attributes, "merged_id": merged_id, "cards": cards}
                | ({"reason": reason} if reason else {}),
                actor,
                at,
            )
            self.audit.record(
                "customer",
                merged_id,
                "merged_into",
                {"status": merged["status"], "merged_into": None},
                {"status": "merged", "merged_into": survivor_id, "cards": cards}
                | ({"reason": reason} if reason else {}),
                actor,
                at,
            )
        return {
            "survivor_id": survivor_id,
            "merged_id": merged_id,
            "cards": cards,
            "attributes": attributes,
            "replayed": False,
        }

    # -- deactivation --------------------------------------------------------------------------

    def deactivate_card(self, card_no: str, actor: str, now: datetime) -> dict[str, Any]:
        """Card status "inactive": registers stop accepting it; its balance stays."""
        with self.db.guard("deactivate card"), self.db.transaction():
            card = self._existing_card(card_no)
            if card["status"] == "inactive":
                return card
            return self._set_card(card, "deactivate", actor, self.db.ts(now), status="inactive")

    def deactivate_customer(self, customer_id: str, actor: str, now: datetime) -> dict[str, Any]:
        """Customer status "inactive" and every card of it "inactive"."""
        at = self.db.ts(now)
        with self.db.guard("deactivate customer"), self.db.transaction():
            customer = self._customer_row(customer_id, "customer_id")
            if customer["merged_into"]:
                raise Conflict(
                    "customer_id",
                    f"customer {customer_id} was merged into {customer['merged_into']}",
                )
            cards = [
                str(r[0])
                for r in self.db.execute(
                    "SELECT card_no FROM cards WHERE customer_id = ? AND status <> 'inactive' "
                    "ORDER BY card_no",
                    (customer_id,),
                ).fetchall()
            ]
            for card_no in cards:
                card = self._existing_card(card_no)
                self._set_card(card, "deactivate", actor, at, status="inactive")
            if customer["status"] != "inactive":
                version = self.versions.bump()
                self.db.execute(
                    "UPDATE customers SET status = 'inactive', version = ? WHERE customer_id = ?",
                    (version, customer_id),
                )
                self.audit.record(
                    "customer",
                    customer_id,
                    "deactivate",
                    {"status": customer["status"]},
                    {"status": "inactive", "cards": cards},
                    actor,
                    at,
                )
        return {"customer_id": customer_id, "status": "inactive", "cards": cards}

    # -- questionnaires ------------------------------------------------------------------------

    def set_answers(
        self,
        customer_id: str,
        questionnaire_id: str,
        answers: Mapping[str, Any],
        actor: str,
        now: datetime,
    ) -> dict[str, Any]:
        """Record a customer's answers to a questionnaire (history kept, audited)."""
        if not isinstance(questionnaire_id, str) or not _ID.match(questionnaire_id):
            raise InvalidRequest(
                "questionnaire_id",
                f"expected 1..64 letters, digits or ._:-, got {str(questionnaire_id)[:80]!r}",
            )
        checked = check_answers(answers)
        at = self.db.ts(now)
        with self.db.guard("set answers"), self.db.transaction():
            customer = self._customer_row(customer_id, "customer_id")
            if customer["merged_into"]:
                raise Conflict(
                    "customer_id",
                    f"customer {customer_id} was merged into {customer['merged_into']}",
                )
            last = self.db.execute(
                "SELECT answers, actor, answered_at FROM questionnaire_answers "
                "WHERE customer_id = ? AND questionnaire_id = ? ORDER BY answer_id DESC LIMIT 1",
                (customer_id, questionnaire_id),
            ).fetchone()
            before = None if last is None else json.loads(last[0])
            if before == checked:
                assert last is not None
                return {
                    "customer_id": customer_id,
                    "questionnaire_id": questionnaire_id,
                    "answers": before,
                    "actor": last[1],
                    "answered_at": self.db.dt(last[2]).isoformat(),
                    "changed": False,
                }
            self.db.execute(
                "INSERT INTO questionnaire_answers (customer_id, questionnaire_id, answers, "
                "actor, answered_at) VALUES (?, ?, ?, ?, ?)",
                (customer_id, questionnaire_id, _json(checked), actor, at),
            )
            self.audit.record(
                "customer",
                customer_id,
                "questionnaire",
                None if before is None else {"questionnaire_id": questionnaire_id,
                                             "answers": before},
                {"questionnaire_id": questionnaire_id, "answers": checked},
                actor,
                at,
            )  # fmt: skip
        return {
            "customer_id": customer_id,
            "questionnaire_id": questionnaire_id,
            "answers": checked,
            "actor": actor,
            "answered_at": now.isoformat(),
            "changed": True,
        }

    # -- the customer card ---------------------------------------------------------------------

    def customer_card_view(
        self, customer_id: str, now: datetime, *, history_limit: int = HISTORY
    ) -> dict[str, Any] | None:
        """customer_view plus status, questionnaires, ledger history, favourite categories and
        coupons; None if unknown."""
        view = self.customer_view(customer_id, now)
        if view is None:
            return None
        card_nos = [c["card_no"] for c in view["cards"]]
        with self.db.guard("read customer card"), self.db.snapshot():
            row = self.db.execute(
                "SELECT status, merged_into FROM customers WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            questionnaires: dict[str, Any] = {}
            for qid, answers, actor, answered_at in self.db.execute(
                "SELECT questionnaire_id, answers, actor, answered_at FROM questionnaire_answers "
                "WHERE customer_id = ? ORDER BY questionnaire_id, answer_id",
                (customer_id,),
            ).fetchall():
                questionnaires[qid] = {
                    "answers": json.loads(answers),
                    "actor": actor,
                    "answered_at": self.db.dt(answered_at).isoformat(),
                }
            history: list[dict[str, Any]] = []
            favourites: list[dict[str, Any]] = []
            if card_nos:
                marks = ", ".join("?" for _ in card_nos)
                history = [
                    {
                        "card_no": r[0],
                        "wallet": r[1],
                        "kind": r[2],
                        "amount": int(r[3]),
                        "rule_id": r[4],
                        "source": r[5],
                        "created_at": self.db.dt(r[6]).isoformat(),
                        "expires_at": None if r[7] is None else self.db.dt(r[7]).isoformat(),
                    }
                    for r in self.db.execute(
                        "SELECT card_no, wallet, kind, amount, rule_id, source, created_at, "
                        f"expires_at FROM ledger WHERE card_no IN ({marks}) "
                        "ORDER BY created_at DESC, entry_id DESC LIMIT ?",
                        (*card_nos, history_limit),
                    ).fetchall()
                ]
                favourites = favourite_categories(self.db, card_nos, now)
            coupons = customer_coupons(self.db, customer_id)
            page = receipts_page(self.db, card_nos, RECEIPTS_PAGE, None)
        return {
            **view,
            "receipts": page["receipts"],
            "receipts_next_cursor": page["next_cursor"],
            "receipt_totals": page["totals"],
            "status": row[0],
            "merged_into": row[1],
            "questionnaires": questionnaires,
            "history": history,
            "favourite_categories": favourites,
            "coupons": coupons,
        }

    def customer_receipts(
        self, customer_id: str, *, limit: int = RECEIPTS_PAGE, cursor: str | None = None
    ) -> dict[str, Any] | None:
        """One page of the receipts and returns of all the customer's cards, newest first,
        with the customer's totals and the cursor of the next page; None if unknown."""
        if not 1 <= limit <= MAX_RECEIPTS_PAGE:
            raise MalformedRequest("limit", f"expected 1..{MAX_RECEIPTS_PAGE}, got {limit}")
        after = None if cursor is None else parse_cursor(cursor)
        with self.db.guard("read customer receipts"), self.db.snapshot():
            row = self.db.execute(
                "SELECT 1 FROM customers WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            if row is None:
                return None
            card_nos = [
                str(r[0])
                for r in self.db.execute(
                    "SELECT card_no FROM cards WHERE customer_id = ? ORDER BY card_no",
                    (customer_id,),
                ).fetchall()
            ]
            page = receipts_page(self.db, card_nos, limit, after)
        return {"customer_id": customer_id, **page}


SQLITE_MIGRATION = Migration("m007_customer_name_search")
"""Call-center search on SQLite: nothing to add, misspellings are ranked in Python."""
POSTGRES_MIGRATION = Migration(
    "m007_customer_name_search",
    (
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        # The distinct last names, kept by statement triggers (any writer of customer_index, bulk
        # loads included); a name no customer bears any more only costs a row.
        "CREATE TABLE customer_names (name TEXT PRIMARY KEY)",
        "INSERT INTO customer_names (name) SELECT DISTINCT last_name FROM customer_index "
        "WHERE last_name <> ''",
        "CREATE INDEX customer_names_trgm ON customer_names USING gin (name gin_trgm_ops)",
        """CREATE FUNCTION customer_names_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO customer_names (name) SELECT DISTINCT last_name FROM added
        WHERE last_name <> '' ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
        "CREATE TRIGGER customer_names_insert AFTER INSERT ON customer_index "
        "REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION customer_names_add()",
        "CREATE TRIGGER customer_names_update AFTER UPDATE ON customer_index "
        "REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION customer_names_add()",
    ),
)
"""Call-center search on PostgreSQL: pg_trgm over the distinct last names."""
