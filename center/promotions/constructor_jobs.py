"""What-if runs of a draft started from the constructor: their progress and results.

A run prices the stored sales of a period, one day at a time, with the live promotions and the
draft instead of its live version (`simulate`, the same pure function as `loyalty-center
simulate`), and adds the days up. Runs live in the Center process that started them: a restart
forgets them (the person starts another), and at most `MAX_RUNS` are kept.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from center.promotions.constructor import published_doc
from center.promotions.recompute import ProductInfo
from center.promotions.simulate import PromotionImpact, SimulationReport, simulate
from loyalty_engine import PromotionSet, RuleError, load_promotion_set
from sync_protocol import ProtocolError, Sale, decode_sale

if TYPE_CHECKING:
    from center.storage import Storage

__all__ = [
    "MAX_DAYS",
    "MAX_RUNS",
    "Run",
    "Runs",
    "days_of",
    "draft_set",
    "merge_report",
    "price_period",
]

MAX_DAYS = 92
"""The longest period one run prices (a quarter)."""
MAX_RUNS = 50


@dataclass(slots=True)
class Run:
    """One what-if run: which draft over which days, how far it got, what it found."""

    run_id: str
    promotion_id: str
    revision: int
    date_from: date
    date_to: date
    days_total: int
    days_done: int = 0
    receipts: int = 0
    state: str = "running"
    """running, done or failed"""
    error: str = ""
    report: SimulationReport | None = None

    @property
    def percent(self) -> int:
        """How far the run got, 0..100, by days priced."""
        return 100 if self.state != "running" else self.days_done * 100 // max(self.days_total, 1)

    def own(self) -> dict[str, Any]:
        """The draft's own effect: cost of its discounts, units accrued, receipts, customers."""
        impact = None
        if self.report is not None:
            impact = self.report.per_promotion.get(self.promotion_id)
        return (impact or PromotionImpact(self.promotion_id)).to_dict()


@dataclass(slots=True)
class Runs:
    """The runs of this process, newest last."""

    runs: dict[str, Run] = field(default_factory=dict)
    tasks: set[Any] = field(default_factory=set)
    """The asyncio tasks pricing them (kept referenced until they end; cancelled at cleanup)."""

    def start(self, promotion_id: str, revision: int, date_from: date, date_to: date) -> Run:
        """A new run (the oldest is forgotten beyond MAX_RUNS)."""
        run = Run(
            f"sim-{uuid.uuid4().hex[:16]}",
            promotion_id,
            revision,
            date_from,
            date_to,
            (date_to - date_from).days + 1,
        )
        self.runs[run.run_id] = run
        while len(self.runs) > MAX_RUNS:
            del self.runs[next(iter(self.runs))]
        return run

    def get(self, run_id: str) -> Run | None:
        """The run, or None for one this process does not know."""
        return self.runs.get(run_id)


def days_of(date_from: date, date_to: date) -> list[tuple[datetime, datetime]]:
    """Each day of [date_from, date_to] as [start, end) in UTC."""
    out = []
    day = date_from
    while day <= date_to:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        out.append((start, start + timedelta(days=1)))
        day += timedelta(days=1)
    return out


def draft_set(
    doc: Mapping[str, Any],
    live: Iterable[tuple[str, Mapping[str, Any]]],
    settings: Mapping[str, Any],
    version: int,
) -> PromotionSet:
    """The live promotions with the draft (as if active) in place of its live version; live rows
    this engine cannot load are left out, as the registers leave them out."""
    docs: list[Mapping[str, Any]] = [published_doc(doc, settings)]
    for promotion_id, live_doc in live:
        if promotion_id == doc.get("promotion_id"):
            continue
        try:
            load_promotion_set([live_doc], version=0, settings=settings, strict=False)
        except RuleError:
            continue
        docs.append(live_doc)
    return load_promotion_set(docs, version=version, settings=settings, strict=False)


def merge_report(total: SimulationReport, part: SimulationReport) -> None:
    """Add one day's report to the run's."""
    total.sales += part.sales
    total.errors += part.errors
    total.receipts_changed += part.receipts_changed
    total.customers_changed |= part.customers_changed
    total.discount_before_minor += part.discount_before_minor
    total.discount_after_minor += part.discount_after_minor
    total.bonus_before += part.bonus_before
    total.bonus_after += part.bonus_after
    for promotion_id, impact in part.per_promotion.items():
        into = total.per_promotion.setdefault(promotion_id, PromotionImpact(promotion_id))
        into.discount_minor += impact.discount_minor
        into.receipts += impact.receipts
        into.customers |= impact.customers
        for wallet, amount in impact.accrued.items():
            into.accrued[wallet] = into.accrued.get(wallet, 0) + amount


def _price(
    payloads: list[bytes],
    draft: PromotionSet,
    products: Mapping[str, ProductInfo],
    formats: Mapping[str, str],
    cards: frozenset[str] | None,
) -> SimulationReport:
    def sales() -> Iterator[Sale]:
        for payload in payloads:
            try:
                sale: Sale = decode_sale(payload)
            except ProtocolError:
                continue
            if cards is None or (sale.card_no is not None and sale.card_no in cards):
                yield sale

    return simulate(sales(), draft, products=products, store_formats=formats)


async def price_period(
    storage: Storage,
    db: Executor,
    doc: Mapping[str, Any],
    date_from: date,
    date_to: date,
    *,
    cards: frozenset[str] | None = None,
    on_day: Callable[[SimulationReport], None] | None = None,
) -> SimulationReport:
    """Price the stored sales of [date_from, date_to] (only those of `cards` when given) with
    the live promotions and `doc` in place of its live version, one day at a time: database
    reads on `db`, pricing off the event loop; `on_day` sees the total after each day."""
    loop = asyncio.get_running_loop()
    master = await loop.run_in_executor(db, storage.feed.pricing_master)
    context = await loop.run_in_executor(db, storage.promotions.promotion_pricing_context, [], "")
    draft = draft_set(doc, context["live"], context["settings"], context["version"])
    products = {
        str(r[0]): ProductInfo(r[1] or "", r[2] or "", r[3] or "", r[4] or "")
        for r in master["products"]
    }
    formats = {str(r[0]): str(r[1] or "") for r in master["stores"]}
    report = SimulationReport(draft.version)
    for start, end in days_of(date_from, date_to):
        payloads = await loop.run_in_executor(db, storage.sales.sale_payloads, start, end)
        part = await loop.run_in_executor(None, _price, payloads, draft, products, formats, cards)
        merge_report(report, part)
        if on_day is not None:
            on_day(report)
    return report
