"""The supplier cabinet over HTTP on both backends: audience sizes masked below the minimum
group, a campaign estimated on the stored history, refused while unfunded, launched as a
supplier-funded promotion once the chain's person tops the account up, its spend booked on the
account from the promotion's booked sales until the budget is spent; every supplier route
refused to another supplier's person; every supplier action audited."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.storage import Storage
from center.suppliers.model import split_control
from center.web.app import create_app
from center.web.routes import route_permissions
from sync_protocol import LineDiscount, Sale
from tests.center.center_factories import T0, make_sale, write_config
from tests.center.staff import StaffApi, staff_token

NOW = T0 + timedelta(days=10)
CUSTOMERS = 30


def card_of(i: int) -> str:
    return f"77000000{i:05d}"


def master() -> dict[str, list[dict[str, Any]]]:
    return {
        "products": [
            {"product_id": "1000", "name": "Acme yoghurt", "department": "DAIRY",
             "category": "YOGHURT", "brand": "Acme", "price_minor": 250},
            {"product_id": "1001", "name": "Bread", "department": "PASTRY",
             "category": "BREAD", "brand": "Baker", "price_minor": 199},
        ],
        "stores": [
            {"store_id": "367", "name": "Store 367", "timezone": "UTC"},
            {"store_id": "406", "name": "Store 406", "timezone": "UTC"},
        ],
        "customers": [{"customer_id": f"c-{i:02d}"} for i in range(CUSTOMERS)],
        "cards": [{"card_no": card_of(i), "customer_id": f"c-{i:02d}"} for i in range(CUSTOMERS)],
        "settings": [{"name": "bonus_max_share", "value": "0.5"}],
    }  # fmt: skip


def history() -> list[Sale]:
    """Each customer bought the Acme yoghurt (250) and bread (199) once, at two stores."""
    return [
        make_sale(
            i + 1,
            register_id="367-1" if i % 2 == 0 else "406-1",
            store_id="367" if i % 2 == 0 else "406",
            card_no=card_of(i),
        )
        for i in range(CUSTOMERS)
    ]


def discounted(seq: int, i: int, promotion_id: str, discount: int) -> Sale:
    """A sale after the launch whose yoghurt line got `discount` from the campaign."""
    sale = make_sale(seq, register_id="367-2", card_no=card_of(i), amounts=(2500, 199))
    first = dataclasses.replace(sale.lines[0], discounts=(LineDiscount(promotion_id, discount),))
    total = sale.subtotal_minor - discount
    return dataclasses.replace(
        sale,
        sale_id=str(uuid.uuid4()),
        opened_at=NOW + timedelta(minutes=seq),
        closed_at=NOW + timedelta(minutes=seq, seconds=30),
        lines=(first, *sale.lines[1:]),
        discount_minor=discount,
        total_minor=total,
        payments=(dataclasses.replace(sale.payments[0], amount_minor=total),),
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> Any:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(
    config: Config, storage: Storage, clock: Clock
) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master())
    storage.sales.ingest(history(), T0)
    async with TestClient(TestServer(create_app(config, storage, clock=clock))) as client:
        yield client


def campaign_body(**changes: Any) -> dict[str, Any]:
    body = {
        "name": "Acme yoghurt -10 %",
        "product_ids": ["1000"],
        "percent": "10",
        "date_from": NOW.date().isoformat(),
        "date_to": (NOW.date() + timedelta(days=13)).isoformat(),
        "audience": {"brands": ["Acme"], "window_days": 30},
        "control_percent": 50,
    }
    return {**body, **changes}


async def test_a_campaign_estimated_funded_launched_and_spent(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    manager = StaffApi(client, staff_token(storage, "supplier_manager"))
    admin = StaffApi(client, staff_token(storage, "administrator"))
    for supplier_id in ("acme", "beta"):
        status, body = await manager.call(
            "POST", "/v1/suppliers", {"supplier_id": supplier_id, "name": supplier_id.title()}
        )
        assert status == 201, body
    status, person = await manager.call(
        "POST", "/v1/suppliers/acme/people",
        {"username": "anna@acme", "password": "correct horse battery", "totp": True},
    )  # fmt: skip
    assert status == 201 and person["role"] == "supplier" and person["totp_secret"], person
    assert storage.suppliers.supplier_of("anna@acme") == "acme"
    acme = StaffApi(client, staff_token(storage, "supplier", username="acme-api"))
    storage.suppliers.bind_person("acme-api", "acme", "test", NOW)

    # The audience's size follows its parameters; a group under 10 is shown as "< 10".
    sizes = {}
    for name, audience in {
        "everyone": {},
        "acme": {"brands": ["Acme"], "window_days": 30},
        "store": {"stores": ["367"], "window_days": 30},
        "avg": {"min_avg_receipt_minor": 500},
        "tiny": {"segments": ["nobody"]},
    }.items():
        status, body = await acme.call("POST", "/v1/supplier/audience/size", {"audience": audience})
        assert status == 200, body
        sizes[name] = body["size"]
    assert sizes == {"everyone": 30, "acme": 30, "store": 15, "avg": "< 10", "tiny": "< 10"}
    status, body = await acme.call(
        "POST", "/v1/supplier/audience/size", {"audience": {"churn_min": 2}}
    )
    assert status == 422 and body["detail"].startswith("body.audience.churn_min"), body

    status, campaign = await acme.call("POST", "/v1/supplier/campaigns", campaign_body())
    assert status == 201 and campaign["state"] == "draft", campaign
    cid = campaign["campaign_id"]
    status, body = await acme.call("POST", "/v1/supplier/campaigns", campaign_body(percent="150"))
    assert status == 422 and body["detail"].startswith("body.percent"), body

    # Launch is refused before an estimate, then while the account does not cover it.
    status, body = await acme.call("POST", f"/v1/supplier/campaigns/{cid}/launch")
    assert status == 409 and body["detail"].startswith("estimate:"), body
    status, estimated = await acme.call("POST", f"/v1/supplier/campaigns/{cid}/estimate")
    assert status == 200, estimated
    # 30 yoghurts of 250 at 10 %: 750 on the history; the treated half: 375.
    assert estimated["estimate"]["cost_on_history_minor"] == 750
    assert estimated["estimate_minor"] == 375
    status, body = await acme.call("POST", f"/v1/supplier/campaigns/{cid}/launch")
    assert status == 409 and body["detail"].startswith("budget: the account holds 0"), body
    # The supplier cannot top itself up: that is the chain's person's.
    status, body = await acme.call("POST", "/v1/suppliers/acme/top-ups", {"amount_minor": 10**6})
    assert status == 403, body
    status, body = await manager.call("POST", "/v1/suppliers/acme/top-ups", {"amount_minor": 300})
    assert status == 201 and body["available_minor"] == 300
    status, body = await acme.call("POST", f"/v1/supplier/campaigns/{cid}/launch")
    assert status == 409 and "top it up by 75" in body["detail"], body
    assert storage.promotions.get_promotion(f"sup-{cid}") is None  # nothing half-launched
    status, body = await manager.call(
        "POST", "/v1/suppliers/acme/top-ups", {"amount_minor": 100, "note": "invoice 7"}
    )
    assert status == 201 and body["available_minor"] == 400
    status, live = await acme.call("POST", f"/v1/supplier/campaigns/{cid}/launch")
    assert status == 200 and live["state"] == "live" and live["budget_minor"] == 375, live

    # The promotion: the promotions domain's own, supplier-funded, for the treated segment.
    promotion = storage.promotions.get_promotion(live["promotion_id"])
    assert promotion is not None and promotion["status"] == "active", promotion
    doc = promotion["doc"]
    assert doc["funding"] == {"by": "supplier:acme", "budget_minor": 375}
    assert doc["segments"] == [live["segment_id"]]
    members = storage.segments.segment_members(live["segment_id"], limit=100)
    treated, control = split_control([f"c-{i:02d}" for i in range(CUSTOMERS)], 50, cid)
    assert members == treated and len(treated) == 15 and not set(treated) & set(control)
    status, account = await acme.call("GET", "/v1/supplier/account")
    assert (account["available_minor"], account["reserved_minor"]) == (25, 375), account

    # Another supplier's person: every supplier route with acme's ids is refused.
    beta = StaffApi(client, staff_token(storage, "supplier", username="beta-api"))
    storage.suppliers.bind_person("beta-api", "beta", "test", NOW)
    supplier_routes = [
        key for key, need in route_permissions(client.app).items()
        if need in ("suppliers.cabinet", "suppliers.admin")
    ]  # fmt: skip
    assert len(supplier_routes) >= 20
    for method, path in supplier_routes:
        concrete = path.replace("{campaign_id}", cid).replace("{supplier_id}", "acme")
        status, body = await beta.call(method, concrete, {} if method == "POST" else None)
        if "{campaign_id}" in path:
            assert status == 404, (method, path, body)
        elif "{supplier_id}" in path or path in ("/v1/suppliers", "/console/suppliers"):
            assert status == 403, (method, path, body)
    status, mine = await beta.call("GET", "/v1/supplier/campaigns")
    assert status == 200 and mine["campaigns"] == []
    status, body = await admin.call("GET", "/v1/supplier/campaigns")
    assert status == 403 and body["detail"].startswith("supplier:"), body

    # Sales book the spend on the account; the budget spent, the campaign ends.
    treated_i = [int(c.removeprefix("c-")) for c in treated]
    storage.sales.ingest([discounted(100, treated_i[0], live["promotion_id"], 250)], NOW)
    clock.now = NOW + timedelta(hours=3)
    status, account = await acme.call("GET", "/v1/supplier/account")
    assert (account["spent_minor"], account["reserved_minor"]) == (250, 125), account
    status, found = await acme.call("GET", f"/v1/supplier/campaigns/{cid}")
    assert found["state"] == "live"
    storage.sales.ingest(
        [discounted(100 + n, treated_i[n], live["promotion_id"], 250) for n in range(1, 3)], NOW
    )
    status, report = await acme.call("GET", f"/v1/supplier/campaigns/{cid}/report")
    assert status == 200, report
    # The stores gave 750 (3 x 250): the supplier is charged its budget, never beyond.
    assert report["figures"] == {
        "spend_minor": 750,
        "receipts": 3,
        "units_milli": 3000,
        "customers": "< 10",
        "charged_minor": 375,
    }
    status, account = await acme.call("GET", "/v1/supplier/account")
    assert account["spent_minor"] == 375 and account["reserved_minor"] == 0, account
    assert account["available_minor"] == 25
    assert report["campaign"]["state"] == "finished"
    assert report["incremental"]["treated"] == 15 and report["incremental"]["control"] == 15
    assert report["incremental"]["enough_data"] is True
    # Three treated customers bought 24.49 each after the launch, the control nothing (and
    # nobody bought in the day before it: CUPED has nothing to adjust).
    assert report["incremental"]["incremental_revenue_minor"] == 3 * 2449
    assert "customer_id" not in str(report) and card_of(0) not in str(report)

    # Every supplier action is audited.
    status, audit = await admin.call("GET", "/v1/audit", query={"kind": "supplier", "id": "acme"})
    assert status == 200, audit
    actions = {row["action"] for row in audit["changes"]}
    assert {"create", "bind_person", "audience_size", "create_campaign", "estimate",
            "account_top_up", "account_reserve", "launch", "account_spend", "finish",
            "report"} <= actions, actions  # fmt: skip
