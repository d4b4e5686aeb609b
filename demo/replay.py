"""Replays baskets through the registers' local API, as the register software would."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import requests

from demo.baskets import Basket, to_receipt_line
from demo.errors import DemoError

BONUS_SPEND_EVERY = 5  # every 5th carded receipt pays part of its total with bonuses
BONUS_SPEND_CAP = 500


@dataclass(slots=True)
class RegisterTally:
    """What the demo itself rang up at one register: the reference for reconciliation."""

    receipts: int = 0
    lines: int = 0
    total_minor: int = 0
    discount_minor: int = 0
    bonus_spent: int = 0
    weighed_lines: int = 0
    coupons_issued: int = 0
    coupons_redeemed: int = 0
    sale_ids: list[str] = field(default_factory=list)


class Progress:
    """Thread-safe counters the progress line is printed from."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.lines = 0
        self._lock = threading.Lock()

    def add(self, lines: int) -> None:
        with self._lock:
            self.done += 1
            self.lines += lines


class CouponBook:
    """Household -> the last coupon code a sale issued to it and it has not redeemed yet.

    One book per register: registers replay concurrently, so a book shared between them would
    make which visit redeems a coupon (and so the totals) depend on thread timing. Per register,
    a replay of the same baskets gives the same receipts every time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._coupons: dict[str, str] = {}

    def take_coupon(self, household_id: str) -> str | None:
        """The household's unredeemed coupon, handed to one receipt at a time."""
        with self._lock:
            return self._coupons.pop(household_id, None)

    def keep_coupon(self, household_id: str, code: str, *, newer: bool) -> None:
        """Remember a code for the household's next visit; an older one never replaces a newer."""
        with self._lock:
            if newer or household_id not in self._coupons:
                self._coupons[household_id] = code


def assign_registers(
    baskets: Sequence[Basket], registers: Mapping[str, list[str]]
) -> dict[str, list[Basket]]:
    """Spread each store's baskets over its registers round-robin, keeping time order."""
    queues: dict[str, list[Basket]] = defaultdict(list)
    counters: dict[str, int] = defaultdict(int)
    for basket in baskets:
        ids = registers[basket.store_id]
        register_id = ids[counters[basket.store_id] % len(ids)]
        counters[basket.store_id] += 1
        queues[register_id].append(basket)
    return queues


def _call(session: requests.Session, method: str, url: str, body: object) -> dict[str, object]:
    response = session.request(method, url, json=body, timeout=30)
    if response.status_code >= 400:
        raise DemoError(f"{method} {url} answered {response.status_code}: {response.text[:300]}")
    result = response.json()
    assert isinstance(result, dict)
    return result


def _enter_coupon(session: requests.Session, receipt: str, code: str) -> bool:
    """Present a coupon; a refused one (422 invalid or expired, 409 redeemed) is dropped."""
    response = session.post(f"{receipt}/coupons", json={"code": code}, timeout=30)
    if response.status_code in (409, 422):
        return False
    if response.status_code >= 400:
        raise DemoError(f"POST {receipt}/coupons answered {response.status_code}: {response.text}")
    return True


def _coupon_refused(response: requests.Response) -> bool:
    """409 from the store node: the single-use coupon is held or redeemed elsewhere."""
    return response.status_code == 409 and "coupon_unavailable" in response.text


def _refused(response: requests.Response) -> bool:
    """409 from the store node's balance authority: the bonus is held or spent elsewhere."""
    return response.status_code == 409 and "insufficient_balance" in response.text


def _reserve_bonus(session: requests.Session, receipt: str, bonus: int) -> int:
    """Ask to spend ``bonus`` (the store node reserves it); 0 when refused, as a cashier would."""
    if bonus <= 0:
        return 0
    response = session.post(f"{receipt}/calculate", json={"bonus_to_spend": bonus}, timeout=30)
    if _refused(response):
        _call(session, "POST", f"{receipt}/calculate", {})  # releases whatever was held
        return 0
    if response.status_code >= 400:
        raise DemoError(
            f"POST {receipt}/calculate answered {response.status_code}: {response.text}"
        )
    return bonus


def _confirm(
    session: requests.Session, receipt: str, total: int, bonus: int
) -> dict[str, object] | None:
    """Confirm with ``bonus`` paid in points; None when the store node refuses the spend."""
    body = {
        "payments": [{"method": "card", "amount_minor": total - bonus}],
        "bonus_to_spend": bonus,
    }
    response = session.post(f"{receipt}/confirm", json=body, timeout=30)
    if bonus and _refused(response):
        return None
    if response.status_code >= 400:
        raise DemoError(
            f"POST {receipt}/confirm answered {response.status_code}: {response.text[:300]}"
        )
    result = response.json()
    assert isinstance(result, dict)
    return result


