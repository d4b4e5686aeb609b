"""Find this store's node on the LAN over zeroconf (_loyalty-store._tcp, TXT store_id)."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time

from zeroconf import (
    InterfaceChoice,
    InterfacesType,
    ServiceBrowser,
    ServiceStateChange,
    Zeroconf,
)

__all__ = ["SERVICE_TYPE", "StoreDiscovery"]

log = logging.getLogger(__name__)

SERVICE_TYPE = "_loyalty-store._tcp.local."
_INFO_TIMEOUT_MS = 1500


class StoreDiscovery:
    """Browses for store nodes from the first find() until close(); thread-safe."""

    def __init__(self, store_id: str, *, interfaces: InterfacesType = InterfaceChoice.All) -> None:
        # InterfaceChoice.All covers every IPv4 address, loopback (127.0.0.1) included, so a
        # store node on the same machine is found as well as one on the shop LAN.
        self.store_id = store_id
        self.interfaces = interfaces
        self._zeroconf: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._names: set[str] = set()
        self._changed = threading.Condition()

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        with self._changed:
            if state_change is ServiceStateChange.Removed:
                self._names.discard(name)
            else:
                self._names.add(name)
            self._changed.notify_all()

    def _start(self) -> Zeroconf:
        if self._zeroconf is None:
            self._zeroconf = Zeroconf(interfaces=self.interfaces)
            self._browser = ServiceBrowser(self._zeroconf, SERVICE_TYPE, handlers=[self._on_change])
        return self._zeroconf

    def _match(self, zeroconf: Zeroconf, name: str) -> str | None:
        info = zeroconf.get_service_info(SERVICE_TYPE, name, timeout=_INFO_TIMEOUT_MS)
        if info is None or info.port is None:
            return None
        store_id = info.properties.get(b"store_id")
        if store_id is None or store_id.decode("utf-8", "replace") != self.store_id:
            return None
        addresses = [ipaddress.ip_address(a) for a in info.parsed_addresses()]
        if not addresses:
            return None
        address = min(addresses, key=lambda a: a.version)  # IPv4 first
        host = str(address) if address.version == 4 else f"[{address}]"
        return f"http://{host}:{info.port}"

    def find(self, timeout_s: float, stop: threading.Event | None = None) -> str | None:
        """The URL of a node advertising our store_id, waiting up to timeout_s; else None."""
        zeroconf = self._start()
        deadline = time.monotonic() + timeout_s
        tried: set[str] = set()
        while stop is None or not stop.is_set():
            with self._changed:
                fresh = sorted(self._names - tried)
                if not fresh:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._changed.wait(min(remaining, 0.25))
                    continue
            for name in fresh:
                tried.add(name)
                url = self._match(zeroconf, name)
                if url is not None:
                    log.info("store node for store %s found over zeroconf: %s", self.store_id, url)
                    return url
        return None

    def close(self) -> None:
        if self._browser is not None:
            self._browser.cancel()
        if self._zeroconf is not None:
            self._zeroconf.close()
        self._browser = self._zeroconf = None
        with self._changed:
            self._names.clear()
