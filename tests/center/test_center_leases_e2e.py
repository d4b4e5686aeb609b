"""Offline exposure has a bound (issue 13), through the real tiers: the Center app on both
backends, two store nodes and a register at each, all over loopback HTTP. A card holding 1,024;
the Center stops; both stores try to spend everything; together they spend at most balance +
ceiling, and once the Center is back the ledger's debt is within the ceiling and the leases are
settled."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from center.ledger.leases import LeaseRequest
from center.storage import Storage
from tests.center.center_factories import CARD, make_sale
from tests.center.test_center_coupon_holds_e2e import Pos, _line, _until, running_chain

CEILING = 100


async def _spend(pos: Pos, amount: int) -> int:
    """Open a receipt on the card and try to pay `amount` of it with bonus; what was spent."""
    rid = (await (await pos.post("/v1/receipts", json={})).json())["receipt_id"]
    assert (await pos.post(f"/v1/receipts/{rid}/lines", json=_line(5000))).status == 200
    resp = await pos.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
    assert resp.status == 200, await resp.text()
    resp = await pos.post(f"/v1/receipts/{rid}/calculate", json={"bonus_to_spend": amount})
    calc: dict[str, Any] = await resp.json()
    if resp.status != 200:
        assert resp.status == 409 and calc["field"] == "bonus_to_spend", calc
        assert (await pos.post(f"/v1/receipts/{rid}/cancel", json={})).status == 200
        return 0
    resp = await pos.post(
        f"/v1/receipts/{rid}/confirm",
        json={
            "payments": [{"method": "cash", "amount_minor": calc["total_minor"] - amount}],
            "bonus_to_spend": amount,
        },
    )
    assert resp.status == 200, await resp.text()
    return amount


async def test_two_stores_with_the_center_down_spend_at_most_balance_plus_ceiling(
    tmp_path: Path, storage: Storage
) -> None:
    async with running_chain(tmp_path, storage) as chain:
        now = datetime.now(UTC)
        storage.master.set_settings(
            {"offline_overdraft_ceiling_minor": CEILING, "offline_lease_per_store_minor": 600},
            actor="ann",
            now=now,
        )
        accrual = make_sale(1, register_id="999-1", store_id="999", card_no=CARD, accrue=1024)
        storage.sales.ingest([accrual], now)
        # The card is identified at each store while the Center is up: each gets a lease.
        for store_id, pos in chain.pos.items():
            rid = (await (await pos.post("/v1/receipts", json={})).json())["receipt_id"]
            assert (
                await pos.post(f"/v1/receipts/{rid}/card", json={"card_no": CARD})
            ).status == 200

            async def leased(store_id: str = store_id) -> bool:
                view = storage.leases.of_card(CARD, datetime.now(UTC))
                return any(x["store_id"] == store_id for x in view["leases"])

            await _until(leased, f"a lease for store {store_id}")
        view = storage.leases.of_card(CARD, datetime.now(UTC))
        assert {x["store_id"]: x["amount"] for x in view["leases"]} == {"367": 600, "406": 524}

        await chain.stop_center()
        spent = dict.fromkeys(chain.pos, 0)
        for store_id, pos in chain.pos.items():
            assert await _spend(pos, 1024) == 0  # the whole balance: refused at either store
            while True:
                got = await _spend(pos, 100)
                if not got:
                    break
                spent[store_id] += got
        assert spent == {"367": 600, "406": 500}
        assert sum(spent.values()) <= 1024 + CEILING

        await chain.start_center()

        async def synced() -> bool:
            seqs = [
                (await (await pos.get("/health")).json())["last_seq"] for pos in chain.pos.values()
            ]
            return storage.counts().sales == sum(seqs) + 1  # + the accrual booked above

        await _until(synced, "every sale at the Center")
        balance = storage.ledger.balance(CARD, datetime.now(UTC))
        assert balance is not None
        history = storage.ledger.history(CARD, limit=1000) or []
        booked = sum(abs(e.amount) for e in history if e.kind == "spend" and e.wallet == "bonus")
        assert booked == 1100  # every spend reached the Center, once
        # The sales' own accruals came after the spends; the debt never went past the ceiling.
        assert balance.debt.get("bonus", 0) <= CEILING
        # Settled: each store's spends came off its lease, once.
        view = storage.leases.of_card(CARD, datetime.now(UTC))
        assert {x["store_id"]: x["amount"] for x in view["leases"]} == {"367": 0, "406": 24}, view
        # A third store is lent only what the balance (with the sales' accruals) leaves.
        third = storage.leases.grant(LeaseRequest("999", CARD, "bonus", 0, 1), datetime.now(UTC))
        assert third["amount"] == min(600, balance.wallets["bonus"] + CEILING - 24)
