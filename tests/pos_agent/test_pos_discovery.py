"""Zeroconf discovery against real services advertised over multicast on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from zeroconf import ServiceInfo, Zeroconf

from pos_agent.discovery import SERVICE_TYPE, StoreDiscovery
from tests.pos_agent.pos_fakes import (
    BREAD,
    FakeStoreNode,
    health_until,
    make_config,
    running_agent,
    seed_replica,
    sell,
)


def _info(name: str, store_id: str, port: int) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton("127.0.0.1")],
        port=port,
        properties={"store_id": store_id, "node_id": name},
        server=f"{name}.local.",
    )


@pytest.fixture
def advertiser() -> Iterator[Zeroconf]:
    """A zeroconf responder bound to loopback only, as a store node on this machine would be."""
    zc = Zeroconf(interfaces=["127.0.0.1"])
    try:
        yield zc
    finally:
        zc.unregister_all_services()
        zc.close()


async def test_the_uploader_finds_its_own_store_node_and_ignores_others(
    tmp_path: Path, advertiser: Zeroconf
) -> None:
    ours, other = FakeStoreNode(), FakeStoreNode()
    await ours.start()
    await other.start()
    try:
        # Registration probes the network for ~1.5 s; keep the event loop free meanwhile.
        await asyncio.gather(
            asyncio.to_thread(advertiser.register_service, _info("store-999", "999", other.port)),
            asyncio.to_thread(advertiser.register_service, _info("store-367", "367", ours.port)),
        )
        config = make_config(tmp_path / "pos", url="")  # empty url: discover
        seed_replica(config)
        async with running_agent(config) as client:
            answer = await sell(client, [BREAD])
            await ours.wait_until(lambda: answer["sale_id"] in ours.committed, timeout=20)
            health = await health_until(client, lambda h: h["queue_depth"] == 0)
    finally:
        await ours.stop()
        await other.stop()
    assert health["store_url"] == ours.url
    assert other.batches == [] and other.heartbeats == []


def test_find_matches_the_txt_store_id(advertiser: Zeroconf) -> None:
    advertiser.register_service(_info("store-406", "406", 8710))
    found, missing = StoreDiscovery("406"), StoreDiscovery("367")
    try:
        assert found.find(5.0) == "http://127.0.0.1:8710"
        assert missing.find(1.0) is None
    finally:
        found.close()
        missing.close()
