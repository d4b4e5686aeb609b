"""The member's own data over HTTP on both backends: balances with pending and burning,
history linked to receipts, the e-receipt's discount explanation, offers, categories, the
e-card's QR, 152-FZ export and deletion; and the security sweep: a member token tries every
member route with another customer's ids and never sees them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.config import Config, load_config
from center.members.api import ROUTES
from center.promotions.coupons import BatchRequest, IssueRequest
from center.promotions.offers import OfferInput
from center.storage import Storage
from center.web.app import create_app
from loyalty_engine import default_promotions
from sync_protocol import ECARD_KEY_SETTING, InvalidEcardPayload, check_ecard_payload
from tests.center.center_factories import T0, make_sale, master_tables, write_config
from tests.center.member_factories import Clock, MemberApi, sign_up
from tests.center.staff import StaffApi, staff_token


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, signatures=False))


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def client(
    config: Config, storage: Storage, clock: Clock
) -> AsyncIterator[TestClient[Any, Any]]:
    storage.feed.upsert_master(master_tables())
    async with TestClient(TestServer(create_app(config, storage, clock=clock))) as client:
        yield client


async def _member_with_data(
    client: TestClient[Any, Any], storage: Storage, email: str, seq: int
) -> tuple[MemberApi, dict[str, Any]]:
    """A signed-up member whose card has a sale (discount, accrual pending then burning),
    an offer and a notification; (api, ids)."""
    tokens = await sign_up(client, storage, {"email": email})
    member = MemberApi(client, tokens["access_token"])
    _, cards = await member.call("GET", "/v1/member/cards")
    card_no = cards["cards"][0]["card_no"]
    sale = make_sale(
        seq,
        card_no=card_no,
        discount=25,
        accrue=40,
        active_from=T0 + timedelta(days=1),
        expires_at=T0 + timedelta(days=20),
    )
    storage.sales.ingest([sale], T0)
    customer_id = tokens["customer_id"]
    storage.offers.set_personal_offers(
        customer_id,
        [OfferInput(f"offer-{seq}", "1000", Decimal("15"), valid_to=T0 + timedelta(days=7))],
        "marketer",
        T0,
    )
    notification = storage.members.notify(customer_id, "Привет", "Добро пожаловать", T0)
    return member, {
        "customer_id": customer_id,
        "card_no": card_no,
        "sale_id": sale.sale_id,
        "offer_id": f"offer-{seq}",
        "notification_id": notification,
        "refresh_token": tokens["refresh_token"],
    }


async def test_balances_history_receipt_offers_and_categories(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    title = "5 % off from 50.00, 10 % off from 100.00"
    storage.feed.upsert_master(
        {"promotions": [{"promotion_id": "threshold-5-10", "doc": {"title": title}}]}
    )
    member, ids = await _member_with_data(client, storage, "anna@example.org", 1)
    status, balances = await member.call("GET", "/v1/member/balances")
    assert status == 200
    assert balances["wallets"] == [{"wallet": "bonus", "balance": 0}]
    assert [p["amount"] for p in balances["pending"]] == [40]
    clock.advance(days=2)  # the access token expired meanwhile: the refresh token renews it
    status, renewed = await MemberApi(client).call(
        "POST", "/v1/member/auth/refresh", {"refresh_token": ids["refresh_token"]}
    )
    assert status == 200, renewed
    member = MemberApi(client, renewed["access_token"])
    status, balances = await member.call("GET", "/v1/member/balances")
    assert balances["wallets"] == [{"wallet": "bonus", "balance": 40}]
    assert balances["burning"][0]["amount"] == 40  # expires within the burning window
    status, history = await member.call("GET", "/v1/member/history")
    (accrual,) = history["history"]
    assert accrual["kind"] == "accrue" and accrual["sale_id"] == ids["sale_id"]
    status, receipt = await member.call("GET", f"/v1/member/receipts/{ids['sale_id']}")
    assert status == 200
    first = receipt["lines"][0]
    assert first["name"] == "Milk" and first["discount_minor"] == 25
    assert first["total_minor"] == 225
    assert first["discounts"] == [
        {"rule_id": "threshold-5-10", "promotion": title, "amount_minor": 25}
    ]
    status, page = await member.call("GET", "/v1/member/receipts")
    assert [r["sale_id"] for r in page["receipts"]] == [ids["sale_id"]]
    status, offers = await member.call("GET", "/v1/member/offers")
    (offer,) = offers["offers"]
    assert offer["product_name"] == "Milk" and not offer["activated"]
    status, _ = await member.call("POST", f"/v1/member/offers/{ids['offer_id']}/activate")
    assert status == 200
    status, offers = await member.call("GET", "/v1/member/offers")
    assert offers["offers"][0]["activated"]
    status, categories = await member.call("GET", "/v1/member/categories")
    assert categories["categories"] == ["DAIRY", "PASTRY"] and categories["changes_left"] == 3
    status, bad = await member.call("PUT", "/v1/member/categories", {"categories": ["Toys"]})
    assert status == 422 and bad["detail"].startswith("body.categories[0]:")
    for _ in range(3):
        status, chosen = await member.call(
            "PUT", "/v1/member/categories", {"categories": ["dairy"]}
        )
        assert status == 200 and chosen["chosen"] == ["DAIRY"]
    status, limited = await member.call("PUT", "/v1/member/categories", {"categories": []})
    assert status == 409 and "at most 3 times in 30 days" in limited["detail"]
    attributes = storage.customers.customer_view(ids["customer_id"], clock())
    assert attributes is not None and attributes["attributes"]["favourite_categories"] == ["DAIRY"]
    status, stores = await member.call(
        "GET", "/v1/member/stores", query={"lat": "55.7", "lon": "37.6"}
    )
    assert status == 200 and len(stores["stores"]) == 2
    assert stores["nearest"] is None and "no coordinates" in stores["note"]
    status, push = await member.call(
        "PUT",
        "/v1/member/push",
        {
            "webpush": {
                "endpoint": "https://push.example/abc",
                "keys": {"p256dh": "B" * 40, "auth": "A" * 16},
            }
        },
    )
    assert status == 200 and push["push"] == {"webpush": True, "fcm_token": False}, push
    contacts = storage.communications.contacts([ids["customer_id"]])[ids["customer_id"]]
    assert json.loads(contacts["webpush"])["endpoint"] == "https://push.example/abc"
    status, bad = await member.call("PUT", "/v1/member/push", {"webpush": {"endpoint": "x"}})
    assert status == 400 and bad["detail"].startswith("body.webpush:")
    status, push = await member.call("DELETE", "/v1/member/push")
    assert push["push"] == {"webpush": False, "fcm_token": False}
    status, inbox = await member.call("GET", "/v1/member/notifications")
    assert inbox["notifications"][0]["title"] == "Привет"
    # Coupons: one live, one of a batch that ended, one redeemed at a register.
    for name, valid_to in (("live", None), ("ended", T0.date() - timedelta(days=1))):
        batch = storage.coupons.create_coupon_batch(
            BatchRequest("base-accrual-3", name, name.upper(), 1, True, None, valid_to), "ann", T0
        )
        storage.coupons.issue_coupons(
            batch["batch_id"], IssueRequest(customer_ids=(ids["customer_id"],)), "ann", T0
        )
    status, coupons = await member.call("GET", "/v1/member/coupons")
    assert status == 200
    assert [c["name"] for c in coupons["active"]] == ["live"]
    assert [c["name"] for c in coupons["expired"]] == ["ended"] and coupons["used"] == []
    code = coupons["active"][0]["code"]
    storage.db.execute("UPDATE coupons SET status = 'redeemed' WHERE code = ?", (code,))
    status, coupons = await member.call("GET", "/v1/member/coupons")
    assert [c["code"] for c in coupons["used"]] == [code] and coupons["active"] == []
    status, tier = await member.call("GET", "/v1/member/tier")
    assert status == 200 and tier == {"tier": None, "programme": False}
    storage.tiers.set_programme(
        {
            "period_days": 365,
            "grace_days": 0,
            "levels": [
                {"code": "base", "title": {"ru": "База", "en": "Base"}, "rank": 1},
                {"code": "gold", "title": {"ru": "Золото", "en": "Gold"}, "rank": 2,
                 "spend_minor": 100_000},
            ],
        },
        actor="marketer",
        now=clock(),
    )  # fmt: skip
    status, tier = await member.call("GET", "/v1/member/tier")
    assert status == 200 and tier["programme"], tier
    assert tier["tier"]["tier"] == "base" and tier["tier"]["next"]["tier"] == "gold"
    assert tier["tier"]["next"]["spend_minor_needed"] == 100_000 - tier["tier"]["spend_minor"]


async def test_the_qr_rotates_and_is_checked_with_the_fed_key(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    member, ids = await _member_with_data(client, storage, "qr@example.org", 2)
    status, qr = await member.call("GET", f"/v1/member/cards/{ids['card_no']}/qr")
    assert status == 200 and qr["qr"].startswith(f"LQR1.{ids['card_no']}.")
    # The key the registers check with is a chain setting, so it travels down the master feed.
    key = storage.db.execute(
        "SELECT value FROM settings WHERE name = ?", (ECARD_KEY_SETTING,)
    ).fetchone()[0]
    assert check_ecard_payload(qr["qr"], key, clock().timestamp()) == ids["card_no"]
    assert check_ecard_payload(qr["qr"], key, clock().timestamp() + 30) == ids["card_no"]
    with pytest.raises(InvalidEcardPayload, match="expired"):
        check_ecard_payload(qr["qr"], key, clock().timestamp() + 95)
    clock.advance(seconds=30)
    status, later = await member.call("GET", f"/v1/member/cards/{ids['card_no']}/qr")
    assert later["qr"] != qr["qr"]
    assert storage.master.settings()["settings"][ECARD_KEY_SETTING] == "(set)"
    # A component's setting: the constructor's exact check of the chain settings still passes.
    marketer = StaffApi(client, staff_token(storage, "marketer"))
    doc = {**default_promotions()[0], "promotion_id": "after-ecard", "status": "draft"}
    status, made = await marketer.call("POST", "/v1/promotions/validate", doc)
    assert status == 200 and made["valid"] and made["problems"] == [], made


async def test_export_then_delete_anonymises_and_keeps_the_ledger(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    member, ids = await _member_with_data(client, storage, "erase@example.org", 3)
    status, export = await member.call("POST", "/v1/member/data/export")
    assert status == 200
    assert export["attributes"]["email"] == "erase@example.org"
    assert [c["card_no"] for c in export["cards"]] == [ids["card_no"]]
    assert export["receipts"][0]["sale_id"] == ids["sale_id"]
    assert export["ledger"][0]["amount"] == 40
    assert {"sign_up", "export_data"} <= {h["action"] for h in export["history_of_changes"]}
    status, refused = await member.call("POST", "/v1/member/data/delete", {})
    assert status == 400 and refused["detail"].startswith("body.confirm:")
    status, done = await member.call("POST", "/v1/member/data/delete", {"confirm": True})
    assert status == 200 and done["anonymised"]
    text = json.dumps(storage.customers.customer_view(ids["customer_id"], clock()))
    assert "erase@example.org" not in text
    assert (
        storage.db.execute(
            "SELECT COUNT(*) FROM comm_messages WHERE address LIKE ? OR customer_id LIKE ?",
            ("%erase%", "%erase%"),
        ).fetchone()[0]
        == 0
    )
    amounts = storage.db.execute(
        "SELECT amount FROM ledger WHERE card_no = ?", (ids["card_no"],)
    ).fetchall()
    assert [int(a[0]) for a in amounts] == [40]
    status, _ = await member.call("GET", "/v1/member/profile")
    assert status == 401
    actions = [r["action"] for r in storage.audit.audit_history("member", ids["customer_id"])]
    assert "export_data" in actions and actions[-1] == "delete_data"


def _fill(path: str, ids: dict[str, Any]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: str(ids[m.group(1)]), path)


BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/v1/member/profile"): {"profile": {"first_name": "Eve"}},
    ("PUT", "/v1/member/consents"): {
        "consents": [{"channel": "email", "purpose": "advertising", "granted": True}]
    },
    ("PUT", "/v1/member/categories"): {"categories": ["DAIRY"]},
    ("POST", "/v1/member/auth/signout"): {"everywhere": False},
    ("POST", "/v1/member/data/delete"): {"confirm": True},
    ("PUT", "/v1/member/push"): {"fcm_token": "fcm-token-of-eves-phone-0123456789"},
}


async def test_a_member_token_never_reaches_another_customer(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    eve, eve_ids = await _member_with_data(client, storage, "eve@example.org", 4)
    eve_id = eve_ids["customer_id"]
    _, victim = await _member_with_data(client, storage, "victim@example.org", 5)
    secrets_of_victim = [victim["customer_id"], victim["card_no"], victim["sale_id"]]
    tried = 0
    # The destructive routes go last, so every other route is tried with a live token.
    last = {("POST", "/v1/member/data/delete"), ("POST", "/v1/member/auth/signout")}
    routes = sorted(
        (r for r in ROUTES if not r.public), key=lambda r: ((r.method, r.path) in last, r.path)
    )
    for route in routes:
        path = _fill(route.path, victim)
        status, body = await eve.call(route.method, path, BODIES.get((route.method, route.path)))
        tried += 1
        if "{" in route.path:
            assert status in (403, 404), (route.method, route.path, status, body)
            continue
        assert status < 500, (route.method, route.path, body)
        text = json.dumps(body)
        for secret in secrets_of_victim:
            assert secret not in text, (route.method, route.path, secret)
    assert tried == sum(1 for r in ROUTES if not r.public)
    # Nothing of the victim changed, and Eve's every action is audited.
    victim_view = storage.customers.customer_view(victim["customer_id"], T0)
    assert victim_view is not None and victim_view["attributes"]["email"] == "victim@example.org"
    actions = {r["action"] for r in storage.audit.audit_history("member", victim["customer_id"])}
    assert actions == {"sign_up", "read_cards"}
    eve_rows = storage.audit.audit_history("member", eve_id, limit=1000)
    refused = [r["after"] for r in eve_rows if r["action"] == "refused"]
    named = [r for r in ROUTES if not r.public and "{" in r.path]
    assert len(refused) == len(named), [(r["method"], r["path"], r["error"]) for r in refused]
    assert all(r["status"] in (403, 404) and r["path"].startswith("/v1/member/") for r in refused)
