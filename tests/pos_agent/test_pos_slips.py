"""What the register prints, in Russian and English: loyalty section, pending bonuses, coupons."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pos_agent.slips import (
    Coupon,
    coupon_slip,
    display_item,
    display_total,
    loyalty_summary,
    money,
    receipt_slip,
)
from printers import Barcode, Line, QRCode, layout, render_slip
from sync_protocol import LineDiscount, LoyaltyMovement, Payment, Sale, SaleLine
from tests.printers.escpos_decoder import decode

CLOSED = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 1, tzinfo=UTC)


def _sale(card_no: str | None = "7001", loyalty: tuple[LoyaltyMovement, ...] = ()) -> Sale:
    return Sale(
        sale_id="s-1",
        store_id="367",
        register_id="367-1",
        seq=42,
        opened_at=CLOSED,
        closed_at=CLOSED,
        card_no=card_no,
        lines=(
            SaleLine(1, "milk", 1000, 8990, 8990, (LineDiscount("milk-10", 899),)),
            SaleLine(2, "bananas", 1250, 12900, 16125, weighed=True),
        ),
        payments=(Payment("cash", 24216),),
        loyalty=loyalty,
        subtotal_minor=25115,
        discount_minor=899,
        total_minor=24216,
        promo_version=3,
        messages=("Скидка 10% на молоко",),
    )


MOVES = (
    LoyaltyMovement("bonus", "accrue", 3500, "acc-1", None, None),
    LoyaltyMovement("bonus", "accrue", 1500, "acc-later", LATER, None),
    LoyaltyMovement("bonus", "spend", 1000, "", None, None),
)


def _text(slip_lines: tuple[object, ...]) -> list[str]:
    return [item.text for item in slip_lines if isinstance(item, Line)]


def test_loyalty_summary_separates_pending_accruals() -> None:
    summary = loyalty_summary(_sale(loyalty=MOVES), balance_before=12000)

    assert summary is not None
    assert (summary.accrued, summary.spent, summary.pending) == (3500, 1000, ((1500, LATER),))
    assert summary.balance_after == 12000 - 1000 + 3500
    assert loyalty_summary(_sale(card_no=None), 0) is None


@pytest.mark.parametrize("columns", [32, 42, 48])
def test_russian_receipt(columns: int) -> None:
    sale = _sale(loyalty=MOVES)
    lines = _text(layout(receipt_slip(sale, loyalty=loyalty_summary(sale, 12000)), columns))

    assert all(len(line) <= columns for line in lines)
    assert any(line.startswith("Баланс до") and line.endswith("120.00") for line in lines)
    assert any(line.startswith("Баланс после") and line.endswith("145.00") for line in lines)
    assert any(line.startswith("Ожидает с 01.12.2026") and line.endswith("15.00") for line in lines)
    assert any(line.startswith("  Скидка milk-10") and line.endswith("-8.99") for line in lines)
    assert any(line.startswith("  1.250 x 129.00") and line.endswith("161.25") for line in lines)
    assert "Начислено 50.00 бонусов" in lines
    assert "Скидка 10% на молоко" in lines


def test_english_receipt_prints_through_cp866_too() -> None:
    sale = _sale(loyalty=MOVES)
    slip = receipt_slip(sale, loyalty=loyalty_summary(sale, 12000), language="en")

    lines = decode(render_slip(slip, columns=48)).text_lines()
    assert any(line.startswith("Balance after") and line.endswith("145.00") for line in lines)
    assert any(line.startswith("Pending from 01.12.2026") for line in lines)
    assert "You earned 50.00 bonuses" in lines


def test_a_sale_without_a_card_has_no_loyalty_section() -> None:
    lines = _text(layout(receipt_slip(_sale(card_no=None)), 42))

    assert not any("лояльности" in line for line in lines)


def test_coupon_barcodes_follow_the_code() -> None:
    digits = coupon_slip(Coupon("460700177100", "next-visit-15", LATER))
    text = coupon_slip(Coupon("CPN-7F3A", "next-visit-15"), language="en")

    assert Barcode("460700177100", "EAN13") in digits.blocks
    assert Barcode("CPN-7F3A", "CODE128") in text.blocks
    assert QRCode("CPN-7F3A") in text.blocks
    lines = _text(layout(digits, 32))
    assert any(line.startswith("Действует до") and line.endswith("01.12.2026") for line in lines)
    assert "COUPON" in " ".join(_text(layout(text, 32)))


def test_display_frames_fit_twenty_columns() -> None:
    assert display_item("milk", 1000, 8990, 8990) == ("milk", "89.90".rjust(20))
    line1, line2 = display_item("bananas-yellow-ecuador-premium", 1250, 12900, 16125)
    assert line1 == "bananas-yellow-ecuad"
    assert line2 == "1.250x129.00" + "161.25".rjust(8)
    assert display_total(24216) == ("ИТОГО", "242.16".rjust(20))
    assert display_total(24216, "en")[0] == "TOTAL"
    assert money(-5) == "-0.05"


def test_receipt_prints_product_names_from_the_replica_and_ids_otherwise() -> None:
    names = {"milk": "Молоко 3,2% 1 л", "unused": "x"}
    lines = _text(layout(receipt_slip(_sale(), names=names), 42))

    assert any(line.startswith("Молоко 3,2% 1 л") and line.endswith("89.90") for line in lines)
    assert "bananas" in lines  # not in the replica: the id is printed


def test_display_item_shows_the_label_it_is_given() -> None:
    first, second = display_item("Молоко 3,2% 1 л пастеризованное", 1000, 8990, 8990)

    assert first == "Молоко 3,2% 1 л паст"
    assert second == "89.90".rjust(20)


def test_each_wallet_is_printed_on_its_own_line_never_added_into_bonus() -> None:
    moves = (
        LoyaltyMovement("bonus", "accrue", 20077, "acc-1", None, None),
        LoyaltyMovement("stickers", "accrue", 2, "stick", None, None),
        LoyaltyMovement("draw", "accrue", 1, "lottery", None, None),
        LoyaltyMovement("stickers", "spend", 5, "", None, None),
    )
    sale = _sale(loyalty=moves)
    summary = loyalty_summary(sale, balance_before=1000)
    assert summary is not None
    assert (summary.accrued, summary.spent, summary.balance_after) == (20077, 0, 21077)
    lines = _text(layout(receipt_slip(sale, loyalty=summary), 42))

    def row(label: str) -> str:
        (found,) = [line for line in lines if line.startswith(label)]
        return found.split()[-1]

    assert row("Начислено  ") == "200.77"  # was 200.80: 2 stickers and 1 entry added in
    assert row("Наклейки: начислено") == "+2"
    assert row("Наклейки: списано") == "-5"
    assert row("Участия в розыгрыше: начислено") == "+1"
    assert row("Баланс после") == "210.77"
    assert "Начислено 200.77 бонусов" in lines
    english = _text(layout(receipt_slip(sale, loyalty=summary, language="en"), 42))
    assert any(line.startswith("Stickers: earned") and line.endswith("+2") for line in english)


def test_a_discount_is_named_by_its_promotions_title() -> None:
    titles = {"milk-10": "Молоко: 10 % по четвергам"}
    lines = _text(layout(receipt_slip(_sale(), titles=titles), 42))

    assert any(
        line.startswith("  Молоко: 10 % по четвергам") and line.endswith("-8.99") for line in lines
    )
    assert not any("milk-10" in line for line in lines)
    # Without a title the rule id still says which promotion it was.
    assert any(
        line.startswith("  Скидка milk-10") for line in _text(layout(receipt_slip(_sale()), 42))
    )


def test_a_coupon_names_the_promotion_that_issued_it() -> None:
    coupon = Coupon("NEXT5-2026120712", "next-visit", LATER)
    lines = _text(layout(coupon_slip(coupon, titles={"next-visit": "5 % в следующий раз"}), 32))
    assert "5 % в следующий раз" in [line.strip() for line in lines]


@pytest.mark.parametrize(
    ("profile", "columns", "dots"), [("Sunmi-V2", 32, 384), ("TM-T20II", 48, 576)]
)
def test_a_register_issued_coupon_fits_58_and_80_mm(profile: str, columns: int, dots: int) -> None:
    from tests.printers.escpos_decoder import code128_text

    coupon = Coupon("NEXT5-2026120712", "next-visit", LATER)
    decoded = decode(render_slip(coupon_slip(coupon), profile=profile, columns=columns))
    (barcode,) = decoded.of("barcode")
    payload = barcode.args["data"].encode("latin-1")
    assert code128_text(payload) == "NEXT5-2026120712"
    (module,) = [e.args["n"] for e in decoded.of("GS w")]
    symbols = len(payload) - payload.count(b"{") + 1  # selectors count once, plus the check
    assert (symbols * 11 + 13 + 2 * 10) * module <= dots
