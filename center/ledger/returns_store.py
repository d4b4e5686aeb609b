"""Returns, manual adjustments and overdraft reports on the ledger.

A return is a stored sale with `return_of`; ingest hands every new sale to `apply_returns`
in its transaction. Each return gets a `returns` row (pending until its original is at the
Center) and, once applied, ledger movements keyed by (return sale id, wallet, kind, rule):
"return_accrual" takes back accrued points (the original's own lot first, then FIFO, the rest
a debt: the overdraft path) and "return_spend" credits back the bonus paid as a new lot (which
repays any debt first). Manual adjustments are keyed by the caller's idempotency key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from center.access.audit import AuditLog
from center.certificates.model import certificate_payments, return_payments
from center.errors import Conflict, InvalidRequest, UnknownObject
from center.ledger.model import Balance, LedgerEntry
from center.ledger.returns import part, plan_return, reversals
from center.storage.database import Database
from center.storage.migrations import Migration
from center.storage.owners import sale_owner
from sync_protocol import Ack, Sale, SaleLine, decode_sale

__all__ = [
    "MAX_REASON_LEN",
    "POSTGRES_MIGRATION",
    "SQLITE_MIGRATION",
    "ReturnsRepository",
]

MAX_REASON_LEN = 500
MAX_KEY_LEN = 64
MAX_REPORT = 1000
_SWEEP = 200
"""Pending returns retried per ingest: originals may arrive in a batch committed concurrently."""


def _migration(ts: str, big: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE returns (
            return_id TEXT PRIMARY KEY,
            original_id TEXT NOT NULL,
            store_id TEXT NOT NULL,
            card_no TEXT,
            status TEXT NOT NULL,
            refund_minor {big} NOT NULL DEFAULT 0,
            lines TEXT NOT NULL DEFAULT '{{}}',
            problem TEXT NOT NULL DEFAULT '',
            returned_at {ts} NOT NULL,
            applied_at {ts}
        )""",
        "CREATE INDEX returns_original ON returns (original_id, status)",
        "CREATE INDEX returns_status ON returns (status)",
        f"""CREATE TABLE adjustments (
            idempotency_key TEXT PRIMARY KEY,
            card_no TEXT NOT NULL,
            wallet TEXT NOT NULL,
            amount {big} NOT NULL,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            expires_at {ts},
            created_at {ts} NOT NULL
        )""",
        "CREATE INDEX adjustments_card ON adjustments (card_no)",
    )


SQLITE_MIGRATION = Migration("m011_returns_and_adjustments", _migration("TEXT", "INTEGER"))
"""Returns and manual adjustments, on SQLite."""
POSTGRES_MIGRATION = Migration("m011_returns_and_adjustments", _migration("TIMESTAMPTZ", "BIGINT"))
"""Returns and manual adjustments, on PostgreSQL."""


Ingest = Callable[[Sequence[Sale], datetime], Ack]
"""ingest(sales, received_at): how a head-office return sale is stored, like a register's."""


class ReturnsLedger(Protocol):
    """What returns and adjustments need of the ledger: movements applied in the caller's
    transaction, and a card's balance."""

    def card_owners(self, card_nos: Iterable[str]) -> dict[str, str]: ...

    def apply_entries(
        self, entries: Sequence[LedgerEntry], *, owners: Mapping[str, str] | None = None
    ) -> int: ...

    def journal(
        self, entries: Sequence[LedgerEntry], *, owners: Mapping[str, str] | None = None
    ) -> list[tuple[int, LedgerEntry]]: ...

    def apply_journaled(
        self,
        journaled: Sequence[tuple[int, LedgerEntry]],
        *,
        first: Mapping[int, int] | None = None,
        owners: Mapping[str, str] | None = None,
    ) -> None: ...

    def balance(self, card_no: str, now: datetime) -> Balance | None: ...


