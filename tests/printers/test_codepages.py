"""The code page is explicit and survives every reset: one test per python-escpos 3.1 bug."""

from __future__ import annotations

import pytest
from escpos.printer import Dummy

from printers import (
    CodePageError,
    EscposPrinter,
    QRCode,
    Slip,
    Text,
    render_slip,
    resolve_slot,
)
from tests.printers.escpos_decoder import decode
from tests.printers.slips import receipt_slip

ESC_T_CP866 = b"\x1bt\x11"


def test_upstream_forgets_the_code_page_after_esc_at() -> None:
    # The bug being worked around: after hw("INIT") python-escpos sends no ESC t again,
    # so the printer is back on page 0 while CP866 bytes keep coming.
    upstream = Dummy(profile="default")
    upstream.text("Привет\n")
    upstream.hw("INIT")
    upstream.text("Мир\n")
    assert upstream.output.endswith(b"\x1b@" + "Мир\n".encode("cp866"))

    ours = Dummy(profile="default")
    printer = EscposPrinter(ours, code_page="CP866", columns=32)
    printer.print_slip(Slip((Text("Привет"),), cut=False))
    printer.print_slip(Slip((Text("Мир"),), cut=False))

    data = bytes(ours.output)
    assert data.count(b"\x1b@") == 2
    assert data.count(b"\x1b@" + ESC_T_CP866) == 2
    assert decode(data).text_lines()[:2] == ["Привет", "Мир"]


def test_upstream_picks_the_last_of_duplicate_slots_we_pick_the_standard_one() -> None:
    # POS-5890 lists CP866 at slots 17 and 59; python-escpos 3.1 selects 59.
    upstream = Dummy(profile="POS-5890")
    upstream.charcode("CP866")
    assert upstream.output == b"\x1bt;"

    assert resolve_slot("CP866", {"17": "CP866", "59": "CP866"}) == 17
    data = render_slip(Slip((Text("Чек"),)), profile="POS-5890", columns=32)
    assert data.startswith(b"\x1b@" + ESC_T_CP866)
    assert decode(data).text_lines()[0] == "Чек"


def test_an_explicit_slot_overrides_the_profile() -> None:
    data = render_slip(Slip((Text("Чек"),)), profile="POS-5890", code_page_slot=59, columns=32)

    assert data.startswith(b"\x1b@\x1bt;")
    assert decode(data).text_lines()[0] == "Чек"


def test_a_profile_without_the_page_still_prints_cyrillic() -> None:
    # The "simple" profile lists no CP866: python-escpos prints question marks.
    upstream = Dummy(profile="simple")
    upstream.text("Чек\n")
    assert b"???" in upstream.output

    data = render_slip(Slip((Text("Чек"),)), profile="simple", columns=32)
    assert data.startswith(b"\x1b@" + ESC_T_CP866)
    assert decode(data).text_lines()[0] == "Чек"


def test_the_page_is_selected_again_after_an_image_qr_code() -> None:
    # python-escpos writes "\n" around an image QR through its magic encoder, which emits
    # ESC t 1 on POS-5890: Cyrillic after the code would print as garbage without a re-select.
    slip = Slip((Text("До"), QRCode("https://loyalty.example/c/1"), Text("После")))

    decoded = decode(render_slip(slip, profile="POS-5890", columns=32))

    slots = [e.args["slot"] for e in decoded.of("codepage")]
    assert 1 in slots and slots[-1] == 17
    lines = [line for line in decoded.text_lines() if line.strip()]
    assert lines[0] == "До" and lines[-1] == "После"


def test_cp1251_is_configurable() -> None:
    data = render_slip(Slip((Text("Сдача"),)), code_page="CP1251", columns=32)

    assert data.startswith(b"\x1b@\x1bt\x2e")
    assert "Сдача".encode("cp1251") in data
    assert decode(data).text_lines()[0] == "Сдача"


def test_every_text_byte_of_a_receipt_is_under_the_selected_page() -> None:
    decoded = decode(render_slip(receipt_slip(), profile="TM-T20II", columns=48))

    assert {e.args["page"] for e in decoded.of("text")} == {17}
    assert "Программа лояльности" in "\n".join(decoded.text_lines())


def test_unknown_code_pages_are_refused_with_the_name() -> None:
    with pytest.raises(CodePageError, match="CP9999"):
        render_slip(Slip(()), code_page="CP9999")
    with pytest.raises(CodePageError, match="KOI8-R"):
        resolve_slot("KOI8-R", {})


def test_a_profile_that_cannot_render_a_barcode_prints_its_text() -> None:
    # ZJ-5870 has no hardware barcodes; python-escpos's image of a long code is wider than
    # its 384 dots and raises: the code's text is printed instead of failing the slip.
    from printers import Barcode

    code = "LOYALTY-COUPON-0123456789-ABCDEFGH"
    data = render_slip(Slip((Barcode(code), Text("Ещё"))), profile="ZJ-5870", columns=32)

    decoded = decode(data)
    assert not decoded.of("barcode") and not decoded.of("column_image")
    assert decoded.text_lines()[:2] == [code, "Ещё"]
