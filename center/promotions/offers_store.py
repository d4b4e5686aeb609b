"""Personal offers per customer, and the coupon positions the master feed reads.

Setting or deleting a customer's offers is one transaction with its audit row that bumps the
master version and the version of the customer's cards (card rows carry the offers and the
coupons issued to the customer, see feed.py). On PostgreSQL, ingest redeems coupons without
that global lock, so a redemption carries a feed position instead, as ledger rows do: the
writing transaction's xid8 (`coupon_redemptions.feed_pos`). SQLite has one writer: its ingest
bumps the holder's cards like any master write.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from center.access.audit import AuditLog
from center.errors import Conflict, UnknownObject
from center.feed.versions import MasterVersions
from center.promotions.offers import OfferInput, format_percent
from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "OfferRepository"]

_AUDIT_PAGE = 500
"""Audit rows read per query when walking an offer history back in time."""

_TABLE = """CREATE TABLE personal_offers (
        customer_id TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        product_id TEXT NOT NULL,
        percent TEXT NOT NULL,
        valid_from {ts},
        valid_to {ts},
        source TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at {ts} NOT NULL,
        PRIMARY KEY (customer_id, offer_id)
    )"""
_INDEXES = (
    "CREATE INDEX personal_offers_valid_to ON personal_offers (valid_to) "
    "WHERE valid_to IS NOT NULL",
    # Card rows list the coupons issued to their customer.
    "CREATE INDEX coupons_customer ON coupons (customer_id) WHERE customer_id IS NOT NULL",
)

SQLITE_MIGRATION = Migration(
    "m016_personal_offers",
    (
        _TABLE.format(ts="TEXT"),
        *_INDEXES,
    ),
)
"""Personal offers, on SQLite."""
POSTGRES_MIGRATION = Migration(
    "m016_personal_offers",
    (
        _TABLE.format(ts="TIMESTAMPTZ"),
        *_INDEXES,
        # Old rows keep NULL (below every mark); new rows get their transaction's id.
        "ALTER TABLE coupon_redemptions ADD COLUMN feed_pos xid8",
        "ALTER TABLE coupon_redemptions ALTER COLUMN feed_pos SET DEFAULT pg_current_xact_id()",
        "CREATE INDEX coupon_redemptions_feed ON coupon_redemptions (feed_pos)",
    ),
)
"""Personal offers, on PostgreSQL."""


class OfferRepository:
    """Personal offers per customer, now and as held at a past time."""

    def __init__(self, db: Database, *, audit: AuditLog, versions: MasterVersions) -> None:
        self.db = db
        self.audit = audit
        self.versions = versions

    def _offer_rows(self, customer_id: str) -> list[dict[str, Any]]:
        return [
            {
                "offer_id": r[0],
                "product_id": r[1],
                "percent": r[2],
                "valid_from": None if r[3] is None else self.db.dt(r[3]).isoformat(),
                "valid_to": None if r[4] is None else self.db.dt(r[4]).isoformat(),
                "source": r[5],
            }
            for r in self.db.execute(
                "SELECT offer_id, product_id, percent, valid_from, valid_to, source "
                "FROM personal_offers WHERE customer_id = ? ORDER BY offer_id",
                (customer_id,),
            ).fetchall()
        ]

    def _offer_view(self, offer: OfferInput) -> dict[str, Any]:
        """An offer as _offer_rows reads it back (times through the backend's own format)."""

        def shown(value: datetime | None) -> str | None:
            return None if value is None else self.db.dt(self.db.ts(value)).isoformat()

        return {
            "offer_id": offer.offer_id,
            "product_id": offer.product_id,
            "percent": format_percent(offer.percent),
            "valid_from": shown(offer.valid_from),
            "valid_to": shown(offer.valid_to),
            "source": offer.source,
        }

    def _offer_customer(self, customer_id: str) -> None:
        row = self.db.execute(
            "SELECT status, merged_into FROM customers "
            f"WHERE customer_id = ?{self.db.dialect.for_update}",
            (customer_id,),
        ).fetchone()
        if row is None:
            raise UnknownObject("customer_id", f"unknown customer {customer_id!r}")
        if row[1]:
            raise Conflict(
                "customer_id",
                f"customer {customer_id} was merged into {row[1]}; give the offers to that one",
            )

    def _touch_cards(self, customer_id: str) -> None:
        """Card rows carry the offers: give the customer's cards a new master version."""
        version = self.versions.bump()
        self.db.execute(
            "UPDATE cards SET version = ? WHERE customer_id = ?", (version, customer_id)
        )

    def personal_offers(self, customer_id: str) -> dict[str, Any] | None:
        """`{"customer_id", "offers": [...]}` by offer_id; None for an unknown customer."""
        with self.db.guard("read personal offers"), self.db.snapshot():
            known = self.db.execute(
                "SELECT 1 FROM customers WHERE customer_id = ?", (customer_id,)
            ).fetchone()
            if known is None:
                return None
            return {"customer_id": customer_id, "offers": self._offer_rows(customer_id)}

    def _changes_since(
        self, kind: str, object_id: str, action: str, since: datetime
    ) -> Iterator[tuple[datetime, Any]]:
        """(at, before) of the object's audit rows of `action` after `since`, newest first.

        Paged by audit_id (one object's rows are written under its row lock, so in time order);
        stops at the first row at or before `since`, however long the history.
        """
        below: int | None = None
        while True:
            rows = self.db.execute(
                "SELECT audit_id, at, before FROM audit WHERE kind = ? AND object_id = ? "
                f"AND action = ?{'' if below is None else ' AND audit_id < ?'} "
                f"ORDER BY audit_id DESC LIMIT {_AUDIT_PAGE}",
                (kind, object_id, action, *(() if below is None else (below,))),
            ).fetchall()
            for r in rows:
                at = self.db.dt(r[1])
                if at <= since:
                    return
                yield at, None if r[2] is None else json.loads(r[2])
            if len(rows) < _AUDIT_PAGE:
                return
            below = int(rows[-1][0])

    def _card_customers(
        self, current: str | None, card_no: str, since: datetime, at: datetime
    ) -> list[str]:
        """The customers `card_no` belonged to during [since, at], from its "move" audit rows."""
        held: list[str] = []
        owner = current
        for moved_at, before in self._changes_since("card", card_no, "move", since):
            if moved_at <= at and owner is not None and owner not in held:
                held.append(owner)
            owner = (before or {}).get("customer_id")
        if owner is not None and owner not in held:
            held.append(owner)
        return held

    def _offers_held(self, customer_id: str, since: datetime, at: datetime) -> list[Any]:
        """Every offer list the customer had during [since, at]: the state after each change
        is walked back through the change's `before`, newest first."""
        state: list[Any] = self._offer_rows(customer_id)
        held: list[Any] = []
        for changed_at, before in self._changes_since("customer", customer_id, "offers", since):
            if changed_at <= at:
                held.append(state)  # held from changed_at on, which is within the window
            state = list((before or {}).get("offers") or [])
        held.append(state)  # held at `since`
        return held

    def personal_offers_at(
        self, card_no: str, at: datetime, *, since: datetime | None = None
    ) -> dict[str, Any] | None:
        """The offers the card's customer held at any moment of [since, at] (since defaults to
        at): `{"card_no", "customer_ids", "offers": [...]}`, each version of an offer once (an
        offer whose percent changed in the window is listed twice); None for an unknown card.

        Rebuilt from the current offers and the audit trail read newest-first; the customer is
        the one the card belonged to then (a merge moves cards: both customers count when the
        move fell in the window).
        """
        start = at if since is None else min(since, at)
        with self.db.guard("read personal offers at a time"), self.db.snapshot():
            row = self.db.execute(
                "SELECT customer_id FROM cards WHERE card_no = ?", (card_no,)
            ).fetchone()
            if row is None:
                return None
            customers = self._card_customers(row[0], card_no, start, at)
            seen: set[str] = set()
            offers: list[dict[str, Any]] = []
            for customer_id in customers:
                for state in self._offers_held(customer_id, start, at):
                    for offer in state:
                        key = json.dumps([customer_id, offer], sort_keys=True)
                        if key not in seen:
                            seen.add(key)
                            offers.append({**offer, "customer_id": customer_id})
        offers.sort(key=lambda o: (o["offer_id"], o["customer_id"], str(o.get("percent"))))
        return {"card_no": card_no, "customer_ids": customers, "offers": offers}

    def set_personal_offers(
        self, customer_id: str, offers: Sequence[OfferInput], actor: str, now: datetime
    ) -> dict[str, Any]:
        """Replace the customer's offers; the view plus `changed` (False: nothing written)."""
        at = self.db.ts(now)
        with self.db.guard("set personal offers"), self.db.transaction():
            self._offer_customer(customer_id)
            products = sorted({o.product_id for o in offers})
            if products:
                marks = ", ".join("?" for _ in products)
                held = {
                    str(r[0])
                    for r in self.db.execute(
                        f"SELECT product_id FROM products WHERE product_id IN ({marks})", products
                    ).fetchall()
                }
                for index, offer in enumerate(offers):
                    if offer.product_id not in held:
                        raise UnknownObject(
                            f"body.offers[{index}].product_id",
                            f"unknown product {offer.product_id!r}; load it into the master "
                            "data first",
                        )
            before = self._offer_rows(customer_id)
            after = sorted((self._offer_view(o) for o in offers), key=lambda o: o["offer_id"])
            if after == before:
                return {"customer_id": customer_id, "offers": before, "changed": False}
            self.db.execute("DELETE FROM personal_offers WHERE customer_id = ?", (customer_id,))
            if offers:
                self.db.executemany(
                    "INSERT INTO personal_offers (customer_id, offer_id, product_id, percent, "
                    "valid_from, valid_to, source, updated_by, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            customer_id,
                            o.offer_id,
                            o.product_id,
                            format_percent(o.percent),
                            self.db.ts(o.valid_from),
                            self.db.ts(o.valid_to),
                            o.source,
                            actor,
                            at,
                        )
                        for o in offers
                    ],
                )
            self._touch_cards(customer_id)
            self.audit.record(
                "customer", customer_id, "offers", {"offers": before}, {"offers": after}, actor, at
            )
        return {"customer_id": customer_id, "offers": after, "changed": True}

    def delete_personal_offer(
        self, customer_id: str, offer_id: str, actor: str, now: datetime
    ) -> dict[str, Any]:
        """Remove one offer (UnknownObject when the customer has no such offer); the view."""
        at = self.db.ts(now)
        with self.db.guard("delete personal offer"), self.db.transaction():
            self._offer_customer(customer_id)
            before = self._offer_rows(customer_id)
            gone = [o for o in before if o["offer_id"] == offer_id]
            if not gone:
                raise UnknownObject("offer_id", f"customer {customer_id} has no offer {offer_id!r}")
            self.db.execute(
                "DELETE FROM personal_offers WHERE customer_id = ? AND offer_id = ?",
                (customer_id, offer_id),
            )
            self._touch_cards(customer_id)
            after = [o for o in before if o["offer_id"] != offer_id]
            self.audit.record(
                "customer",
                customer_id,
                "offers",
                {"offers": before},
                {"offers": after},
                actor,
                at,
            )
        return {"customer_id": customer_id, "offers": after}
