"""Real zeroconf over loopback: the node advertises itself and a browser finds it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from store_node.app import ADVERTISER_KEY
from store_node.discovery import SERVICE_TYPE, advertised_addresses, service_name
from tests.store_node.store_fakes import free_port, make_config, running_node


def test_service_name_and_addresses() -> None:
    assert service_name("367", "store-367") == "store-367-store-367._loyalty-store._tcp.local."
    assert advertised_addresses("127.0.0.1") == ["127.0.0.1"]
    everywhere = advertised_addresses("0.0.0.0")
    assert everywhere and "0.0.0.0" not in everywhere


async def test_advertised_node_is_found_by_a_browser_on_loopback(tmp_path: Path) -> None:
    # Loopback only (interfaces=["127.0.0.1"] on both sides): no packet leaves the machine.
    port = free_port()
    config = make_config(tmp_path, port=port, advertise=True)
    browser_zc = AsyncZeroconf(interfaces=["127.0.0.1"])
    found: asyncio.Queue[str] = asyncio.Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        found.put_nowait(f"{state_change.name}:{name}")

    expected = service_name("367", "store-367")
    browser: AsyncServiceBrowser | None = None
    try:
        async with running_node(config, run_jobs=False) as node:
            advertiser = node.app[ADVERTISER_KEY]
            assert advertiser is not None
            async with asyncio.timeout(10):
                await advertiser.registered.wait()
            browser = AsyncServiceBrowser(browser_zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
            async with asyncio.timeout(10):
                assert await found.get() == f"Added:{expected}"
            info = AsyncServiceInfo(SERVICE_TYPE, expected)
            assert await info.async_request(browser_zc.zeroconf, 3000)
            assert info.port == port
            assert info.parsed_addresses() == ["127.0.0.1"]
            assert info.properties == {
                b"store_id": b"367",
                b"node_id": b"store-367",
                b"proto": b"1",
            }
            # The advertised address and port really are this node.
            async with node.session.get(f"http://127.0.0.1:{info.port}/health") as response:
                assert (await response.json())["node_id"] == "store-367"
        # Stopping the app withdrew the service with goodbye packets.
        async with asyncio.timeout(10):
            while (event := await found.get()) != f"Removed:{expected}":
                assert not event.endswith(expected) or event.startswith("Updated"), event
    finally:
        if browser is not None:
            await browser.async_cancel()
        await browser_zc.async_close()
