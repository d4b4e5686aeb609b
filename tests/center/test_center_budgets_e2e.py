"""A supplier budget is one budget across every store, offline included (issues 12 and 13),
through the real tiers: the Center app on both backends, two store nodes and a register at
each, all over loopback HTTP. A campaign of 1.50 at 0.50 a receipt gives it on exactly three
receipts across the two stores, then stops and says why; with the Center stopped each store
gives at most its lease, and once the Center is back the account has every sale, once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from center.storage import Storage
from tests.center.test_center_coupon_holds_e2e import Chain, Pos, _until, running_chain

PRODUCT = "1000"


def _supplier(promotion_id: str, budget: int) -> dict[str, Any]:
    """10 % off product 1000 (0.50 on a 5.00 line), paid by supplier acme within `budget`."""
    return {
        "promotion_id": promotion_id,
        "title": f"Acme milk -10 % ({promotion_id})",
        "kind": "goods_discount",
        "status": "active",
        "priority": 90,
        "requires_card": False,
        "goods": {"products": [PRODUCT]},
        "percent": "10",
        "funding": {"by": "supplier:acme", "budget_minor": budget},
    }


async def _publish(chain: Chain, *docs: dict[str, Any], settings: dict[str, str]) -> None:
    chain.storage.feed.upsert_master(
        {
            "promotions": [{"promotion_id": d["promotion_id"], "doc": d} for d in docs],
            "settings": [{"name": k, "value": v} for k, v in settings.items()],
        }
    )
    version = chain.storage.versions.current()

    async def ready() -> bool:
        for client in chain.pos.values():
            if (await (await client.get("/health")).json())["master_version"] < version:
                return False
        return True

    await _until(ready, "the campaign at every register")


async def _sell(pos: Pos, promotion_id: str) -> tuple[int, list[str]]:
    """Ring one 5.00 line and confirm: (what `promotion_id` gave, the calculation's
    explanation)."""
    rid = (await (await pos.post("/v1/receipts", json={})).json())["receipt_id"]
    line = {"product_id": PRODUCT, "qty_milli": 1000, "unit_price_minor": 500}
    assert (await pos.post(f"/v1/receipts/{rid}/lines", json=line)).status == 200
    resp = await pos.post(f"/v1/receipts/{rid}/calculate", json={})
    assert resp.status == 200, await resp.text()
    calc = await resp.json()
    resp = await pos.post(
        f"/v1/receipts/{rid}/confirm",
        json={"payments": [{"method": "cash", "amount_minor": calc["total_minor"]}]},
    )
    assert resp.status == 200, await resp.text()
    sale = await resp.json()
    # The confirm prices again (and holds the budget): what it gave is the sale's discount
    # less the other rules' share, which the preview shows and no budget limits.
    others = sum(
        d["amount_minor"]
        for line in calc["lines"]
        for d in line["discounts"]
        if d["rule_id"] != promotion_id
    )
    return 500 - sale["total_minor"] - others, list(calc["explanation"])


async def test_a_budget_of_three_receipts_gives_three_across_two_stores_then_stops(
    tmp_path: Path, storage: Storage
) -> None:
    async with running_chain(tmp_path, storage) as chain:
        await _publish(chain, _supplier("acme-150", 150), settings={})
        given: list[tuple[str, int]] = []
        for store_id in ("367", "406", "367"):
            gave, _ = await _sell(chain.pos[store_id], "acme-150")
            given.append((store_id, gave))
            await chain.synced()
        assert given == [("367", 50), ("406", 50), ("367", 50)]
        gave, explanation = await _sell(chain.pos["406"], "acme-150")
        assert gave == 0
        assert "acme-150: skipped: budget of supplier:acme spent" in explanation
        gave, _ = await _sell(chain.pos["367"], "acme-150")
        assert gave == 0
        await chain.synced()
        account = storage.budgets.budget("acme-150", datetime.now(UTC))
        assert account is not None
        assert (account["spent_minor"], account["left_minor"]) == (150, 0)
        assert account["overspent_minor"] == 0 and account["sales_count"] == 3
        assert sorted(s["store_id"] for s in account["sales"]) == ["367", "367", "406"]
        # The route gives the same account to a marketer.
        status, doc = await chain.staff("GET", "/v1/promotions/acme-150/budget")
        assert status == 200 and doc["spent_minor"] == 150 and doc["funded_by"] == "supplier:acme"
        status, _ = await chain.staff("GET", "/v1/promotions/nope/budget")
        assert status == 404


async def test_with_the_center_down_each_store_gives_at_most_its_lease(
    tmp_path: Path, storage: Storage
) -> None:
    async with running_chain(tmp_path, storage) as chain:
        # Each store's lease: what it needs or a fifth of the budget, whichever is more.
        await _publish(
            chain, _supplier("acme-1000", 1000), settings={"budgets.lease_share_percent": "20"}
        )
        for pos in chain.pos.values():
            assert (await _sell(pos, "acme-1000"))[0] == 50  # online: the lease is granted
        await chain.synced()
        now = datetime.now(UTC)
        leases = {x["store_id"]: x for x in storage.budgets.budget("acme-1000", now)["leases"]}  # type: ignore[index]
        granted = {store_id: 200 for store_id in leases}
        assert granted == {"367": 200, "406": 200}

        await chain.stop_center()
        offline = dict.fromkeys(chain.pos, 0)
        for store_id, pos in chain.pos.items():
            for _ in range(10):
                gave, explanation = await _sell(pos, "acme-1000")
                if not gave:
                    assert "acme-1000: skipped: budget of supplier:acme spent" in explanation
                    break
                offline[store_id] += gave
        # Each store gave exactly what its lease had left after its online receipt.
        assert offline == {"367": 150, "406": 150}

        await chain.start_center()
        await chain.synced()
        account = storage.budgets.budget("acme-1000", datetime.now(UTC))
        assert account is not None
        assert account["spent_minor"] == 400 and account["overspent_minor"] == 0
        assert account["sales_count"] == 8
        assert account["spent_minor"] + account["leased_minor"] <= 1000
