"""Promotions constructor: drafts, revisions, history, publishing to the master table.

`promotion_drafts` holds one row per constructor-managed promotion (its lifecycle status, latest
revision and live revision); `promotion_revisions` every saved revision with its author, time
and the master versions at which it was published and retired. Activating writes the revision
into the master `promotions` table (which stores replicate) and bumps the master version in the
same transaction; archiving deletes the master row (the feed sends a tombstone). Every change
writes an `audit` row of kind `promotion`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from center.access.audit import AuditLog
from center.errors import Conflict, InvalidRequest, UnknownObject
from center.feed.versions import MasterVersions
from center.promotions.constructor import LIFECYCLE, diff_docs, published_doc, require_valid
from center.promotions.validation import Known, accrued_wallets
from center.storage.database import Database
from center.storage.migrations import Migration
from sync_protocol import TIERS_SETTING, read_programme

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "PromotionRepository"]

MAX_HISTORY = 1000
_IMPORTED = "master-import"
"""Author of the revision recorded when the constructor takes over a promotion already live."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _migration(ts: str, big: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE promotion_drafts (
            promotion_id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            revision INTEGER NOT NULL,
            live_revision INTEGER,
            created_by TEXT NOT NULL,
            created_at {ts} NOT NULL,
            updated_by TEXT NOT NULL,
            updated_at {ts} NOT NULL
        )""",
        "CREATE INDEX promotion_drafts_status ON promotion_drafts (status, promotion_id)",
        f"""CREATE TABLE promotion_revisions (
            promotion_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            doc TEXT NOT NULL,
            status TEXT NOT NULL,
            author TEXT NOT NULL,
            at {ts} NOT NULL,
            published_version {big},
            archived_version {big},
            PRIMARY KEY (promotion_id, revision)
        )""",
        "CREATE INDEX promotion_revisions_published ON promotion_revisions "
        "(published_version) WHERE published_version IS NOT NULL",
    )


SQLITE_MIGRATION = Migration("m008_promotion_constructor", _migration("TEXT", "INTEGER"))
"""The promotions constructor (drafts, revisions), on SQLite."""
POSTGRES_MIGRATION = Migration("m008_promotion_constructor", _migration("TIMESTAMPTZ", "BIGINT"))
"""The promotions constructor (drafts, revisions), on PostgreSQL."""


class PromotionRepository:
    """Constructor-managed promotions (drafts, revisions, history) and the live promotion sets."""

    def __init__(self, db: Database, *, audit: AuditLog, versions: MasterVersions) -> None:
        self.db = db
        self.audit = audit
        self.versions = versions

    # -- helpers -------------------------------------------------------------------------------

    def _chain_settings(self) -> dict[str, str]:
        rows = self.db.execute("SELECT name, value FROM settings ORDER BY name").fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def _managed_list(self, list_name: str) -> frozenset[str] | None:
        """A managed list of names (`master_lists`, loaded with the master data), casefolded;
        ``None`` while the chain manages none (then any name is accepted)."""
        rows = self.db.execute(
            "SELECT name FROM master_lists WHERE list_name = ?", (list_name,)
        ).fetchall()
        return frozenset(str(r[0]).casefold() for r in rows if r[0]) or None

    def _known(self) -> Known:
        stores = self.db.dialect.columns_of(self.db.execute, "stores")
        formats = frozenset(
            str(r[0]).casefold()
            for r in self.db.execute("SELECT DISTINCT format FROM stores").fetchall()
            if r[0]
        )
        regions = None
        if "region" in stores:
            regions = frozenset(
                str(r[0]).casefold()
                for r in self.db.execute("SELECT DISTINCT region FROM stores").fetchall()
                if r[0]
            )
        live = [json.loads(r[0]) for r in self.db.execute("SELECT doc FROM promotions").fetchall()]
        return Known(
            formats=self._managed_list("format"),
            regions=self._managed_list("region"),
            store_formats=formats,
            store_regions=regions,
            tiers=self._tier_codes(),
            # No supplier budget ledger exists at the Center yet.
            accrued_wallets=accrued_wallets(d for d in live if isinstance(d, dict)),
            budgets=None,
        )

    def _tier_codes(self) -> frozenset[str]:
        """The level codes of the tier programme (the chain setting ``tiers.programme``)."""
        row = self.db.execute(
            "SELECT value FROM settings WHERE name = ?", (TIERS_SETTING,)
        ).fetchone()
        programme = read_programme({TIERS_SETTING: row[0]}) if row is not None else None
        return frozenset(lv.code for lv in programme.levels) if programme else frozenset()

    def validation_context(self) -> Known:
        """What a rule is checked against: managed lists, the stores' formats, live wallets."""
        with self.db.guard("read validation context"), self.db.snapshot():
            return self._known()

    def _draft_row(self, promotion_id: str, *, lock: bool = False) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT status, revision, live_revision FROM promotion_drafts "
            f"WHERE promotion_id = ?{self.db.dialect.for_update if lock else ''}",
            (promotion_id,),
        ).fetchone()
        if row is None:
            return None
        return {
            "status": row[0],
            "revision": int(row[1]),
            "live_revision": None if row[2] is None else int(row[2]),
        }

    def _existing_draft(self, promotion_id: str) -> dict[str, Any]:
        found = self._draft_row(promotion_id, lock=True)
        if found is None:
            raise UnknownObject("promotion_id", f"unknown promotion {promotion_id[:80]!r}")
        return found

    def _revision_doc(self, promotion_id: str, revision: int | None) -> dict[str, Any] | None:
        if revision is None:
            return None
        row = self.db.execute(
            "SELECT doc FROM promotion_revisions WHERE promotion_id = ? AND revision = ?",
            (promotion_id, revision),
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def _add_revision(
        self,
        promotion_id: str,
        revision: int,
        doc: Mapping[str, Any],
        status: str,
        actor: str,
        at: Any,
        published: int | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO promotion_revisions (promotion_id, revision, doc, status, author, at, "
            "published_version, archived_version) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            (promotion_id, revision, _json(doc), status, actor, at, published),
        )

    def _touch(self, promotion_id: str, actor: str, at: Any, **changes: Any) -> None:
        sets = ", ".join(f"{name} = ?" for name in changes)
        self.db.execute(
            f"UPDATE promotion_drafts SET {sets}, updated_by = ?, updated_at = ? "
            "WHERE promotion_id = ?",
            (*changes.values(), actor, at, promotion_id),
        )

    @staticmethod
    def _state(revision: int | None, status: str, doc: Any, **extra: Any) -> dict[str, Any]:
        return {"revision": revision, "status": status, "doc": doc, **extra}

    # -- writes --------------------------------------------------------------------------------

    def create_promotion(self, doc: Mapping[str, Any], actor: str, now: datetime) -> dict[str, Any]:
        """A new draft (revision 1, or the next one after the live row it takes over).

        A promotion already in the master table but not yet managed here (imported with the
        dataset) is taken over: its live row becomes a revision published at its version.
        """
        promotion_id = str(doc["promotion_id"])
        at = self.db.ts(now)
        with self.db.guard("create promotion"), self.db.transaction():
            require_valid(doc, self._chain_settings(), self._known())
            row = self.db.execute(
                "INSERT INTO promotion_drafts (promotion_id, status, revision, live_revision, "
                "created_by, created_at, updated_by, updated_at) "
                "VALUES (?, 'draft', 1, NULL, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING promotion_id",
                (promotion_id, actor, at, actor, at),
            ).fetchone()
            if row is None:
                raise Conflict("promotion_id", f"promotion {promotion_id!r} already exists")
            live = self.db.execute(
                "SELECT doc, version FROM promotions "
                f"WHERE promotion_id = ?{self.db.dialect.for_update}",
                (promotion_id,),
            ).fetchone()
            revision = 1
            if live is not None:
                self._add_revision(
                    promotion_id, 1, json.loads(live[0]), "active", _IMPORTED, at, int(live[1])
                )
                revision = 2
                self._touch(promotion_id, actor, at, status="active", revision=2, live_revision=1)
            self._add_revision(promotion_id, revision, doc, "draft", actor, at)
            self.audit.record(
                "promotion",
                promotion_id,
                "create",
                None,
                self._state(revision, "draft", dict(doc)),
                actor,
                at,
            )
        found = self.get_promotion(promotion_id)
        assert found is not None
        return found

    def update_promotion(
        self, promotion_id: str, doc: Mapping[str, Any], actor: str, now: datetime
    ) -> dict[str, Any]:
        """Save a new draft revision; the live one stays published until activated.

        An unchanged document saves nothing; an archived promotion is refused.
        """
        at = self.db.ts(now)
        with self.db.guard("update promotion"), self.db.transaction():
            draft = self._existing_draft(promotion_id)
            if draft["status"] == "archived":
                raise Conflict(
                    "promotion_id", f"promotion {promotion_id!r} is archived; create a new one"
                )
            require_valid(doc, self._chain_settings(), self._known())
            latest = self._revision_doc(promotion_id, draft["revision"])
            if latest != dict(doc):
                revision = draft["revision"] + 1
                self._add_revision(promotion_id, revision, doc, "draft", actor, at)
                self._touch(promotion_id, actor, at, revision=revision)
                self.audit.record(
                    "promotion",
                    promotion_id,
                    "update",
                    self._state(draft["revision"], "draft", latest),
                    self._state(revision, "draft", dict(doc)),
                    actor,
                    at,
                )
        found = self.get_promotion(promotion_id)
        assert found is not None
        return found

    def activate_promotion(self, promotion_id: str, actor: str, now: datetime) -> int:
        """Publish the latest revision: validated by the engine, written to the master table
        with a new master version (returned); the revision it replaces is retired."""
        at = self.db.ts(now)
        with self.db.guard("activate promotion"), self.db.transaction():
            draft = self._existing_draft(promotion_id)
            if draft["status"] == "archived":
                raise Conflict(
                    "promotion_id", f"promotion {promotion_id!r} is archived; create a new one"
                )
            revision, live = draft["revision"], draft["live_revision"]
            if live == revision:
                row = self.db.execute(
                    "SELECT published_version FROM promotion_revisions "
                    "WHERE promotion_id = ? AND revision = ?",
                    (promotion_id, revision),
                ).fetchone()
                return int(row[0])
            doc = self._revision_doc(promotion_id, revision)
            assert doc is not None
            try:
                require_valid(doc, self._chain_settings(), self._known())
            except InvalidRequest as exc:
                raise InvalidRequest(
                    exc.field, f"revision {revision} cannot be activated: {exc}"
                ) from exc
            # What the stores had: the live revision, or nothing (this revision as a draft).
            before = self._state(revision, "draft", doc)
            if live is not None:
                before = self._state(live, "active", self._revision_doc(promotion_id, live))
            version = self.versions.bump()
            self.db.execute(
                "INSERT INTO promotions (promotion_id, doc, version) VALUES (?, ?, ?) "
                "ON CONFLICT (promotion_id) DO UPDATE SET doc = excluded.doc, "
                "version = excluded.version",
                (promotion_id, _json(published_doc(doc, self._chain_settings())), version),
            )
            if live is not None:
                self.db.execute(
                    "UPDATE promotion_revisions SET status = 'archived', archived_version = ? "
                    "WHERE promotion_id = ? AND revision = ?",
                    (version, promotion_id, live),
                )
            self.db.execute(
                "UPDATE promotion_revisions SET status = 'active', published_version = ? "
                "WHERE promotion_id = ? AND revision = ?",
                (version, promotion_id, revision),
            )
            self._touch(promotion_id, actor, at, status="active", live_revision=revision)
            self.audit.record(
                "promotion",
                promotion_id,
                "activate",
                before,
                self._state(revision, "active", doc, master_version=version),
                actor,
                at,
            )
        return version

    def archive_promotion(self, promotion_id: str, actor: str, now: datetime) -> int:
        """Withdraw a promotion: its master row is deleted with a new master version (returned);
        one never published changes no master data (the current version is returned)."""
        at = self.db.ts(now)
        with self.db.guard("archive promotion"), self.db.transaction():
            draft = self._existing_draft(promotion_id)
            if draft["status"] == "archived":
                return self.versions.current()
            live = draft["live_revision"]
            before = self._revision_doc(
                promotion_id, live if live is not None else draft["revision"]
            )
            if live is not None:
                # The feed's delete trigger bumps the version and writes the stores' tombstone.
                held = self.versions.lock()
                self.db.execute("DELETE FROM promotions WHERE promotion_id = ?", (promotion_id,))
                version = self.versions.current()
                if version == held:
                    version = self.versions.bump()
                self.db.execute(
                    "UPDATE promotion_revisions SET status = 'archived', archived_version = ? "
                    "WHERE promotion_id = ? AND revision = ?",
                    (version, promotion_id, live),
                )
            else:
                version = self.versions.current()
            self.db.execute(
                "UPDATE promotion_revisions SET status = 'archived' "
                "WHERE promotion_id = ? AND status = 'draft'",
                (promotion_id,),
            )
            self._touch(promotion_id, actor, at, status="archived", live_revision=None)
            revision = live if live is not None else draft["revision"]
            self.audit.record(
                "promotion",
                promotion_id,
                "archive",
                self._state(revision, draft["status"], before),
                self._state(revision, "archived", before, master_version=version),
                actor,
                at,
            )
        return version

    # -- reads ---------------------------------------------------------------------------------

    def get_promotion(self, promotion_id: str) -> dict[str, Any] | None:
        """The promotion's state, its latest document and every revision (oldest first)."""
        with self.db.guard("read promotion"), self.db.snapshot():
            head = self.db.execute(
                "SELECT status, revision, live_revision, created_by, created_at, updated_by, "
                "updated_at FROM promotion_drafts WHERE promotion_id = ?",
                (promotion_id,),
            ).fetchone()
            if head is None:
                return None
            rows = self.db.execute(
                "SELECT revision, doc, status, author, at, published_version, archived_version "
                "FROM promotion_revisions WHERE promotion_id = ? ORDER BY revision",
                (promotion_id,),
            ).fetchall()
        revisions = [
            {
                "revision": int(r[0]),
                "status": r[2],
                "author": r[3],
                "at": self.db.dt(r[4]).isoformat(),
                "published_version": None if r[5] is None else int(r[5]),
                "archived_version": None if r[6] is None else int(r[6]),
                "doc": json.loads(r[1]),
            }
            for r in rows
        ]
        latest = revisions[-1]
        live = None if head[2] is None else int(head[2])
        return {
            "promotion_id": promotion_id,
            "status": head[0],
            "revision": int(head[1]),
            "live_revision": live,
            "published_version": next(
                (r["published_version"] for r in revisions if r["revision"] == live), None
            ),
            "doc": latest["doc"],
            "created_by": head[3],
            "created_at": self.db.dt(head[4]).isoformat(),
            "updated_by": head[5],
            "updated_at": self.db.dt(head[6]).isoformat(),
            "revisions": revisions,
        }

    def list_promotions(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every managed promotion (or those of one status), by id, with its latest title/kind."""
        if status is not None and status not in LIFECYCLE:
            raise InvalidRequest(
                "status", f"expected one of {', '.join(LIFECYCLE)}, got {status!r:.80}"
            )
        where, params = ("WHERE d.status = ? ", (status,)) if status else ("", ())
        with self.db.guard("list promotions"):
            rows = self.db.execute(
                "SELECT d.promotion_id, d.status, d.revision, d.live_revision, d.updated_by, "
                "d.updated_at, r.doc FROM promotion_drafts d JOIN promotion_revisions r "
                "ON r.promotion_id = d.promotion_id AND r.revision = d.revision "
                f"{where}ORDER BY d.promotion_id",
                params,
            ).fetchall()
        out = []
        for r in rows:
            doc = json.loads(r[6])
            out.append(
                {
                    "promotion_id": r[0],
                    "status": r[1],
                    "revision": int(r[2]),
                    "live_revision": None if r[3] is None else int(r[3]),
                    "title": doc.get("title", ""),
                    "kind": doc.get("kind", ""),
                    "updated_by": r[4],
                    "updated_at": self.db.dt(r[5]).isoformat(),
                }
            )
        # Code-point order on both backends (PostgreSQL's collation may differ).
        return sorted(out, key=lambda p: p["promotion_id"])

    def promotion_history(self, promotion_id: str) -> list[dict[str, Any]] | None:
        """Who changed what and when, oldest first: the audit rows with a field-level diff of
        the document (`status` included); None for an unknown promotion."""
        with self.db.guard("read promotion history"), self.db.snapshot():
            known = self.db.execute(
                "SELECT 1 FROM promotion_drafts WHERE promotion_id = ?", (promotion_id,)
            ).fetchone()
            if known is None:
                return None
            rows = self.db.execute(
                "SELECT audit_id, action, before, after, actor, at FROM audit "
                "WHERE kind = 'promotion' AND object_id = ? ORDER BY audit_id LIMIT ?",
                (promotion_id, MAX_HISTORY),
            ).fetchall()
        out = []
        for r in rows:
            before = None if r[2] is None else json.loads(r[2])
            after = None if r[3] is None else json.loads(r[3])
            old = (
                {} if before is None else {**(before.get("doc") or {}), "status": before["status"]}
            )
            new = {} if after is None else {**(after.get("doc") or {}), "status": after["status"]}
            out.append(
                {
                    "audit_id": int(r[0]),
                    "action": r[1],
                    "actor": r[4],
                    "at": self.db.dt(r[5]).isoformat(),
                    "revision": None if after is None else after.get("revision"),
                    "master_version": None if after is None else after.get("master_version"),
                    "changes": diff_docs(old, new),
                }
            )
        return out

    def promotion_settings(self) -> dict[str, str]:
        """The chain settings the engine validates and prices with."""
        with self.db.guard("read settings"):
            return self._chain_settings()

    def has_promotion_revisions(self) -> bool:
        """Whether any promotion was ever published through the constructor."""
        with self.db.guard("read promotion revisions"):
            row = self.db.execute(
                "SELECT 1 FROM promotion_revisions WHERE published_version IS NOT NULL LIMIT 1"
            ).fetchone()
        return row is not None

    def promotion_set(self, version: int) -> list[tuple[str, dict[str, Any]]]:
        """(promotion_id, published doc) of every promotion live at master `version`, by id.

        Managed promotions come from their revisions (published at or before `version`, not
        retired by then); unmanaged master rows count when last changed at or before it.
        """
        with self.db.guard("read promotion set"), self.db.snapshot():
            managed = self.db.execute(
                "SELECT promotion_id, doc FROM promotion_revisions "
                "WHERE published_version IS NOT NULL AND published_version <= ? "
                "AND (archived_version IS NULL OR archived_version > ?)",
                (version, version),
            ).fetchall()
            unmanaged = self.db.execute(
                "SELECT p.promotion_id, p.doc FROM promotions p WHERE p.version <= ? "
                "AND NOT EXISTS (SELECT 1 FROM promotion_drafts d "
                "WHERE d.promotion_id = p.promotion_id)",
                (version,),
            ).fetchall()
            settings = self._chain_settings()
        found: dict[str, dict[str, Any]] = {}
        for promotion_id, doc in managed:
            found[str(promotion_id)] = published_doc(json.loads(doc), settings)
        for promotion_id, doc in unmanaged:
            found[str(promotion_id)] = json.loads(doc)
        return sorted(found.items())

    def promotion_sets_between(
        self, date_from: datetime, date_to: datetime
    ) -> dict[int, list[tuple[str, dict[str, Any]]]]:
        """promotion_set of every master version named by the sales closed in [from, to);
        empty when nothing was ever published through the constructor (no history to use)."""
        if not self.has_promotion_revisions():
            return {}
        with self.db.guard("read sale promotion versions"):
            versions = [
                int(r[0])
                for r in self.db.execute(
                    "SELECT DISTINCT promo_version FROM sales WHERE closed_at >= ? "
                    "AND closed_at < ?",
                    (self.db.ts(date_from), self.db.ts(date_to)),
                ).fetchall()
            ]
        return {version: self.promotion_set(version) for version in sorted(versions)}

    def promotion_pricing_context(
        self, product_ids: Iterable[str], store_id: str
    ) -> dict[str, Any]:
        """What a preview prices with: product attributes, the store's format, the chain
        settings, the live promotions and the master version, read at one moment."""
        wanted = sorted(set(product_ids))
        with self.db.guard("read pricing context"), self.db.snapshot():
            products: dict[str, dict[str, str]] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                for r in self.db.execute(
                    "SELECT product_id, department, category, brand, product_type FROM products "
                    f"WHERE product_id IN ({marks})",
                    chunk,
                ).fetchall():
                    products[str(r[0])] = {
                        "department": r[1] or "",
                        "category": r[2] or "",
                        "brand": r[3] or "",
                        "type": r[4] or "",
                    }
            store = self.db.execute(
                "SELECT format FROM stores WHERE store_id = ?", (store_id,)
            ).fetchone()
            settings = self._chain_settings()
            live = sorted(
                (str(r[0]), json.loads(r[1]))
                for r in self.db.execute("SELECT promotion_id, doc FROM promotions").fetchall()
            )
            version = self.versions.current()
        return {
            "products": products,
            "store_format": "" if store is None else str(store[0] or ""),
            "settings": settings,
            "live": live,
            "version": version,
        }
