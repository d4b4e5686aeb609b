"""A store node that dies and comes back on another port is found again over zeroconf."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from zeroconf import ServiceInfo, Zeroconf

from pos_agent.discovery import SERVICE_TYPE
from tests.pos_agent.pos_fakes import (
    BREAD,
    FakeStoreNode,
    health_until,
    make_config,
    running_agent,
    seed_replica,
    sell,
)


def _info(port: int) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"store-367.{SERVICE_TYPE}",
        addresses=[socket.inet_aton("127.0.0.1")],
        port=port,
        properties={"store_id": "367", "node_id": "store-367"},
        server="store-367.local.",
    )


async def test_a_restarted_store_node_is_found_again_within_ten_seconds(tmp_path: Path) -> None:
    first, second = FakeStoreNode(), FakeStoreNode()
    await first.start()
    await second.start()
    before = Zeroconf(interfaces=["127.0.0.1"])
    after: Zeroconf | None = None
    try:
        await asyncio.to_thread(before.register_service, _info(first.port))
        config = make_config(tmp_path / "pos", url="")  # empty url: discover
        seed_replica(config)
        async with running_agent(config) as client:
            sold = await sell(client, [BREAD])
            await first.wait_until(lambda: sold["sale_id"] in first.committed, timeout=20)
            # kill -9 of the node: its port goes dead and no goodbye packet is sent.
            await first.stop()
            await asyncio.to_thread(before.close)
            after = Zeroconf(interfaces=["127.0.0.1"])
            # Same instance name, new port: what a restart with listen_port = 0 looks like.
            await asyncio.to_thread(
                after.register_service, _info(second.port), allow_name_change=True
            )
            restarted = time.monotonic()
            # With nothing queued, the failing heartbeat alone makes it look again.
            health = await health_until(client, lambda h: h["store_url"] == second.url)
            assert time.monotonic() - restarted < 10, health
            again = await sell(client, [BREAD])
            await second.wait_until(lambda: again["sale_id"] in second.committed, timeout=10)
            found_s = time.monotonic() - restarted
    finally:
        await first.stop()
        await second.stop()
        if after is not None:
            # Zeroconf's sync calls wait on its own loop thread: keep ours free meanwhile.
            await asyncio.to_thread(after.unregister_all_services)
            await asyncio.to_thread(after.close)
    assert found_s < 10
    assert sold["sale_id"] not in second.committed  # nothing re-sent that was acknowledged


async def test_a_node_restarted_under_another_name_is_used_despite_the_stale_advert(
    tmp_path: Path,
) -> None:
    # No goodbye after kill -9: the old advert lingers (here, kept registered) and sorts
    # first; only the health check tells the register that its address is dead.
    first, second = FakeStoreNode(), FakeStoreNode()
    await first.start()
    await second.start()
    advertiser = Zeroconf(interfaces=["127.0.0.1"])
    try:
        stale = ServiceInfo(
            SERVICE_TYPE,
            f"store-367-a.{SERVICE_TYPE}",
            addresses=[socket.inet_aton("127.0.0.1")],
            port=first.port,
            properties={"store_id": "367", "node_id": "store-367"},
            server="store-367-a.local.",
        )
        await asyncio.to_thread(advertiser.register_service, stale)
        config = make_config(tmp_path / "pos", url="")
        seed_replica(config)
        async with running_agent(config) as client:
            sold = await sell(client, [BREAD])
            await first.wait_until(lambda: sold["sale_id"] in first.committed, timeout=20)
            await first.stop()
            restarted = time.monotonic()  # from the kill, advert registration (~2 s) included
            await asyncio.to_thread(advertiser.register_service, _info(second.port))
            await health_until(client, lambda h: h["store_url"] == second.url)
            again = await sell(client, [BREAD])
            await second.wait_until(lambda: again["sale_id"] in second.committed, timeout=10)
            found_s = time.monotonic() - restarted
    finally:
        await first.stop()
        await second.stop()
        await asyncio.to_thread(advertiser.unregister_all_services)
        await asyncio.to_thread(advertiser.close)
    assert found_s < 10
