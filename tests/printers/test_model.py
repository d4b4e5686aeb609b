"""Barcode data is checked before anything is printed."""

from __future__ import annotations

import pytest

from printers import Barcode, BarcodeError, QRCode, ean13_check_digit


def test_ean13_check_digit_is_computed_and_verified() -> None:
    assert ean13_check_digit("460700177100") == "5"
    assert Barcode("460700177100", "EAN13").full_data == "4607001771005"
    assert Barcode("4607001771005", "EAN13").full_data == "4607001771005"
    with pytest.raises(BarcodeError, match="check digit should be 5"):
        Barcode("4607001771009", "EAN13")


@pytest.mark.parametrize("data", ["12345", "46070017710a", "46070017710051"])
def test_bad_ean13_names_the_data(data: str) -> None:
    with pytest.raises(BarcodeError, match=data):
        Barcode(data, "EAN13")


def test_code128_is_printable_ascii_only() -> None:
    assert Barcode("CPN-7F3A").full_data == "CPN-7F3A"
    with pytest.raises(BarcodeError, match="CODE128"):
        Barcode("КУПОН")


def test_qr_limits() -> None:
    with pytest.raises(BarcodeError, match="size"):
        QRCode("x", size=17)
    with pytest.raises(BarcodeError, match="QR data"):
        QRCode("")
