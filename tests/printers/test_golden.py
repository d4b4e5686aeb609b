"""Golden bytes for a receipt, a coupon and display frames, checked against the command specs.

Regenerate after an intended change with LOYALTY_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from printers import CustomerDisplay, RecordingTransport, render_slip
from tests.printers.escpos_decoder import CODE128_B, EAN13_A, decode
from tests.printers.slips import coupon_slip, receipt_slip

GOLDEN = Path(__file__).parent / "golden"


def _check_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("LOYALTY_UPDATE_GOLDEN"):
        path.write_bytes(data)
    assert path.read_bytes() == data, f"{name} changed; LOYALTY_UPDATE_GOLDEN=1 to accept"


def test_receipt_golden_48_columns() -> None:
    data = render_slip(receipt_slip(), profile="TM-T20II", columns=48)
    _check_golden("receipt_tm-t20ii_48.bin", data)

    decoded = decode(data)
    assert decoded.kinds()[:2] == ["init", "codepage"]
    assert decoded.events[1].args["slot"] == 17
    assert decoded.of("cut")[-1].args["m"] == 0  # GS V 0: full cut
    lines = decoded.text_lines()
    assert lines[0] == " " * 18 + "Магазин №367"
    assert "Баланс после" + " " * 33 + "148" in lines
    assert any(line.startswith("Молоко ультрапастеризованное") for line in lines)


def test_coupon_golden_42_columns() -> None:
    data = render_slip(coupon_slip(), profile="default", columns=42)
    _check_golden("coupon_default_42.bin", data)

    decoded = decode(data)
    codes = [(e.args["m"], e.args["data"]) for e in decoded.of("barcode")]
    # GS k m: m=2 is EAN-13 (function A, NUL-terminated), m=73 CODE128 (function B, "{B" set,
    # then "{C" and the digits 2026 as the pairs 20, 26).
    assert codes == [(EAN13_A, "4607001771005"), (CODE128_B, "{BCPN-7F3A-{C\x14\x1a")]
    # 42 columns are 504 dots: EAN-13 keeps 3 dots a module, CODE128 needs 2 to fit.
    assert [e.args["n"] for e in decoded.of("GS w")] == [3, 2]
    assert [e.args["data"] for e in decoded.of("qr_store")] == [
        "https://loyalty.example/c/CPN-7F3A-2026"
    ]
    assert decoded.of("qr_model")[0].args["n"] == 50  # model 2
    assert decoded.of("qr_ec")[0].args["n"] == 49  # level M
    assert decoded.kinds().index("qr_store") < decoded.kinds().index("qr_print")
    assert any("КУПОН / COUPON" in line for line in decoded.text_lines())


@pytest.mark.parametrize("protocol", ["epson", "cd5220"])
def test_display_frames_golden(protocol: str) -> None:
    transport = RecordingTransport()
    display = CustomerDisplay(transport, protocol, code_page="CP866", code_table=17)
    display.init()
    display.brightness(3)
    display.clear()
    display.show("Молоко 3,2%", "89.90")
    display.show("ИТОГО", "287.16")
    display.scroll("Начислено 28 бонусов")
    _check_golden(f"display_{protocol}.bin", transport.data)

    frames = transport.frames
    assert frames[0].startswith(b"\x1b@\x1bt\x11")  # ESC @ then the code table, ESC t n
    assert frames[2] == b"\x0c"  # FF clears the display
    line1 = "Молоко 3,2%".ljust(20).encode("cp866")
    if protocol == "epson":
        assert frames[1] == b"\x1fX\x03"  # US X n: brightness
        assert frames[3].startswith(b"\x1f\x01\x1f$\x01\x01" + line1)  # US MD1, US $ x y
        assert frames[5].startswith(b"\x1f\x03")  # US MD3: horizontal scroll mode
    else:
        assert frames[1] == b"\x1b*\x03"  # ESC * n: brightness
        assert frames[3].startswith(b"\x1bQA" + line1 + b"\r\x1bQB")  # ESC Q A / ESC Q B
        assert frames[5] == b"\x1bQD" + "Начислено 28 бонусов".encode("cp866") + b"\r"
