"""Every sale verified at ingest, on both backends, over HTTP: the Center books its own result,
doubted sales wait in the review queue, misdated ones are quarantined; approve and reject book
what they say, audited (issue 13, item 1)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import load_config
from center.promotions.recompute import ProductInfo, reprice_sale
from center.storage import Storage
from center.web.app import create_app
from loyalty_engine import CustomerState, load_promotion_set
from sync_protocol import (
    CONTENT_TYPE,
    Ack,
    CardState,
    LoyaltyMovement,
    Payment,
    Sale,
    SaleBatch,
    SeenSeq,
    decode,
    encode,
    fold_sales,
    state_view,
)
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config
from tests.center.staff import StaffApi, staff_token

NOW = T0 + timedelta(days=2)
PROMOTIONS: list[dict[str, Any]] = [
    {
        "promotion_id": "base",
        "kind": "accrual_percent",
        "status": "active",
        "requires_card": True,
        "percent": "3",
    },
    {
        "promotion_id": "welcome",
        "kind": "counter_reward",
        "status": "active",
        "counter": "purchases",
        "at": 1,
        "points": 500,
    },
]


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW + timedelta(minutes=10))


@pytest.fixture
async def client(
    tmp_path: Path, storage: Storage, clock: Clock
) -> AsyncIterator[TestClient[Any, Any]]:
    tables = master_tables()
    tables["promotions"] = [{"promotion_id": d["promotion_id"], "doc": d} for d in PROMOTIONS]
    tables["settings"] = [{"name": "bonus_max_share", "value": "0.5"}]
    storage.feed.upsert_master(tables)
    config = load_config(write_config(tmp_path, verify=True))
    app = create_app(config, storage, clock=clock)
    async with TestClient(TestServer(app)) as client:
        yield client


def _version(storage: Storage) -> int:
    return storage.versions.current()


def honest(storage: Storage, sale: Sale, before: Sequence[Sale], *, spend: int = 0) -> Sale:
    """`sale` with the loyalty a register gives it, having folded `before` (as pos_agent does),
    and the basis naming them."""
    version = _version(storage)
    promotions = load_promotion_set(PROMOTIONS, version=version, settings={})
    state = fold_sales(CardState(), before, UTC)
    view = state_view(state, sale.closed_at.date())
    customer = CustomerState(counters=dict(view.counters), fired_total=dict(view.fired_total))
    payments: tuple[Payment, ...] = sale.payments
    if spend:
        payments = (Payment("bonus", spend), Payment("cash", sale.total_minor - spend))
    base = dataclasses.replace(
        sale,
        promo_version=version,
        payments=payments,
        loyalty=(LoyaltyMovement("bonus", "spend", spend),) if spend else (),
    )
    products = {"1000": ProductInfo(department="DAIRY"), "1001": ProductInfo("PASTRY")}
    calc = reprice_sale(base, promotions, products=products, customer=customer)
    accruals = tuple(
        LoyaltyMovement(a.wallet, "accrue", a.amount, a.rule_id, a.active_from, a.expires_at)
        for a in calc.accruals
        if a.amount > 0
    )
    return dataclasses.replace(
        base,
        loyalty=accruals + base.loyalty,
        state_seen=tuple(SeenSeq(r, s) for r, s in sorted(state.seen.items())),
    )


def at(sale: Sale, when: datetime) -> Sale:
    return dataclasses.replace(sale, opened_at=when - timedelta(minutes=1), closed_at=when)


async def ingest(client: TestClient[Any, Any], sales: list[Sale]) -> Ack:
    body = encode(SaleBatch(sales=tuple(sales)), sender="store-367")
    response = await client.post("/v1/ingest", data=body, headers={"Content-Type": CONTENT_TYPE})
    assert response.status == 200, await response.text()
    ack = decode(await response.read()).message
    assert isinstance(ack, Ack)
    return ack


def bonus(storage: Storage) -> int:
    balance = storage.ledger.balance(CARD, NOW + timedelta(days=1))
    assert balance is not None
    return balance.wallets.get("bonus", 0)


async def cases(storage: Storage, client: TestClient[Any, Any], **query: str) -> list[Any]:
    api = StaffApi(client, staff_token(storage, "loyalty_manager"))
    status, body = await api.call("GET", "/v1/review/cases", query=query or None)
    assert status == 200, body
    return list(body["cases"])


def amounts(moves: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return sorted((m["kind"], m["rule_id"], m["amount"]) for m in moves)


async def test_honest_sales_verify_clean_and_a_forged_accrual_is_cut_and_queued(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    first = honest(storage, at(make_sale(1, card_no=CARD, amounts=(10_000,)), NOW), [])
    second = honest(
        storage, at(make_sale(2, card_no=CARD, amounts=(5_000,)), NOW + timedelta(minutes=1)),
        [first],
    )  # fmt: skip
    assert {m.rule_id for m in first.loyalty} == {"base", "welcome"}
    assert {m.rule_id for m in second.loyalty} == {"base"}
    ack = await ingest(client, [first, second])
    assert set(ack.accepted) == {first.sale_id, second.sale_id}
    assert await cases(storage, client) == []
    clean = bonus(storage)
    assert clean == 500 + 300 + 150

    # The probe's forgery: a 2.99 sale claiming 1,000,000 points.
    forged = honest(
        storage, at(make_sale(3, card_no=CARD, amounts=(299,)), NOW + timedelta(minutes=2)),
        [first, second],
    )  # fmt: skip
    verified_accrual = sum(m.amount for m in forged.loyalty)
    forged = dataclasses.replace(
        forged, loyalty=(LoyaltyMovement("bonus", "accrue", 1_000_000, "base"),)
    )
    ack = await ingest(client, [forged])
    assert ack.accepted == (forged.sale_id,)  # acknowledged: the store node stops sending it
    assert bonus(storage) == clean + verified_accrual  # never spendable
    [case] = await cases(storage, client, state="open")
    assert case["sale_id"] == forged.sale_id
    assert (case["store_id"], case["register_id"], case["cashier"]) == ("367", "367-1", "367-1")
    assert amounts(case["claimed"]) == [("accrue", "base", 1_000_000)]
    assert amounts(case["verified"]) == [("accrue", "base", verified_accrual)]
    assert case["difference"] == {"bonus": 1_000_000 - verified_accrual}
    assert "loyalty: claimed" in case["reason"]
    # The Center's customer state counts the verified booking, the forged sale once.
    assert await cases(storage, client, store_id="406") == []


async def test_a_welcome_claimed_twice_by_a_register_hiding_its_earlier_sale_is_cut(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    first = honest(storage, at(make_sale(1, card_no=CARD, amounts=(1_000,)), NOW), [])
    await ingest(client, [first])
    after_first = bonus(storage)
    # The register prices its second sale as if the first had never been: welcome again.
    again = honest(
        storage, at(make_sale(2, card_no=CARD, amounts=(1_000,)), NOW + timedelta(minutes=5)),
        [],
    )  # fmt: skip
    assert {m.rule_id for m in again.loyalty} == {"base", "welcome"}
    assert again.state_seen == ()
    await ingest(client, [again])
    assert bonus(storage) == after_first + 30  # the base accrual only
    [case] = await cases(storage, client)
    assert case["sale_id"] == again.sale_id
    assert "state_seen: leaves out" in case["reason"] and "367-1#1" in case["reason"]
    assert case["difference"] == {"bonus": 500}

    # Another store's register, an hour later, with a basis that leaves both out.
    clock.at = NOW + timedelta(hours=1, minutes=1)
    other = honest(
        storage,
        dataclasses.replace(
            at(make_sale(1, card_no=CARD, amounts=(1_000,)), NOW + timedelta(hours=1)),
            store_id="406",
            register_id="406-1",
        ),
        [],
    )
    await ingest(client, [other])
    found = {c["sale_id"]: c for c in await cases(storage, client)}
    assert "welcome" not in str(found[other.sale_id]["verified"])
    assert found[other.sale_id]["difference"] == {"bonus": 500}, found[other.sale_id]
    assert await cases(storage, client, store_id="406") == [found[other.sale_id]]


async def test_a_spend_beyond_the_balance_without_a_hold_is_a_case(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    storage.returns.adjust(
        CARD, "bonus", 1_000, "opening balance", "test", NOW, idempotency_key="open-1"
    )
    sale = honest(storage, at(make_sale(1, card_no=CARD, amounts=(10_000,)), NOW), [], spend=4_000)
    await ingest(client, [sale])
    [case] = await cases(storage, client)
    assert "spend: 4000 bonus exceeds the 1000 the card held at the Center" in case["reason"]
    assert ("spend", "", -4_000) in amounts(case["verified"])  # what was tendered stays spent
    assert bonus(storage) < 0 or storage.returns.overdrafts()  # the overdraft is a debt


async def test_backdated_and_future_sales_are_quarantined_acknowledged_and_reconciled(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    first = honest(storage, at(make_sale(1, card_no=CARD, amounts=(1_000,)), NOW), [])
    old = dataclasses.replace(
        at(make_sale(2, card_no=CARD), datetime(2020, 1, 1, 12, tzinfo=UTC)),
        loyalty=(LoyaltyMovement("bonus", "accrue", 50_000, "base"),),
    )
    future = dataclasses.replace(
        at(make_sale(3, card_no=CARD), datetime(2099, 1, 1, 12, tzinfo=UTC)),
        loyalty=(LoyaltyMovement("bonus", "accrue", 50_000, "base"),),
    )
    ack = await ingest(client, [first, old, future])
    assert set(ack.accepted) == {first.sale_id, old.sale_id, future.sale_id}
    assert ack.rejected == ()
    assert bonus(storage) == sum(m.amount for m in first.loyalty)
    found = {c["sale_id"]: c for c in await cases(storage, client)}
    assert set(found) == {old.sale_id, future.sale_id}
    assert {c["kind"] for c in found.values()} == {"quarantine"}
    assert "more than 400 days before" in found[old.sale_id]["reason"]
    assert "later than the Center's now" in found[future.sale_id]["reason"]
    assert found[old.sale_id]["verified"] == []
    # Kept and counted: no false gap in the reconciliation.
    [summary] = storage.sales.reconciliation("367", "367-1")
    assert (summary.receipts, summary.min_seq, summary.max_seq) == (3, 1, 3)
    assert summary.gaps == ()
    # Not counted in the customer state either.
    derived = storage.states.derive([(CARD, "hh-1")], NOW)
    assert derived[CARD].state.purchases == 1

    # With an enrolled store node, a sale dated before its enrolment is quarantined too.
    storage.db.execute(
        "INSERT INTO nodes (node_id, store_id, secret, enrolled_at) VALUES (?, ?, ?, ?)",
        ("store-406", "406", "x", storage.db.ts(NOW - timedelta(days=1))),
    )
    early = dataclasses.replace(
        at(make_sale(1, card_no=CARD), NOW - timedelta(days=3)),
        store_id="406",
        register_id="406-1",
    )
    await ingest(client, [early])
    found = {c["sale_id"]: c for c in await cases(storage, client, store_id="406")}
    assert "before store 406's enrolment" in found[early.sale_id]["reason"]


async def test_approve_books_the_claim_and_reject_keeps_the_verified_result_audited(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    first = honest(storage, at(make_sale(1, card_no=CARD, amounts=(1_000,)), NOW), [])
    forged = dataclasses.replace(
        honest(
            storage,
            at(make_sale(2, card_no=CARD, amounts=(1_000,)), NOW + timedelta(minutes=1)),
            [first],
        ),
        loyalty=(LoyaltyMovement("bonus", "accrue", 2_000, "base"),),
    )
    kept = dataclasses.replace(
        honest(
            storage,
            at(make_sale(3, card_no=CARD, amounts=(1_000,)), NOW + timedelta(minutes=2)),
            [first, forged],
        ),
        loyalty=(LoyaltyMovement("bonus", "accrue", 7_000, "base"),),
    )
    await ingest(client, [first, forged, kept])
    before = bonus(storage)
    found = {c["sale_id"]: c for c in await cases(storage, client)}
    manager = StaffApi(client, staff_token(storage, "loyalty_manager", username="anna"))
    marketer = StaffApi(client, staff_token(storage, "marketer"))
    approve_id = found[forged.sale_id]["case_id"]
    reject_id = found[kept.sale_id]["case_id"]

    status, _ = await marketer.call("POST", f"/v1/review/cases/{approve_id}/approve", {})
    assert status == 403
    status, body = await manager.call(
        "POST", f"/v1/review/cases/{approve_id}/approve", {"note": "till was right"}
    )
    assert status == 200, body
    assert body["state"] == "approved" and body["reviewed_by"] == "anna"
    assert body["booked"] == {"bonus": 2_000 - 30}
    assert bonus(storage) == before + 2_000 - 30
    status, body = await manager.call("POST", f"/v1/review/cases/{reject_id}/reject")
    assert status == 200, body
    assert body["state"] == "rejected" and body["booked"] == {}
    assert bonus(storage) == before + 2_000 - 30
    # Deciding again the same way changes nothing; the other way is a conflict.
    status, body = await manager.call("POST", f"/v1/review/cases/{approve_id}/approve")
    assert status == 200 and body["replayed"] is True
    assert bonus(storage) == before + 2_000 - 30
    status, body = await manager.call("POST", f"/v1/review/cases/{approve_id}/reject")
    assert status == 409, body
    audit = storage.db.execute(
        "SELECT object_id, action, actor FROM audit WHERE kind = 'review_case' ORDER BY object_id"
    ).fetchall()
    assert sorted((str(r[0]), r[1], r[2]) for r in audit) == sorted(
        [(str(approve_id), "approve", "anna"), (str(reject_id), "reject", "anna")]
    )
    # Bad input: 4xx naming the field.
    status, body = await manager.call("GET", "/v1/review/cases", query={"state": "maybe"})
    assert status == 422 and "state" in str(body)
    status, body = await manager.call("GET", "/v1/review/cases/x1")
    assert status == 400 and "case_id" in str(body)
    status, body = await manager.call("GET", "/v1/review/cases/999999")
    assert status == 404
    status, body = await manager.call("POST", f"/v1/review/cases/{reject_id}/reject", {"why": 1})
    assert status == 400 and "body.why" in str(body)


def _checkpoint(storage: Storage) -> int | None:
    """How many sales the card's verification checkpoint folds (None: it has none)."""
    db = storage.db  # type: ignore[attr-defined]
    row = db.execute("SELECT folded FROM verify_checkpoints WHERE card_no = ?", (CARD,)).fetchone()
    return None if row is None else int(row[0])