class ReturnsRepository:
    """Returns, manual adjustments and overdraft reports, over the Database."""

    def __init__(
        self, db: Database, *, ledger: ReturnsLedger, audit: AuditLog, ingest: Ingest
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.audit = audit
        self._ingest = ingest

    # -- returns -------------------------------------------------------------------------------

    def apply_returns(self, sales: Sequence[Sale], owners: Mapping[str, str]) -> None:
        """Called by ingest inside its transaction with the sales it newly stored; `owners`
        holds the owner of each of their cards (a return lives with its return sale)."""
        for sale in sales:
            if sale.return_of is None:
                continue
            self.db.execute(
                "INSERT INTO returns (return_id, original_id, store_id, card_no, status, "
                "returned_at, owner_id) VALUES (?, ?, ?, ?, 'pending', ?, ?) "
                "ON CONFLICT DO NOTHING",
                (
                    sale.sale_id,
                    sale.return_of,
                    sale.store_id,
                    sale.card_no,
                    self.db.ts(sale.closed_at),
                    sale_owner(sale.card_no, sale.store_id, owners),
                ),
            )
        if not any(s.return_of for s in sales) and not self._has_pending():
            return
        # Every pending return whose original is now stored: this batch's originals, and any
        # a concurrent batch committed after that return's own ingest looked.
        ready = self.db.execute(
            "SELECT r.return_id, r.original_id FROM returns r JOIN sales s "
            "ON s.sale_id = r.original_id WHERE r.status = 'pending' "
            f"ORDER BY r.returned_at, r.return_id LIMIT {_SWEEP}"
        ).fetchall()
        for return_id, original_id in ready:
            self._apply_return(str(return_id), str(original_id))

    def _has_pending(self) -> bool:
        row = self.db.execute("SELECT 1 FROM returns WHERE status = 'pending' LIMIT 1").fetchone()
        return row is not None

    def _stored_sale(self, sale_id: str) -> Sale:
        row = self.db.execute("SELECT payload FROM sales WHERE sale_id = ?", (sale_id,)).fetchone()
        return decode_sale(bytes(row[0]))

    def _apply_return(self, return_id: str, original_id: str) -> None:
        """Reverse the original's part for one pending return (in the caller's transaction)."""
        held = self.db.execute(
            f"SELECT status FROM returns WHERE return_id = ?{self.db.dialect.for_update}",
            (return_id,),
        ).fetchone()
        if held is None or held[0] != "pending":
            return
        ret = self._stored_sale(return_id)
        original = self._stored_sale(original_id)
        card = self._current_card(original.card_no) if original.card_no else None
        # Before reading the earlier returns: two returns of one sale applied concurrently
        # (two Center workers) must see each other's progress.
        self.db.lock_cards([card or original_id])
        returned_before: dict[int, int] = {}
        refunded_before = 0
        for lines, refund in self.db.execute(
            "SELECT lines, refund_minor FROM returns WHERE original_id = ? AND status = 'applied'",
            (original_id,),
        ).fetchall():
            refunded_before += int(refund)
            for line_no, qty in json.loads(lines).items():
                returned_before[int(line_no)] = returned_before.get(int(line_no), 0) + int(qty)
        problems: list[str] = []
        if original.return_of is not None:
            problems.append(f"return_of: sale {original_id} is itself a return")
            plan = None
        else:
            plan = plan_return(original, ret, returned_before, refunded_before)
            problems.extend(plan.problems)
        if ret.loyalty:
            problems.append("loyalty: the return carries loyalty movements (applied as a sale's)")
        if plan is not None and card is not None:
            for move in reversals(original, plan):
                if move.kind == "return_accrual":
                    self._take_back(card, move.wallet, move.rule_id, -move.amount, return_id,
                                    original_id, ret.closed_at)  # fmt: skip
                else:
                    expires = self._spent_lots_expiry(original_id, move.wallet)
                    self.ledger.apply_entries(
                        [
                            LedgerEntry(
                                card_no=card,
                                wallet=move.wallet,
                                kind=move.kind,
                                amount=move.amount,
                                rule_id=move.rule_id,
                                source=return_id,
                                created_at=ret.closed_at,
                                expires_at=expires,
                            )
                        ]
                    )
        self.db.execute(
            "UPDATE returns SET status = 'applied', card_no = ?, refund_minor = ?, lines = ?, "
            "problem = ?, applied_at = ? WHERE return_id = ?",
            (
                card,
                0 if plan is None else plan.now,
                json.dumps({str(k): v for k, v in (plan.lines if plan else {}).items()}),
                "; ".join(problems),
                self.db.ts(ret.closed_at),
                return_id,
            ),
        )

    def _credited_back(self, original_id: str) -> dict[str, int]:
        """code -> what earlier returns of the sale paid back to its gift certificates."""
        out: dict[str, int] = {}
        for (payload,) in self.db.execute(
            "SELECT s.payload FROM returns r JOIN sales s ON s.sale_id = r.return_id "
            "WHERE r.original_id = ?",
            (original_id,),
        ).fetchall():
            for code, amount in certificate_payments(decode_sale(bytes(payload))).items():
                out[code] = out.get(code, 0) + amount
        return out

    def _current_card(self, card_no: str) -> str:
        """The card now holding `card_no`'s balance: follow replacements (bounded)."""
        current = card_no
        for _ in range(16):
            row = self.db.execute(
                "SELECT replaced_by FROM cards WHERE card_no = ?", (current,)
            ).fetchone()
            if row is None or not row[0]:
                return current
            current = str(row[0])
        return current

    def _take_back(
        self,
        card: str,
        wallet: str,
        rule_id: str,
        amount: int,
        return_id: str,
        original_id: str,
        at: datetime,
    ) -> None:
        """Debit `amount` accrued points: from the original's own lot first, then FIFO, then
        debt."""
        entry = LedgerEntry(card, wallet, "return_accrual", -amount, rule_id, return_id, at)
        journaled = self.ledger.journal([entry])
        if not journaled:
            return  # already reversed
        own = self.db.execute(
            "SELECT lot_id FROM lots WHERE source = ? AND wallet = ? "
            "AND kind = 'accrue' AND rule_id = ? AND card_no = ? AND remaining > 0",
            (original_id, wallet, rule_id, card),
        ).fetchone()
        first = {} if own is None else {journaled[0][0]: int(own[0])}
        self.ledger.apply_journaled(journaled, first=first)

    def _spent_lots_expiry(self, original_id: str, wallet: str) -> datetime | None:
        """The latest expiry of the lots the original's bonus payment took (None if undated)."""
        rows = self.db.execute(
            "SELECT c.lot_id, l.expires_at FROM ledger e "
            "JOIN lot_consumptions c ON c.entry_id = e.entry_id AND c.customer_id = e.customer_id "
            "LEFT JOIN lots l ON l.lot_id = c.lot_id AND l.customer_id = c.customer_id "
            "WHERE e.source = ? AND e.wallet = ? AND e.kind = 'spend'",
            (original_id, wallet),
        ).fetchall()
        if not rows or any(r[0] is None or r[1] is None for r in rows):
            return None
        return max(self.db.dt(r[1]) for r in rows)

    def returned_qty(self, original_id: str) -> dict[int, int]:
        """line_no -> qty_milli already returned of a sale, over every return of it."""
        before: dict[int, int] = {}
        with self.db.guard("read returned lines"):
            for (lines,) in self.db.execute(
                "SELECT lines FROM returns WHERE original_id = ?", (original_id,)
            ).fetchall():
                for line_no, qty in json.loads(lines).items():
                    before[int(line_no)] = before.get(int(line_no), 0) + int(qty)
        return before

    def return_status(self, return_id: str) -> dict[str, Any] | None:
        """The returns row of one return sale; None if unknown."""
        with self.db.guard("read return"):
            row = self.db.execute(
                "SELECT return_id, original_id, store_id, card_no, status, refund_minor, lines, "
                "problem, returned_at, applied_at FROM returns WHERE return_id = ?",
                (return_id,),
            ).fetchone()
        return None if row is None else self._return_row(row)

    def _return_row(self, r: Sequence[Any]) -> dict[str, Any]:
        return {
            "return_id": r[0],
            "original_id": r[1],
            "store_id": r[2],
            "card_no": r[3],
            "status": r[4],
            "refund_minor": int(r[5]),
            "lines": {int(k): int(v) for k, v in json.loads(r[6]).items()},
            "problem": r[7],
            "returned_at": self.db.dt(r[8]).isoformat(),
            "applied_at": None if r[9] is None else self.db.dt(r[9]).isoformat(),
        }

    def return_exceptions(self) -> list[dict[str, Any]]:
        """Returns still waiting for their original, and returns with problems."""
        with self.db.guard("read return exceptions"):
            rows = self.db.execute(
                "SELECT return_id, original_id, store_id, card_no, status, refund_minor, lines, "
                "problem, returned_at, applied_at FROM returns "
                "WHERE status = 'pending' OR problem <> '' "
                f"ORDER BY returned_at, return_id LIMIT {MAX_REPORT}"
            ).fetchall()
        return [self._return_row(r) for r in rows]

    def head_office_return(
        self,
        original_id: str,
        returned: Mapping[int, int],
        return_id: str,
        actor: str,
        now: datetime,
    ) -> dict[str, Any]:
        """Build a return sale of `returned` (line_no -> qty_milli) of a stored sale on the
        head-office register of its store and ingest it like a register's; a repeated
        return_id answers the stored return."""
        # The connection lock (re-entrant) is held from the reads to the ingest, so two
        # head-office returns of this process never take the same seq.
        with self.db.guard("head-office return"):
            done = self.return_status(return_id)
            if done is not None:
                if done["original_id"] != original_id:
                    raise Conflict(
                        "body.return_id",
                        f"{return_id} is a return of sale {done['original_id']}",
                    )
                return {**done, "replayed": True}
            if self.db.execute(
                "SELECT 1 FROM sales WHERE sale_id = ?", (return_id,)
            ).fetchone() is not None:  # fmt: skip
                raise Conflict("body.return_id", f"{return_id} is the id of a stored sale")
            row = self.db.execute(
                "SELECT payload FROM sales WHERE sale_id = ?", (original_id,)
            ).fetchone()
            if row is None:
                raise UnknownObject("body.sale_id", f"unknown sale {original_id!r}")
            original = decode_sale(bytes(row[0]))
            if original.return_of is not None:
                raise InvalidRequest("body.sale_id", f"sale {original_id} is itself a return")
            before = self.returned_qty(original_id)
            by_no = {line.line_no: line for line in original.lines}
            lines_out: list[SaleLine] = []
            for line_no, qty in sorted(returned.items()):
                line = by_no.get(line_no)
                if line is None:
                    raise InvalidRequest(
                        f"body.lines[{line_no}]", f"sale {original_id} has no line {line_no}"
                    )
                left = line.qty_milli - before.get(line_no, 0)
                if not 0 < qty <= left:
                    raise InvalidRequest(
                        f"body.lines[{line_no}].qty_milli",
                        f"expected 1..{left} (not yet returned of line {line_no}), got {qty}",
                    )
                paid = line.amount_minor - sum(d.amount_minor for d in line.discounts)
                refund = part(paid, before.get(line_no, 0), qty, line.qty_milli)
                lines_out.append(
                    SaleLine(
                        line_no=line_no,
                        product_id=line.product_id,
                        qty_milli=qty,
                        unit_price_minor=line.unit_price_minor,
                        amount_minor=refund,
                        weighed=line.weighed,
                        known_product=line.known_product,
                        certificate_code=line.certificate_code,
                    )
                )
            register_id = f"{original.store_id}-HO"[:64]
            last = self.db.execute(
                "SELECT MAX(seq) FROM sales WHERE register_id = ?", (register_id,)
            ).fetchone()
            total = sum(line.amount_minor for line in lines_out)
            sale = Sale(
                sale_id=return_id,
                store_id=original.store_id,
                register_id=register_id,
                seq=int(last[0] or 0) + 1,
                opened_at=now,
                closed_at=now,
                card_no=original.card_no,
                lines=tuple(lines_out),
                payments=return_payments(original, total, self._credited_back(original_id)),
                loyalty=(),
                subtotal_minor=total,
                discount_minor=0,
                total_minor=total,
                promo_version=original.promo_version,
                messages=(f"head-office return by {actor}"[:200],),
                return_of=original_id,
            )
            ack = self._ingest([sale], now)
            if ack.rejected:
                raise Conflict("body.return_id", ack.rejected[0].reason)
            done = self.return_status(return_id)
        assert done is not None
        return {**done, "replayed": False}

    # -- adjustments ---------------------------------------------------------------------------

    def adjust(
        self,
        card_no: str,
        wallet: str,
        amount: int,
        reason: str,
        actor: str,
        now: datetime,
        *,
        expires_at: datetime | None = None,
        idempotency_key: str,
    ) -> dict[str, Any]:
        """A manual ledger movement with reason and author; a repeated key changes nothing."""
        _check_adjustment(wallet, amount, reason, idempotency_key, expires_at, now)
        at = self.db.ts(now)
        asked = {
            "card_no": card_no,
            "wallet": wallet,
            "amount": amount,
            "reason": reason,
            "expires_at": None if expires_at is None else expires_at.astimezone(UTC).isoformat(),
        }
        with self.db.guard("adjust"), self.db.transaction():
            if self.db.execute(
                "SELECT 1 FROM cards WHERE card_no = ?", (card_no,)
            ).fetchone() is None:  # fmt: skip
                raise UnknownObject("card_no", f"unknown card {card_no!r}")
            self.db.lock_cards([card_no])
            owner = self.ledger.card_owners([card_no])[card_no]
            # The key is unique per owner (the distribution column): a key used on another
            # customer's card is found by this read, not by the insert.
            held = self._held_adjustment(idempotency_key)
            if held is None:
                # ON CONFLICT: a concurrent retry of the same key waits for the first and then
                # answers what it stored, instead of failing on the key.
                fresh = self.db.execute(
                    "INSERT INTO adjustments (idempotency_key, card_no, wallet, amount, reason, "
                    "actor, expires_at, created_at, customer_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING RETURNING idempotency_key",
                    (idempotency_key, card_no, wallet, amount, reason, actor,
                     self.db.ts(expires_at), at, owner),
                ).fetchone()  # fmt: skip
                if fresh is None:
                    held = self._held_adjustment(idempotency_key)
            if held is not None:
                done = self._adjustment(idempotency_key, held)
                if any(done[k] != v for k, v in asked.items()):
                    raise Conflict(
                        "idempotency_key",
                        f"{idempotency_key!r} was used for another adjustment "
                        f"({done['amount']} {done['wallet']} on card {done['card_no']})",
                    )
                result = {**done, "replayed": True}
            else:
                self.ledger.apply_entries(
                    [
                        LedgerEntry(
                            card_no=card_no,
                            wallet=wallet,
                            kind="adjustment",
                            amount=amount,
                            rule_id="",
                            source=f"adjust:{idempotency_key}",
                            created_at=now,
                            expires_at=expires_at if amount > 0 else None,
                        )
                    ]
                )
                result = {
                    **asked,
                    "idempotency_key": idempotency_key,
                    "actor": actor,
                    "created_at": now.astimezone(UTC).isoformat(),
                    "replayed": False,
                }
                self.audit.record(
                    "card",
                    card_no,
                    "adjust",
                    None,
                    {k: v for k, v in result.items() if k != "replayed"},
                    actor,
                    at,
                )
        found = self.ledger.balance(card_no, now)
        result["balance"] = None if found is None else dict(found.wallets)
        return result

    def _held_adjustment(self, key: str) -> Sequence[Any] | None:
        return self.db.execute(
            "SELECT card_no, wallet, amount, reason, actor, expires_at, created_at "
            "FROM adjustments WHERE idempotency_key = ?",
            (key,),
        ).fetchone()

    def _adjustment(self, key: str, row: Sequence[Any]) -> dict[str, Any]:
        return {
            "card_no": row[0],
            "wallet": row[1],
            "amount": int(row[2]),
            "reason": row[3],
            "expires_at": None if row[5] is None else self.db.dt(row[5]).isoformat(),
            "idempotency_key": key,
            "actor": row[4],
            "created_at": self.db.dt(row[6]).isoformat(),
        }

    # -- overdrafts ----------------------------------------------------------------------------

    def overdrafts(self) -> dict[str, Any]:
        """Cards whose balance is negative (debt > 0) per wallet, with the total per wallet."""
        with self.db.guard("read overdrafts"), self.db.snapshot():
            owing = self.db.execute(
                "SELECT card_no, wallet FROM lot_consumptions WHERE kind IN ('debt', 'recover') "
                "GROUP BY card_no, wallet HAVING "
                "SUM(CASE WHEN kind = 'debt' THEN amount ELSE -amount END) > 0 "
                f"ORDER BY card_no, wallet LIMIT {MAX_REPORT}"
            ).fetchall()
            cards: list[dict[str, Any]] = []
            for card_no, wallet in owing:
                cards.append(self._overdraft(str(card_no), str(wallet)))
        totals: dict[str, int] = {}
        for row in cards:
            totals[row["wallet"]] = totals.get(row["wallet"], 0) + row["debt"]
        return {"cards": cards, "total": dict(sorted(totals.items()))}

    def _overdraft(self, card_no: str, wallet: str) -> dict[str, Any]:
        customer = self.db.execute(
            "SELECT customer_id FROM cards WHERE card_no = ?", (card_no,)
        ).fetchone()
        running = 0
        since: Any = None
        for kind, amount, created_at in self.db.execute(
            "SELECT kind, amount, created_at FROM lot_consumptions WHERE card_no = ? "
            "AND wallet = ? AND kind IN ('debt', 'recover') ORDER BY consumption_id",
            (card_no, wallet),
        ).fetchall():
            before = running
            running += int(amount) if kind == "debt" else -int(amount)
            if before <= 0 < running:
                since = created_at
        return {
            "card_no": card_no,
            "customer_id": None if customer is None else customer[0],
            "wallet": wallet,
            "debt": running,
            "since": None if since is None else self.db.dt(since).isoformat(),
        }


def _check_adjustment(
    wallet: str,
    amount: int,
    reason: str,
    key: str,
    expires_at: datetime | None,
    now: datetime,
) -> None:
    if not isinstance(wallet, str) or not wallet or len(wallet) > MAX_KEY_LEN:
        raise InvalidRequest("wallet", f"expected 1..{MAX_KEY_LEN} characters, got {wallet!r}")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise InvalidRequest("amount", f"expected a non-zero integer, got {amount!r}")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_LEN:
        raise InvalidRequest(
            "reason", f"required: 1..{MAX_REASON_LEN} characters saying why, got {reason!r}"
        )
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LEN:
        raise InvalidRequest(
            "idempotency_key", f"required: 1..{MAX_KEY_LEN} characters, got {key!r}"
        )
    if expires_at is not None:
        if amount < 0:
            raise InvalidRequest("expires_at", "only a positive adjustment (a new lot) expires")
        if expires_at <= now:
            raise InvalidRequest("expires_at", f"{expires_at.isoformat()} is not in the future")
