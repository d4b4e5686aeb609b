"""The customer card's reads (receipts pages with their cursor, favourite categories, coupons),
questionnaire answers' checks, and the migration of customer merges and questionnaires.

CustomerRepository (center/crm/store.py) is the one writer; these read through the Database it
is given, inside its snapshot.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from center.crm.model import search_keys
from center.errors import InvalidRequest, MalformedRequest
from center.storage.database import Database
from center.storage.migrations import Migration

if TYPE_CHECKING:
    from center.storage.sql import SqlStorage

__all__ = [
    "FAVOURITE_DAYS",
    "HISTORY",
    "MAX_RECEIPTS_PAGE",
    "POSTGRES_MIGRATION",
    "RECEIPTS_PAGE",
    "SQLITE_MIGRATION",
    "check_answers",
    "customer_coupons",
    "favourite_categories",
    "index_merged_customers",
    "parse_cursor",
    "receipts_page",
]

FAVOURITE_DAYS = 365
FAVOURITES = 5
HISTORY = 50
RECEIPTS_PAGE = 20
MAX_RECEIPTS_PAGE = 100
MAX_ANSWERS = 100
MAX_ANSWER_TEXT = 1000
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


def parse_cursor(cursor: str) -> tuple[datetime, str]:
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


def index_merged_customers(storage: SqlStorage) -> None:
    """Migration step: give merged customers their search keys back (merges used to delete
    them), so search by an old name or phone finds the survivor."""
    rows = storage.db.execute(
        "SELECT customer_id, attributes FROM customers WHERE merged_into IS NOT NULL "
        "AND customer_id NOT IN (SELECT customer_id FROM customer_index)"
    ).fetchall()
    for customer_id, attributes in rows:
        storage.db.execute(
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


def receipts_page(
    db: Database, card_nos: Sequence[str], limit: int, after: tuple[datetime, str] | None
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
        at = db.ts(after[0])
        where += " AND (s.closed_at < ? OR (s.closed_at = ? AND s.sale_id < ?))"
        params += [at, at, after[1]]
    rows = db.execute(
        "SELECT s.sale_id, s.store_id, s.closed_at, s.card_no, s.total_minor, "
        "s.discount_minor, s.line_count, r.original_id, r.status, r.problem "
        "FROM sales s LEFT JOIN returns r ON r.return_id = s.sale_id AND r.owner_id = s.owner_id "
        f"WHERE {where} "
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
                "closed_at": db.dt(r[2]).isoformat(),
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
        for source, card_no, wallet, kind, amount, rule_id in db.execute(
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
        for original_id, return_id, refund in db.execute(
            "SELECT original_id, return_id, refund_minor FROM returns "
            f"WHERE original_id IN ({id_marks}) ORDER BY returned_at, return_id",
            ids,
        ).fetchall():
            receipt = by_id[original_id]
            receipt["returned_by"].append(return_id)
            receipt["returned_minor"] += int(refund)
    sums = db.execute(
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
        + " FROM sales s LEFT JOIN returns r ON r.return_id = s.sale_id "
        f"AND r.owner_id = s.owner_id WHERE s.card_no IN ({marks})",
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


def favourite_categories(
    db: Database, card_nos: Sequence[str], now: datetime
) -> list[dict[str, Any]]:
    """Top categories (else departments) by net spend over the last FAVOURITE_DAYS."""
    marks = ", ".join("?" for _ in card_nos)
    rows = db.execute(
        "SELECT COALESCE(NULLIF(p.category, ''), NULLIF(p.department, ''), ''), "
        "CAST(SUM(CASE WHEN r.return_id IS NULL THEN l.amount_minor - l.discount_minor "
        "ELSE l.discount_minor - l.amount_minor END) AS BIGINT), COUNT(DISTINCT s.sale_id) "
        "FROM sales s JOIN sale_lines l ON l.sale_id = s.sale_id AND l.owner_id = s.owner_id "
        "LEFT JOIN products p ON p.product_id = l.product_id "
        "LEFT JOIN returns r ON r.return_id = s.sale_id AND r.owner_id = s.owner_id "
        f"WHERE s.card_no IN ({marks}) AND s.closed_at >= ? GROUP BY 1",
        (*card_nos, db.ts(now - timedelta(days=FAVOURITE_DAYS))),
    ).fetchall()
    ranked = sorted(
        ((str(r[0]), int(r[1]), int(r[2])) for r in rows if r[0] and int(r[1]) > 0),
        key=lambda r: (-r[1], r[0]),
    )
    return [
        {"category": name, "spend_minor": spend, "receipts": receipts}
        for name, spend, receipts in ranked[:FAVOURITES]
    ]


def customer_coupons(db: Database, customer_id: str) -> list[dict[str, Any]]:
    """The customer's coupons and personal promo codes, if the coupons feature's table has
    them (it is another feature's; read only the columns it has)."""
    columns = db.dialect.columns_of(db.execute, "coupons")
    if "customer_id" not in columns or "code" not in columns:
        return []
    wanted = [c for c in _COUPON_COLUMNS if c in columns]
    rows = db.execute(
        f"SELECT {', '.join(wanted)} FROM coupons WHERE customer_id = ? ORDER BY code LIMIT 200",
        (customer_id,),
    ).fetchall()
    out: list[dict[str, Any]] = []
    for r in rows:
        item: dict[str, Any] = {}
        for name, value in zip(wanted, r, strict=True):
            item[name] = value.isoformat() if isinstance(value, datetime) else value
        out.append(item)
    return out
