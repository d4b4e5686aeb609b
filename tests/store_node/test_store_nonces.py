"""Replay protection at the store node that survives a restart (nonces in auth.db)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from store_node.auth import NONCE_HORIZON, NONCE_PURGE_EVERY, StoredNonces
from tests.store_node.store_fakes import (
    T0,
    Clock,
    batch_body,
    make_config,
    make_sale,
    running_node,
)
from tests.store_node.test_store_register_auth import enrol, post, signed


async def test_a_replay_is_refused_after_the_store_node_restarts(tmp_path: Path) -> None:
    config = make_config(tmp_path, signatures=True)
    body = batch_body(make_sale(1))
    async with running_node(config, run_jobs=False, clock=Clock()) as node:
        creds = await enrol(node, "367-1")
        headers = signed(creds, "POST", "/v1/sales", body)
        status, _ = await post(node, "/v1/sales", body, headers)
        assert status == 200
    # A new process on the same data dir: its memory cache is empty, auth.db is not.
    async with running_node(config, run_jobs=False, clock=Clock()) as node:
        status, answer = await post(node, "/v1/sales", body, headers)
        assert status == 401, answer
        assert "X-Loyalty-Nonce" in answer["detail"] and "replay" in answer["detail"]
        # The register goes on with fresh nonces (the same sale again is a duplicate).
        status, _ = await post(node, "/v1/sales", body, signed(creds, "POST", "/v1/sales", body))
        assert status == 200


def test_nonces_are_claimed_once_across_connections_and_old_ones_purged(tmp_path: Path) -> None:
    one, two = StoredNonces(tmp_path), StoredNonces(tmp_path)
    try:
        assert one.claim("reg-a", "n" * 32, T0)
        assert not two.claim("reg-a", "n" * 32, T0 + timedelta(minutes=9))
        assert two.claim("reg-b", "n" * 32, T0)  # nonces are per register
        assert one.count() == 2
        later = T0 + NONCE_HORIZON + timedelta(seconds=1)
        assert one.claim("reg-a", "m" * 32, later)  # purges both old rows
        assert one.count() == 1
        assert one.claim("reg-a", "o" * 32, later + NONCE_PURGE_EVERY / 2)  # no purge yet
        assert not one.claim("reg-a", "o" * 32, later + NONCE_PURGE_EVERY / 2)
        assert one.count() == 2
    finally:
        one.close()
        two.close()
