"""Advertising blocks at the Center: one row per block (the checked document and the columns the
live lookup filters on), revised in place, every change audited in its transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from center.access.audit import AuditLog
from center.advertising.model import Block, BlockInput, Viewer, input_from_doc, select_blocks
from center.errors import Conflict, InvalidRequest, UnknownObject
from center.promotions.segments_store import SegmentRepository
from center.storage.database import Database
from center.storage.migrations import Migration

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "AdvertisingRepository"]


def _steps(ts: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE ad_blocks (
            block_id TEXT PRIMARY KEY,
            placement TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'paused')),
            priority INTEGER NOT NULL,
            starts_at {ts} NOT NULL,
            ends_at {ts} NOT NULL,
            doc TEXT NOT NULL,
            revision INTEGER NOT NULL,
            created_at {ts} NOT NULL,
            updated_at {ts} NOT NULL
        )""",
        "CREATE INDEX ad_blocks_live ON ad_blocks (placement, status, ends_at)",
    )


SQLITE_MIGRATION = Migration("m034_advertising_blocks", _steps("TEXT"))
"""The advertising blocks, on SQLite."""
POSTGRES_MIGRATION = Migration("m034_advertising_blocks", _steps("TIMESTAMPTZ"))
"""The advertising blocks, on PostgreSQL."""

_COLUMNS = "doc, revision, updated_at"


class AdvertisingRepository:
    """The blocks, and the ones a customer sees (their segments and cards read here)."""

    def __init__(self, db: Database, *, audit: AuditLog, segments: SegmentRepository) -> None:
        self.db = db
        self.audit = audit
        self.segments = segments

    def media_hosts(self) -> frozenset[str]:
        """The hosts media links may name (chain setting `advertising_media_hosts`, comma
        separated); empty: any public host."""
        with self.db.guard("read settings"):
            row = self.db.execute(
                "SELECT value FROM settings WHERE name = 'advertising_media_hosts'"
            ).fetchone()
        text = "" if row is None else str(row[0])
        return frozenset(h.strip().lower() for h in text.split(",") if h.strip())

    def _block(self, row: Sequence[Any]) -> Block:
        data = input_from_doc(json.loads(row[0]))
        return Block(data=data, revision=int(row[1]), updated_at=self.db.dt(row[2]))

    def _check_segment(self, data: BlockInput) -> None:
        if data.audience == "segment" and self.segments.segment(data.segment_id, history=0) is None:
            raise InvalidRequest("body.segment_id", f"unknown segment {data.segment_id!r}")

    def create_block(self, data: BlockInput, actor: str, now: datetime) -> Block:
        """Store a new block; Conflict when its id exists, InvalidRequest for an unknown segment."""
        doc = data.to_doc()
        self._check_segment(data)  # segments are never deleted: checking first is enough
        with self.db.guard("create advertising block"), self.db.transaction():
            taken = self.db.execute(
                "SELECT 1 FROM ad_blocks WHERE block_id = ?", (data.block_id,)
            ).fetchone()
            if taken is not None:
                raise Conflict("body.block_id", f"block {data.block_id!r} exists; PUT to change it")
            self.db.execute(
                "INSERT INTO ad_blocks (block_id, placement, status, priority, starts_at, ends_at, "
                "doc, revision, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (
                    data.block_id,
                    data.placement,
                    data.status,
                    data.priority,
                    self.db.ts(data.starts_at),
                    self.db.ts(data.ends_at),
                    json.dumps(doc, sort_keys=True),
                    self.db.ts(now),
                    self.db.ts(now),
                ),
            )
            self.audit.record(
                "ad_block", data.block_id, "create", None, doc, actor, self.db.ts(now)
            )
        return Block(data=data, revision=1, updated_at=now)

    def update_block(self, data: BlockInput, actor: str, now: datetime) -> Block:
        """Replace a block (a new revision when anything changed); UnknownObject."""
        doc = data.to_doc()
        self._check_segment(data)
        with self.db.guard("update advertising block"), self.db.transaction():
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM ad_blocks WHERE block_id = ?", (data.block_id,)
            ).fetchone()
            if row is None:
                raise UnknownObject("block_id", f"unknown advertising block {data.block_id!r}")
            before = self._block(row)
            if before.data == data:
                return before
            self.db.execute(
                "UPDATE ad_blocks SET placement = ?, status = ?, priority = ?, starts_at = ?, "
                "ends_at = ?, doc = ?, revision = revision + 1, updated_at = ? "
                "WHERE block_id = ?",
                (
                    data.placement,
                    data.status,
                    data.priority,
                    self.db.ts(data.starts_at),
                    self.db.ts(data.ends_at),
                    json.dumps(doc, sort_keys=True),
                    self.db.ts(now),
                    data.block_id,
                ),
            )
            self.audit.record(
                "ad_block",
                data.block_id,
                "update",
                before.data.to_doc(),
                doc,
                actor,
                self.db.ts(now),
            )
        return Block(data=data, revision=before.revision + 1, updated_at=now)

    def block(self, block_id: str) -> Block | None:
        """One block, or None."""
        with self.db.guard("read advertising block"):
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM ad_blocks WHERE block_id = ?", (block_id,)
            ).fetchone()
        return None if row is None else self._block(row)

    def blocks(self) -> list[Block]:
        """Every block, by placement then priority (highest first)."""
        with self.db.guard("list advertising blocks"):
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM ad_blocks ORDER BY placement, priority DESC, block_id"
            ).fetchall()
        return [self._block(r) for r in rows]

    def live_blocks(self, placement: str, now: datetime) -> list[Block]:
        """The active blocks of a placement that have not ended at `now`."""
        with self.db.guard("read live advertising blocks"):
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM ad_blocks WHERE placement = ? AND status = 'active' "
                "AND ends_at > ? AND starts_at <= ? ORDER BY priority DESC, block_id",
                (placement, self.db.ts(now), self.db.ts(now)),
            ).fetchall()
        return [self._block(r) for r in rows]

    def viewer(self, customer_id: str | None) -> Viewer:
        """What selection needs of a customer: segments and whether an active card is theirs."""
        if not customer_id:
            return Viewer()
        segments = self.segments.customer_segments([customer_id]).get(customer_id, [])
        with self.db.guard("read the customer's cards"):
            card = self.db.execute(
                "SELECT 1 FROM cards WHERE customer_id = ? AND status = 'active' LIMIT 1",
                (customer_id,),
            ).fetchone()
        return Viewer(segments=frozenset(segments), has_card=card is not None)

    def blocks_for(
        self,
        customer_id: str | None,
        placement: str,
        channel: str,
        now: datetime,
        *,
        limit: int = 10,
    ) -> list[Block]:
        """The blocks this customer (None: an anonymous visitor) sees at a placement now, the
        highest priority first (center/advertising/model.py select_blocks)."""
        return select_blocks(
            self.live_blocks(placement, now),
            placement=placement,
            channel=channel,
            viewer=self.viewer(customer_id),
            now=now,
            limit=limit,
        )
