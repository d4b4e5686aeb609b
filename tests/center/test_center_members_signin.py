"""Member sign-in over HTTP on both backends: codes through the outbox, sign-up on the first
code, rotating refresh tokens, sign-out everywhere, rate limits, and who may call what."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from center.communications.channels import SmsChannel
from center.communications.sender import send_due
from center.config import Config, load_config
from center.storage import Storage
from center.web.app import create_app
from demo.message_sinks import SmppSink
from tests.center.center_factories import T0, master_tables, write_config
from tests.center.member_factories import Clock, MemberApi, code_in_outbox, sign_up
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


async def test_sign_up_then_sign_in_by_the_same_address(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    anonymous = MemberApi(client)
    status, challenge = await anonymous.call(
        "POST", "/v1/member/auth/code", {"email": "Anna@Example.org"}
    )
    assert status == 202 and challenge["channel"] == "email"
    code = code_in_outbox(storage, challenge["challenge_id"])
    # The code sits in the outbox as a transactional e-mail; only its keyed hash is kept.
    row = storage.db.execute(
        "SELECT code_hash FROM member_challenges WHERE challenge_id = ?",
        (challenge["challenge_id"],),
    ).fetchone()
    assert code not in row[0]
    # Signing up without consent to personal data processing writes nothing.
    status, refused = await anonymous.call(
        "POST",
        "/v1/member/auth/verify",
        {"challenge_id": challenge["challenge_id"], "code": code},
    )
    assert status == 422 and refused["detail"].startswith("body.consents.personal_data:"), refused
    assert storage.db.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == 2
    status, tokens = await anonymous.call(
        "POST",
        "/v1/member/auth/verify",
        {
            "challenge_id": challenge["challenge_id"],
            "code": code,
            "consents": {"personal_data": True, "advertising": True},
            "profile": {"first_name": "Анна"},
        },
    )
    assert status == 201 and tokens["created"], tokens
    customer_id = tokens["customer_id"]
    member = MemberApi(client, tokens["access_token"])
    status, cards = await member.call("GET", "/v1/member/cards")
    assert status == 200
    (card,) = cards["cards"]
    assert card["type"] == "electronic" and card["status"] == "active"
    status, profile = await member.call("GET", "/v1/member/profile")
    assert profile["profile"]["email"] == "anna@example.org"
    assert profile["profile"]["first_name"] == "Анна"
    consents = storage.communications.current_consents([customer_id])[customer_id]
    assert consents == {("email", "personal_data"): True, ("email", "advertising"): True}
    # The same code twice is refused; a new code signs the same customer in.
    status, again = await anonymous.call(
        "POST", "/v1/member/auth/verify", {"challenge_id": challenge["challenge_id"], "code": code}
    )
    assert status == 401 and "already used" in again["detail"]
    clock.advance(seconds=31)
    status, second = await anonymous.call(
        "POST", "/v1/member/auth/code", {"email": "anna@example.org"}
    )
    assert status == 202
    status, tokens2 = await anonymous.call(
        "POST",
        "/v1/member/auth/verify",
        {
            "challenge_id": second["challenge_id"],
            "code": code_in_outbox(storage, second["challenge_id"]),
        },
    )
    assert status == 200 and not tokens2["created"] and tokens2["customer_id"] == customer_id
    actions = [r["action"] for r in storage.audit.audit_history("member", customer_id)]
    assert actions[:2] == ["sign_up", "read_cards"] and "sign_in" in actions


async def test_the_answer_is_the_same_whether_or_not_the_customer_exists(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    storage.customers.create_customer(
        __import__("center.crm.model", fromlist=["CustomerInput"]).CustomerInput(
            "known-1", {"phone": "8 (999) 123-45-67"}
        ),
        "test",
        T0,
    )
    anonymous = MemberApi(client)
    status, known = await anonymous.call("POST", "/v1/member/auth/code", {"phone": "+79991234567"})
    status2, unknown = await anonymous.call(
        "POST", "/v1/member/auth/code", {"phone": "+79990000001"}
    )
    assert status == status2 == 202
    assert set(known) == set(unknown)
    assert {k: v for k, v in known.items() if k != "challenge_id"} == {
        k: v for k, v in unknown.items() if k != "challenge_id"
    }
    # The known customer (phone typed the Russian way) signs in as itself, without consents.
    status, tokens = await anonymous.call(
        "POST",
        "/v1/member/auth/verify",
        {
            "challenge_id": known["challenge_id"],
            "code": code_in_outbox(storage, known["challenge_id"]),
        },
    )
    assert status == 200 and tokens["customer_id"] == "known-1", tokens


async def test_refresh_rotates_and_a_reused_refresh_token_signs_the_family_out(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    tokens = await sign_up(client, storage, {"email": "boris@example.org"})
    anonymous = MemberApi(client)
    status, rotated = await anonymous.call(
        "POST", "/v1/member/auth/refresh", {"refresh_token": tokens["refresh_token"]}
    )
    assert status == 200 and rotated["refresh_token"] != tokens["refresh_token"]
    # The old one again: a stolen copy. The family (both pairs) is signed out.
    status, reused = await anonymous.call(
        "POST", "/v1/member/auth/refresh", {"refresh_token": tokens["refresh_token"]}
    )
    assert status == 401 and "already used" in reused["detail"], reused
    status, dead = await anonymous.call(
        "POST", "/v1/member/auth/refresh", {"refresh_token": rotated["refresh_token"]}
    )
    assert status == 401 and "signed out" in dead["detail"]
    status, gone = await MemberApi(client, rotated["access_token"]).call(
        "GET", "/v1/member/balances"
    )
    assert status == 401 and "signed out" in gone["detail"]
    # An access token expires after its TTL.
    fresh = await _sign_in_again(client, storage, clock, {"email": "boris@example.org"})
    member = MemberApi(client, fresh["access_token"])
    assert (await member.call("GET", "/v1/member/balances"))[0] == 200
    clock.advance(minutes=16)
    status, expired = await member.call("GET", "/v1/member/balances")
    assert status == 401 and "expired" in expired["detail"]


async def _sign_in_again(
    client: TestClient[Any, Any], storage: Storage, clock: Clock, address: dict[str, str]
) -> dict[str, Any]:
    clock.advance(seconds=31)
    return await sign_up(client, storage, address)


async def test_sign_out_everywhere_ends_every_session(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    phone = await sign_up(client, storage, {"email": "vera@example.org"})
    laptop = await _sign_in_again(client, storage, clock, {"email": "vera@example.org"})
    clock.advance(seconds=5)
    status, done = await MemberApi(client, phone["access_token"]).call(
        "POST", "/v1/member/auth/signout", {"everywhere": True}
    )
    assert status == 200 and done["signed_out"] == 2
    for tokens in (phone, laptop):
        status, _ = await MemberApi(client, tokens["access_token"]).call(
            "GET", "/v1/member/profile"
        )
        assert status == 401
        status, _ = await MemberApi(client).call(
            "POST", "/v1/member/auth/refresh", {"refresh_token": tokens["refresh_token"]}
        )
        assert status == 401
    # Signing in again afterwards works at once: only tokens issued before the sign-out end.
    again = await _sign_in_again(client, storage, clock, {"email": "vera@example.org"})
    status, _ = await MemberApi(client, again["access_token"]).call("GET", "/v1/member/profile")
    assert status == 200


async def test_wrong_codes_spend_the_code_and_are_rate_limited(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    anonymous = MemberApi(client)
    status, challenge = await anonymous.call(
        "POST", "/v1/member/auth/code", {"email": "g@example.org"}
    )
    right = code_in_outbox(storage, challenge["challenge_id"])
    wrong = "000000" if right != "000000" else "111111"
    for left in (4, 3, 2, 1, 0):
        status, answer = await anonymous.call(
            "POST",
            "/v1/member/auth/verify",
            {"challenge_id": challenge["challenge_id"], "code": wrong},
        )
        assert status == 401 and f"({left} attempts left)" in answer["detail"], answer
    status, answer = await anonymous.call(
        "POST", "/v1/member/auth/verify", {"challenge_id": challenge["challenge_id"], "code": right}
    )
    assert status == 401 and "too many wrong codes" in answer["detail"]
    # Another code right away: too soon; then the address's hourly quota.
    status, soon = await anonymous.call("POST", "/v1/member/auth/code", {"email": "g@example.org"})
    assert status == 429 and soon["detail"].startswith("body.email:"), soon
    for _ in range(4):
        clock.advance(seconds=31)
        status, _ = await anonymous.call("POST", "/v1/member/auth/code", {"email": "g@example.org"})
        assert status == 202
    clock.advance(seconds=31)
    status, quota = await anonymous.call("POST", "/v1/member/auth/code", {"email": "g@example.org"})
    assert status == 429 and "at most 5" in quota["detail"]
    # Expired codes are refused by name.
    clock.advance(hours=2)
    status, late = await anonymous.call(
        "POST", "/v1/member/auth/code", {"email": "late@example.org"}
    )
    clock.advance(minutes=6)
    status, answer = await anonymous.call(
        "POST",
        "/v1/member/auth/verify",
        {
            "challenge_id": late["challenge_id"],
            "code": code_in_outbox(storage, late["challenge_id"]),
        },
    )
    assert status == 401 and "expired" in answer["detail"]


async def test_bad_tokens_are_counted_per_ip_then_refused_with_429(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    tokens = await sign_up(client, storage, {"email": "d@example.org"})
    forged = tokens["access_token"][:-3] + (
        "AAA" if not tokens["access_token"].endswith("AAA") else "BBB"
    )
    for _ in range(50):
        status, answer = await MemberApi(client, forged).call("GET", "/v1/member/balances")
        assert status == 401 and answer["detail"].startswith("authorization:")
    # Now even the right token from this address waits: the IP is rate-limited.
    status, limited = await MemberApi(client, tokens["access_token"]).call(
        "GET", "/v1/member/balances"
    )
    assert status == 429 and limited["error"] == "rate_limited"


async def test_member_routes_take_member_tokens_only(
    client: TestClient[Any, Any], storage: Storage
) -> None:
    admin = StaffApi(client, staff_token(storage, "administrator"))
    status, refused = await admin.call("GET", "/v1/member/balances")
    assert status == 401 and "not a member access token" in refused["detail"]
    tokens = await sign_up(client, storage, {"email": "e@example.org"})
    status, _ = await StaffApi(client, tokens["access_token"]).call("GET", "/v1/customers/hh-1")
    assert status == 401
    status, doc = await MemberApi(client).call("GET", "/v1/member/openapi.json")
    assert status == 200 and "/v1/member/balances" in doc["paths"]
    assert doc["paths"]["/v1/member/balances"]["get"]["security"] == [{"memberToken": []}]
    # The document is the route table's: every member route the app serves, and no other.
    served = {
        (r.method, r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/v1/member/")
        and r.method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented and len(served) > 25


async def test_a_phone_signs_up_with_the_code_the_local_smsc_received(
    client: TestClient[Any, Any], storage: Storage, clock: Clock
) -> None:
    anonymous = MemberApi(client)
    status, challenge = await anonymous.call(
        "POST", "/v1/member/auth/code", {"phone": "8 (916) 123-45-67", "language": "en"}
    )
    assert status == 202 and challenge["channel"] == "sms"
    smsc = SmppSink().start()
    try:
        channel = SmsChannel(
            "127.0.0.1", smsc.port, system_id="shop", password="secret", source_addr="Shop"
        )
        report = await send_due(storage.communications, {"sms": channel}, clock=clock)
        await channel.close()
        assert report.by_channel.get("sms") == 1, report
        ((destination, text),) = smsc.texts()
    finally:
        smsc.stop()
    assert destination == "79161234567" and text.startswith("Code ")
    code = re.search(r"\b(\d{6})\b", text)
    assert code
    status, tokens = await anonymous.call(
        "POST",
        "/v1/member/auth/verify",
        {
            "challenge_id": challenge["challenge_id"],
            "code": code.group(1),
            "consents": {"personal_data": True},
        },
    )
    assert status == 201, tokens
    status, profile = await MemberApi(client, tokens["access_token"]).call(
        "GET", "/v1/member/profile"
    )
    assert profile["profile"]["phone"] == "79161234567"
    assert profile["sign_in"] == ["sms:79161234567"]
