"""Slips the printer tests share: a Russian receipt with a loyalty section, and a coupon."""

from __future__ import annotations

from printers import Barcode, Feed, QRCode, Row, Rule, Slip, Text


def receipt_slip() -> Slip:
    return Slip(
        (
            Text("Магазин №367", align="center", bold=True),
            Text("Касса 367-1  Чек 42", align="center"),
            Rule(),
            Row("Молоко ультрапастеризованное 3,2% 1 л Простоквашино", "89.90"),
            Row("  Скидка 10% на молоко", "-8.99"),
            Row("Хлеб Бородинский 400 г", "45.00"),
            Row("Bananas 1.250 kg x 129.00", "161.25"),
            Rule(),
            Text("ИТОГО 287.16", align="right", bold=True, double=True),
            Row("Наличные", "287.16"),
            Rule("="),
            Text("Программа лояльности", align="center", bold=True),
            Row("Карта", "7001000012345"),
            Row("Баланс до", "120"),
            Row("Начислено", "28"),
            Row("Списано", "0"),
            Row("Баланс после", "148"),
            Row("Ожидает с 01.12.2026", "15"),
            Text("Начислено 28 бонусов. Спасибо за покупку!"),
            Feed(1),
        )
    )


def coupon_slip() -> Slip:
    return Slip(
        (
            Text("КУПОН / COUPON", align="center", bold=True, double=True),
            Text("Скидка 15% на весь чек при следующей покупке", align="center"),
            Row("Действует до", "31.12.2026"),
            Row("Valid until", "2026-12-31"),
            Barcode("460700177100", "EAN13"),
            Barcode("CPN-7F3A-2026", "CODE128"),
            QRCode("https://loyalty.example/c/CPN-7F3A-2026"),
            Feed(1),
        )
    )
