"""Every barcode and QR code fits the paper with its quiet zones, on 58 mm and 80 mm printers.

The printed width is computed from the real ESC/POS bytes by the tests' own decoder: GS w (module
width) times the modules of the GS k data (counted here from the symbology's definition), the QR
module size (GS ( k 167) times the modules of the version the `qrcode` library needs for the data,
or the raster image (GS v 0) as printed. Nothing here calls printers.fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import qrcode
from qrcode.util import MODE_8BIT_BYTE, QRData

from printers import Barcode, QRCode, Slip, Text, render_slip, self_test_slip
from tests.printers.escpos_decoder import CODE128_B, EAN13_A, Decoded, decode, raster_images
from tests.printers.slips import coupon_slip


@dataclass(frozen=True)
class Paper:
    profile: str
    columns: int
    dots: int


PAPERS = [
    Paper("TM-T20II", 48, 576),  # 80 mm, hardware barcodes, native QR
    Paper("TM-T88V", 42, 512),  # 80 mm at 180 dpi
    Paper("Sunmi-V2", 32, 384),  # 58 mm, hardware barcodes, native QR
    Paper("POS-5890", 32, 384),  # 58 mm, barcodes and QR as raster images
]
QUIET = {"EAN13": 11, "CODE128": 10, "QR": 4}
LONG_CODE = "COUPON-ABCDEFGH-XYZ"  # 19 characters of set B: too wide for 58 mm at 2 dots


def _code128_modules(payload: bytes) -> int:
    """Modules of a GS k 73 payload: {A/{B/{C select a set (the first is the start symbol),
    {{ is a literal {, each other byte one symbol; then the check symbol and the stop (13)."""
    symbols, i = 0, 0
    while i < len(payload):
        if payload[i : i + 1] == b"{" and payload[i + 1 : i + 2] in (b"A", b"B", b"C", b"{"):
            i += 2
        else:
            i += 1
        symbols += 1
    return (symbols + 1) * 11 + 13


def _qr_modules(data: str) -> int:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(QRData(data.encode("utf-8"), mode=MODE_8BIT_BYTE))
    code.make(fit=True)
    assert code.version is not None
    return 17 + 4 * int(code.version)


def _hardware_codes(decoded: Decoded) -> list[dict[str, Any]]:
    """Each GS k barcode and native QR code with its printed width and alignment."""
    align, module, qr_size = 0, 3, 3
    codes: list[dict[str, Any]] = []
    for event in decoded.events:
        if event.kind == "ESC a":
            align = event.args["n"]
        elif event.kind == "GS w":
            module = event.args["n"]
        elif event.kind == "qr_size":
            qr_size = event.args["n"]
        elif event.kind == "barcode":
            m, data = event.args["m"], event.args["data"].encode("latin-1")
            if m == EAN13_A:
                kind, modules = "EAN13", 95
            else:
                assert m == CODE128_B, m
                kind, modules = "CODE128", _code128_modules(data)
            codes.append(
                {"kind": kind, "width": modules * module, "module": module, "align": align}
            )
        elif event.kind == "qr_store":
            modules = _qr_modules(event.args["data"])
            codes.append(
                {"kind": "QR", "width": modules * qr_size, "module": qr_size, "align": align}
            )
    return codes


def _slips() -> list[Slip]:
    return [
        self_test_slip("tcp://printer:9100"),
        coupon_slip(),
        Slip((Barcode("NEXT5-2026120712"), QRCode("NEXT5-2026120712", size=8))),
    ]


@pytest.mark.parametrize("paper", PAPERS, ids=lambda p: f"{p.profile}-{p.dots}")
@pytest.mark.parametrize("slip", _slips(), ids=["test-page", "coupon", "next-visit"])
def test_every_code_fits_the_paper_with_its_quiet_zones(paper: Paper, slip: Slip) -> None:
    decoded = decode(render_slip(slip, profile=paper.profile, columns=paper.columns))
    printed = _hardware_codes(decoded)
    images = raster_images(decoded)
    expected = [b for b in slip.blocks if isinstance(b, Barcode | QRCode)]
    # Every code is printed as a code (hardware or image), none fell back to text here.
    assert len(printed) + len(images) == len(expected), (printed, len(images))
    assert not (printed and images)
    for code in printed:
        assert code["align"] == 1, code  # centred: what is left of the paper is the margin
        margin = (paper.dots - code["width"]) // 2
        assert margin >= QUIET[code["kind"]] * code["module"], (paper, code)
        assert code["module"] >= 2, code  # narrower than 2 dots no scanner reads
    for image, block in zip(images, expected if images else [], strict=True):
        assert image.width <= paper.dots, (paper, image.width)
        kind = "QR" if isinstance(block, QRCode) else block.symbology
        row = [image.getpixel((x, image.height // 2)) for x in range(image.width)]
        black = [x for x, v in enumerate(row) if v < 128]
        runs = _runs(row)
        module = min(runs) if runs else 1
        assert black[0] >= QUIET[kind] * module, (kind, black[0], module)
        assert image.width - 1 - black[-1] >= QUIET[kind] * module, (kind, black[-1], module)


def _runs(row: list[int]) -> list[int]:
    """Lengths of the black runs of one pixel row (the narrowest is one module)."""
    runs, length = [], 0
    for value in row:
        if value < 128:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return runs


def test_the_test_page_code128_used_to_be_cut_and_now_fits_80_mm() -> None:
    decoded = decode(render_slip(self_test_slip(), profile="TM-T20II", columns=48))
    (code128,) = [c for c in _hardware_codes(decoded) if c["kind"] == "CODE128"]
    assert code128["width"] + 2 * 10 * code128["module"] <= 576
    # The same data at python-escpos's default module width of 3 on the old test page data
    # ("LOYALTY-TEST-128", all set B): (16 + 3) * 11 + 13 = 222 modules, 666 dots > 576.
    assert _code128_modules(b"{BLOYALTY-TEST-128") * 3 > 576


def test_digits_are_packed_in_code_set_c() -> None:
    decoded = decode(render_slip(Slip((Barcode("NEXT5-2026120712"),)), profile="TM-T20II"))
    (event,) = decoded.of("barcode")
    # NEXT5- in set B, then the ten digits as five pairs in set C (bytes 0..99).
    assert event.args["data"].encode("latin-1") == b"{BNEXT5-{C" + bytes([20, 26, 12, 7, 12])


def test_a_literal_brace_is_doubled() -> None:
    decoded = decode(render_slip(Slip((Barcode("A{B"),)), profile="TM-T20II"))
    assert [e.args["data"] for e in decoded.of("barcode")] == ["{BA{{B"]


@pytest.mark.parametrize("paper", PAPERS, ids=lambda p: f"{p.profile}-{p.dots}")
def test_a_code_too_long_for_the_paper_is_printed_as_text(paper: Paper) -> None:
    decoded = decode(
        render_slip(
            Slip((Barcode(LONG_CODE), Text("."))), profile=paper.profile, columns=paper.columns
        )
    )
    # 19 set-B symbols: (19 + 2) * 11 + 13 + 2 * 10 = 264 modules; 528 dots at 2 dots a module.
    if paper.dots >= 528:
        assert [c["kind"] for c in _hardware_codes(decoded)] == ["CODE128"]
    else:
        assert not decoded.of("barcode") and not raster_images(decoded)
        assert LONG_CODE in [line.strip() for line in decoded.text_lines()]


@pytest.mark.parametrize("paper", PAPERS, ids=lambda p: f"{p.profile}-{p.dots}")
def test_a_large_qr_code_gets_smaller_modules_not_cut(paper: Paper) -> None:
    data = "https://loyalty.example/c/" + "X" * 200  # version 10 at level M: 57 modules
    decoded = decode(render_slip(Slip((QRCode(data, size=12),)), profile=paper.profile))
    for code in _hardware_codes(decoded):
        assert code["width"] + 2 * 4 * code["module"] <= paper.dots, code
        assert code["module"] < 12
    for image in raster_images(decoded):
        assert image.width <= paper.dots
