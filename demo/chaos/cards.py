"""The loyalty cards the replayed households present."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from demo.baskets import Basket
from demo.cluster import Cluster


def dataset_card_number(household_id: str) -> str:
    """The card the demo dataset import gives a household: EAN-13 of "29" + the id in 10 digits."""
    body = f"29{int(household_id):010d}"
    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10) % 10
    return f"{body}{check}"


def household_cards(cluster: Cluster, baskets: Iterable[Basket]) -> dict[str, str]:
    """household id -> card number for the baskets' households that have a card at the Center.

    Stores hold only the cards in their scope (used there lately or looked up), so the master
    data no longer lists them all: each card is looked up online, as a register does when a
    card it does not hold is presented; the Center then adds it to that store's scope.
    """
    cards = cluster.household_cards()
    wanted = {(b.household_id, b.store_id) for b in baskets if b.household_id not in cards}

    def lookup(item: tuple[str, str]) -> tuple[str, str | None]:
        household_id, store_id = item
        if not household_id.isdigit():
            return household_id, None
        card_no = dataset_card_number(household_id)
        answer = cluster.center_get(store_id, f"/v1/cards/{card_no}/lookup", {"store_id": store_id})
        if answer.status_code == 404:
            return household_id, None
        answer.raise_for_status()
        return household_id, str(answer.json()["card_no"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        for household_id, card_no in pool.map(lookup, sorted(wanted)):
            if card_no is not None:
                cards[household_id] = card_no
    return cards
