"""Customer merge, deactivation, questionnaires and the customer card view.

A merge moves the merged customer's cards to the survivor; balances follow because lots belong
to cards. The merged customer stays, marked `merged_into`, so its id keeps resolving. Every
change bumps the master version (customers and cards are in the stores' snapshot) and writes
its audit rows in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from center.crm.model import search_keys
from center.errors import Conflict, InvalidRequest, MalformedRequest, UnknownObject
from center.storage.hooks import Migration, SqlHooks

__all__ = [
    "FAVOURITE_DAYS",
    "MAX_RECEIPTS_PAGE",
    "POSTGRES_MIGRATION",
    "RECEIPTS_PAGE",
    "SQLITE_MIGRATION",
    "CustomerOps",
    "CustomerStore",
    "check_answers",
    "index_merged_customers",
]

FAVOURITE_DAYS = 365
FAVOURITES = 5
HISTORY = 50
RECEIPTS_PAGE = 20
MAX_RECEIPTS_PAGE = 100
MAX_ANSWERS = 100
MAX_ANSWER_TEXT = 1000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_COUPON_COLUMNS = ("code", "batch_id", "status", "issued_at", "valid_until", "redeemed_at")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _migration(ts: str, identity: str) -> tuple[str, ...]:
    return (
        "ALTER TABLE customers ADD COLUMN status TEXT NOT NULL DEFAULT 'active'",
        "ALTER TABLE customers ADD COLUMN merged_into TEXT",
        f"""CREATE TABLE questionnaire_answers (
            answer_id {identity},
            customer_id TEXT NOT NULL,
            questionnaire_id TEXT NOT NULL,
            answers TEXT NOT NULL,
            actor TEXT NOT NULL,
            answered_at {ts} NOT NULL
        )""",
        "CREATE INDEX questionnaire_customer ON questionnaire_answers "
        "(customer_id, questionnaire_id, answer_id)",
    )


SQLITE_MIGRATION = Migration(
    "m012_customer_merges_and_questionnaires",
    _migration("TEXT", "INTEGER PRIMARY KEY AUTOINCREMENT"),
)
"""Customer status, merges and questionnaires, on SQLite."""
POSTGRES_MIGRATION = Migration(
    "m012_customer_merges_and_questionnaires",
    _migration("TIMESTAMPTZ", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
)
"""Customer status, merges and questionnaires, on PostgreSQL."""


def _cursor(closed_at: datetime, sale_id: str) -> str:
    """An opaque cursor: the (closed_at, sale_id) of the last receipt of a page."""
    raw = f"{closed_at.isoformat()}|{sale_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    """(closed_at, sale_id) of a cursor made by _cursor; MalformedRequest naming `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, sale_id = raw.split("|", 1)
        closed_at = datetime.fromisoformat(at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MalformedRequest(
            "cursor", f"not a cursor of this list: {cursor[:80]!r}; pass next_cursor as given"
        ) from None
    if closed_at.tzinfo is None or not sale_id or len(sale_id) > 64:
        raise MalformedRequest("cursor", f"not a cursor of this list: {cursor[:80]!r}")
    return closed_at, sale_id


def index_merged_customers(storage: SqlHooks) -> None:
    """Migration step: give merged customers their search keys back (merges used to delete
    them), so search by an old name or phone finds the survivor."""
    rows = storage._execute(
        "SELECT customer_id, attributes FROM customers WHERE merged_into IS NOT NULL "
        "AND customer_id NOT IN (SELECT customer_id FROM customer_index)"
    ).fetchall()
    for customer_id, attributes in rows:
        storage._execute(
            "INSERT INTO customer_index (customer_id, last_name, first_name, middle_name, "
            "phone_rev, email) VALUES (?, ?, ?, ?, ?, ?)",
            (customer_id, *search_keys(json.loads(attributes))),
        )


def check_answers(answers: Any) -> dict[str, Any]:
    """A questionnaire's answers: an object of up to MAX_ANSWERS scalar (or list) values."""
    if not isinstance(answers, Mapping):
        raise InvalidRequest("body.answers", f"expected an object, got {type(answers).__name__}")
    if len(answers) > MAX_ANSWERS:
        raise InvalidRequest("body.answers", f"at most {MAX_ANSWERS} answers, got {len(answers)}")
    out: dict[str, Any] = {}
    for key, value in answers.items():
        if not isinstance(key, str) or not key or len(key) > 100:
            raise InvalidRequest("body.answers", f"question ids are 1..100 characters: {key!r}")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is not None and not isinstance(item, str | int | float | bool):
                raise InvalidRequest(
                    f"body.answers.{key}", "expected text, a number, a boolean or a list of them"
                )
        if len(_json(value)) > MAX_ANSWER_TEXT:
            raise InvalidRequest(f"body.answers.{key}", f"longer than {MAX_ANSWER_TEXT} characters")
        out[key] = value
    return out


class CustomerOps(Protocol):
    """The part of the Storage interface this module implements."""

    def merge_customers(
        self, survivor_id: str, merged_id: str, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Move the merged customer's cards (and so balances) and attributes to the survivor."""
        ...

    def deactivate_card(self, card_no: str, actor: str, now: datetime) -> dict[str, Any]:
        """Card status "inactive": registers stop accepting it; its balance stays."""
        ...

    def deactivate_customer(self, customer_id: str, actor: str, now: datetime) -> dict[str, Any]:
        """Customer status "inactive" and every card of it "inactive"."""
        ...

    def set_answers(
        self,
        customer_id: str,
        questionnaire_id: str,
        answers: Mapping[str, Any],
        actor: str,
        now: datetime,
    ) -> dict[str, Any]:
        """Record a customer's answers to a questionnaire (history kept, audited)."""
        ...

    def customer_card_view(
        self, customer_id: str, now: datetime, *, history_limit: int = HISTORY
    ) -> dict[str, Any] | None:
        """customer_view plus status, questionnaires, ledger history, favourite categories and
        coupons; None if unknown."""
        ...

    def customer_receipts(
        self, customer_id: str, *, limit: int = RECEIPTS_PAGE, cursor: str | None = None
    ) -> dict[str, Any] | None:
        """One page of the receipts and returns of all the customer's cards, newest first,
        with the customer's totals and the cursor of the next page; None if unknown."""
        ...


class CustomerStore(SqlHooks):
    """Mixin of SqlStorage."""

    # Supplied by CrmStore; declared so the mixin type-checks on its own.
    def customer_view(self, customer_id: str, now: datetime) -> dict[str, Any] | None:
        raise NotImplementedError

    def _existing_card(self, card_no: str) -> dict[str, Any]:
        raise NotImplementedError

    def _set_card(
        self, card: dict[str, Any], action: str, actor: str, at: Any, **changes: Any
    ) -> dict[str, Any]:
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------------

    def _customer_row(self, customer_id: str, field: str) -> dict[str, Any]:
        row = self._execute(
            "SELECT attributes, status, merged_into FROM customers WHERE customer_id = ?"
            f"{self._FOR_UPDATE}",
            (customer_id,),
        ).fetchone()
        if row is None:
            raise UnknownObject(field, f"unknown customer {customer_id!r}")
        return {"attributes": json.loads(row[0]), "status": row[1], "merged_into": row[2]}

    def _columns(self, table: str) -> set[str]:
        """The columns of a table another feature may or may not have created yet."""
        return self.dialect.columns_of(self._execute, table)

    # -- merge ---------------------------------------------------------------------------------

    def merge_customers(
        self, survivor_id: str, merged_id: str, actor: str, now: datetime
    ) -> dict[str, Any]:
        if survivor_id == merged_id:
            raise InvalidRequest(
                "body.merged_id", f"a customer can't merge into itself: {merged_id}"
            )
        at = self._ts(now)
        with self._guard("merge customers"), self._transaction():
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
                for r in self._execute(
                    f"SELECT card_no FROM cards WHERE customer_id = ? ORDER BY card_no"
                    f"{self._FOR_UPDATE}",
                    (merged_id,),
                ).fetchall()
            ]
            version = self._bump_master()
            self._execute(
                "UPDATE cards SET customer_id = ?, version = ? WHERE customer_id = ?",
                (survivor_id, version, merged_id),
            )
            # The survivor's own cards now carry the merged balance, coupons and offers too.
            self._execute(
                "UPDATE cards SET version = ? WHERE customer_id = ?", (version, survivor_id)
            )
            for card_no in cards:
                self._audit(
                    "card",
                    card_no,
                    "move",
                    {"customer_id": merged_id},
                    {"customer_id": survivor_id},
                    actor,
                    at,
                )
            attributes = {**merged["attributes"], **survivor["attributes"]}
            self._execute(
                "UPDATE customers SET attributes = ?, version = ? WHERE customer_id = ?",
                (_json(attributes), version, survivor_id),
            )
            self._execute(
                "UPDATE customers SET status = 'merged', merged_into = ?, version = ? "
                "WHERE customer_id = ?",
                (survivor_id, version, merged_id),
            )
            # Search finds the survivor by the keys it now holds, and by the merged customer's
            # own keys (kept: the call center hears old names and phones), which search
            # resolves through merged_into.
            self._execute("DELETE FROM customer_index WHERE customer_id = ?", (survivor_id,))
            self._execute(
                "INSERT INTO customer_index (customer_id, last_name, first_name, middle_name, "
                "phone_rev, email) VALUES (?, ?, ?, ?, ?, ?)",
                (survivor_id, *search_keys(attributes)),
            )
            # Questionnaires the survivor never answered come along (with their history).
            self._execute(
                "UPDATE questionnaire_answers SET customer_id = ? WHERE customer_id = ? "
                "AND questionnaire_id NOT IN (SELECT questionnaire_id FROM "
                "questionnaire_answers WHERE customer_id = ?)",
                (survivor_id, merged_id, survivor_id),
            )
            if "customer_id" in self._columns("coupons"):
                self._execute(
                    "UPDATE coupons SET customer_id = ? WHERE customer_id = ?",
                    (survivor_id, merged_id),
                )
            self._audit(
                "customer",
                survivor_id,
                "merge",
                {"attributes": survivor["attributes"]},
                {"attributes": attributes, "merged_id": merged_id, "cards": cards},
                actor,
                at,
            )
            self._audit(
                "customer",
                merged_id,
                "merged_into",
                {"status": merged["status"], "merged_into": None},
                {"status": "merged", "merged_into": survivor_id, "cards": cards},
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
        with self._guard("deactivate card"), self._transaction():
            card = self._existing_card(card_no)
            if card["status"] == "inactive":
                return card
            return self._set_card(card, "deactivate", actor, self._ts(now), status="inactive")

    def deactivate_customer(self, customer_id: str, actor: str, now: datetime) -> dict[str, Any]:
        at = self._ts(now)
        with self._guard("deactivate customer"), self._transaction():
            customer = self._customer_row(customer_id, "customer_id")
            if customer["merged_into"]:
                raise Conflict(
                    "customer_id",
                    f"customer {customer_id} was merged into {customer['merged_into']}",
                )
            cards = [
                str(r[0])
                for r in self._execute(
                    "SELECT card_no FROM cards WHERE customer_id = ? AND status <> 'inactive' "
                    "ORDER BY card_no",
                    (customer_id,),
                ).fetchall()
            ]
            for card_no in cards:
                card = self._existing_card(card_no)
                self._set_card(card, "deactivate", actor, at, status="inactive")
            if customer["status"] != "inactive":
                version = self._bump_master()
                self._execute(
                    "UPDATE customers SET status = 'inactive', version = ? WHERE customer_id = ?",
                    (version, customer_id),
                )
                self._audit(
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
        if not isinstance(questionnaire_id, str) or not _ID.match(questionnaire_id):
            raise InvalidRequest(
                "questionnaire_id",
                f"expected 1..64 letters, digits or ._:-, got {str(questionnaire_id)[:80]!r}",
            )
        checked = check_answers(answers)
        at = self._ts(now)
        with self._guard("set answers"), self._transaction():
            customer = self._customer_row(customer_id, "customer_id")
            if customer["merged_into"]:
                raise Conflict(
                    "customer_id",
                    f"customer {customer_id} was merged into {customer['merged_into']}",
                )
            last = self._execute(
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
                    "answered_at": self._dt(last[2]).isoformat(),
                    "changed": False,
                }
            self._execute(
                "INSERT INTO questionnaire_answers (customer_id, questionnaire_id, answers, "
                "actor, answered_at) VALUES (?, ?, ?, ?, ?)",
                (customer_id, questionnaire_id, _json(checked), actor, at),
            )
            self._audit(
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
        view = self.customer_view(customer_id, now)
        if view is None:
            return None
        card_nos = [c["card_no"] for c in view["cards"]]
        with self._guard("read customer card"), self._snapshot():
            row = self._execute(
                "SELECT status, merged_into FROM customers WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            questionnaires: dict[str, Any] = {}
            for qid, answers, actor, answered_at in self._execute(
                "SELECT questionnaire_id, answers, actor, answered_at FROM questionnaire_answers "
                "WHERE customer_id = ? ORDER BY questionnaire_id, answer_id",
                (customer_id,),
            ).fetchall():
                questionnaires[qid] = {
                    "answers": json.loads(answers),
                    "actor": actor,
                    "answered_at": self._dt(answered_at).isoformat(),
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
                        "created_at": self._dt(r[6]).isoformat(),
                        "expires_at": None if r[7] is None else self._dt(r[7]).isoformat(),
                    }
                    for r in self._execute(
                        "SELECT card_no, wallet, kind, amount, rule_id, source, created_at, "
                        f"expires_at FROM ledger WHERE card_no IN ({marks}) "
                        "ORDER BY created_at DESC, entry_id DESC LIMIT ?",
                        (*card_nos, history_limit),
                    ).fetchall()
                ]
                favourites = self._favourites(card_nos, now)
            coupons = self._customer_coupons(customer_id)
            page = self._receipts_page(card_nos, RECEIPTS_PAGE, None)
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
        if not 1 <= limit <= MAX_RECEIPTS_PAGE:
            raise MalformedRequest("limit", f"expected 1..{MAX_RECEIPTS_PAGE}, got {limit}")
        after = None if cursor is None else _parse_cursor(cursor)
        with self._guard("read customer receipts"), self._snapshot():
            row = self._execute(
                "SELECT 1 FROM customers WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            if row is None:
                return None
            card_nos = [
                str(r[0])
                for r in self._execute(
                    "SELECT card_no FROM cards WHERE customer_id = ? ORDER BY card_no",
                    (customer_id,),
                ).fetchall()
            ]
            page = self._receipts_page(card_nos, limit, after)
        return {"customer_id": customer_id, **page}

    def _receipts_page(
        self, card_nos: Sequence[str], limit: int, after: tuple[datetime, str] | None
    ) -> dict[str, Any]:
        """Receipts and returns of the cards, newest first, after the cursor position; each
        with its loyalty movements (a return's: the reversal), a return with its original,
        a receipt with the returns of it; totals over every receipt of the cards."""
        totals = {
            "receipts": 0,
            "revenue_minor": 0,
            "discount_minor": 0,
            "returns": 0,
            "refund_minor": 0,
            "net_minor": 0,
        }
        if not card_nos:
            return {"receipts": [], "next_cursor": None, "totals": totals}
        marks = ", ".join("?" for _ in card_nos)
        where = f"s.card_no IN ({marks})"
        params: list[Any] = list(card_nos)
        if after is not None:
            at = self._ts(after[0])
            where += " AND (s.closed_at < ? OR (s.closed_at = ? AND s.sale_id < ?))"
            params += [at, at, after[1]]
        rows = self._execute(
            "SELECT s.sale_id, s.store_id, s.closed_at, s.card_no, s.total_minor, "
            "s.discount_minor, s.line_count, r.original_id, r.status, r.problem "
            f"FROM sales s LEFT JOIN returns r ON r.return_id = s.sale_id WHERE {where} "
            f"ORDER BY s.closed_at DESC, s.sale_id DESC LIMIT {limit + 1}",
            params,
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        receipts: list[dict[str, Any]] = []
        for r in rows:
            is_return = r[7] is not None
            total = int(r[4])
            receipts.append(
                {
                    "sale_id": r[0],
                    "kind": "return" if is_return else "sale",
                    "store_id": r[1],
                    "closed_at": self._dt(r[2]).isoformat(),
                    "card_no": r[3],
                    "total_minor": total,
                    "discount_minor": int(r[5]),
                    "lines": int(r[6]),
                    # Money in (+) or back out to the customer (-): a return is a refund.
                    "net_minor": -total if is_return else total,
                    "return_of": r[7],
                    "return_status": r[8],
                    "return_problem": (r[9] or None) if is_return else None,
                    "returned_by": [],
                    "returned_minor": 0,
                    "loyalty": [],
                }
            )
        if receipts:
            ids = [r["sale_id"] for r in receipts]
            by_id = {r["sale_id"]: r for r in receipts}
            id_marks = ", ".join("?" for _ in ids)
            for source, card_no, wallet, kind, amount, rule_id in self._execute(
                "SELECT source, card_no, wallet, kind, amount, rule_id FROM ledger "
                f"WHERE source IN ({id_marks}) ORDER BY entry_id",
                ids,
            ).fetchall():
                by_id[source]["loyalty"].append(
                    {
                        "card_no": card_no,
                        "wallet": wallet,
                        "kind": kind,
                        "amount": int(amount),
                        "rule_id": rule_id,
                    }
                )
            for original_id, return_id, refund in self._execute(
                "SELECT original_id, return_id, refund_minor FROM returns "
                f"WHERE original_id IN ({id_marks}) ORDER BY returned_at, return_id",
                ids,
            ).fetchall():
                receipt = by_id[original_id]
                receipt["returned_by"].append(return_id)
                receipt["returned_minor"] += int(refund)
        sums = self._execute(
            "SELECT "
            + ", ".join(
                f"CAST(COALESCE(SUM({e}), 0) AS BIGINT)"
                for e in (
                    "CASE WHEN r.return_id IS NULL THEN 1 ELSE 0 END",
                    "CASE WHEN r.return_id IS NULL THEN s.total_minor ELSE 0 END",
                    "CASE WHEN r.return_id IS NULL THEN s.discount_minor ELSE 0 END",
                    "CASE WHEN r.return_id IS NULL THEN 0 ELSE 1 END",
                    "CASE WHEN r.return_id IS NULL THEN 0 ELSE s.total_minor END",
                )
            )
            + f" FROM sales s LEFT JOIN returns r ON r.return_id = s.sale_id "
            f"WHERE s.card_no IN ({marks})",
            list(card_nos),
        ).fetchone()
        totals = {
            "receipts": int(sums[0]),
            "revenue_minor": int(sums[1]),
            "discount_minor": int(sums[2]),
            "returns": int(sums[3]),
            "refund_minor": int(sums[4]),
            "net_minor": int(sums[1]) - int(sums[4]),
        }
        last = receipts[-1] if receipts else None
        next_cursor = (
            _cursor(datetime.fromisoformat(last["closed_at"]), last["sale_id"])
            if more and last is not None
            else None
        )
        return {"receipts": receipts, "next_cursor": next_cursor, "totals": totals}

    def _favourites(self, card_nos: Sequence[str], now: datetime) -> list[dict[str, Any]]:
        """Top categories (else departments) by net spend over the last FAVOURITE_DAYS."""
        marks = ", ".join("?" for _ in card_nos)
        rows = self._execute(
            "SELECT COALESCE(NULLIF(p.category, ''), NULLIF(p.department, ''), ''), "
            "CAST(SUM(CASE WHEN r.return_id IS NULL THEN l.amount_minor - l.discount_minor "
            "ELSE l.discount_minor - l.amount_minor END) AS BIGINT), COUNT(DISTINCT s.sale_id) "
            "FROM sales s JOIN sale_lines l ON l.sale_id = s.sale_id "
            "LEFT JOIN products p ON p.product_id = l.product_id "
            "LEFT JOIN returns r ON r.return_id = s.sale_id "
            f"WHERE s.card_no IN ({marks}) AND s.closed_at >= ? GROUP BY 1",
            (*card_nos, self._ts(now - timedelta(days=FAVOURITE_DAYS))),
        ).fetchall()
        ranked = sorted(
            ((str(r[0]), int(r[1]), int(r[2])) for r in rows if r[0] and int(r[1]) > 0),
            key=lambda r: (-r[1], r[0]),
        )
        return [
            {"category": name, "spend_minor": spend, "receipts": receipts}
            for name, spend, receipts in ranked[:FAVOURITES]
        ]

    def _customer_coupons(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's coupons and personal promo codes, if the coupons feature's table has
        them (it is another feature's; read only the columns it has)."""
        columns = self._columns("coupons")
        if "customer_id" not in columns or "code" not in columns:
            return []
        wanted = [c for c in _COUPON_COLUMNS if c in columns]
        rows = self._execute(
            f"SELECT {', '.join(wanted)} FROM coupons WHERE customer_id = ? "
            "ORDER BY code LIMIT 200",
            (customer_id,),
        ).fetchall()
        out: list[dict[str, Any]] = []
        for r in rows:
            item: dict[str, Any] = {}
            for name, value in zip(wanted, r, strict=True):
                item[name] = value.isoformat() if isinstance(value, datetime) else value
            out.append(item)
        return out
