"""Every route of every tier, enumerated from its app's router, fed a valid-looking request and
hostile ones (nesting, size, lone surrogates and NUL, 64-bit overflow, NaN, wrong types, bad
path parameters and query values), as a caller allowed to call it: no answer may be a 5xx.

Seeded and bounded: the same cases every run, a few seconds per tier.
"""

from __future__ import annotations

import io
import json
import random
import re
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from center.access.nodes import issue_token
from center.access.people import add_person
from center.access.people_session import CSRF_HEADER, SESSION_COOKIE
from center.access.permissions import AUTHENTICATED, MEMBER, PUBLIC, requirement_names
from center.config import load_config
from center.members import Address, MemberPolicy
from center.storage.sqlite import SqliteStorage
from center.web.app import create_app as create_center
from center.web.routes import route_permissions
from store_node.app import FORWARDER_KEY
from store_node.app import create_app as create_store
from store_node.keys import AUTH_KEY
from sync_protocol import CONTENT_TYPE, MasterSnapshot, SaleBatch, encode
from tests.center.center_factories import CARD, T0, make_sale, master_tables, write_config
from tests.center.member_factories import code_in_outbox
from tests.center.staff import staff_token
from tests.center.test_center_promotions import threshold
from tests.pos_agent.pos_fakes import IdleUploader, seed_replica
from tests.pos_agent.pos_fakes import make_config as make_pos_config
from tests.store_node.store_fakes import T0 as STORE_T0
from tests.store_node.store_fakes import Clock, FakeCenter, heartbeat_body
from tests.store_node.store_fakes import make_config as make_store_config
from tests.store_node.store_fakes import make_sale as make_store_sale

SEED = 20261207
LEAF_CASES = 10
"""Hostile values tried at the leaves of a route's valid body, per route (seeded sample)."""

DEEP = 2000
# Raw JSON texts put where a value of the valid body was (or as the whole body).
HOSTILE_JSON = [
    "9223372036854775808",  # 2^63
    "-9223372036854775809",
    "18446744073709551616",  # 2^64
    "1" + "0" * 5000,  # beyond int() of a str's digit limit
    "1e999",
    "NaN",
    "-Infinity",
    "1.5",
    "-1",
    '"\\ud800"',
    '"a\\udfffb"',
    '"\\u0000"',
    '"\\uff11\\uff12\\uff13"',  # full-width digits
    '"abc"',
    '"2900000000013 "',
    '""',
    '"' + "x" * 5000 + '"',
    "[" * DEEP + "]" * DEEP,
    '{"a":' * 40 + "1" + "}" * 40,
    "[]",
    "{}",
    "null",
    "true",
    '["x", 1]',
]
WHOLE_BODIES: list[tuple[bytes, str]] = [
    (b"[" * DEEP + b"]" * DEEP, "application/json"),  # 4 KB, 2,000 deep
    (b'{"a":' * DEEP + b"1" + b"}" * DEEP, "application/json"),
    (b'{"x": "\\ud800"}', "application/json"),
    (b'{"\\ud800": 1}', "application/json"),
    (b'{"x": "\\u0000"}', "application/json"),
    (b'{"x": 9223372036854775808}', "application/json"),
    (b'{"x": 1e999}', "application/json"),
    (b'{"x": NaN}', "application/json"),
    (b"\xed\xa0\x80", "application/json"),  # a surrogate encoded as UTF-8: not UTF-8
    (b"\xff\xfe{}", "application/json"),
    (b"{", "application/json"),
    (b"", "application/json"),
    (b"[]", "application/json"),
    (b'"text"', "application/json"),
    (b"{}", "text/plain"),
    (b"{" + b'"k": "' + b"y" * (2 * 1024 * 1024) + b'"}', "application/json"),  # 2 MB
]


