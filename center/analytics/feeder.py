"""Feeding the analytics store from the Center's database, incrementally and exactly once.

Sales are read in (received_at, sale_id) order from a watermark, movements in entry_id order,
customers and cards in (version, id) order. Each pass re-reads a short look-back before the
watermark (a transaction that committed late with an earlier received_at or entry_id) and
drops what the store already holds, so every sale, line and movement is stored once; the
ReplacingMergeTree keys make a repeated insert harmless too. The days a batch touches are
re-aggregated in `daily_sales`.

`read_batch` runs where the Center's database may be used (its thread); `apply_batch` writes
the analytics store and may run elsewhere.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from center.analytics.engines import sql_literal
from center.analytics.model import AnalyticsStatus
from center.analytics.store import AnalyticsStore
from center.errors import StorageError
from center.storage.database import Database

__all__ = ["Batch", "Cursor", "FeedResult", "apply_batch", "feed", "read_batch", "status"]

LOOKBACK = timedelta(seconds=60)
"""Sales received this long before the watermark are read again (late commits)."""
LEDGER_LOOKBACK = 1000
"""Ledger entry ids this far below the watermark are read again (late commits)."""
_IN_CHUNK = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SALE_COLUMNS = (
    "sale_id", "store_id", "register_id", "card_no", "customer_id", "closed_at", "day",
    "received_at", "subtotal_minor", "discount_minor", "total_minor", "line_count",
    "items_milli", "is_return", "fed_at", "version",
)  # fmt: skip
LINE_COLUMNS = (
    "sale_id", "line_no", "store_id", "customer_id", "day", "product_id", "category",
    "department", "qty_milli", "amount_minor", "discount_minor", "is_return", "brand",
    "unit_cost_minor", "version",
)  # fmt: skip
MOVEMENT_COLUMNS = (
    "entry_id", "card_no", "customer_id", "wallet", "kind", "amount", "rule_id", "source",
    "active_from", "expires_at", "created_at", "version",
)  # fmt: skip


def _db(storage: Any) -> Database:
    db = getattr(storage, "db", None)
    if not isinstance(db, Database):
        raise StorageError(
            f"the analytics feeder needs a SQL storage, got {type(storage).__name__}"
        )
    return db


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next pass starts (the watermarks kept in `feed_state`)."""

    sales_at: str = ""
    """received_at of the last sale fed, as the Center's database stores it (ISO UTC text)."""
    sales_id: str = ""
    ledger_id: int = 0
    customers: str = ""
    """'version|customer_id' of the last customer fed."""
    cards: str = ""

    @classmethod
    def from_state(cls, state: dict[str, str]) -> Cursor:
        """The cursor saved by `as_state`."""
        at, _, sale = state.get("sales", "").partition("|")
        return cls(
            sales_at=at,
            sales_id=sale,
            ledger_id=int(state.get("ledger", "0") or 0),
            customers=state.get("customers", ""),
            cards=state.get("cards", ""),
        )

    def as_state(self) -> dict[str, str]:
        """The watermarks as feed_state rows."""
        return {
            "sales": f"{self.sales_at}|{self.sales_id}" if self.sales_at else "",
            "ledger": str(self.ledger_id),
            "customers": self.customers,
            "cards": self.cards,
        }


