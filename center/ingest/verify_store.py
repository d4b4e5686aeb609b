"""What verification reads and writes around ingest: the batch's context, its cases.

Before the ingest transaction (`prepare`): the promotion set of each version the batch names
(kept per version while the master version stands), its products, stores and their nodes'
enrolment. Inside it, under the card locks (`verify`): each card's checkpoint
(center/ingest/checkpoint.py) and the sales the Center holds that it does not cover (the batch's
own included, quarantined ones left out; all of them when no checkpoint serves), its wallets and
CRM attributes; then the pure verdicts (center/ingest/verify.py), a review case for every
doubted sale, and the checkpoints advanced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from center.crm.state_store import CustomerStateRepository
from center.crm.tiers_store import TierRepository
from center.ingest.checkpoint import EMPTY, Checkpoint, advance, load_doc, usable
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
from center.storage.migrations import Migration
from loyalty_engine import PromotionSet, RuleError, load_promotion_set
from sync_protocol import ProtocolError, Sale, decode_sale, promotion_amounts

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "SaleVerifier"]

_ADVANCE_AFTER = 1
"""Sales a checkpoint must gain to be written again. Measured on bench/center_ingest.py
(3 receipts per card): waiting for 4 saves writes but decodes more, and cost more in all."""

_CHECKPOINT_TABLES = (
    """CREATE TABLE verify_checkpoints (
        card_no TEXT PRIMARY KEY,
        doc TEXT NOT NULL,
        folded BIGINT NOT NULL
    )""",
    """CREATE TABLE verify_checkpoint_covers (
        card_no TEXT NOT NULL,
        register_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (card_no, register_id, store_id)
    )""",
)
SQLITE_MIGRATION = Migration("m039_verify_checkpoints", _CHECKPOINT_TABLES)
"""Each card's verification checkpoint and the seqs it covers, on SQLite."""
POSTGRES_MIGRATION = Migration("m039_verify_checkpoints", _CHECKPOINT_TABLES)
"""Each card's verification checkpoint and the seqs it covers, on PostgreSQL."""