def _packed_deep(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"  # fixarray of 1, depth times, then nil


HOSTILE_MSGPACK: list[bytes] = [
    _packed_deep(DEEP),
    b"\xc1",  # never used
    b"\xa2\xed\xa0",  # str of invalid UTF-8
    msgpack.packb({"v": 1, "type": "sale_batch", "sender": "x", "sent_at": 1, "body": {}}),
    msgpack.packb([1, 2, 3]),
    b"",
]
# A path parameter as sent on the wire (already percent-encoded where needed).
HOSTILE_PATH = [
    "12%2034",
    "1%272",
    "%22",
    "%C3%A9",
    "a%2Fb",
    "%25",
    "50%25",
    "%00",
    "%ED%A0%80",
    "%FF",
    "-1",
    "%EF%BC%91%EF%BC%92",  # full-width 12
    "x" * 300,
    "abc",
    "2900000000013%20",
    "9223372036854775808",
]
HOSTILE_QUERY = [
    {"since": "99999999999999999999", "limit": "-1", "days": "1e999"},
    {"store_id": "%00", "q": "%ED%A0%80", "kind": "%C3%A9", "id": "a%2Fb"},
    {"from": "2024-13-45", "to": "x", "limit": "9223372036854775808", "cursor": "%FF%FF"},
]


@dataclass
class Case:
    """One request and what it is (for the failure message)."""

    method: str
    path: str  # raw, percent-encoded
    body: bytes | None
    content_type: str | None
    what: str
    query: str = ""
    template: str = ""


@dataclass
class Tally:
    statuses: dict[int, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    refused_auth: list[str] = field(default_factory=list)
    valid_ok: int = 0

    def add(self, case: Case, status: int, text: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        where = f"{case.method} {case.path}{'?' + case.query if case.query else ''} [{case.what}]"
        if status >= 500:
            self.server_errors.append(f"{where}: {status} {text[:200]}")
        if status in (401, 403) and case.what == "valid":
            self.refused_auth.append(f"{where}: {status} {text[:200]}")
        if case.what == "valid" and status < 400:
            self.valid_ok += 1


def _map_leaves(value: Any, change: Callable[[Any], Any]) -> Any:
    if isinstance(value, dict):
        return {key: _map_leaves(sub, change) for key, sub in value.items()}
    if isinstance(value, list):
        return [_map_leaves(sub, change) for sub in value]
    return change(value)


EVERYWHERE: dict[str, Callable[[Any], Any]] = {
    "every str + lone surrogate": lambda v: v + "\ud800" if isinstance(v, str) else v,
    "every str + NUL": lambda v: v + "\x00" if isinstance(v, str) else v,
    "every int 2^63": lambda v: 2**63 if type(v) is int else v,
    "every int -2^63-1": lambda v: -(2**63) - 1 if type(v) is int else v,
}
"""The valid body with every leaf of a kind made hostile at once."""


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a leaf (and to each container) of a JSON value."""
    out: list[tuple[Any, ...]] = [path] if path else []
    if isinstance(value, dict):
        for key, sub in value.items():
            out += _leaf_paths(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            out += _leaf_paths(sub, (*path, i))
    return out


_MARK = "\x01HOSTILE\x01"


def _with_raw(seed: Any, path: tuple[Any, ...], raw: str) -> bytes:
    """The seed body as JSON text with the value at `path` replaced by the raw JSON `raw`."""
    doc = json.loads(json.dumps(seed))
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = _MARK
    return json.dumps(doc).replace(json.dumps(_MARK), raw).encode()


def _fill(template: str, params: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: params.get(m.group(1), "x1"), template)


def cases_for(
    rng: random.Random,
    method: str,
    template: str,
    params: dict[str, str],
    seed: Any,
    msgpack_seed: bytes | None,
    query: dict[str, str],
) -> list[Case]:
    """The valid-looking request of one route, then its hostile variants (seeded, bounded)."""
    path = _fill(template, params)
    valid_query = "&".join(f"{k}={v}" for k, v in query.items())
    takes_body = method in ("POST", "PUT", "PATCH", "DELETE")
    cases: list[Case] = []
    if msgpack_seed is not None:
        cases.append(Case(method, path, msgpack_seed, CONTENT_TYPE, "valid", valid_query))
    elif takes_body and seed is not None:
        cases.append(
            Case(method, path, json.dumps(seed).encode(), "application/json", "valid", valid_query)
        )
    else:
        cases.append(Case(method, path, None, None, "valid", valid_query))
    names = re.findall(r"\{([^}]+)\}", template)
    for name in names:
        for raw in HOSTILE_PATH:
            hostile = _fill(template, {**params, name: raw})
            body = json.dumps(seed).encode() if takes_body and seed is not None else None
            kind = "application/json" if body is not None else None
            cases.append(Case(method, hostile, body, kind, f"path {name}={raw}", valid_query))
    for extra in HOSTILE_QUERY:
        merged = "&".join(f"{k}={v}" for k, v in {**query, **extra}.items())
        cases.append(Case(method, path, None, None, "query", merged))
    if not takes_body:
        for case in cases:
            case.template = template
        return cases
    for body, kind in WHOLE_BODIES:
        cases.append(Case(method, path, body, kind, f"body {body[:24]!r}", valid_query))
    for body in HOSTILE_MSGPACK:
        cases.append(Case(method, path, body, CONTENT_TYPE, f"msgpack {body[:12]!r}", valid_query))
    if msgpack_seed is not None:
        cases += _msgpack_mutations(rng, method, path, msgpack_seed, valid_query)
    if seed is not None:
        for name, change in EVERYWHERE.items():
            body = json.dumps(_map_leaves(seed, change)).encode()
            cases.append(Case(method, path, body, "application/json", name, valid_query))
        leaves = _leaf_paths(seed)
        pairs = [(leaf, raw) for leaf in leaves for raw in HOSTILE_JSON]
        for leaf, raw in rng.sample(pairs, min(LEAF_CASES, len(pairs))):
            body = _with_raw(seed, leaf, raw)
            cases.append(Case(method, path, body, "application/json", f"{leaf}={raw[:24]}"))
    for case in cases:
        case.template = template
    return cases


def _msgpack_mutations(
    rng: random.Random, method: str, path: str, seed: bytes, query: str
) -> list[Case]:
    """The valid msgpack body with one integer grown past 64 bits (as uint64 2^63 + k), a str
    made NUL, or nested deeper."""
    out = []
    doc = msgpack.unpackb(seed, timestamp=3)
    ints = [leaf for leaf in _leaf_paths_msg(doc) if isinstance(_get(doc, leaf), int)]
    for leaf in rng.sample(ints, min(LEAF_CASES, len(ints))):
        for value in (2**63, 2**64 - 1, -(2**63)):
            mutated = msgpack.unpackb(seed, timestamp=3)
            _set(mutated, leaf, value)
            body = msgpack.packb(mutated, datetime=True)
            out.append(Case(method, path, body, CONTENT_TYPE, f"msgpack {leaf}={value}", query))
    strs = [leaf for leaf in _leaf_paths_msg(doc) if isinstance(_get(doc, leaf), str)]
    for leaf in rng.sample(strs, min(4, len(strs))):
        mutated = msgpack.unpackb(seed, timestamp=3)
        _set(mutated, leaf, "\x00" + "9" * 3)
        body = msgpack.packb(mutated, datetime=True)
        out.append(Case(method, path, body, CONTENT_TYPE, f"msgpack {leaf}=NUL", query))
    return out


def _leaf_paths_msg(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [path] if path else []
    if isinstance(value, dict):
        for key, sub in value.items():
            out += _leaf_paths_msg(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            out += _leaf_paths_msg(sub, (*path, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


async def run_cases(
    base: str, cases: list[Case], headers_for: Callable[[Case], dict[str, str]]
) -> Tally:
    """Send every case over real HTTP exactly as written (the path is not re-encoded)."""
    tally = Tally()
    async with aiohttp.ClientSession() as session:
        for case in cases:
            url = URL(base + case.path + ("?" + case.query if case.query else ""), encoded=True)
            headers = headers_for(case)
            if case.content_type is not None:
                headers["Content-Type"] = case.content_type
            data = None if case.body is None else io.BytesIO(case.body)
            async with session.request(
                case.method, url, data=data, headers=headers, allow_redirects=False
            ) as response:
                tally.add(case, response.status, await response.text(errors="replace"))
    return tally


def routes_of(app: web.Application) -> list[tuple[str, str]]:
    """(method, canonical path) of every route the app serves (HEAD is GET's)."""
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        found.add((route.method, route.resource.canonical))
    return sorted(found)


def assert_no_5xx(tier: str, tally: Tally, cases: list[Case]) -> None:
    assert not tally.server_errors, (
        f"{tier}: {len(tally.server_errors)} answers of 5xx out of {len(cases)}:\n"
        + "\n".join(tally.server_errors[:40])
    )
    assert not tally.refused_auth, "\n".join(tally.refused_auth[:20])


# -- the Center -----------------------------------------------------------------------------

CENTER_PARAMS = {
    "card_no": CARD,
    "customer_id": "hh-2",
    "batch_id": "1",
    "job_id": "1",
    "code": "SPR-22222222223",
    "offer_id": "bread-10",
    "questionnaire_id": "q1",
    "promotion_id": "T5",
    "segment_id": "recent",
    "username": "fuzz-target",
    "sale_id": "00000000-0000-4000-8000-000000000001",
    "signal_id": "1",
    "name": "churn",
    "supplier_id": "fuzz-supplier",
    "campaign_id": "c000000000000",
    "notification_id": "n1",
    "block_id": "fuzz-ad",
}
AD_BLOCK = {
    "block_id": "fuzz-ad",
    "name": "Fuzz",
    "placement": "home_top",
    "starts_at": "2024-02-01T00:00",
    "ends_at": "2024-04-01T00:00",
    "media_url": "https://cdn.example.com/a.png",
    "rich_text": "<p>hi</p>",
}
CENTER_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/customers"): {"last_name": "Fuzz", "phone": "+1 555 0100"},
    ("POST", "/v1/cards"): {"customer_id": "hh-2", "card_no": "2900000000020"},
    ("POST", "/v1/cards/{card_no}/block"): {"reason": "stolen"},
    ("POST", "/v1/cards/{card_no}/replace"): {},
    ("POST", "/v1/cards/{card_no}/adjustments"): {
        "amount": 150,
        "reason": "complaint",
        "idempotency_key": "k1",
    },
    ("POST", "/v1/customers/{customer_id}/merge"): {"merged_id": "hh-1"},
    ("POST", "/v1/customers/{customer_id}/questionnaires/{questionnaire_id}"): {
        "answers": {"pets": "cat", "age": 40}
    },
    ("PUT", "/v1/customers/{customer_id}/offers"): {
        "offers": [{"offer_id": "bread-10", "product_id": "1001", "percent": "10"}]
    },
    ("POST", "/v1/coupon-batches"): {
        "promotion_id": "base-accrual-3",
        "name": "Spring",
        "prefix": "spr",
        "count": 3,
        "valid_from": "2024-03-01",
        "valid_to": "2024-04-30",
    },
    ("POST", "/v1/coupon-batches/{batch_id}/issue"): {"customer_ids": ["hh-1"]},
    ("POST", "/v1/certificate-batches"): {
        "batch_id": "gift-fuzz",
        "title": "Gift 1000",
        "product_id": "GIFT-1000",
        "nominal_minor": 100000,
        "count": 2,
    },
    ("POST", "/v1/certificates/{code}/block"): {"reason": "stolen"},
    ("POST", "/v1/certificate-holds"): {
        "store_id": "367",
        "hold_id": "h1",
        "amounts": {"GC-123456789012": 100},
    },
    ("POST", "/v1/certificate-holds/{hold_id}/commit"): {
        "store_id": "367",
        "sale_id": "00000000-0000-4000-8000-000000000001",
    },
    ("POST", "/v1/certificate-holds/{hold_id}/release"): {"store_id": "367"},
    ("POST", "/v1/communications/contacts"): {
        "rows": [
            {
                "customer_id": "hh-1",
                "email": "hh1@example.org",
                "phone": "+7 916 123-45-67",
                "consents": {"email": {"advertising": True, "personal_data": True}},
            }
        ],
        "source": "fuzz",
    },
    ("POST", "/v1/communications/campaigns/trigger"): {
        "campaign_id": "fuzz-welcome",
        "trigger": "welcome",
        "templates": {"A": "fuzz-template"},
        "split": {"A": 9000, "X": 1000},
        "channels": ["email", "sms"],
        "days": 7,
    },
    ("POST", "/v1/promotions"): threshold(),
    ("POST", "/v1/promotions/validate"): threshold(),
    ("PUT", "/v1/promotions/{promotion_id}"): threshold(),
    ("POST", "/v1/promotions/{promotion_id}/preview"): {
        "receipt": {
            "lines": [{"product_id": "1000", "qty_milli": 3000, "unit_price_minor": 250}],
            "card_no": CARD,
        },
        "with_live": True,
    },
    ("POST", "/v1/returns"): {
        "sale_id": "00000000-0000-4000-8000-000000000001",
        "return_id": "00000000-0000-4000-8000-000000000002",
        "lines": [{"line_no": 1, "qty_milli": 1000}],
    },
    ("POST", "/v1/segments"): {"segment_id": "fuzzers", "name": "Fuzzers", "rule": None},
    ("POST", "/v1/leases"): {
        "store_id": "367",
        "card_no": CARD,
        "unsent_minor": 0,
        "need_minor": 9,
    },
    ("POST", "/v1/leases/return"): {
        "store_id": "367",
        "leases": [{"lease_id": "l-1", "card_no": CARD, "wallet": "bonus", "unsent_minor": 0}],
    },
    ("POST", "/v1/budget-leases"): {
        "store_id": "367",
        "promotion_id": "threshold-5-10",
        "unsent_minor": 0,
        "need_minor": 9,
    },
    ("POST", "/v1/budget-leases/return"): {
        "store_id": "367",
        "leases": [{"lease_id": "l-1", "promotion_id": "threshold-5-10", "unsent_minor": 0}],
    },
    ("POST", "/v1/segments/{segment_id}/members"): {"add": ["hh-1"], "remove": []},
    ("POST", "/v1/users"): {"username": "fuzz-target", "role": "data_analyst"},
    ("POST", "/v1/users/{username}/role"): {"role": "marketer"},
    ("PUT", "/v1/tiers"): {
        "period_days": 365,
        "grace_days": 30,
        "levels": [
            {"code": "silver", "title": {"ru": "Серебро", "en": "Silver"}, "rank": 1},
            {
                "code": "gold",
                "title": {"ru": "Золото", "en": "Gold"},
                "rank": 2,
                "spend_minor": 3_000_000,
                "visits": 12,
                "require": "any",
            },
        ],
    },
    ("POST", "/v1/tiers/review"): {"customer_ids": ["hh-1"]},
    ("POST", "/v1/suppliers"): {"supplier_id": "fuzz-2", "name": "Fuzz 2"},
    ("POST", "/v1/suppliers/{supplier_id}/people"): {
        "username": "fuzz-supplier-person",
        "password": "correct horse battery",
        "totp": False,
    },
    ("POST", "/v1/suppliers/{supplier_id}/top-ups"): {"amount_minor": 100, "note": "fuzz"},
    ("POST", "/v1/supplier/audience/size"): {
        "audience": {"stores": ["367"], "min_avg_receipt_minor": 100, "churn_max": 0.5}
    },
    ("POST", "/v1/supplier/campaigns"): {
        "name": "Fuzz",
        "product_ids": ["1000"],
        "percent": "10",
        "date_from": "2024-03-01",
        "date_to": "2024-03-10",
        "audience": {"brands": ["Acme"]},
        "control_percent": 10,
    },
    ("POST", "/v1/member/auth/code"): {"email": "fuzz@example.org"},
    ("POST", "/v1/member/auth/signout"): {"everywhere": False},
    ("PUT", "/v1/member/profile"): {"profile": {"first_name": "Fuzz"}},
    ("PUT", "/v1/member/consents"): {
        "consents": [{"channel": "email", "purpose": "advertising", "granted": True}]
    },
    ("PUT", "/v1/member/categories"): {"categories": ["DAIRY"]},
    ("PUT", "/v1/member/push"): {"fcm_token": "fcm-token-of-the-fuzzer-device-0123456789"},
    ("POST", "/v1/member/data/delete"): {"confirm": True},
    ("POST", "/v1/advertising/blocks"): AD_BLOCK,
    ("PUT", "/v1/advertising/blocks/{block_id}"): AD_BLOCK,
}
CENTER_QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/v1/master"): {"store_id": "367", "since": "0"},
    ("GET", "/v1/cards/{card_no}/lookup"): {"store_id": "367"},
    ("GET", "/v1/reconciliation"): {"store_id": "367"},
    ("GET", "/v1/certificate-holders"): {"store_id": "367"},
    ("GET", "/v1/audit"): {"kind": "card", "id": CARD},
    ("GET", "/v1/customers/search"): {"q": "fuzz"},
    ("GET", "/console/analytics/{name}"): {"from": "2024-01-01", "segment": "champions"},
    ("GET", "/v1/analytics/rfm-movement"): {
        "compare_from": "2023-01-01",
        "compare_to": "2023-06-30",
    },
    ("GET", "/v1/analytics/effect"): {"rule_id": "base-accrual-3"},
    ("GET", "/v1/analytics/effect.csv"): {"rule_id": "base-accrual-3"},
    ("GET", "/v1/analytics/effect.svg"): {"rule_id": "base-accrual-3"},
    ("GET", "/v1/analytics/margin"): {"level": "brand", "segment": "loyal", "limit": "5"},
    ("GET", "/v1/models/associations"): {"segment": "gen_x/high", "limit": "5"},
    ("GET", "/console/models/associations"): {"segment": "gen_x/high"},
    ("GET", "/console/models/preferences"): {"customer_id": "hh-2"},
    ("GET", "/v1/member/stores"): {"lat": "55.75", "lon": "37.62"},
    ("GET", "/v1/advertising/selection"): {"placement": "home_top", "customer_id": "hh-1"},
}


def member_tokens(
    storage: SqliteStorage, templates: list[str], prefix: str = "m"
) -> dict[str, dict[str, Any]]:
    """One signed-up member per member route (a route may sign out or delete its member), by
    the repository's own sign-in calls, each from its own caller address."""
    tokens: dict[str, dict[str, Any]] = {}
    for n, template in enumerate(templates):
        ip = f"10.0.{prefix}.{n}"
        address = Address("email", f"{prefix}{n}@fuzz.example")
        challenge = storage.members.request_code(address, ip, T0)
        code = code_in_outbox(storage, challenge["challenge_id"])
        tokens[template] = storage.members.check_code(
            challenge["challenge_id"], code, ip, T0, consents={"personal_data": True}
        )
    return tokens


def center_msgpack_seeds() -> dict[tuple[str, str], bytes]:
    sale = make_sale(1, card_no=CARD, amounts=(300, 700), accrue=50)
    return {
        ("POST", "/v1/ingest"): encode(SaleBatch((sale,)), sender="store-367", sent_at=T0),
        ("POST", "/v1/heartbeat"): heartbeat_body(role="store", node_id="store-367"),
    }


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[tuple[str, web.Application, SqliteStorage]]:
    config = load_config(write_config(tmp_path, signatures=False))
    storage = SqliteStorage(tmp_path / "fuzz-center.db")
    storage.migrate()
    storage.feed.upsert_master(master_tables())
    app = create_center(config, storage, clock=lambda: T0)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), app, storage
    finally:
        await server.close()
        storage.close()


async def _console_session(base: str, storage: SqliteStorage) -> dict[str, str]:
    """Cookie and CSRF headers of an administrator signed in through the sign-in form."""
    add_person(storage, "fuzz-root", "administrator", "correct horse battery", "test", T0)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(base + "/", headers={"Accept": "text/html"}) as page:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token, "no CSRF token on the sign-in page"
        form = {
            "csrf_token": token.group(1),
            "username": "fuzz-root",
            "password": "correct horse battery",
        }
        async with session.post(base + "/sign-in", data=form, allow_redirects=False) as answer:
            assert answer.status == 303, await answer.text()
            cookie = answer.cookies[SESSION_COOKIE].value
        async with session.get(base + "/console", headers={"Accept": "text/html"}) as page:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert csrf, "no CSRF token on the console page"
    return {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: csrf.group(1)}


@pytest.mark.timeout(120)
async def test_no_center_route_answers_5xx_to_any_input(
    center: tuple[str, web.Application, SqliteStorage],
) -> None:
    base, app, storage = center
    admin = staff_token(storage, "administrator", username="fuzz-admin")
    # The supplier routes act for the caller's supplier: the fuzzing callers are bound to one.
    storage.suppliers.create_supplier("fuzz-supplier", "Fuzz", "test", T0)
    storage.suppliers.bind_person("fuzz-admin", "fuzz-supplier", "test", T0)
    storage.suppliers.bind_person("fuzz-root", "fuzz-supplier", "test", T0)
    requirements = route_permissions(app)
    msgpack_seeds = center_msgpack_seeds()
    # Hostile sign-in answers are wrong codes from one address: let them all be tried.
    storage.members.policy = MemberPolicy(failures_per_ip=10**6, codes_per_ip=10**6)
    members = member_tokens(
        storage, sorted({t for (_, t), r in requirements.items() if r == MEMBER})
    )
    spare = member_tokens(storage, ["verify", "refresh"], prefix="s")
    # The portal's pages: one signed-in member each (sign-out ends only its own session).
    portal = member_tokens(
        storage, sorted({t for (_, t) in requirements if t.startswith("/portal")}), prefix="p"
    )
    challenge = storage.members.request_code(Address("sms", "79990001122"), "10.1.0.1", T0)
    bodies = {
        **CENTER_BODIES,
        ("POST", "/v1/enrol"): {"token": issue_token(storage, "367", T0, 24)},
        ("POST", "/v1/member/auth/verify"): {
            "challenge_id": challenge["challenge_id"],
            "code": code_in_outbox(storage, challenge["challenge_id"]),
            "consents": {"personal_data": True},
        },
        ("POST", "/v1/member/auth/refresh"): {"refresh_token": spare["refresh"]["refresh_token"]},
    }
    rng = random.Random(SEED)
    cases = []
    routes = routes_of(app)
    assert len(routes) == len(requirements) > 60  # every route, from the router
    for method, template in routes:
        cases += cases_for(
            rng,
            method,
            template,
            CENTER_PARAMS,
            bodies.get((method, template)),
            msgpack_seeds.get((method, template)),
            CENTER_QUERIES.get((method, template), {}),
        )

    person = await _console_session(base, storage)

    def headers_for(case: Case) -> dict[str, str]:
        # Signatures are optional in this config: node routes run unsigned, API routes with
        # the administrator's token (every permission but `node`), console pages as a signed-in
        # administrator with the session's CSRF token (sign-out excepted: it would end the
        # session for the cases after it).
        names = requirement_names(requirements[(case.method, case.template)])
        if case.template.startswith("/portal"):
            tokens = portal[case.template]
            return {
                "Cookie": f"portal_access={tokens['access_token']}; "
                f"portal_refresh={tokens['refresh_token']}; portal_csrf=fuzz-csrf",
                "X-CSRF-Token": "fuzz-csrf",
            }
        if names == ("node",) or PUBLIC in names or case.template == "/sign-out":
            return {}
        if names == (MEMBER,):
            return {"Authorization": f"Bearer {members[case.template]['access_token']}"}
        assert AUTHENTICATED in names or names
        if not case.template.startswith("/v1/"):
            return dict(person)
        return {"Authorization": f"Bearer {admin}"}

    tally = await run_cases(base, cases, headers_for)
    # The gates themselves refuse a fuzzed "valid" case: sign-in without the sign-in form's
    # CSRF token, sign-out without a session, the static folder's own listing; the
    # aggregator's status webhook, which only its signature over the body lets in.
    tally.refused_auth = [
        line
        for line in tally.refused_auth
        if not line.startswith(
            (
                "POST /sign-in ",
                "POST /sign-out ",
                "GET /static ",
                "POST /v1/communications/callbacks/vonage ",
            )
        )
    ]
    assert_no_5xx("center", tally, cases)
    assert tally.valid_ok >= 40, tally.statuses  # the handlers really ran
    assert len(cases) > 1500


# -- the store node -------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_no_store_node_route_answers_5xx_to_any_input(tmp_path: Path) -> None:
    fake = FakeCenter(
        master=MasterSnapshot(
            version=3,
            tables={
                "cards": (
                    {"card_no": "2000000000011", "customer_id": "hh-1", "bonus_balance": 900},
                ),
            },
        )
    )
    await fake.start()
    config = make_store_config(tmp_path, center_url=fake.url)
    app = create_store(config, clock=Clock(), run_jobs=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        assert await app[FORWARDER_KEY].poll_master_once() == 3
        base = str(server.make_url("")).rstrip("/")
        sale = make_store_sale(1, card_no="2000000000011")
        seeds = {
            ("POST", "/v1/sales"): encode(SaleBatch((sale,)), sender="367-1", sent_at=T0),
            ("POST", "/v1/heartbeat"): heartbeat_body(),
        }
        bodies = {
            ("POST", "/v1/reservations"): {
                "receipt_id": "r1",
                "register_id": "367-1",
                "card_no": "2000000000011",
                "amount": 10,
                "coupon_codes": ["SPR-1"],
            },
            ("POST", "/v1/reservations/{reservation_id}/commit"): {
                "sale_id": "00000000-0000-4000-8000-000000000001"
            },
            ("POST", "/v1/budget-holds"): {
                "hold_id": "00000000-0000-4000-8000-000000000001",
                "want": {"acme": 50},
                "hold": True,
            },
            ("POST", "/v1/certificate-holds"): {
                "register_id": "367-1",
                "receipt_id": "r1",
                "code": "GC-123456789012",
                "amount_minor": 100,
            },
            ("POST", "/v1/certificate-holds/release"): {"register_id": "367-1", "receipt_id": "r1"},
            ("POST", "/v1/enrol"): {
                "token": app[AUTH_KEY].issue_token("367-1", STORE_T0, 24),
                "register_id": "367-1",
            },
        }
        params = {"card_no": "2000000000011", "reservation_id": "r-unknown"}
        rng = random.Random(SEED)
        cases = []
        routes = routes_of(app)
        assert len(routes) >= 10
        for method, template in routes:
            cases += cases_for(
                rng,
                method,
                template,
                params,
                bodies.get((method, template)),
                seeds.get((method, template)),
                {"since": "0"} if template == "/v1/master" else {},
            )
        tally = await run_cases(base, cases, lambda case: {})
    finally:
        await server.close()
        await fake.stop()
    # The admin page's gates refuse a fuzzed "valid" form: no sign-in form token, no session
    # (tests/store_node/test_admin_page.py signs in and posts them for real).
    tally.refused_auth = [
        line
        for line in tally.refused_auth
        if not line.startswith(("POST /sign-in ", "POST /registers "))
    ]
    assert_no_5xx("store node", tally, cases)
    assert tally.valid_ok >= 6, tally.statuses


# -- the register ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_no_register_route_answers_5xx_to_any_input(tmp_path: Path) -> None:
    from pos_agent.app import create_app as create_pos

    config = make_pos_config(tmp_path / "pos")
    seed_replica(config)
    app = create_pos(config, uploader=IdleUploader())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as session:

            async def open_receipt() -> str:
                async with session.post(base + "/v1/receipts", json={}) as response:
                    receipt_id: str = (await response.json())["receipt_id"]
                async with session.post(
                    f"{base}/v1/receipts/{receipt_id}/lines",
                    json={"product_id": "bread", "qty_milli": 1000, "unit_price_minor": 250},
                ) as response:
                    assert response.status == 200
                return receipt_id

            receipt_id = await open_receipt()
        bodies = {
            ("POST", "/v1/receipts"): {},
            ("POST", "/v1/receipts/{receipt_id}/lines"): {
                "lines": [{"product_id": "milk", "qty_milli": 2000, "unit_price_minor": 3000}]
            },
            ("POST", "/v1/receipts/{receipt_id}/card"): {"card_no": "2000000000011"},
            ("POST", "/v1/receipts/{receipt_id}/coupons"): {"code": "SPR-1"},
            ("POST", "/v1/receipts/{receipt_id}/calculate"): {"bonus_to_spend": 0},
            ("POST", "/v1/receipts/{receipt_id}/confirm"): {
                "payments": [{"method": "cash", "amount_minor": 6250}]
            },
            ("POST", "/v1/receipts/{receipt_id}/cancel"): {},
        }
        params = {"receipt_id": receipt_id, "line_no": "1", "code": "SPR-1"}
        rng = random.Random(SEED)
        cases = []
        routes = routes_of(app)
        assert len(routes) >= 12
        # Confirm and cancel close the receipt: run them last.
        routes.sort(key=lambda r: r[1].endswith(("/confirm", "/cancel")))
        for method, template in routes:
            cases += cases_for(
                rng, method, template, params, bodies.get((method, template)), None, {}
            )
        tally = await run_cases(base, cases, lambda case: {})
    finally:
        await server.close()
    assert_no_5xx("register", tally, cases)
    assert tally.valid_ok >= 8, tally.statuses


def test_the_hostile_msgpack_cases_are_what_they_say() -> None:
    assert msgpack.unpackb(HOSTILE_MSGPACK[3])["type"] == "sale_batch"
    assert len(_packed_deep(DEEP)) == DEEP + 1
    assert struct.unpack(">Q", msgpack.packb(2**63)[1:])[0] == 2**63
