"""Printed barcodes and QR codes read back by an independent reader (zxing-cpp).

Profiles without hardware barcodes (here "simple") get raster images (GS v 0); the test
decodes the raster from the bytes and lets ZXing read it, so neither side is our own code.
Hardware codes (GS k, GS ( k) are checked field by field in test_golden.py instead.
"""

from __future__ import annotations

import pytest

from printers import render_slip, self_test_slip
from printers.testpage import TEST_CODE128, TEST_EAN13, TEST_QR
from tests.printers.escpos_decoder import decode, raster_images
from tests.printers.slips import coupon_slip

zxingcpp = pytest.importorskip("zxingcpp")


def _read(data: bytes) -> set[tuple[str, str]]:
    from PIL import ImageOps

    found = set()
    for image in raster_images(decode(data)):
        # A quiet zone around the symbol, as the paper margin gives a hand scanner.
        for result in zxingcpp.read_barcodes(ImageOps.expand(image, border=32, fill=255)):
            found.add((result.format.name, result.text))
    return found


def test_the_test_page_codes_scan() -> None:
    found = _read(render_slip(self_test_slip("x"), profile="simple", columns=48))

    assert found == {("EAN13", TEST_EAN13), ("Code128", TEST_CODE128), ("QRCode", TEST_QR)}


def test_the_coupon_codes_scan() -> None:
    found = _read(render_slip(coupon_slip(), profile="simple", columns=42))

    assert ("EAN13", "4607001771005") in found
    assert ("Code128", "CPN-7F3A-2026") in found
    assert ("QRCode", "https://loyalty.example/c/CPN-7F3A-2026") in found
