"""Gift certificates at the register, pure parts: the slip line with the balance left, the
inputs (certificate lines, the tender), the open receipt keeping its certificate tenders."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from pos_agent.certificates import HeldCertificate
from pos_agent.errors import InvalidField
from pos_agent.inputs import parse_certificate, parse_confirm, parse_lines
from pos_agent.receipts import OpenReceipt
from pos_agent.slips import receipt_slip
from printers import Line, layout
from sync_protocol import Payment, Sale, SaleLine

CLOSED = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
CODE = "GC-123456789012"


def _sale() -> Sale:
    return Sale(
        sale_id="s-1",
        store_id="406",
        register_id="406-1",
        seq=7,
        opened_at=CLOSED,
        closed_at=CLOSED,
        card_no=None,
        lines=(SaleLine(1, "milk", 1000, 50_000, 50_000),),
        payments=(Payment("cash", 20_000), Payment("certificate", 30_000, code=CODE)),
        loyalty=(),
        subtotal_minor=50_000,
        discount_minor=0,
        total_minor=50_000,
        promo_version=1,
    )


@pytest.mark.parametrize(
    ("language", "paid", "left"),
    [
        ("ru", f"Сертификат {CODE}", "Остаток на сертификате"),
        ("en", f"Gift certificate {CODE}", "Left on the certificate"),
    ],
)
def test_the_slip_prints_the_certificate_payment_and_its_balance_left(
    language: str, paid: str, left: str
) -> None:
    slip = receipt_slip(_sale(), language=language, certificates={CODE: 70_000})
    lines = [item.text for item in layout(slip, 42) if isinstance(item, Line)]
    (paid_line,) = [line for line in lines if line.startswith(paid)]
    assert paid_line.endswith("300.00")
    (left_line,) = [line for line in lines if line.strip().startswith(left)]
    assert left_line.endswith("700.00")
    # Without the balance (a reprint), the payment line alone.
    lines = [
        i.text for i in layout(receipt_slip(_sale(), language=language), 42) if isinstance(i, Line)
    ]
    assert any(line.startswith(paid) for line in lines)
    assert not any(left in line for line in lines)


def test_a_certificate_line_sells_one_certificate() -> None:
    (line,) = parse_lines(
        {
            "product_id": "GIFT",
            "qty_milli": 1000,
            "unit_price_minor": 100,
            "certificate_code": " gc-1234 ",
        }
    )
    assert line.certificate_code == "GC-1234"
    with pytest.raises(InvalidField) as caught:
        parse_lines({"product_id": "GIFT", "qty_milli": 2000, "certificate_code": "GC-1234"})
    assert caught.value.field == "qty_milli"
    with pytest.raises(InvalidField) as caught:
        parse_lines({"product_id": "GIFT", "qty_milli": 1000, "certificate_code": "?"})
    assert caught.value.field == "certificate_code"


def test_the_certificate_tender_is_checked_and_not_a_free_payment() -> None:
    assert parse_certificate({"code": "gc-1234", "amount_minor": 500}) == ("GC-1234", 500)
    for body, field in (
        ({"code": "GC-1234", "amount_minor": 0}, "amount_minor"),
        ({"code": "GC-1234", "amount_minor": -5}, "amount_minor"),
        ({"code": "GC-1234", "amount_minor": "5"}, "amount_minor"),
        ({"code": "", "amount_minor": 5}, "code"),
    ):
        with pytest.raises(InvalidField) as caught:
            parse_certificate(body)
        assert caught.value.field == field
    with pytest.raises(InvalidField) as caught:
        parse_confirm({"payments": [{"method": "certificate", "amount_minor": 5}]})
    assert caught.value.field == "payments[0].method"


def test_the_open_receipt_keeps_its_certificate_tenders() -> None:
    receipt = OpenReceipt("r1", CLOSED)
    held = HeldCertificate(CODE, 30_000, 100_000, "online")
    receipt = receipt.with_certificate(held)
    receipt = receipt.with_certificate(replace(held, amount_minor=20_000))  # replaces
    back = OpenReceipt.from_json(receipt.to_json())
    assert back.certificates == (replace(held, amount_minor=20_000),)
    assert back.to_dict()["certificates"][0]["remaining_minor"] == 80_000
    assert back.without_certificate(CODE).certificates == ()
