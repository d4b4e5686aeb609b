"""The test slip every POS system prints: Latin and Cyrillic text, EAN-13, CODE128, QR, cut."""

from __future__ import annotations

from printers.model import Barcode, Feed, QRCode, Row, Rule, Slip, Text

__all__ = ["TEST_CODE128", "TEST_EAN13", "TEST_QR", "self_test_slip"]

TEST_EAN13 = "4607001771005"
TEST_CODE128 = "LOYAL-12345678"
"""Short enough (set B, then set C for the digits) to fit 58 mm paper at 2 dots a module."""
TEST_QR = "https://loyalty.example/test?slip=1"


def self_test_slip(label: str = "") -> Slip:
    """The printer test page; `label` (e.g. the device URI) is printed under the title."""
    return Slip(
        (
            Text("TEST PAGE / ТЕСТОВАЯ СТРАНИЦА", align="center", bold=True),
            Text(label, align="center"),
            Rule("="),
            Text("Latin: The quick brown fox jumps over the lazy dog 0123456789"),
            Text("Кириллица: Съешь же ещё этих мягких французских булок, да выпей чаю"),
            Row("Молоко 3,2% 1 л", "89.90"),
            Row("Long item name that has to wrap onto a second line", "1234.50"),
            Text("ИТОГО 1324.40", align="right", bold=True, double=True),
            Rule(),
            Text("EAN-13", align="center"),
            Barcode(TEST_EAN13, "EAN13"),
            Text("CODE128", align="center"),
            Barcode(TEST_CODE128, "CODE128"),
            Text("QR", align="center"),
            QRCode(TEST_QR),
            Feed(1),
        )
    )
