"""A supplier's campaign through the real tiers (issue 17 item 4): the Center app on both
backends, two store nodes and a register at each over loopback HTTP. The supplier's person
estimates the campaign on the stored history, the chain's person funds it, the supplier
launches it; registers at both stores give its discount to the treated audience until the
budget (enforced across stores by the budget leases) is spent, then it stops; the supplier's
account is charged exactly what the promotion's budget account reports spent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from center.storage import Storage
from center.suppliers.cabinet import follow_live_campaigns
from sync_protocol import Payment, Sale, SaleLine
from tests.center.staff import staff_token
from tests.center.test_center_coupon_holds_e2e import Chain, Pos, _until, running_chain

AUDIENCE = 12


def _card(i: int) -> str:
    return f"2977700000{i:03d}"


def _history(now: datetime) -> list[Sale]:
    """Two days ago each audience card bought one Acme milk (5.00) at store 367 or 406."""
    sales = []
    for i in range(AUDIENCE):
        closed = now - timedelta(days=2) + timedelta(minutes=i)
        store = "367" if i % 2 == 0 else "406"
        sales.append(
            Sale(
                sale_id=str(uuid.uuid4()),
                store_id=store,
                register_id=f"hist-{store}",
                seq=i + 1,
                opened_at=closed - timedelta(minutes=1),
                closed_at=closed,
                card_no=_card(i),
                lines=(SaleLine(1, "1000", 1000, 500, 500),),
                payments=(Payment("cash", 500),),
                loyalty=(),
                subtotal_minor=500,
                discount_minor=0,
                total_minor=500,
                promo_version=1,
            )
        )
    return sales


async def _call(chain: Chain, token: str, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, chain.center + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as resp,
    ):
        return resp.status, await resp.json()


async def _synced(chain: Chain, history: int) -> None:
    """Every register's sales are at the Center (beside the `history` loaded directly)."""

    async def empty() -> bool:
        wanted = history
        for pos in chain.pos.values():
            health = await (await pos.get("/health")).json()
            if health["queue_depth"] or health["reservations_pending"]:
                return False
            wanted += health["last_seq"]
        return chain.storage.counts().sales == wanted

    await _until(empty, "every sale at the Center")


async def _sell(pos: Pos, card_no: str, promotion_id: str) -> tuple[int, list[str]]:
    """Ring one 5.00 milk with the card and confirm: (what the campaign gave, explanation)."""
    rid = (await (await pos.post("/v1/receipts", json={})).json())["receipt_id"]
    line = {"product_id": "1000", "qty_milli": 1000, "unit_price_minor": 500}
    assert (await pos.post(f"/v1/receipts/{rid}/lines", json=line)).status == 200
    resp = await pos.post(f"/v1/receipts/{rid}/card", json={"card_no": card_no})
    assert resp.status == 200, await resp.text()
    resp = await pos.post(f"/v1/receipts/{rid}/calculate", json={})
    assert resp.status == 200, await resp.text()
    calc = await resp.json()
    resp = await pos.post(
        f"/v1/receipts/{rid}/confirm",
        json={"payments": [{"method": "cash", "amount_minor": calc["total_minor"]}]},
    )
    assert resp.status == 200, await resp.text()
    sale = await resp.json()
    # The confirm prices again (and holds the budget): what it gave is the sale's discount less
    # the other rules' share, which the preview shows and no budget limits.
    others = sum(
        d["amount_minor"]
        for line in calc["lines"]
        for d in line["discounts"]
        if d["rule_id"] != promotion_id
    )
    gave = 500 - int(sale["total_minor"]) - others
    return gave, list(calc["explanation"])


