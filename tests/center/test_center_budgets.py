"""Supplier budget leases: the pure arithmetic under random orders, and the budget account on
both backends (grant, booking at ingest, replay, returns, give back, the budget route's data)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from center.errors import MalformedRequest
from center.promotions.budgets import (
    BudgetLease,
    BudgetLeaseRequest,
    BudgetLeaseReturn,
    BudgetSettings,
    outstanding,
    parse_budget_lease_request,
    parse_budget_lease_returns,
    read_settings,
    returned,
    returned_amounts,
    settle,
    size_grant,
)
from center.storage import Storage
from sync_protocol import promotion_amounts
from tests.center.center_factories import T0, make_sale, master_tables

PROMO = "threshold-5-10"  # the rule make_sale's discounts name

# -- the pure rules, as a simulated chain ------------------------------------------------------


@dataclass
class _Node:
    """One store node: its lease and what the lease covers (as store_node/budgets.py counts)."""

    store_id: str
    lease: int = 0
    lease_id: str = ""
    expires_at: datetime = T0
    counted: int = 0
    """Given in sales not at the Center when the lease was asked for, plus every gift since."""
    unsent: list[int] = field(default_factory=list)

    def left(self, now: datetime) -> int:
        return self.lease - self.counted if now < self.expires_at else 0


@dataclass
class _Campaign:
    settings: BudgetSettings
    budget: int
    leases: dict[str, BudgetLease] = field(default_factory=dict)
    spent: int = 0
    given: int = 0
    grants: int = 0

    def check(self, nodes: list[_Node], now: datetime) -> None:
        held = outstanding(self.leases.values(), now, self.settings)
        assert self.spent + held <= self.budget, (self.spent, held, self.budget)
        for node in nodes:
            lease = self.leases.get(node.store_id)
            center = lease.amount if lease is not None and lease.lease_id == node.lease_id else 0
            assert node.left(now) <= center
        # What the tills gave (booked or on the way) never passes the budget.
        assert self.given <= self.budget


def _grant(campaign: _Campaign, node: _Node, now: datetime, want: int) -> None:
    unsent = sum(node.unsent)
    amount = size_grant(
        campaign.budget,
        campaign.spent,
        campaign.leases.values(),
        node.store_id,
        now,
        campaign.settings,
        unsent=unsent,
        need=unsent + want,
    )
    campaign.grants += 1
    lease_id = f"L{campaign.grants}"
    campaign.leases[node.store_id] = BudgetLease(
        node.store_id, amount, now + timedelta(seconds=campaign.settings.ttl_s), lease_id
    )
    node.lease, node.lease_id, node.counted = amount, lease_id, unsent
    node.expires_at = now + timedelta(seconds=campaign.settings.ttl_s - 1)


def _deliver(campaign: _Campaign, node: _Node) -> None:
    given = node.unsent.pop(0)
    campaign.spent += given
    lease = campaign.leases.get(node.store_id)
    if lease is not None:
        campaign.leases[node.store_id] = BudgetLease(
            lease.store_id, settle(lease.amount, given), lease.expires_at, lease.lease_id
        )


def _give_back(campaign: _Campaign, node: _Node, now: datetime) -> None:
    lease = campaign.leases.get(node.store_id)
    if lease is not None and lease.lease_id == node.lease_id:
        campaign.leases[node.store_id] = BudgetLease(
            lease.store_id, returned(lease.amount, sum(node.unsent)), now, lease.lease_id
        )
    node.lease, node.lease_id, node.counted, node.expires_at = 0, "", 0, T0


@pytest.mark.parametrize("seed", range(40))
def test_stores_together_never_give_more_than_the_budget(seed: int) -> None:
    rng = random.Random(seed)
    settings = BudgetSettings(
        ttl_s=rng.choice([60, 600, 3600]),
        share_percent=rng.choice([0, 5, 10, 50, 100]),
        grace_s=10**6,
    )
    campaign = _Campaign(settings, rng.randint(0, 3000))
    nodes = [_Node(str(367 + i)) for i in range(rng.randint(2, 5))]
    online = {node.store_id: True for node in nodes}
    now = T0
    for _ in range(300):
        node = rng.choice(nodes)
        step = rng.random()
        if step < 0.35:
            # A receipt wants some of the promotion: online the node asks first; the till gives
            # what the lease has left, capped (the engine's cap), never more.
            want = rng.randint(1, 400)
            if online[node.store_id] and node.left(now) < want:
                _grant(campaign, node, now, node.counted - sum(node.unsent) + want)
            gave = min(want, max(0, node.left(now)))
            if gave:
                node.counted += gave
                node.unsent.append(gave)
                campaign.given += gave
        elif step < 0.45 and online[node.store_id]:
            _grant(campaign, node, now, 0)
        elif step < 0.65 and online[node.store_id] and node.unsent:
            _deliver(campaign, node)
        elif step < 0.75 and online[node.store_id] and now >= node.expires_at:
            _give_back(campaign, node, now)
        elif step < 0.85:
            online[node.store_id] = not online[node.store_id]
        elif step < 0.88:
            campaign.budget += rng.randint(0, 200)  # a revision raised the budget
        else:
            now += timedelta(seconds=rng.randint(1, settings.ttl_s))
        campaign.check(nodes, now)
    assert campaign.given == campaign.spent + sum(sum(n.unsent) for n in nodes)


def test_a_grant_is_what_the_store_needs_or_its_share_within_room() -> None:
    settings = BudgetSettings(ttl_s=60, share_percent=10, grace_s=600)
    other = BudgetLease("406", 500, T0 + timedelta(seconds=60))
    assert size_grant(1000, 0, [other], "367", T0, settings, unsent=0, need=0) == 100
    assert size_grant(1000, 0, [other], "367", T0, settings, unsent=0, need=700) == 500
    assert size_grant(1000, 300, [other], "367", T0, settings, unsent=50, need=0) == 150
    # An expired lease still counts through the grace, then returns to the budget.
    later = T0 + timedelta(seconds=661)
    assert size_grant(1000, 0, [other], "367", later, settings, unsent=0, need=2000) == 1000
    # Spent beyond the budget (a forged sale): nothing more is lent.
    assert size_grant(1000, 1200, [], "367", T0, settings, unsent=0, need=10) == 0


def test_a_return_gives_back_in_proportion_and_never_twice() -> None:
    original = make_sale(1, amounts=(300, 200), discount=100)
    booked = promotion_amounts(original)
    assert booked == {PROMO: 100}
    half = make_sale(2, amounts=(300,))
    half = half.__class__(
        **{
            **{f: getattr(half, f) for f in half.__dataclass_fields__},
            "lines": (half.lines[0].__class__(1, "1000", 500, 300, 150),),
            "return_of": original.sale_id,
        }
    )
    assert returned_amounts(original, booked, half, {}) == {PROMO: 50}
    assert returned_amounts(original, booked, half, {PROMO: 80}) == {PROMO: 20}
    assert returned_amounts(original, booked, half, {PROMO: 100}) == {}


def test_settings_and_bodies_are_checked_naming_the_field() -> None:
    assert read_settings({"budgets.lease_share_percent": "250", "budgets.lease_ttl_s": "x"}) == (
        BudgetSettings(share_percent=100)
    )
    assert parse_budget_lease_request(
        {"store_id": "367", "promotion_id": PROMO, "need_minor": 5}
    ) == BudgetLeaseRequest("367", PROMO, 0, 5)
    with pytest.raises(MalformedRequest, match=r"body\.need_minor"):
        parse_budget_lease_request({"store_id": "367", "promotion_id": PROMO, "need_minor": -1})
    with pytest.raises(MalformedRequest, match=r"body\.promotion_id"):
        parse_budget_lease_request({"store_id": "367", "need_minor": 1})
    with pytest.raises(MalformedRequest, match=r"body\.amount"):
        parse_budget_lease_request({"store_id": "367", "promotion_id": PROMO, "amount": 1})
    with pytest.raises(MalformedRequest, match=r"body\.leases\[0\]\.lease_id"):
        parse_budget_lease_returns({"store_id": "367", "leases": [{"promotion_id": PROMO}]})


# -- the repository, both backends ---------------------------------------------------------


def _budgeted(storage: Storage, budget: int, settings: dict[str, str] | None = None) -> None:
    tables = master_tables()
    tables["promotions"] += [
        {
            "promotion_id": PROMO,
            "doc": {
                "promotion_id": PROMO,
                "funding": {"by": "supplier:acme", "budget_minor": budget},
            },
        }
    ]
    tables["settings"] += [{"name": k, "value": v} for k, v in (settings or {}).items()]
    storage.feed.upsert_master(tables)


def test_leases_carve_the_budget_and_sales_book_once(storage: Storage) -> None:
    _budgeted(storage, 1000, {"budgets.lease_share_percent": "30"})
    a = storage.budgets.grant(BudgetLeaseRequest("367", PROMO, 0, 0), T0)
    b = storage.budgets.grant(BudgetLeaseRequest("406", PROMO, 0, 900), T0)
    assert (a["amount"], b["amount"]) == (300, 700)
    assert b["other_stores_minor"] == 300 and a["funded_by"] == "supplier:acme"
    # Store 367's sale giving 120 of the promotion arrives: booked, off its lease, not twice.
    sale = make_sale(1, discount=120)
    storage.sales.ingest([sale], T0 + timedelta(minutes=1))
    storage.sales.ingest([sale], T0 + timedelta(minutes=2))
    view = storage.budgets.budget(PROMO, T0 + timedelta(minutes=2))
    assert view is not None
    assert (view["spent_minor"], view["leased_minor"], view["left_minor"]) == (120, 880, 880)
    assert view["available_minor"] == 0 and view["overspent_minor"] == 0
    assert [(x["store_id"], x["amount_minor"]) for x in view["leases"]] == [
        ("367", 180),
        ("406", 700),
    ]
    assert view["sales_count"] == 1 and view["sales"][0]["sale_id"] == sale.sale_id
    assert view["sales"][0]["amount_minor"] == 120
    # 406 gives its lease back keeping 50 for a sale on its way; 367 may now have the rest.
    done = storage.budgets.give_back(
        "406", [BudgetLeaseReturn(b["lease_id"], PROMO, 50)], T0 + timedelta(minutes=3)
    )
    assert done["returned"] == [b["lease_id"]]
    more = storage.budgets.grant(BudgetLeaseRequest("367", PROMO, 0, 5000), T0)
    assert more["amount"] == 1000 - 120 - 50
    # A stale return (of a lease renewed since) changes nothing.
    stale = storage.budgets.give_back(
        "367", [BudgetLeaseReturn(a["lease_id"], PROMO, 0)], T0 + timedelta(minutes=3)
    )
    assert stale["returned"] == []


def test_a_return_gives_back_what_it_reverses(storage: Storage) -> None:
    _budgeted(storage, 1000)
    storage.budgets.grant(BudgetLeaseRequest("367", PROMO, 0, 200), T0)
    original = make_sale(1, amounts=(300, 200), discount=100)
    storage.sales.ingest([original], T0 + timedelta(minutes=1))
    back = make_sale(2, amounts=(200,))  # line 1 (the discounted one), every unit
    back = back.__class__(
        **{
            **{f: getattr(back, f) for f in back.__dataclass_fields__},
            "return_of": original.sale_id,
        }
    )
    storage.sales.ingest([back], T0 + timedelta(minutes=2))
    view = storage.budgets.budget(PROMO, T0 + timedelta(minutes=2))
    assert view is not None
    assert view["spent_minor"] == 0
    assert sorted(x["amount_minor"] for x in view["sales"]) == [-100, 100]


def test_unbudgeted_and_unknown_promotions(storage: Storage) -> None:
    _budgeted(storage, 1000)
    assert storage.budgets.budget("nope", T0) is None
    plain = storage.budgets.budget("base-accrual-3", T0)
    assert plain is not None and plain["budget_minor"] is None and plain["left_minor"] is None
    grant = storage.budgets.grant(BudgetLeaseRequest("367", "base-accrual-3", 0, 10), T0)
    assert grant["amount"] == 0
    # A sale of an unbudgeted rule books nothing.
    storage.sales.ingest([make_sale(1, card_no=None, accrue=0)], T0)
    assert storage.budgets.budget("base-accrual-3", T0)["sales_count"] == 0  # type: ignore[index]


def test_a_published_revision_may_raise_the_budget(storage: Storage) -> None:
    _budgeted(storage, 1000)  # the master data the constructor validates against
    doc = {
        "promotion_id": "acme-milk",
        "title": "Acme milk -10 %",
        "kind": "goods_discount",
        "priority": 90,
        "goods": {"products": ["1000"]},
        "percent": "10",
        "funding": {"by": "supplier:acme", "budget_minor": 500},
    }
    storage.promotions.create_promotion(doc, "ann", T0)
    draft = storage.budgets.budget("acme-milk", T0)
    assert draft is not None and draft["budget_minor"] == 500  # a draft shows its budget
    storage.promotions.activate_promotion("acme-milk", "ann", T0)
    raised = {**doc, "funding": {"by": "supplier:acme", "budget_minor": 800}}
    storage.promotions.update_promotion("acme-milk", raised, "ann", T0)
    # A newer draft does not count until it is published ...
    assert (
        storage.budgets.grant(BudgetLeaseRequest("367", "acme-milk", 0, 5000), T0)["amount"] == 500
    )
    storage.promotions.activate_promotion("acme-milk", "ann", T0)
    # ... then the raised budget is lent.
    grant = storage.budgets.grant(BudgetLeaseRequest("367", "acme-milk", 0, 5000), T0)
    assert grant["amount"] == 800 and grant["budget_minor"] == 800
