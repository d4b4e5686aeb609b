"""What verification reads and writes around ingest: the batch's context, its cases.

Before the ingest transaction (`prepare`): the promotion set of each version the batch names
(kept per version while the master version stands), its products, stores and their nodes'
enrolment. Inside it, under the card locks (`verify`): each card's sales the Center holds (the
batch's own included, quarantined ones left out), its wallets and CRM attributes; then the pure
verdicts (center/ingest/verify.py), and a review case for every doubted sale.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from center.crm.state_store import CustomerStateRepository
from center.crm.tiers_store import TierRepository
from center.ingest.review_store import QUARANTINED_SQL, ReviewRepository
from center.ingest.verify import (
    HeldSale,
    Verification,
    VerifyContext,
    VerifyPolicy,
    quarantine_reason,
    verify_sale,
)
from center.promotions.budgets_store import BudgetRepository
from center.promotions.recompute import ProductInfo
from center.promotions.store import PromotionRepository
from center.storage.database import Database
from loyalty_engine import PromotionSet, RuleError, load_promotion_set
from sync_protocol import ProtocolError, Sale, decode_sale, promotion_amounts

__all__ = ["SaleVerifier"]

_CHUNK = 500


class SaleVerifier:
    """Verifies each new sale of an ingest batch; off (claims booked as they are) until
    `configure` gives it a policy."""

    def __init__(
        self,
        db: Database,
        *,
        promotions: PromotionRepository,
        states: CustomerStateRepository,
        reviews: ReviewRepository,
        tiers: TierRepository | None = None,
        budgets: BudgetRepository | None = None,
    ) -> None:
        self.db = db
        self.budgets = budgets
        self.promotions = promotions
        self.states = states
        self.reviews = reviews
        self.tiers = tiers
        self.policy: VerifyPolicy | None = None
        self._sets: dict[int, PromotionSet | str] = {}
        self._funded: dict[int, tuple[str, ...]] = {}
        self._sets_at = -1
        self._settings: dict[str, str] = {}
        self._products: dict[str, ProductInfo] = {}
        self._asked: set[str] = set()

    def configure(self, policy: VerifyPolicy | None) -> None:
        """Verify with `policy` from now on; None: book claims unverified (benchmarks only)."""
        self.policy = policy

    # -- before the transaction ----------------------------------------------------------------

    def prepare(self, sales: Sequence[Sale], now: datetime) -> VerifyContext | None:
        """What the batch is verified against that no card lock guards; None when off."""
        if self.policy is None or not sales:
            return None
        db = self.db
        current = self.promotions.versions.current()
        if current != self._sets_at:
            # A new master version: sets, settings and products may differ.
            self._sets, self._sets_at = {}, current
            self._funded = {}
            self._products, self._asked = {}, set()
            self._settings = self.promotions.promotion_settings()
        settings = self._settings
        for version in sorted({s.promo_version for s in sales if s.return_of is None}):
            if version in self._sets or version > current:
                continue
            try:
                docs = [doc for _, doc in self.promotions.promotion_set(version)]
                self._sets[version] = load_promotion_set(
                    docs, version=version, settings=settings, strict=False
                )
            except RuleError as exc:
                self._sets[version] = f"promotions: the set of version {version}: {exc}"
        known = self._products
        wanted = sorted({line.product_id for s in sales for line in s.lines} - self._asked)
        stores = sorted({s.store_id for s in sales})
        with self.db.guard("read verification context"):
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ", ".join("?" for _ in chunk)
                for r in db.execute(
                    "SELECT product_id, department, category, brand, product_type FROM products "
                    f"WHERE product_id IN ({marks})",
                    chunk,
                ).fetchall():
                    known[str(r[0])] = ProductInfo(r[1] or "", r[2] or "", r[3] or "", r[4] or "")
            self._asked.update(wanted)  # one question per product and master version
            marks = ", ".join("?" for _ in stores)
            formats: dict[str, str] = {}
            zones: dict[str, str] = {}
            for store_id, fmt, zone in db.execute(
                f"SELECT store_id, format, timezone FROM stores WHERE store_id IN ({marks})",
                stores,
            ).fetchall():
                formats[str(store_id)] = str(fmt or "")
                zones[str(store_id)] = str(zone or "")
            enrolled = {
                str(store_id): db.dt(at)
                for store_id, at in db.execute(
                    f"SELECT store_id, MIN(enrolled_at) FROM nodes WHERE store_id IN ({marks}) "
                    "GROUP BY store_id",
                    stores,
                ).fetchall()
            }
            tz = self.states.chain_zone()
            programme = None if self.tiers is None else self.tiers.current_programme()
        return VerifyContext(
            now=now,
            published_version=current,
            promotions=dict(self._sets),
            products=known,
            store_formats=formats,
            store_zones=zones,
            enrolled_at=enrolled,
            tz=tz,
            tiers=programme,
            funded=self._funded_of_sets(),
        )

    def _funded_of_sets(self) -> dict[int, tuple[str, ...]]:
        """promo_version -> its supplier-budgeted promotions (worked out once per set)."""
        funded = self._funded
        for version, found in self._sets.items():
            if version not in funded and not isinstance(found, str):
                funded[version] = tuple(
                    p.promotion_id for p in found.promotions if p.funding.budget_minor is not None
                )
        return dict(funded)

    # -- inside the ingest transaction ---------------------------------------------------------

    def verify(
        self, sales: Sequence[Sale], ctx: VerifyContext, received: Any
    ) -> dict[str, Verification]:
        """sale_id -> verdict of each new sale (in the batch's order), cases recorded."""
        policy = self.policy
        assert policy is not None
        verdicts: dict[str, Verification] = {}
        # Decided first: a quarantined sale of the batch counts in no state.
        quarantined = {s.sale_id for s in sales if quarantine_reason(s, ctx, policy) is not None}
        cards = sorted({s.card_no for s in sales if s.card_no})
        full = replace(
            ctx,
            history=self._history(cards, quarantined),
            wallets=self.states.wallets(cards, ctx.now) if cards else {},
            attributes=self._attributes(cards),
            levels=(
                self.tiers.card_levels(cards)
                if cards and ctx.tiers is not None and self.tiers is not None
                else {}
            ),
        )
        booked: dict[str, dict[str, int]] = {}
        doubted: list[tuple[Sale, Verification]] = []
        # What each store still held of each budget: its lease, less the batch's earlier sales.
        leased = (
            self.budgets.entitlements(sales)
            if self.budgets is not None and any(full.funded.values())
            else {}
        )
        # In closing order: a spend may use what the card's earlier sales of the batch accrued.
        for sale in sorted(sales, key=lambda s: s.closed_at):
            before = booked.get(sale.card_no or "", {})
            funded = full.funded.get(sale.promo_version, ())
            entitled = {pid: leased.get((pid, sale.store_id), 0) for pid in funded}
            verdict = verify_sale(sale, full, policy, booked_before=before, leased=entitled)
            if funded:
                gave = promotion_amounts(sale)
                for pid in funded:
                    if gave.get(pid):
                        key = (pid, sale.store_id)
                        leased[key] = max(0, leased.get(key, 0) - gave[pid])
            verdicts[sale.sale_id] = verdict
            if sale.card_no:
                mine = booked.setdefault(sale.card_no, {})
                for m in verdict.verified:
                    mine[m.wallet] = mine.get(m.wallet, 0) + m.amount
            if not verdict.clean:
                doubted.append((sale, verdict))
        if doubted:
            self.reviews.record(doubted, received)
        return verdicts

    def _history(self, cards: Sequence[str], quarantined: set[str]) -> dict[str, list[HeldSale]]:
        out: dict[str, list[HeldSale]] = {c: [] for c in cards}
        db = self.db
        for start in range(0, len(cards), _CHUNK):
            chunk = cards[start : start + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for card_no, payload, received_at, sale_id in db.execute(
                f"SELECT card_no, payload, received_at, sale_id FROM sales "
                f"WHERE card_no IN ({marks}) AND sale_id NOT IN ({QUARANTINED_SQL})",
                chunk,
            ).fetchall():
                if str(sale_id) in quarantined:
                    continue
                try:
                    sale = decode_sale(bytes(payload))
                except ProtocolError:
                    continue  # ingest stored it, so it decodes; a damaged row counts as nothing
                out[str(card_no)].append(HeldSale(sale, db.dt(received_at)))
        return out

    def _attributes(self, cards: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        if not cards:
            return out
        marks = ", ".join("?" for _ in cards)
        for card_no, text in self.db.execute(
            "SELECT c.card_no, u.attributes FROM cards c JOIN customers u "
            f"ON u.customer_id = c.customer_id WHERE c.card_no IN ({marks})",
            list(cards),
        ).fetchall():
            try:
                doc = json.loads(text) if isinstance(text, str) else text
            except ValueError:
                doc = {}
            out[str(card_no)] = doc if isinstance(doc, Mapping) else {}
        return out