@dataclass(slots=True)
class Batch:
    """Rows read from the Center in one pass, and the cursor after them."""

    cursor: Cursor
    sales: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[tuple[Any, ...]] = field(default_factory=list)
    movements: list[tuple[Any, ...]] = field(default_factory=list)
    customers: list[tuple[Any, ...]] = field(default_factory=list)
    cards: list[tuple[Any, ...]] = field(default_factory=list)
    more: bool = False
    """A limit was reached: another pass has more to read."""


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What one or more passes stored."""

    sales: int
    lines: int
    movements: int
    customers: int
    cards: int
    days: int


def _dt(db: Database, value: Any) -> datetime | None:
    return None if value is None else db.dt(value)


def _text_cursor(value: str) -> tuple[int, str]:
    version, _, key = value.partition("|")
    return (int(version) if version else -1), key


def read_batch(
    storage: Any,
    cursor: Cursor,
    *,
    zone: str = "UTC",
    limit: int = 5000,
    already: Callable[[str, str, list[Any]], set[Any]] | None = None,
    lookback: bool = False,
) -> Batch:
    """The sales (with lines), movements, customers and cards after `cursor`, at most `limit`
    of each; with `lookback`, also the rows of the look-back window that `already(table, column,
    keys)` (the keys the store holds) does not name."""
    db = _db(storage)
    tz = zoneinfo.ZoneInfo(zone)
    batch = Batch(cursor=cursor)
    with db.guard("analytics feed"), db.snapshot():
        # Sales after the watermark, in (received_at, sale_id) order; on a first pass also
        # those of the look-back window before it that the store does not hold.
        select = (
            "SELECT s.sale_id, s.store_id, s.register_id, s.card_no, "
            "COALESCE(c.customer_id, s.card_no, ''), s.closed_at, s.received_at, "
            "s.subtotal_minor, s.discount_minor, s.total_minor, s.line_count, "
            "CASE WHEN r.return_id IS NULL THEN 0 ELSE 1 END "
            "FROM sales s LEFT JOIN cards c ON c.card_no = s.card_no "
            "LEFT JOIN returns r ON r.return_id = s.sale_id "
        )
        fresh: list[Any] = []
        if cursor.sales_at:
            mark = db.ts(datetime.fromisoformat(cursor.sales_at))
            if lookback and already is not None:
                since = db.ts(datetime.fromisoformat(cursor.sales_at) - LOOKBACK)
                old = db.execute(
                    select + "WHERE s.received_at > ? AND (s.received_at < ? OR "
                    "(s.received_at = ? AND s.sale_id <= ?))",
                    [since, mark, mark, cursor.sales_id],
                ).fetchall()
                held = already("sales", "sale_id", [r[0] for r in old]) if old else set()
                fresh = [r for r in old if r[0] not in held]
            # (received_at, sale_id) after the mark, written so the sales_received_at index
            # gives a range search rather than a walk over every sale before the mark.
            where = "s.received_at >= ? AND (s.received_at > ? OR s.sale_id > ?)"
            params: list[Any] = [mark, mark, cursor.sales_id]
        else:
            where, params = "1 = 1", []
        sales = db.execute(
            select + f"WHERE {where} ORDER BY s.received_at, s.sale_id LIMIT ?",
            [*params, limit + 1],
        ).fetchall()
        if len(sales) > limit:
            sales, batch.more = sales[:limit], True
        fresh.extend(sales)
        if sales:
            batch.cursor = replace(
                batch.cursor, sales_at=db.dt(sales[-1][6]).isoformat(), sales_id=sales[-1][0]
            )
        lines_of: dict[str, list[tuple[Any, ...]]] = {}
        ids = [r[0] for r in fresh]
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for line in db.execute(
                "SELECT l.sale_id, l.line_no, l.product_id, l.qty_milli, l.amount_minor, "
                "l.discount_minor, COALESCE(p.category, ''), COALESCE(p.department, ''), "
                "COALESCE(p.brand, ''), p.cost_minor "
                "FROM sale_lines l LEFT JOIN products p ON p.product_id = l.product_id "
                f"WHERE l.sale_id IN ({marks})",
                chunk,
            ):
                lines_of.setdefault(line[0], []).append(tuple(line))
        for r in fresh:
            closed = db.dt(r[5])
            day = closed.astimezone(tz).date()
            customer = r[4] or ""
            lines = lines_of.get(r[0], [])
            batch.sales.append(
                (r[0], r[1], r[2], r[3] or "", customer, closed, day, db.dt(r[6]),
                 int(r[7]), int(r[8]), int(r[9]), int(r[10]),
                 sum(int(x[3]) for x in lines), int(r[11]))
            )  # fmt: skip
            for x in lines:
                batch.lines.append(
                    (x[0], int(x[1]), r[1], customer, day, x[2], x[6] or "", x[7] or "",
                     int(x[3]), int(x[4]), int(x[5]), int(r[11]), x[8] or "",
                     None if x[9] is None else int(x[9]))
                )  # fmt: skip

        # Ledger movements after (watermark - look-back), in entry_id order.
        start = max(0, cursor.ledger_id - LEDGER_LOOKBACK) if lookback else cursor.ledger_id
        moves = db.execute(
            "SELECT l.entry_id, l.card_no, COALESCE(c.customer_id, l.card_no), l.wallet, l.kind, "
            "l.amount, l.rule_id, l.source, l.active_from, l.expires_at, l.created_at "
            "FROM ledger l LEFT JOIN cards c ON c.card_no = l.card_no "
            "WHERE l.entry_id > ? ORDER BY l.entry_id LIMIT ?",
            [start, limit + 1],
        ).fetchall()
        if len(moves) > limit:
            moves, batch.more = moves[:limit], True
        old_ids = [int(m[0]) for m in moves if int(m[0]) <= cursor.ledger_id]
        held_ids = already("movements", "entry_id", old_ids) if old_ids and already else set()
        for m in moves:
            if int(m[0]) in held_ids:
                continue
            batch.movements.append(
                (int(m[0]), m[1], m[2] or "", m[3], m[4], int(m[5]), m[6], m[7],
                 _dt(db, m[8]), _dt(db, m[9]), db.dt(m[10]))
            )  # fmt: skip
        if moves:
            batch.cursor = replace(batch.cursor, ledger_id=max(cursor.ledger_id, int(moves[-1][0])))

        # Customers and cards changed since their last version fed (master versions).
        for table, key, cols, name in (
            ("customers", "customer_id", "customer_id, attributes, version", "customers"),
            ("cards", "card_no", "card_no, customer_id, status, card_type, version", "cards"),
        ):
            version, last_key = _text_cursor(getattr(cursor, name))
            rows = db.execute(
                f"SELECT {cols} FROM {table} WHERE version > ? OR (version = ? AND {key} > ?) "
                f"ORDER BY version, {key} LIMIT ?",
                [version, version, last_key, limit + 1],
            ).fetchall()
            if len(rows) > limit:
                rows, batch.more = rows[:limit], True
            target = batch.customers if name == "customers" else batch.cards
            target.extend(tuple(r) for r in rows)
            if rows:
                mark = f"{rows[-1][-1]}|{rows[-1][0]}"
                batch.cursor = (
                    replace(batch.cursor, customers=mark)
                    if name == "customers"
                    else replace(batch.cursor, cards=mark)
                )
    return batch


def apply_batch(store: AnalyticsStore, batch: Batch, now: datetime) -> FeedResult:
    """Write a batch into the analytics store, re-aggregate the days it touched, then move the
    watermarks (a crash before that re-reads the batch, and the keys drop the repeat)."""
    version = int((now - _EPOCH).total_seconds() * 1000)
    store.insert("sales", SALE_COLUMNS, [(*r, now, 1) for r in batch.sales])
    store.insert("sale_lines", LINE_COLUMNS, [(*r, 1) for r in batch.lines])
    store.insert("movements", MOVEMENT_COLUMNS, [(*r, 1) for r in batch.movements])
    store.insert(
        "customers", ("customer_id", "attributes", "version"),
        [(r[0], str(r[1]), int(r[2])) for r in batch.customers],
    )  # fmt: skip
    store.insert(
        "cards", ("card_no", "customer_id", "status", "card_type", "version"),
        [(r[0], r[1], r[2], r[3] or "", int(r[4])) for r in batch.cards],
    )  # fmt: skip
    days = sorted({r[6] for r in batch.sales})
    reaggregate_days(store, days, version)
    store.save_state(batch.cursor.as_state(), now, version)
    return FeedResult(
        len(batch.sales), len(batch.lines), len(batch.movements), len(batch.customers),
        len(batch.cards), len(days),
    )  # fmt: skip


def reaggregate_days(store: AnalyticsStore, days: Sequence[date], version: int) -> None:
    """Recompute `daily_sales` of these days from the sales held (returns are not receipts)."""
    for i in range(0, len(days), _IN_CHUNK):
        listed = ", ".join(sql_literal(d) for d in days[i : i + _IN_CHUNK])
        store.command(
            f"INSERT INTO {store.db}.daily_sales (day, store_id, receipts, revenue_minor, "
            "customers, items_milli, version) "
            "SELECT day, store_id, count(), sum(total_minor), "
            f"uniqExactIf(customer_id, customer_id != ''), sum(items_milli), {version} "
            f"FROM {store.table('sales')} WHERE is_return = 0 AND day IN ({listed}) "
            "GROUP BY day, store_id"
        )


def feed(
    read: Callable[[Cursor, Callable[[str, str, list[Any]], set[Any]], bool], Batch],
    store: AnalyticsStore,
    now: Callable[[], datetime],
    *,
    progress: Callable[[FeedResult], None] | None = None,
) -> FeedResult:
    """Passes until caught up: `read(cursor, already, lookback)` reads the Center (see
    read_batch); the first pass looks back."""
    totals = [0] * 6
    cursor = Cursor.from_state(store.state())

    def already(table: str, column: str, keys: list[Any]) -> set[Any]:
        return store.existing(table, column, keys)

    first = True
    while True:
        batch = read(cursor, already, first)
        first = False
        empty = not (batch.sales or batch.movements or batch.customers or batch.cards)
        if empty and batch.cursor == cursor and not batch.more:
            return FeedResult(*totals)  # nothing new: no write at all
        done = apply_batch(store, batch, now())
        for i, n in enumerate((done.sales, done.lines, done.movements, done.customers,
                               done.cards, done.days)):  # fmt: skip
            totals[i] += n
        if progress is not None:
            progress(FeedResult(*totals))
        cursor = batch.cursor
        if not batch.more:
            return FeedResult(*totals)


def status(storage: Any, store: AnalyticsStore, engine: str) -> AnalyticsStatus:
    """Watermarks, lag behind the Center's newest sale, and row counts."""
    state = store.state()
    cursor = Cursor.from_state(state)
    db = _db(storage)
    with db.guard("analytics status"), db.snapshot():
        newest = db.execute("SELECT MAX(received_at) FROM sales").fetchone()[0]
        if cursor.sales_at:
            pending = db.execute(
                "SELECT COUNT(*) FROM sales WHERE received_at > ?",
                [db.ts(datetime.fromisoformat(cursor.sales_at))],
            ).fetchone()[0]
        else:
            pending = db.execute("SELECT COUNT(*) FROM sales").fetchone()[0]
    lag: float | None = None
    if newest is not None and cursor.sales_at:
        behind = db.dt(newest) - datetime.fromisoformat(cursor.sales_at)
        lag = round(max(0.0, behind.total_seconds()), 3)
    fed_at = store.rows(f"SELECT toString(max(updated_at)) AS at FROM {store.table('feed_state')}")[
        0
    ]["at"]
    return AnalyticsStatus(
        engine=engine,
        sales_watermark=cursor.sales_at,
        ledger_watermark=cursor.ledger_id,
        fed_at="" if fed_at.startswith("1970") else fed_at,
        lag_s=lag,
        pending_sales=int(pending),
        rows=store.counts(),
    )
