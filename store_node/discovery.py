"""Zeroconf (mDNS/DNS-SD) advertisement of the store node on the shop LAN."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

__all__ = ["SCHEMES", "SERVICE_TYPE", "Advertiser", "advertised_addresses", "service_name"]

log = logging.getLogger(__name__)

SERVICE_TYPE = "_loyalty-store._tcp.local."
PROTO = "1"
SCHEMES = ("http", "https")


def service_name(store_id: str, node_id: str) -> str:
    """The DNS-SD instance name registers browse for."""
    return f"store-{store_id}-{node_id}.{SERVICE_TYPE}"


def advertised_addresses(listen_host: str) -> list[str]:
    """The IPv4 addresses to publish: the listen address, or every address when bound to all."""
    host = ipaddress.ip_address(listen_host)
    if not host.is_unspecified:
        return [str(host)]
    found = sorted(
        {
            str(ip.ip)
            for adapter in ifaddr.get_adapters()
            for ip in adapter.ips
            if isinstance(ip.ip, str) and ip.is_IPv4 and not ipaddress.ip_address(ip.ip).is_loopback
        }
    )
    return found or ["127.0.0.1"]


class Advertiser:
    """Registers the node's service in the background and unregisters it on stop."""

    def __init__(
        self, *, store_id: str, node_id: str, listen_host: str, port: int, scheme: str = "http"
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme: {scheme!r} is not one of {', '.join(SCHEMES)}")
        addresses = advertised_addresses(listen_host)
        properties = {"store_id": store_id, "node_id": node_id, "proto": PROTO}
        if scheme != "http":
            # TXT `scheme`: absent means http, as adverts from before [tls] say nothing.
            properties["scheme"] = scheme
        self.info = ServiceInfo(
            SERVICE_TYPE,
            service_name(store_id, node_id),
            port=port,
            properties=properties,
            parsed_addresses=addresses,
            server=f"{node_id}.local.",
        )
        unspecified = ipaddress.ip_address(listen_host).is_unspecified
        # Bound to one address: announce only on that interface (and keep tests on loopback).
        self._interfaces: InterfaceChoice | list[str] = (
            InterfaceChoice.All if unspecified else addresses
        )
        self._zeroconf: AsyncZeroconf | None = None
        self._task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    async def start(self) -> None:
        """Begin registering; probing takes about a second, so it runs in the background."""
        self._task = asyncio.create_task(self._register(), name="zeroconf-register")

    async def _register(self) -> None:
        try:
            self._zeroconf = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
            announced = await self._zeroconf.async_register_service(self.info)
            await announced
        except Exception as exc:
            # The node works without mDNS (registers can be given its URL), so this is not fatal.
            log.warning("zeroconf advertisement of %s failed: %s", self.info.name, exc)
            return
        log.info(
            "advertised %s on %s port %d",
            self.info.name,
            ", ".join(self.info.parsed_addresses()),
            self.info.port,
        )
        self.registered.set()

    async def stop(self) -> None:
        """Withdraw the advertisement (goodbye packets) and close the sockets."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._zeroconf is None:
            return
        try:
            if self.registered.is_set():
                await (await self._zeroconf.async_unregister_service(self.info))
        except Exception as exc:
            log.warning("zeroconf unregistration of %s failed: %s", self.info.name, exc)
        finally:
            await self._zeroconf.async_close()
            self._zeroconf = None