def ring_up(
    session: requests.Session,
    base: str,
    basket: Basket,
    card_no: str | None,
    spend: bool,
    tally: RegisterTally,
    coupons: CouponBook | None = None,
) -> None:
    """One basket as one receipt: open, lines, card, coupon, calculate, confirm.

    With ``coupons``, a coupon an earlier sale issued to the household is presented, and a
    coupon this sale issues is kept for the household's next visit.
    """
    opened = _call(session, "POST", f"{base}/v1/receipts", {})
    receipt = f"{base}/v1/receipts/{opened['receipt_id']}"
    lines = [to_receipt_line(line) for line in basket.lines]
    _call(session, "POST", f"{receipt}/lines", {"lines": lines})
    if card_no is not None:
        _call(session, "POST", f"{receipt}/card", {"card_no": card_no})
    household = basket.household_id
    presented = coupons.take_coupon(household) if coupons is not None and household else None
    if presented is not None and not _enter_coupon(session, receipt, presented):
        presented = None
    response = session.post(f"{receipt}/calculate", json={}, timeout=30)
    if presented is not None and _coupon_refused(response):
        # Taken offline with nobody to ask, refused now that the store node can ask: a
        # cashier takes the coupon off and sells on.
        session.delete(f"{receipt}/coupons/{presented}", timeout=30)
        presented = None
        response = session.post(f"{receipt}/calculate", json={}, timeout=30)
    if response.status_code >= 400:
        raise DemoError(
            f"POST {receipt}/calculate answered {response.status_code}: {response.text[:300]}"
        )
    calc = response.json()
    bonus = 0
    if spend:
        payable = calc["bonus_payable_max"]
        assert isinstance(payable, int)
        bonus = _reserve_bonus(session, receipt, min(payable, BONUS_SPEND_CAP))
    total = calc["total_minor"]
    assert isinstance(total, int)
    confirmed = _confirm(session, receipt, total, bonus)
    if confirmed is None:
        # The hold lapsed and the store node now refuses the spend: pay it all by card.
        bonus = 0
        _call(session, "POST", f"{receipt}/calculate", {})
        confirmed = _confirm(session, receipt, total, bonus)
        if confirmed is None:
            raise DemoError(f"basket {basket.basket_id}: confirm refused without bonus")
    if confirmed["total_minor"] != total:
        raise DemoError(
            f"basket {basket.basket_id}: confirm total {confirmed['total_minor']} "
            f"!= calculated {total}"
        )
    tally.receipts += 1
    tally.lines += len(lines)
    tally.total_minor += total
    discount = calc["discount_minor"]
    assert isinstance(discount, int)
    tally.discount_minor += discount
    tally.bonus_spent += bonus
    tally.weighed_lines += sum(1 for line in lines if line.get("weighed"))
    tally.sale_ids.append(str(confirmed["sale_id"]))
    redeemed = confirmed.get("coupons_redeemed", [])
    issued = confirmed.get("coupons_issued", [])
    assert isinstance(redeemed, list) and isinstance(issued, list)
    tally.coupons_redeemed += len(redeemed)
    tally.coupons_issued += len(issued)
    if coupons is not None and household:
        if presented is not None and presented not in redeemed:
            # Not consumed (e.g. a subtotal below the coupon's minimum): good for a later visit.
            coupons.keep_coupon(household, presented, newer=False)
        for code in issued:
            coupons.keep_coupon(household, str(code), newer=True)


def replay_register(
    base: str,
    baskets: Sequence[Basket],
    cards: Mapping[str, str],
    tally: RegisterTally,
    progress: Progress,
    errors: list[BaseException],
    lock: threading.Lock,
) -> None:
    """Ring up every basket of one register in order; stops at the first error."""
    carded = 0
    book = CouponBook()
    try:
        with requests.Session() as session:
            for basket in baskets:
                card_no = cards.get(basket.household_id)
                spend = False
                if card_no is not None:
                    carded += 1
                    spend = carded % BONUS_SPEND_EVERY == 0
                with lock:  # the chaos monkey takes it to kill the register between receipts
                    ring_up(session, base, basket, card_no, spend, tally, book)
                progress.add(len(basket.lines))
    except BaseException as exc:
        errors.append(exc)