async def test_a_supplier_campaign_funds_launches_spends_across_two_stores_and_stops(
    tmp_path: Path, storage: Storage
) -> None:
    async with running_chain(tmp_path, storage) as chain:
        now = datetime.now(UTC)
        storage.feed.upsert_master(
            {
                "products": [{"product_id": "1000", "name": "Acme milk", "brand": "Acme",
                              "department": "DAIRY", "price_minor": 500}],
                "customers": [{"customer_id": f"aud-{i}"} for i in range(AUDIENCE)],
                "cards": [{"card_no": _card(i), "customer_id": f"aud-{i}"}
                          for i in range(AUDIENCE)],
            }
        )  # fmt: skip
        storage.sales.ingest(_history(now), now)
        storage.suppliers.create_supplier("acme", "Acme Dairy", "test", now)
        supplier = staff_token(storage, "supplier", username="acme-e2e")
        storage.suppliers.bind_person("acme-e2e", "acme", "test", now)
        manager = staff_token(storage, "supplier_manager", username="chain-e2e")

        body = {
            "name": "Acme milk -10 %",
            "product_ids": ["1000"],
            "percent": "10",
            # From yesterday (UTC): the stores' day (America/Chicago) may still be yesterday.
            "date_from": (now.date() - timedelta(days=1)).isoformat(),
            "date_to": (now.date() + timedelta(days=5)).isoformat(),
            "audience": {"brands": ["Acme"], "window_days": 30},
            "control_percent": 0,
        }
        status, campaign = await _call(chain, supplier, "POST", "/v1/supplier/campaigns", body)
        assert status == 201, campaign
        cid = campaign["campaign_id"]
        status, estimated = await _call(
            chain, supplier, "POST", f"/v1/supplier/campaigns/{cid}/estimate"
        )
        # 12 milks of 5.00 at 10 % on the last 7 days: a budget of 6.00.
        assert status == 200 and estimated["estimate_minor"] == 600, estimated
        status, refused = await _call(
            chain, supplier, "POST", f"/v1/supplier/campaigns/{cid}/launch"
        )
        assert status == 409 and refused["detail"].startswith("budget:"), refused
        status, _ = await _call(
            chain, manager, "POST", "/v1/suppliers/acme/top-ups", {"amount_minor": 1000}
        )
        assert status == 201
        status, live = await _call(chain, supplier, "POST", f"/v1/supplier/campaigns/{cid}/launch")
        assert status == 200 and live["state"] == "live", live
        promotion_id = live["promotion_id"]
        version = storage.versions.current()

        async def ready() -> bool:
            for client in chain.pos.values():
                if (await (await client.get("/health")).json())["master_version"] < version:
                    return False
            return True

        await _until(ready, "the campaign at every register")

        # 0.50 a receipt at both stores until the 6.00 are given, then nothing.
        given: dict[str, int] = {"367": 0, "406": 0}
        stopped: dict[str, str] = {}
        for n in range(40):
            store = "367" if n % 2 == 0 else "406"
            gave, explanation = await _sell(chain.pos[store], _card(n % 2), promotion_id)
            await _synced(chain, AUDIENCE)
            given[store] += gave
            if gave:
                stopped.pop(store, None)
            else:
                stopped[store] = "\n".join(explanation)
            if len(stopped) == 2:  # neither store gives anything more
                break
        assert set(stopped) == {"367", "406"}, given
        assert sum(given.values()) == 600 and min(given.values()) > 0, given
        for explanation in stopped.values():
            assert f"{promotion_id}: skipped: budget of supplier:acme spent" in explanation

        # The supplier's account follows the promotion's budget account, and the campaign ends.
        follow_live_campaigns(storage, datetime.now(UTC))
        budget = storage.budgets.budget(promotion_id, datetime.now(UTC))
        assert budget is not None and budget["spent_minor"] == 600
        account = storage.suppliers.account("acme")
        assert account is not None
        assert (account["available_minor"], account["reserved_minor"], account["spent_minor"]) == (
            400,
            0,
            600,
        )
        status, report = await _call(chain, supplier, "GET", f"/v1/supplier/campaigns/{cid}/report")
        assert status == 200 and report["campaign"]["state"] == "finished", report
        assert report["figures"]["spend_minor"] == 600 and report["figures"]["charged_minor"] == 600
