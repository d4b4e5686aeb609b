"""Fixtures of the POS agent tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pos_agent import Config
from tests.pos_agent.pos_fakes import FakeStoreNode, make_config, seed_replica


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A register whose replica holds the demo master data (default promotions)."""
    cfg = make_config(tmp_path / "pos")
    seed_replica(cfg)
    return cfg


@pytest.fixture
async def store_node() -> AsyncIterator[FakeStoreNode]:
    """A running fake store node on loopback."""
    node = FakeStoreNode()
    await node.start()
    try:
        yield node
    finally:
        await node.stop()
