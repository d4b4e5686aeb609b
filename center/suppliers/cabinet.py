"""The supplier cabinet's steps over the repositories, shared by the JSON API and the pages:
estimate (the promotions domain's what-if pricing), launch (the promotions domain's create and
activate), following what a live campaign spent, and its report against the control group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from center.communications.abx import CustomerOutcome, compare_groups
from center.errors import Conflict, RequestError, UnknownObject
from center.promotions.constructor import prepare_doc
from center.promotions.constructor_jobs import price_period
from center.promotions.segments import SegmentInput
from center.suppliers.model import (
    MIN_GROUP_SIZE,
    campaign_figures,
    estimate_window,
    masked,
    promotion_doc,
    promotion_id_of,
    simulation_doc,
    split_control,
)
from sync_protocol import ProtocolError, Sale, decode_sale

if TYPE_CHECKING:
    from center.storage import Storage

__all__ = [
    "estimate",
    "follow_campaign",
    "follow_live_campaigns",
    "follow_live_campaigns_of",
    "launch",
    "own_campaign",
    "report",
    "spent_of",
]


def own_campaign(storage: Storage, supplier_id: str, campaign_id: str) -> dict[str, Any]:
    """The supplier's campaign; UnknownObject for an unknown one or another supplier's."""
    found = storage.suppliers.campaign(supplier_id, campaign_id)
    if found is None:
        raise UnknownObject("campaign_id", f"unknown campaign {campaign_id[:80]!r}")
    return found


async def estimate(
    storage: Storage, db: Executor, supplier_id: str, campaign_id: str, actor: str, now: datetime
) -> dict[str, Any]:
    """Price the campaign's discount on its audience's receipts of the last days as long as the
    campaign (the promotions domain's what-if run), scaled to the treated share: its budget."""
    loop = asyncio.get_running_loop()
    view = await loop.run_in_executor(db, own_campaign, storage, supplier_id, campaign_id)
    if view["state"] != "draft":
        raise Conflict("campaign_id", f"campaign {campaign_id!r} is {view['state']}")
    campaign = storage.suppliers.campaign_input(view)
    members = await loop.run_in_executor(
        db, storage.suppliers.audience_members, campaign.audience, now
    )
    cards = await loop.run_in_executor(db, storage.suppliers.cards_of, members)
    date_from, date_to = estimate_window(campaign, now)
    priced = await price_period(
        storage,
        db,
        simulation_doc(campaign_id, campaign),
        date_from,
        date_to,
        cards=frozenset(cards),
    )
    own = priced.per_promotion.get(promotion_id_of(campaign_id))
    cost = own.discount_minor if own is not None else 0
    receipts = own.receipts if own is not None else 0
    buyers = len(own.customers) if own is not None else 0
    treated = 100 - campaign.control_percent
    # The held-out share gets nothing: the budget covers the treated share, rounded up.
    budget = -(-cost * treated // 100)
    detail = {
        "history_from": date_from.isoformat(),
        "history_to": date_to.isoformat(),
        "audience": masked(len(members)),
        "receipts_priced": priced.sales,
        "receipts_discounted": receipts,
        "customers_discounted": masked(buyers),
        "cost_on_history_minor": cost,
        "treated_percent": treated,
    }
    return await loop.run_in_executor(
        db, storage.suppliers.set_estimate, supplier_id, campaign_id, budget, detail, actor, now
    )


def launch(
    storage: Storage, supplier_id: str, campaign_id: str, actor: str, now: datetime
) -> dict[str, Any]:
    """Fund and launch: hold the budget on the account (refused when it does not cover it),
    hold out the control group, make the treated audience a segment and the campaign a
    supplier-funded promotion through the promotions domain's create and activate."""
    view = own_campaign(storage, supplier_id, campaign_id)
    campaign = storage.suppliers.campaign_input(view)
    members = storage.suppliers.audience_members(campaign.audience, now)
    if len(members) < MIN_GROUP_SIZE:
        raise Conflict(
            "audience", f"the audience holds fewer than {MIN_GROUP_SIZE} customers: widen it"
        )
    treated, control = split_control(members, campaign.control_percent, seed=campaign_id)
    reserved = storage.suppliers.reserve(supplier_id, campaign_id, actor, now)
    promotion_id = promotion_id_of(campaign_id)
    segment_id = f"sup-{campaign_id}"
    created = False
    try:
        doc = prepare_doc(
            promotion_doc(
                campaign_id, supplier_id, campaign, segment_id, int(reserved["budget_minor"])
            )
        )
        storage.promotions.create_promotion(doc, actor, now)
        created = True
        storage.segments.create_segment(
            SegmentInput(
                segment_id,
                f"{campaign.name} ({supplier_id})",
                "static",
                customer_ids=tuple(treated),
            ),
            actor,
            now,
        )
        storage.promotions.activate_promotion(promotion_id, actor, now)
        return storage.suppliers.finish_launch(
            supplier_id, campaign_id, promotion_id, segment_id, treated, control, actor, now
        )
    except BaseException:
        # Nothing half-launched: the money back on the account, the promotion archived.
        storage.suppliers.abort_launch(supplier_id, campaign_id, actor, now)
        if created:
            with contextlib.suppress(RequestError):  # never activated: nothing to archive
                storage.promotions.archive_promotion(promotion_id, actor, now)
        raise


def _period(view: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """[launch, end) of a launched campaign as far as `now`: its last day and one more (a
    store's day may end after UTC's), never before the launch."""
    start = datetime.fromisoformat(view["launched_at"])
    end_day = datetime.fromisoformat(view["date_to"]).date() + timedelta(days=2)
    return start, max(start, min(now, datetime.combine(end_day, time(), tzinfo=UTC)))


def _decoded(payloads: list[bytes]) -> Iterator[Sale]:
    for payload in payloads:
        try:
            yield decode_sale(payload)
        except ProtocolError:
            continue


def _period_sales(storage: Storage, view: dict[str, Any], now: datetime) -> Iterator[Sale]:
    start, end = _period(view, now)
    return _decoded(storage.sales.sale_payloads(start, end))


def spent_of(storage: Storage, view: dict[str, Any], now: datetime) -> int:
    """What the campaign's promotion spent of its budget: the promotion's budget account
    (`storage.budgets`, booked at ingest, returns given back), the one figure every tier
    enforces; the discounts on its booked sales when the Center keeps no account for it."""
    account = storage.budgets.budget(view["promotion_id"], now)
    if account is not None and account["budget_minor"] is not None:
        return int(account["spent_minor"])
    return campaign_figures(_period_sales(storage, view, now), view["promotion_id"]).spend_minor


def follow_campaign(storage: Storage, view: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Book on the supplier's account what a live campaign spent (`spent_of`); finish it once
    its budget is spent or its period is a day past."""
    spent = spent_of(storage, view, now)
    over = now.date() > datetime.fromisoformat(view["date_to"]).date() + timedelta(days=1)
    ended = spent >= int(view["budget_minor"] or 0) or over
    return storage.suppliers.follow_spend(
        view["supplier_id"], view["campaign_id"], spent, ended, now
    )


def follow_live_campaigns_of(storage: Storage, supplier_id: str, now: datetime) -> None:
    """Follow the supplier's live campaigns (before its account is shown)."""
    for view in storage.suppliers.campaigns(supplier_id):
        if view["state"] == "live":
            follow_campaign(storage, view, now)


def follow_live_campaigns(storage: Storage, now: datetime) -> int:
    """Follow every live campaign (the Center's periodic job); how many."""
    live = storage.suppliers.live_campaigns()
    for view in live:
        follow_campaign(storage, view, now)
    return len(live)


def report(
    storage: Storage, supplier_id: str, campaign_id: str, actor: str, now: datetime
) -> dict[str, Any]:
    """A launched campaign's spend, receipts, units and customers, and the incremental sales
    of the treated audience against the held-out control (CUPED, center/communications/abx.py):
    aggregates only, groups below MIN_GROUP_SIZE masked."""
    view = own_campaign(storage, supplier_id, campaign_id)
    if view["state"] == "live":
        follow_campaign(storage, view, now)
        view = own_campaign(storage, supplier_id, campaign_id)
    out: dict[str, Any] = {"campaign": view, "min_group_size": MIN_GROUP_SIZE}
    if view["launched_at"] is None:
        storage.suppliers.record_action(
            supplier_id, "report", {"campaign_id": campaign_id}, actor, now
        )
        return {**out, "figures": None, "incremental": None}
    figures = campaign_figures(_period_sales(storage, view, now), view["promotion_id"])
    groups = storage.suppliers.members(campaign_id)
    owners = storage.suppliers.cards_of(sorted(groups))
    # The spend before the launch over as many days as the campaign has run: CUPED's covariate.
    launched, end = _period(view, now)
    span = max(end - launched, timedelta(days=1))
    before: dict[str, int] = {}
    for sale in _decoded(storage.sales.sale_payloads(launched - span, launched)):
        if sale.card_no in owners:
            customer = owners[sale.card_no]
            before[customer] = before.get(customer, 0) + sale.total_minor
    after: dict[str, int] = {}
    for card_no, revenue in figures.revenue_by_card.items():
        if card_no in owners:
            after[owners[card_no]] = after.get(owners[card_no], 0) + revenue
    outcomes = [
        CustomerOutcome(
            group, after.get(customer, 0), before.get(customer, 0), after.get(customer, 0) > 0
        )
        for customer, group in groups.items()
    ]
    compared = compare_groups(outcomes, control="X").get("T")
    treated = sum(1 for g in groups.values() if g == "T")
    control = len(groups) - treated
    incremental: dict[str, Any] = {"treated": masked(treated), "control": masked(control)}
    if compared is not None and min(treated, control) >= MIN_GROUP_SIZE:
        incremental.update(
            {
                k: compared[k]
                for k in (
                    "enough_data",
                    "incremental_revenue_minor",
                    "incremental_revenue_ci_minor",
                    "lift_per_customer_minor",
                    "lift_per_customer_ci_minor",
                    "significant",
                )
                if k in compared
            }
        )
    else:
        incremental["enough_data"] = False
    account = storage.suppliers.account(supplier_id, limit=0) or {}
    charged = storage.suppliers.charged(supplier_id, campaign_id)
    storage.suppliers.record_action(supplier_id, "report", {"campaign_id": campaign_id}, actor, now)
    return {
        **out,
        "figures": {**figures.to_dict(), "charged_minor": charged},
        "incremental": incremental,
        "account": {k: v for k, v in account.items() if k != "entries"},
    }
