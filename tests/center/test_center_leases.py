"""Offline spending leases: the pure arithmetic under random orders, and the repository on both
backends (grant, settle at ingest, return, the overdraft ceiling)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from center.errors import MalformedRequest
from center.ledger.leases import (
    Lease,
    LeaseRequest,
    LeaseReturn,
    LeaseSettings,
    outstanding,
    parse_lease_request,
    parse_lease_returns,
    read_settings,
    returned,
    settle,
    size_grant,
)
from center.storage import Storage
from tests.center.center_factories import CARD, T0, make_sale, master_tables

# -- the pure rules, as a simulated chain ------------------------------------------------------


@dataclass
class _Node:
    """One store node as the protocol has it: its lease and the spends the lease covers."""

    store_id: str
    lease: int = 0
    lease_id: str = ""
    requested_at: datetime = T0
    expires_at: datetime = T0
    counted: int = 0
    """Spends in sales not at the Center when the lease was asked for, plus every spend since."""
    unsent: list[int] = field(default_factory=list)

    def left(self, now: datetime) -> int:
        return self.lease - self.counted if now < self.expires_at else 0


@dataclass
class _Chain:
    settings: LeaseSettings
    balance: int
    leases: dict[str, Lease] = field(default_factory=dict)
    spent: int = 0
    grants: int = 0

    def check(self, nodes: list[_Node], now: datetime) -> None:
        held = outstanding(self.leases.values(), now, self.settings)
        assert held <= self.balance + self.settings.ceiling_minor, (held, self.balance)
        for node in nodes:
            # A node never believes it may spend more than the Center keeps for it.
            lease = self.leases.get(node.store_id)
            center = lease.amount if lease is not None and lease.lease_id == node.lease_id else 0
            assert node.left(now) <= center


def _grant(chain: _Chain, node: _Node, now: datetime, need: int) -> None:
    unsent = sum(node.unsent)
    amount = size_grant(
        chain.balance,
        chain.leases.values(),
        node.store_id,
        now,
        chain.settings,
        unsent=unsent,
        need=unsent + need,
    )
    chain.grants += 1
    lease_id = f"L{chain.grants}"
    chain.leases[node.store_id] = Lease(
        node.store_id, amount, now + timedelta(seconds=chain.settings.ttl_s), lease_id
    )
    node.lease, node.lease_id, node.counted = amount, lease_id, unsent
    node.expires_at = now + timedelta(seconds=chain.settings.ttl_s - 1)


def _deliver(chain: _Chain, node: _Node) -> None:
    spent = node.unsent.pop(0)
    chain.balance -= spent
    lease = chain.leases.get(node.store_id)
    if lease is not None:
        chain.leases[node.store_id] = Lease(
            lease.store_id, settle(lease.amount, spent), lease.expires_at, lease.lease_id
        )


def _give_back(chain: _Chain, node: _Node, now: datetime) -> None:
    lease = chain.leases.get(node.store_id)
    if lease is not None and lease.lease_id == node.lease_id:
        chain.leases[node.store_id] = Lease(
            lease.store_id, returned(lease.amount, sum(node.unsent)), now, lease.lease_id
        )
    node.lease, node.lease_id, node.counted, node.expires_at = 0, "", 0, T0


@pytest.mark.parametrize("seed", range(40))
def test_stores_together_never_spend_more_than_balance_plus_ceiling(seed: int) -> None:
    rng = random.Random(seed)
    settings = LeaseSettings(
        ttl_s=rng.choice([60, 600, 3600]),
        per_store_minor=rng.choice([0, 100, 300, 5000]),
        ceiling_minor=rng.choice([0, 0, 50, 200]),
        grace_s=10**6,
    )
    start = rng.randint(0, 2000)
    chain = _Chain(settings, start)
    nodes = [_Node(str(367 + i)) for i in range(rng.randint(2, 5))]
    online = {node.store_id: True for node in nodes}
    now = T0
    accrued = 0
    for _ in range(300):
        node = rng.choice(nodes)
        step = rng.random()
        if step < 0.25:
            # A register spends; online the node asks for its lease first, offline it has it.
            want = rng.randint(1, 800)
            if online[node.store_id]:
                _grant(chain, node, now, node.counted - sum(node.unsent) + want)
            if want <= node.left(now):
                node.counted += want
                node.unsent.append(want)
                chain.spent += want
        elif step < 0.4 and online[node.store_id]:
            _grant(chain, node, now, 0)  # the card identified here: renewal follows use
        elif step < 0.6 and online[node.store_id] and node.unsent:
            _deliver(chain, node)
        elif step < 0.7 and online[node.store_id] and now >= node.expires_at:
            _give_back(chain, node, now)
        elif step < 0.8:
            online[node.store_id] = not online[node.store_id]
        elif step < 0.85:
            accrual = rng.randint(0, 300)  # an accrual booked
            chain.balance += accrual
            accrued += accrual
        else:
            now += timedelta(seconds=rng.randint(1, settings.ttl_s))
        chain.check(nodes, now)
    assert chain.balance == start + accrued - chain.spent + sum(sum(n.unsent) for n in nodes)
    assert chain.spent <= start + accrued + settings.ceiling_minor


def test_a_grant_is_what_the_store_needs_or_its_share_within_room() -> None:
    settings = LeaseSettings(ttl_s=60, per_store_minor=300, ceiling_minor=0, grace_s=600)
    other = Lease("406", 500, T0 + timedelta(seconds=60))
    assert size_grant(1024, [other], "367", T0, settings, unsent=0, need=0) == 300
    assert size_grant(1024, [other], "367", T0, settings, unsent=0, need=700) == 524
    assert size_grant(1024, [other], "367", T0, settings, unsent=100, need=0) == 400
    # An expired lease still counts through the grace (its sales may be on their way) ...
    later = T0 + timedelta(seconds=600)
    assert size_grant(1024, [other], "367", later, settings, unsent=0, need=2000) == 524
    # ... then returns to the card; the ceiling is lent out too.
    after = T0 + timedelta(seconds=661)
    assert size_grant(1024, [other], "367", after, settings, unsent=0, need=2000) == 1024
    ceiling = LeaseSettings(ceiling_minor=76)
    assert size_grant(1024, [], "367", T0, ceiling, unsent=0, need=2000) == 1100
    assert size_grant(-50, [], "367", T0, ceiling, unsent=0, need=2000) == 26


def test_settings_and_bodies_are_checked_naming_the_field() -> None:
    assert read_settings(
        {"offline_overdraft_ceiling_minor": "300", "offline_lease_ttl_s": "x"}
    ) == (LeaseSettings(ceiling_minor=300))
    assert parse_lease_request({"store_id": "367", "card_no": CARD, "need_minor": 5}) == (
        LeaseRequest("367", CARD, "bonus", 0, 5)
    )
    with pytest.raises(MalformedRequest, match=r"body\.need_minor"):
        parse_lease_request({"store_id": "367", "card_no": CARD, "need_minor": -1})
    with pytest.raises(MalformedRequest, match=r"body\.amount"):
        parse_lease_request({"store_id": "367", "card_no": CARD, "amount": 1})
    with pytest.raises(MalformedRequest, match=r"body\.leases\[0\]\.lease_id"):
        parse_lease_returns({"store_id": "367", "leases": [{"card_no": CARD}]})


# -- the repository, both backends ---------------------------------------------------------


def _card_with(storage: Storage, balance: int, settings: dict[str, str] | None = None) -> None:
    tables = master_tables()
    tables["settings"] += [{"name": k, "value": v} for k, v in (settings or {}).items()]
    storage.feed.upsert_master(tables)
    storage.sales.ingest([make_sale(1, card_no=CARD, accrue=balance)], T0)


def test_leases_carve_the_balance_and_settle_at_ingest(storage: Storage) -> None:
    _card_with(storage, 1024, {"offline_lease_per_store_minor": "600"})
    a = storage.leases.grant(LeaseRequest("367", CARD, "bonus", 0, 0), T0)
    b = storage.leases.grant(LeaseRequest("406", CARD, "bonus", 0, 0), T0)
    assert (a["amount"], b["amount"]) == (600, 424)
    assert b["other_stores_minor"] == 600 and a["balance"] == 1024
    # Store 367's sale spending 500 arrives: booked, and taken off its lease (not twice).
    sale = make_sale(2, card_no=CARD, spend=500, amounts=(600,))
    storage.sales.ingest([sale], T0 + timedelta(minutes=1))
    storage.sales.ingest([sale], T0 + timedelta(minutes=2))  # a replay settles nothing
    view = storage.leases.of_card(CARD, T0 + timedelta(minutes=2))
    assert [(x["store_id"], x["amount"]) for x in view["leases"]] == [("367", 100), ("406", 424)]
    assert view["outstanding_minor"] == 524
    # 406 asks for more: only what 367 does not hold is left.
    more = storage.leases.grant(LeaseRequest("406", CARD, "bonus", 0, 1000), T0)
    assert more["amount"] == 424
    # 367 gives its lease back with nothing unsent: it returns to the card.
    done = storage.leases.give_back(
        "367", [LeaseReturn(a["lease_id"], CARD, "bonus", 0)], T0 + timedelta(minutes=3)
    )
    assert done["returned"] == [a["lease_id"]]
    again = storage.leases.grant(LeaseRequest("406", CARD, "bonus", 0, 1000), T0)
    assert again["amount"] == 524
    # A stale return (of a lease renewed since) changes nothing.
    stale = storage.leases.give_back(
        "406", [LeaseReturn(more["lease_id"], CARD, "bonus", 0)], T0 + timedelta(minutes=3)
    )
    assert stale["returned"] == []


def test_the_ceiling_is_lent_and_unknown_cards_get_nothing(storage: Storage) -> None:
    _card_with(storage, 1024, {"offline_overdraft_ceiling_minor": "100"})
    a = storage.leases.grant(LeaseRequest("367", CARD, "bonus", 0, 5000), T0)
    assert a["amount"] == 1124 and a["ceiling_minor"] == 100
    assert storage.leases.grant(LeaseRequest("406", CARD, "bonus", 0, 1), T0)["amount"] == 0
    unknown = storage.leases.grant(LeaseRequest("367", "2900000000990", "bonus", 0, 5), T0)
    assert unknown["amount"] == 0  # the ceiling is a card's overdraft, not a stranger's