# The held sales a card's checkpoint does not cover (a sale covers nothing it is not under).
_UNCOVERED_SQL = (
    "SELECT s.card_no, s.payload, s.received_at, s.sale_id FROM sales s "
    "LEFT JOIN verify_checkpoint_covers c ON c.card_no = s.card_no "
    "AND c.register_id = s.register_id AND c.store_id = s.store_id "
    "WHERE {cards} AND (c.seq IS NULL OR s.seq > c.seq) "
    f"AND s.sale_id NOT IN ({QUARANTINED_SQL})"
)
# How many held sales each checkpoint covers now: a sale that arrived late under it, or left
# quarantine, makes it differ from the checkpoint's own count.
_COVERED_SQL = (
    "SELECT s.card_no, COUNT(*) FROM sales s JOIN verify_checkpoint_covers c "
    "ON c.card_no = s.card_no AND c.register_id = s.register_id AND c.store_id = s.store_id "
    "AND s.seq <= c.seq WHERE {cards} "
    f"AND s.sale_id NOT IN ({QUARANTINED_SQL}) GROUP BY s.card_no"
)


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
            if wanted:
                where, param = db.dialect.any_of("product_id", wanted)
                for r in db.execute(
                    "SELECT product_id, department, category, brand, product_type FROM products "
                    f"WHERE {where}",
                    (param,),
                ).fetchall():
                    known[str(r[0])] = ProductInfo(r[1] or "", r[2] or "", r[3] or "", r[4] or "")
            self._asked.update(wanted)  # one question per product and master version
            where, param = db.dialect.any_of("store_id", stores)
            formats: dict[str, str] = {}
            zones: dict[str, str] = {}
            for store_id, fmt, zone in db.execute(
                f"SELECT store_id, format, timezone FROM stores WHERE {where}", (param,)
            ).fetchall():
                formats[str(store_id)] = str(fmt or "")
                zones[str(store_id)] = str(zone or "")
            enrolled = {
                str(store_id): db.dt(at)
                for store_id, at in db.execute(
                    f"SELECT store_id, MIN(enrolled_at) FROM nodes WHERE {where} GROUP BY store_id",
                    (param,),
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
        live = [s for s in sales if s.sale_id not in quarantined]
        checkpoints, stored = self._serving(cards, live)
        fresh = [c for c in cards if c not in checkpoints]
        batch = {s.sale_id: s for s in sales}
        history = self._history(fresh, quarantined, batch, full=True)
        history.update(self._history(sorted(checkpoints), quarantined, batch, full=False))
        full = replace(
            ctx,
            history=history,
            checkpoints=checkpoints,
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
        self._advance(live, full, stored)
        return verdicts

    # -- checkpoints -----------------------------------------------------------------------------

    def _serving(
        self, cards: Sequence[str], live: Sequence[Sale]
    ) -> tuple[dict[str, Checkpoint], set[str]]:
        """(card_no -> its stored checkpoint, where it still covers what it says and every
        priced sale of the batch may stand on it; the cards with a stored one)."""
        valid, stored = self._checkpoints(cards)
        for sale in live:
            cp = valid.get(sale.card_no or "")
            if cp is not None and sale.return_of is None and not usable(cp, sale):
                del valid[sale.card_no or ""]
        return valid, stored

    def _checkpoints(self, cards: Sequence[str]) -> tuple[dict[str, Checkpoint], set[str]]:
        """(card_no -> its stored checkpoint where it still covers what it says, the cards
        with a stored one, readable or not)."""
        db = self.db
        out: dict[str, Checkpoint] = {}
        if not cards:
            return out, set()
        where, param = db.dialect.any_of("card_no", cards)
        docs = {
            str(card_no): (str(doc), int(folded))
            for card_no, doc, folded in db.execute(
                f"SELECT card_no, doc, folded FROM verify_checkpoints WHERE {where}", (param,)
            ).fetchall()
        }
        if not docs:
            return out, set()
        held = sorted(docs)
        where, param = db.dialect.any_of("card_no", held)
        s_where, _ = db.dialect.any_of("s.card_no", held)
        covers: dict[str, dict[tuple[str, str], int]] = {c: {} for c in docs}
        for card_no, register_id, store_id, seq in db.execute(
            "SELECT card_no, register_id, store_id, seq FROM verify_checkpoint_covers "
            f"WHERE {where}",
            (param,),
        ).fetchall():
            covers[str(card_no)][(str(register_id), str(store_id))] = int(seq)
        counted = {
            str(card_no): int(n)
            for card_no, n in db.execute(_COVERED_SQL.format(cards=s_where), (param,)).fetchall()
        }
        for card_no, (doc, folded) in docs.items():
            if counted.get(card_no, 0) != folded:
                continue  # a sale arrived under it since: verify from the whole history
            try:
                out[card_no] = load_doc(doc, covers[card_no], folded)
            except (ValueError, TypeError, AttributeError, ProtocolError):
                continue  # a checkpoint this code cannot read: the whole history
        return out, set(docs)

    def _advance(self, live: Sequence[Sale], ctx: VerifyContext, stored: set[str]) -> None:
        """Each card's checkpoint moved up to what its newest priced sale of the batch named
        (``stored``: the cards with a stored checkpoint)."""
        latest: dict[str, Sale] = {}
        for sale in live:
            if sale.card_no and sale.return_of is None:
                held = latest.get(sale.card_no)
                if held is None or (sale.closed_at, sale.seq) > (held.closed_at, held.seq):
                    latest[sale.card_no] = sale
        docs: list[tuple[str, str, int]] = []
        covers: list[tuple[str, str, str, int]] = []
        for card_no, sale in sorted(latest.items()):
            old = ctx.checkpoints.get(card_no, EMPTY)
            rest = [h.sale for h in ctx.history.get(card_no, ())]
            new = advance(old, rest, sale, ctx.tz)
            grown = new.folded - old.folded
            if grown < _ADVANCE_AFTER and (card_no in ctx.checkpoints or card_no not in stored):
                continue  # (a stale or unusable one is replaced at once)
            docs.append((card_no, new.doc(), new.folded))
            covers.extend((card_no, r, st, seq) for (r, st), seq in sorted(new.covers.items()))
        if not docs:
            return
        db = self.db
        # Replaced rather than upserted (the card locks are held): COPY on PostgreSQL.
        where, param = db.dialect.any_of("card_no", [d[0] for d in docs])
        db.execute(f"DELETE FROM verify_checkpoints WHERE {where}", (param,))
        db.execute(f"DELETE FROM verify_checkpoint_covers WHERE {where}", (param,))
        db.bulk_insert("verify_checkpoints", ("card_no", "doc", "folded"), docs)
        if covers:
            db.bulk_insert(
                "verify_checkpoint_covers", ("card_no", "register_id", "store_id", "seq"), covers
            )

    def _history(
        self,
        cards: Sequence[str],
        quarantined: set[str],
        batch: Mapping[str, Sale],
        *,
        full: bool,
    ) -> dict[str, list[HeldSale]]:
        """card_no -> its held sales (``full``) or those its checkpoint does not cover; the
        batch's own taken as they are, not decoded again."""
        out: dict[str, list[HeldSale]] = {c: [] for c in cards}
        if not cards:
            return out
        db = self.db
        where, param = db.dialect.any_of("s.card_no", cards)
        sql = (
            "SELECT s.card_no, s.payload, s.received_at, s.sale_id FROM sales s "
            f"WHERE {where} AND s.sale_id NOT IN ({QUARANTINED_SQL})"
            if full
            else _UNCOVERED_SQL.format(cards=where)
        )
        for card_no, payload, received_at, sale_id in db.execute(sql, (param,)).fetchall():
            sale_id = str(sale_id)
            if sale_id in quarantined:
                continue
            sale = batch.get(sale_id)
            if sale is None:
                try:
                    sale = decode_sale(bytes(payload))
                except ProtocolError:
                    continue  # ingest stored it, so it decodes; a damaged row counts nothing
            out[str(card_no)].append(HeldSale(sale, db.dt(received_at)))
        return out

    def _attributes(self, cards: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        if not cards:
            return out
        where, param = self.db.dialect.any_of("c.card_no", cards)
        for card_no, text in self.db.execute(
            "SELECT c.card_no, u.attributes FROM cards c JOIN customers u "
            f"ON u.customer_id = c.customer_id WHERE {where}",
            (param,),
        ).fetchall():
            try:
                doc = json.loads(text) if isinstance(text, str) else text
            except ValueError:
                doc = {}
            out[str(card_no)] = doc if isinstance(doc, Mapping) else {}
        return out
