"""Find this store's node on the LAN over zeroconf (_loyalty-store._tcp, TXT store_id).

The TXT `scheme` says whether the node speaks https (its `[tls]`); then its certificate must be
trusted by `[store_node] ca_file` (or the system CAs) and name the advertised IP address.

An advert is only a hint: before the register uses an address, it asks the node there for its
`/health` and checks that the node answering is of the expected store. A stale advert of a
dead node (no goodbye after kill -9) or an address answering as another store is skipped in
favour of a healthy one, and the address in use is checked again every RECHECK_S.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
import time
from collections.abc import Callable

import requests
from zeroconf import (
    InterfaceChoice,
    InterfacesType,
    ServiceBrowser,
    ServiceStateChange,
    Zeroconf,
)

__all__ = ["RECHECK_S", "SERVICE_TYPE", "StoreDiscovery", "probe_store_node"]

log = logging.getLogger(__name__)

SERVICE_TYPE = "_loyalty-store._tcp.local."
RECHECK_S = 5.0
"""How often the address in use is health-checked again (by `still_healthy`)."""
_INFO_TIMEOUT_MS = 1500
_PROBE_TIMEOUT_S = 1.0
_RETRY_S = 0.5
"""While no advertised address is healthy, how often find() probes them all again."""

Probe = Callable[[str, str], bool]


def probe_store_node(url: str, store_id: str, *, verify: str | bool = True) -> bool:
    """True when `GET url/health` answers 200 with JSON naming `store_id` (within a second);
    an https node must present a certificate `verify` (a CA file, or True: system CAs) trusts.
    """
    session = requests.Session()
    session.trust_env = False  # never a proxy between a register and its store node
    session.verify = verify
    try:
        response = session.get(url + "/health", timeout=_PROBE_TIMEOUT_S)
        if response.status_code != 200:
            log.debug("store node at %s: /health answered HTTP %d", url, response.status_code)
            return False
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        log.debug("store node at %s: no healthy answer: %s", url, exc)
        return False
    finally:
        session.close()
    answered = body.get("store_id") if isinstance(body, dict) else None
    if answered != store_id:
        log.debug("node at %s answers as store %r, not %r", url, answered, store_id)
        return False
    return True


class StoreDiscovery:
    """Browses for store nodes from the first find() until close(); thread-safe."""

    def __init__(
        self,
        store_id: str,
        *,
        interfaces: InterfacesType = InterfaceChoice.All,
        probe: Probe | None = None,
        verify: str | bool = True,
        recheck_s: float = RECHECK_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # InterfaceChoice.All covers every IPv4 address, loopback (127.0.0.1) included, so a
        # store node on the same machine is found as well as one on the shop LAN.
        self.store_id = store_id
        self.interfaces = interfaces
        self.probe = probe or functools.partial(probe_store_node, verify=verify)
        self.recheck_s = recheck_s
        self.monotonic = monotonic
        self._zeroconf: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._names: set[str] = set()
        self._changed = threading.Condition()
        self._checked: dict[str, float] = {}  # url -> when it last answered healthy
        self._refused: set[str] = set()  # urls logged as not healthy (once, until they are)

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
        # TXT `scheme` (absent from older store nodes: http); anything else is not ours to use.
        scheme = (info.properties.get(b"scheme") or b"http").decode("utf-8", "replace")
        if scheme not in ("http", "https"):
            log.debug("%s advertises an unknown scheme %r; not used", name, scheme)
            return None
        return f"{scheme}://{host}:{info.port}"

    def _healthy(self, url: str) -> bool:
        if self.probe(url, self.store_id):
            self._checked[url] = self.monotonic()
            self._refused.discard(url)
            return True
        self._checked.pop(url, None)
        if url not in self._refused:
            self._refused.add(url)
            log.info(
                "store %s: %s does not answer as a healthy node of this store; not used",
                self.store_id,
                url,
            )
        return False

    def candidates(self) -> list[str]:
        """The URLs now advertised for our store_id (unchecked), in name order."""
        zeroconf = self._start()
        with self._changed:
            names = sorted(self._names)
        urls: list[str] = []
        for name in names:
            url = self._match(zeroconf, name)
            if url is not None and url not in urls:
                urls.append(url)
        return urls

    def find(self, timeout_s: float, stop: threading.Event | None = None) -> str | None:
        """The URL of a healthy node advertising our store_id, waiting up to timeout_s; else
        None. Every advertised address is probed, again every half second until one answers.
        """
        self._start()
        deadline = self.monotonic() + timeout_s
        while stop is None or not stop.is_set():
            for url in self.candidates():
                if self._healthy(url):
                    log.info("store node for store %s found over zeroconf: %s", self.store_id, url)
                    return url
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                return None
            with self._changed:
                # A new or changed advert wakes us at once; otherwise probe again soon.
                self._changed.wait(min(remaining, _RETRY_S))
        return None

    def still_healthy(self, url: str) -> bool:
        """Whether `url` (found by find()) may still be used: probed again every recheck_s."""
        checked = self._checked.get(url)
        if checked is not None and self.monotonic() - checked < self.recheck_s:
            return True
        return self._healthy(url)

    def close(self) -> None:
        if self._browser is not None:
            self._browser.cancel()
        if self._zeroconf is not None:
            self._zeroconf.close()
        self._browser = self._zeroconf = None
        with self._changed:
            self._names.clear()
        self._checked.clear()
        self._refused.clear()
