"""Gift certificates at the Center, both backends: batches, activation at ingest, holds,
redemption, returns, blocking; and the pure rules."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from center.certificates.model import (
    CertificateRefused,
    CertificateView,
    parse_batch,
    parse_hold,
    return_payments,
    state_of,
)
from center.errors import Conflict, InvalidRequest, UnknownObject
from center.storage import Storage
from sync_protocol import Payment, Sale, SaleLine
from tests.center.center_factories import T0, make_sale

NOMINAL = "GIFT-1000"
LATER = T0 + timedelta(days=1)


def _rid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _batch(storage: Storage, *, count: int = 2, nominal: int | None = 100_000) -> list[str]:
    view = storage.certificates.create_batch(
        parse_batch(
            {
                "batch_id": f"b-{uuid.uuid4().hex[:8]}",
                "title": "Gift 1000",
                "product_id": NOMINAL,
                "nominal_minor": nominal,
                "count": count,
                "valid_days": 365,
            }
        ),
        "head",
        T0,
    )
    return [c["code"] for c in view["certificates"]]


def _sell(code: str, seq: int, *, store: str = "367", amount: int = 100_000) -> Sale:
    base = make_sale(seq, store_id=store, register_id=f"{store}-1", amounts=(amount,))
    line = replace(base.lines[0], product_id=NOMINAL, certificate_code=code)
    return replace(base, lines=(line,))


def _pay(code: str, seq: int, amount: int, *, store: str = "406", cash: int = 0) -> Sale:
    base = make_sale(seq, store_id=store, register_id=f"{store}-1", amounts=(amount + cash,))
    payments = (Payment("certificate", amount, code=code),) + (
        (Payment("cash", cash),) if cash else ()
    )
    return replace(base, payments=payments)


def _hold(storage: Storage, store: str, hold_id: str, code: str, amount: int, at=T0):  # type: ignore[no-untyped-def]
    return storage.certificates.hold(
        parse_hold({"store_id": store, "hold_id": hold_id, "amounts": {code: amount}}), at
    )


def test_a_certificate_activates_only_when_its_sale_arrives(storage: Storage) -> None:
    code, other = _batch(storage)
    assert storage.certificates.certificate(code, T0)["state"] == "issued"
    # Not sold yet: no store can hold it.
    with pytest.raises(CertificateRefused, match="never sold"):
        _hold(storage, "406", "h0", code, 100)
    sale = _sell(code, 1)
    storage.sales.ingest([sale], T0)
    view = storage.certificates.certificate(code, T0)
    assert view["state"] == "active"
    assert view["balance_minor"] == 100_000
    assert view["holder_store_id"] == "367"
    assert view["sold_sale_id"] == sale.sale_id
    assert view["expires_at"] == (sale.closed_at + timedelta(days=365)).isoformat()
    assert [(m["kind"], m["amount_minor"], m["sale_id"]) for m in view["movements"]] == [
        ("activate", 100_000, sale.sale_id)
    ]
    # Sold again (a forged or repeated code): booked as an anomaly, balance untouched.
    storage.sales.ingest([_sell(code, 2)], T0)
    view = storage.certificates.certificate(code, T0)
    assert view["balance_minor"] == 100_000
    assert view["movements"][-1]["kind"] == "anomaly"
    assert storage.certificates.certificate(other, T0)["state"] == "issued"


def test_hold_commit_redeem_partial_then_refused_then_used_up(storage: Storage) -> None:
    (code,) = _batch(storage, count=1)
    storage.sales.ingest([_sell(code, 1)], T0)
    held = _hold(storage, "406", "h1", code, 30_000)
    assert held["certificates"][0]["balance_minor"] == 100_000
    # Another receipt cannot take what the first holds.
    with pytest.raises(CertificateRefused, match=r"700\.00 available"):
        _hold(storage, "367", "h2", code, 80_000)
    sale = _pay(code, 1, 30_000)
    storage.certificates.commit("h1", "406", sale.sale_id, T0)
    assert storage.certificates.certificate(code, T0)["holder_store_id"] == "406"
    # Committed: held long after the TTL until the sale arrives.
    with pytest.raises(CertificateRefused, match=r"700\.00 available"):
        _hold(storage, "367", "h2", code, 80_000, T0 + timedelta(days=1))
    storage.sales.ingest([sale], T0)
    view = storage.certificates.certificate(code, T0)
    assert (view["state"], view["balance_minor"], view["holds"]) == ("partially_used", 70_000, [])
    with pytest.raises(CertificateRefused, match=r"700\.00 available \(balance 700\.00\), 800\.00"):
        _hold(storage, "367", "h2", code, 80_000)
    _hold(storage, "367", "h3", code, 70_000)
    last = _pay(code, 2, 70_000, store="367")
    storage.sales.ingest([last], T0)  # the sale overtook its commit
    storage.certificates.commit("h3", "367", last.sale_id, T0)
    view = storage.certificates.certificate(code, T0)
    assert (view["state"], view["balance_minor"], view["holds"]) == ("used_up", 0, [])
    assert [(m["kind"], m["amount_minor"], m["balance_after"]) for m in view["movements"]] == [
        ("activate", 100_000, 100_000),
        ("redeem", -30_000, 70_000),
        ("redeem", -70_000, 0),
    ]
    with pytest.raises(CertificateRefused, match="balance is 0"):
        _hold(storage, "367", "h4", code, 1)


def test_the_holder_list_follows_online_redemptions(storage: Storage) -> None:
    (code,) = _batch(storage, count=1)
    storage.sales.ingest([_sell(code, 1)], T0)
    assert storage.certificates.held_by("367", T0) == [
        {
            "code": code,
            "available_minor": 100_000,
            "expires_at": (T0 + timedelta(minutes=1, days=365)).isoformat(),
        }
    ]
    _hold(storage, "406", "h1", code, 30_000)
    assert storage.certificates.held_by("367", T0)[0]["available_minor"] == 70_000
    storage.certificates.commit("h1", "406", _pay(code, 1, 30_000).sale_id, T0)
    assert storage.certificates.held_by("367", T0) == []
    assert [c["code"] for c in storage.certificates.held_by("406", T0)] == [code]


def test_release_frees_the_amount_and_unknown_or_blocked_codes_are_refused(
    storage: Storage,
) -> None:
    (code,) = _batch(storage, count=1)
    storage.sales.ingest([_sell(code, 1)], T0)
    _hold(storage, "406", "h1", code, 100_000)
    storage.certificates.release("h1", "406")
    _hold(storage, "367", "h2", code, 100_000)
    # An expired hold frees its amount too.
    _hold(storage, "406", "h3", code, 100_000, T0 + timedelta(seconds=301))
    with pytest.raises(UnknownObject, match="no certificate GC-000000000000"):
        _hold(storage, "406", "h4", "GC-000000000000", 1)
    storage.certificates.block(code, "stolen", "head", LATER)
    with pytest.raises(CertificateRefused, match="blocked"):
        _hold(storage, "406", "h5", code, 1)
    assert storage.certificates.certificate(code, T0)["state"] == "blocked"


def test_expired_certificate_is_refused(storage: Storage) -> None:
    (code,) = _batch(storage, count=1)
    storage.sales.ingest([_sell(code, 1)], T0)
    later = T0 + timedelta(days=400)
    with pytest.raises(CertificateRefused, match="expired"):
        _hold(storage, "367", "h1", code, 1, later)
    assert storage.certificates.certificate(code, later)["state"] == "expired"


def test_a_redemption_that_overtook_its_activation_stays_debited(storage: Storage) -> None:
    (code,) = _batch(storage, count=1)
    storage.sales.ingest([_pay(code, 2, 25_000, store="367")], T0)
    early = storage.certificates.certificate(code, T0)
    assert (
        early["balance_minor"] == -25_000
        and "redeemed while issued" in early["movements"][0]["note"]
    )
    storage.sales.ingest([_sell(code, 1)], T0)
    view = storage.certificates.certificate(code, T0)
    assert (view["state"], view["balance_minor"]) == ("partially_used", 75_000)


def test_free_amount_certificate_takes_the_line_amount(storage: Storage) -> None:
    (code,) = _batch(storage, count=1, nominal=None)
    storage.sales.ingest([_sell(code, 1, amount=2_550)], T0)
    assert storage.certificates.certificate(code, T0)["balance_minor"] == 2_550


def test_a_nominal_sold_for_another_amount_is_not_activated(storage: Storage) -> None:
    (code,) = _batch(storage, count=1)
    storage.sales.ingest([_sell(code, 1, amount=500)], T0)
    view = storage.certificates.certificate(code, T0)
    assert view["state"] == "issued"
    assert "nominal is 100000" in view["movements"][0]["note"]


def test_returns_refund_an_unused_certificate_and_refuse_a_used_one(storage: Storage) -> None:
    unused, used = _batch(storage)
    sold_unused = _sell(unused, 1)
    sold_used = _sell(used, 2)
    storage.sales.ingest([sold_unused, sold_used], T0)
    storage.sales.ingest([_pay(used, 1, 100)], T0)
    with pytest.raises(Conflict, match=f"certificate {used} was used"):
        storage.returns.head_office_return(
            sold_used.sale_id, {1: 1000}, _rid("r-used"), "head", LATER
        )
    assert storage.certificates.certificate(used, T0)["balance_minor"] == 99_900  # untouched
    storage.returns.head_office_return(
        sold_unused.sale_id, {1: 1000}, _rid("r-unused"), "head", LATER
    )
    view = storage.certificates.certificate(unused, T0)
    assert (view["state"], view["balance_minor"]) == ("returned", 0)
    assert view["movements"][-1]["kind"] == "refund"


def test_a_return_of_a_sale_paid_by_certificate_credits_it_back(storage: Storage) -> None:
    (code,) = _batch(storage, count=1)
    storage.sales.ingest([_sell(code, 1)], T0)
    # 300.00 of goods: 200.00 from the certificate, 100.00 cash; two lines of 150.00.
    base = make_sale(5, store_id="406", register_id="406-1", amounts=(15_000, 15_000))
    paid = replace(
        base, payments=(Payment("certificate", 20_000, code=code), Payment("cash", 10_000))
    )
    storage.sales.ingest([paid], T0)
    assert storage.certificates.certificate(code, T0)["balance_minor"] == 80_000
    storage.returns.head_office_return(paid.sale_id, {1: 1000}, _rid("r1"), "head", LATER)
    assert storage.certificates.certificate(code, T0)["balance_minor"] == 95_000
    # The second line: 50.00 left to credit back, 100.00 paid out.
    storage.returns.head_office_return(paid.sale_id, {2: 1000}, _rid("r2"), "head", LATER)
    view = storage.certificates.certificate(code, T0)
    assert view["balance_minor"] == 100_000
    assert [m["kind"] for m in view["movements"]][-2:] == ["return_credit", "return_credit"]


def test_pure_rules() -> None:
    cert = CertificateView("GC-1", "active", 5_000, 10_000, T0 + timedelta(days=1))
    assert state_of(cert, T0) == "partially_used"
    assert state_of(replace(cert, balance_minor=10_000), T0) == "active"
    assert state_of(cert, T0 + timedelta(days=1)) == "expired"
    assert state_of(replace(cert, balance_minor=0), T0) == "used_up"
    assert state_of(replace(cert, status="blocked"), T0) == "blocked"
    original = replace(
        make_sale(1, amounts=(300,)),
        payments=(Payment("certificate", 200, code="GC-1"), Payment("cash", 100)),
    )
    assert return_payments(original, 250, {}) == (
        Payment("certificate", 200, code="GC-1"),
        Payment("head_office", 50),
    )
    assert return_payments(original, 50, {"GC-1": 180}) == (
        Payment("certificate", 20, code="GC-1"),
        Payment("head_office", 30),
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"store_id": "1", "hold_id": "h", "amounts": {"GC-1234": 0}}, "body.amounts.GC-1234"),
        ({"store_id": "1", "hold_id": "h", "amounts": {"GC-1234": -5}}, "body.amounts.GC-1234"),
        ({"store_id": "1", "hold_id": "h", "amounts": {"x": 5}}, "body.amounts"),
        ({"store_id": "1", "hold_id": "h", "amounts": []}, "body.amounts"),
        ({"store_id": "1", "hold_id": "h", "amounts": {}, "x": 1}, "body.x"),
    ],
)
def test_bad_hold_requests_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_hold(body)
    assert caught.value.field == field


def test_bad_batch_names_the_field() -> None:
    good = {"batch_id": "b", "title": "t", "product_id": "p", "count": 1}
    parse_batch(good)
    for key, value in (("count", 0), ("nominal_minor", -1), ("prefix", "gc"), ("title", "")):
        with pytest.raises(InvalidRequest, match=f"body.{key}"):
            parse_batch({**good, key: value})


def test_line_and_payment_codes_round_trip_the_wire() -> None:
    from sync_protocol import decode_sale, encode_sale

    sale = _pay("GC-1", 1, 500)
    sale = replace(sale, lines=(replace(sale.lines[0], certificate_code="GC-2"),))
    back = decode_sale(encode_sale(sale))
    assert back.payments[0].code == "GC-1"
    assert back.lines[0].certificate_code == "GC-2"
    plain = make_sale(1)
    assert b"certificate_code" not in encode_sale(plain)
    assert isinstance(back.lines[0], SaleLine)


def test_the_certificates_of_sales_are_read_by_sale(storage: Storage) -> None:
    code, other = _batch(storage)
    sold = _sell(code, 1)
    paid = _pay(code, 2, 25_000)
    storage.sales.ingest([sold, paid, _sell(other, 3)], T0)
    found = storage.certificates.of_sales([sold.sale_id, paid.sale_id], T0)
    assert [(f["code"], f["kind"], f["amount_minor"], f["sale_id"]) for f in found] == [
        (code, "activate", 100_000, sold.sale_id),
        (code, "redeem", -25_000, paid.sale_id),
    ]
    assert {(f["state"], f["balance_minor"]) for f in found} == {("partially_used", 75_000)}
    assert storage.certificates.of_sales([], T0) == []
    assert storage.certificates.of_sales(["no-such-sale"], T0) == []
