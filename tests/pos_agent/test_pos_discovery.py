"""Zeroconf discovery against real services advertised over multicast on loopback.

An advert is only a hint: the register health-checks the address (GET /health naming its
store_id) before using it, and again every few seconds.
"""

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
    free_port,
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


def _any_answer(url: str, store_id: str) -> bool:
    return True


def test_find_matches_the_txt_store_id(advertiser: Zeroconf) -> None:
    advertiser.register_service(_info("store-406", "406", 8710))
    found = StoreDiscovery("406", probe=_any_answer)
    missing = StoreDiscovery("367", probe=_any_answer)
    try:
        assert found.find(5.0) == "http://127.0.0.1:8710"
        assert missing.find(1.0) is None
    finally:
        found.close()
        missing.close()


async def test_find_skips_a_dead_advert_and_a_node_of_another_store(advertiser: Zeroconf) -> None:
    imposter, ours = FakeStoreNode(store_id="999"), FakeStoreNode()
    await imposter.start()
    await ours.start()
    discovery = StoreDiscovery("367")
    try:
        # Both advertise store 367; one port is dead, the other node answers as store 999.
        await asyncio.gather(
            asyncio.to_thread(
                advertiser.register_service, _info("store-367-a", "367", free_port())
            ),
            asyncio.to_thread(
                advertiser.register_service, _info("store-367-b", "367", imposter.port)
            ),
        )
        assert await asyncio.to_thread(discovery.find, 2.0) is None
        await asyncio.to_thread(advertiser.register_service, _info("store-367-c", "367", ours.port))
        assert await asyncio.to_thread(discovery.find, 5.0) == ours.url
    finally:
        await asyncio.to_thread(discovery.close)
        await imposter.stop()
        await ours.stop()


async def test_the_address_in_use_is_checked_again_after_the_interval(
    advertiser: Zeroconf,
) -> None:
    node = FakeStoreNode()
    await node.start()
    now = [0.0]
    discovery = StoreDiscovery("367", recheck_s=5.0, monotonic=lambda: now[0])
    try:
        await asyncio.to_thread(advertiser.register_service, _info("store-367", "367", node.port))
        assert await asyncio.to_thread(discovery.find, 5.0) == node.url
        await node.stop()
        assert await asyncio.to_thread(discovery.still_healthy, node.url)  # checked just now
        now[0] = 5.0
        assert not await asyncio.to_thread(discovery.still_healthy, node.url)
        await node.start()  # same port: healthy again
        assert await asyncio.to_thread(discovery.still_healthy, node.url)
    finally:
        await asyncio.to_thread(discovery.close)
        await node.stop()


async def test_the_uploader_uses_the_healthy_node_not_a_stale_advert(
    tmp_path: Path, advertiser: Zeroconf
) -> None:
    ours = FakeStoreNode()
    await ours.start()
    try:
        # "store-367-a" sorts first and points at a port nothing listens on any more.
        await asyncio.gather(
            asyncio.to_thread(
                advertiser.register_service, _info("store-367-a", "367", free_port())
            ),
            asyncio.to_thread(advertiser.register_service, _info("store-367-b", "367", ours.port)),
        )
        config = make_config(tmp_path / "pos", url="")  # empty url: discover
        seed_replica(config)
        async with running_agent(config) as client:
            answer = await sell(client, [BREAD])
            await ours.wait_until(lambda: answer["sale_id"] in ours.committed, timeout=20)
            health = await health_until(client, lambda h: h["queue_depth"] == 0)
    finally:
        await ours.stop()
    assert health["store_url"] == ours.url
