"""Ringing baskets up through registers that may be killed at any moment, one thread each."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from demo.baskets import Basket, to_receipt_line
from demo.cluster import Cluster
from demo.errors import DemoError

BONUS_SPEND_EVERY = 4
BONUS_SPEND_CAP = 500
_SOLD_AS = re.compile(r"confirmed as sale ([0-9a-f-]{36})")


@dataclass(slots=True)
class Acked:
    """Sales the registers answered for: the harness's reference of what must never be lost."""

    sale_ids: dict[str, str] = field(default_factory=dict)  # sale_id -> register_id
    total_minor: Counter[str] = field(default_factory=Counter)  # per register
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, register_id: str, sale_id: str, total_minor: int) -> None:
        with self.lock:
            if sale_id not in self.sale_ids:
                self.sale_ids[sale_id] = register_id
                self.total_minor[register_id] += total_minor


class _Restart(Exception):
    """Ring the basket up again on a new receipt."""


def _wait_up(base: str, stop: threading.Event, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if requests.get(base + "/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise DemoError(f"register {base} did not come back within {timeout_s:.0f} s")


def _json(response: requests.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 500:
        raise _Restart(f"{what}: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise DemoError(f"{what} answered {response.status_code}: {response.text[:300]}")
    result = response.json()
    assert isinstance(result, dict)
    return result


def ring_up(
    session: requests.Session,
    base: str,
    basket: Basket,
    card_no: str | None,
    spend: bool,
    stop: threading.Event,
) -> tuple[str, int]:
    """Ring one basket up until the register acknowledges a sale; (sale_id, total_minor).

    A kill before confirm restarts the basket on a new receipt; a kill during confirm retries
    the confirm on the same receipt, whose 409 then names the sale if it was committed.
    """
    last = ""
    for _ in range(30):
        receipt_id: str | None = None
        try:
            opened = _json(session.post(f"{base}/v1/receipts", json={}, timeout=10), "open")
            receipt_id = str(opened["receipt_id"])
            url = f"{base}/v1/receipts/{receipt_id}"
            lines = [to_receipt_line(line) for line in basket.lines]
            _json(session.post(f"{url}/lines", json={"lines": lines}, timeout=10), "lines")
            if card_no is not None:
                _json(session.post(f"{url}/card", json={"card_no": card_no}, timeout=10), "card")
            calc = _json(session.post(f"{url}/calculate", json={}, timeout=10), "calculate")
            total = int(calc["total_minor"])
            bonus = min(int(calc["bonus_payable_max"]), BONUS_SPEND_CAP) if spend else 0
            body = {
                "payments": [{"method": "card", "amount_minor": total - bonus}],
                "bonus_to_spend": bonus,
            }
        except (requests.RequestException, _Restart) as exc:
            last = f"{exc.__class__.__name__}: {exc}"
            _wait_up(base, stop)
            continue
        for _ in range(30):
            try:
                response = session.post(f"{url}/confirm", json=body, timeout=10)
            except requests.RequestException as exc:
                last = f"confirm: {exc.__class__.__name__}: {exc}"
                _wait_up(base, stop)
                continue
            last = f"confirm: HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code == 200:
                answer = response.json()
                return str(answer["sale_id"]), int(answer["total_minor"])
            sold = _SOLD_AS.search(response.text) if response.status_code == 409 else None
            if sold is not None:
                return sold.group(1), total
            if response.status_code in (400, 422) or "insufficient_balance" in response.text:
                # E.g. the bonus was spent meanwhile at this register, or is held by a receipt
                # open at another one (the store node reserves it): sell without it.
                spend = False
                try:
                    session.post(f"{url}/cancel", json={}, timeout=10)
                except requests.RequestException:
                    # Killed meanwhile: the receipt stays open there (its hold times out).
                    _wait_up(base, stop)
                break
            if response.status_code == 409:
                break  # cancelled meanwhile: a new receipt
            _wait_up(base, stop)
    raise DemoError(
        f"basket {basket.basket_id} could not be rung up at {base} in 30 attempts; last: {last}"
    )


@dataclass(slots=True)
class Replayer:
    """One thread per register, ringing up its baskets in order."""

    register_id: str
    base: str
    baskets: Sequence[Basket]
    cards: dict[str, str]
    acked: Acked
    stop: threading.Event
    until: float = 0.0  # monotonic; 0 = one pass over the baskets
    receipts: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        carded = 0
        try:
            with requests.Session() as session:
                session.trust_env = False
                while True:
                    for basket in self.baskets:
                        if self.stop.is_set():
                            return
                        card = self.cards.get(basket.household_id)
                        spend = False
                        if card is not None:
                            carded += 1
                            spend = carded % BONUS_SPEND_EVERY == 0
                        sale_id, total = ring_up(session, self.base, basket, card, spend, self.stop)
                        self.acked.add(self.register_id, sale_id, total)
                        self.receipts += 1
                        if self.until and time.monotonic() >= self.until:
                            return
                    if not self.until or not self.baskets:
                        return
        except BaseException as exc:
            self.error = exc


def replay(
    cluster: Cluster,
    queues: dict[str, list[Basket]],
    cards: dict[str, str],
    acked: Acked,
    until: float,
) -> list[Replayer]:
    stop = threading.Event()
    replayers = [
        Replayer(r, cluster.registers[r].url, queues.get(r, []), cards, acked, stop, until)
        for r in sorted(cluster.registers)
    ]
    threads = [
        threading.Thread(target=p.run, name=f"replay-{p.register_id}", daemon=True)
        for p in replayers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replayers


def assign(baskets: Sequence[Basket], cluster: Cluster) -> dict[str, list[Basket]]:
    by_store = {
        s: sorted(r for r in cluster.registers if r.split("-")[0] == s) for s in cluster.stores
    }
    queues: dict[str, list[Basket]] = defaultdict(list)
    turn: Counter[str] = Counter()
    for basket in baskets:
        ids = by_store[basket.store_id]
        queues[ids[turn[basket.store_id] % len(ids)]].append(basket)
        turn[basket.store_id] += 1
    return queues