async def test_a_checkpoint_serves_a_long_history_a_late_sale_repairs_it_forgery_is_cut(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    # A register's sales 1..11 of one card, each naming every earlier one; the store node sends
    # seq 7 only after 10 (it lost and re-sent it).
    made: list[Sale] = []
    for seq in range(1, 12):
        when = NOW + timedelta(minutes=seq)
        made.append(honest(storage, at(make_sale(seq, card_no=CARD), when), list(made)))
    folded = []
    for seq in (1, 2, 3, 4, 5, 6, 8, 9, 10, 7, 11):
        ack = await ingest(client, [made[seq - 1]])
        assert ack.accepted == (made[seq - 1].sale_id,)
        folded.append(_checkpoint(storage))
    assert await cases(storage, client) == []  # every state rebuilt right: welcome only once
    # Each sale's checkpoint folds what it named (8 names 1-7, but 7 is not held: 1-6, 8 at 9);
    # the late 7 is under it, so its count no longer matches: 7 is verified from the whole
    # history and the checkpoint rebuilt from what 7 named (1-6); 11 folds 7-10 into it.
    assert folded == [None, 1, 2, 3, 4, 5, 6, 7, 8, 6, 10]

    # A forged welcome on top of the checkpoint: the state it rebuilds has 11 purchases.
    forged = honest(storage, at(make_sale(12, card_no=CARD), NOW + timedelta(minutes=12)), made)
    forged = dataclasses.replace(
        forged, loyalty=(*forged.loyalty, LoyaltyMovement("bonus", "accrue", 500, "welcome"))
    )
    before = bonus(storage)
    await ingest(client, [forged])
    [case] = await cases(storage, client)
    assert case["sale_id"] == forged.sale_id
    assert case["difference"] == {"bonus": 500}
    assert bonus(storage) == before + sum(m.amount for m in forged.loyalty) - 500
