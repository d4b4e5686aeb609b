"""Store nodes as the Center holds them: one-time enrolment tokens (only their SHA-256 kept), the
credentials of enrolled nodes, each node's latest heartbeat, and the nonces of its signed
requests (center/access/nonces_store.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from center.access.nonces_store import NonceRepository
from center.storage.database import Database
from sync_protocol import Heartbeat

__all__ = ["NodeRepository"]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class NodeRepository:
    """Enrolment tokens, node credentials, heartbeats and request nonces of the store nodes."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.nonces = NonceRepository(db)
        """The nonces of signed requests (claim_nonce and purge_nonces below go to it)."""

    # -- enrolment and node credentials --------------------------------------------------------

    def add_enrolment_token(
        self, token_hash: str, store_id: str, created_at: datetime, expires_at: datetime
    ) -> None:
        """Keep the SHA-256 of a new one-time enrolment token for a store."""
        with self.db.guard("add enrolment token"), self.db.transaction():
            self.db.execute(
                "INSERT INTO enrolment_tokens (token_hash, store_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (token_hash, store_id, self.db.ts(created_at), self.db.ts(expires_at)),
            )

    def redeem_enrolment_token(
        self, token_hash: str, node_id: str, secret: str, now: datetime
    ) -> tuple[str, str | None]:
        """Use a token once and create the node in one transaction.

        Returns ("enrolled", store_id), or ("unknown" | "used" | "expired", None).
        """
        at = self.db.ts(now)
        with self.db.guard("redeem enrolment token"), self.db.transaction():
            # The conditional UPDATE is the single-use guarantee, even for concurrent redeems.
            row = self.db.execute(
                "UPDATE enrolment_tokens SET used_at = ?, node_id = ? "
                "WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING store_id",
                (at, node_id, token_hash, at),
            ).fetchone()
            if row is None:
                held = self.db.execute(
                    "SELECT used_at FROM enrolment_tokens WHERE token_hash = ?", (token_hash,)
                ).fetchone()
                if held is None:
                    return "unknown", None
                return ("used" if held[0] is not None else "expired"), None
            self.db.execute(
                "INSERT INTO nodes (node_id, store_id, secret, enrolled_at) VALUES (?, ?, ?, ?)",
                (node_id, row[0], secret, at),
            )
            return "enrolled", str(row[0])

    def node_credential(self, node_id: str) -> tuple[str, str] | None:
        """(store_id, secret) of an enrolled node, or None."""
        with self.db.guard("read node credential"):
            row = self.db.execute(
                "SELECT store_id, secret FROM nodes WHERE node_id = ?", (node_id,)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    # -- heartbeats ----------------------------------------------------------------------------

    def record_heartbeat(self, heartbeat: Heartbeat, received_at: datetime) -> None:
        """Keep the latest heartbeat of a node."""
        with self.db.guard("record heartbeat"), self.db.transaction():
            self.db.execute(
                "INSERT INTO heartbeats (node_id, role, store_id, sent_at, received_at, last_seq, "
                "queue_depth, oldest_queued_at, master_version, devices) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET "
                "role = excluded.role, store_id = excluded.store_id, sent_at = excluded.sent_at, "
                "received_at = excluded.received_at, last_seq = excluded.last_seq, "
                "queue_depth = excluded.queue_depth, oldest_queued_at = excluded.oldest_queued_at, "
                "master_version = excluded.master_version, devices = excluded.devices",
                (
                    heartbeat.node_id,
                    heartbeat.role,
                    heartbeat.store_id,
                    self.db.ts(heartbeat.sent_at),
                    self.db.ts(received_at),
                    heartbeat.last_seq,
                    heartbeat.queue_depth,
                    self.db.ts(heartbeat.oldest_queued_at),
                    heartbeat.master_version,
                    _json(dict(heartbeat.devices)),
                ),
            )

    def heartbeats(self) -> list[dict[str, Any]]:
        """The latest heartbeat of every node, by node_id."""
        with self.db.guard("read heartbeats"):
            rows = self.db.execute(
                "SELECT node_id, role, store_id, last_seq, queue_depth, master_version, devices "
                "FROM heartbeats ORDER BY node_id"
            ).fetchall()
        return [
            {
                "node_id": r[0],
                "role": r[1],
                "store_id": r[2],
                "last_seq": int(r[3]),
                "queue_depth": int(r[4]),
                "master_version": int(r[5]),
                "devices": json.loads(r[6]),
            }
            for r in rows
        ]

    def contacts(self) -> list[dict[str, Any]]:
        """The latest heartbeat of every node with its times (received, sent, oldest queued)."""
        with self.db.guard("read heartbeats"):
            rows = self.db.execute(
                "SELECT node_id, role, store_id, received_at, sent_at, queue_depth, "
                "oldest_queued_at, master_version, devices FROM heartbeats ORDER BY node_id"
            ).fetchall()
        return [
            {
                "node_id": r[0],
                "role": r[1],
                "store_id": r[2],
                "received_at": self.db.dt(r[3]),
                "sent_at": self.db.dt(r[4]),
                "queue_depth": int(r[5]),
                "oldest_queued_at": None if r[6] is None else self.db.dt(r[6]),
                "master_version": int(r[7]),
                "devices": json.loads(r[8]),
            }
            for r in rows
        ]

    # -- request nonces ------------------------------------------------------------------------

    def claim_nonce(self, node_id: str, nonce: str, now: datetime, horizon: timedelta) -> bool:
        """Record a request's nonce; False when it is already held (a replay).

        A row older than `horizon` counts as free (it would have been purged).
        """
        return self.nonces.claim_nonce(node_id, nonce, now, horizon)

    def purge_nonces(self, before: datetime) -> int:
        """Delete the nonces seen before `before`; how many were deleted."""
        return self.nonces.purge_nonces(before)
