"""Customer display drivers: command bytes per command set, text fitted to 20 columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from printers import CustomerDisplay, DisplayError, RecordingTransport, open_display


def _display(protocol: str, **kwargs: object) -> tuple[CustomerDisplay, RecordingTransport]:
    transport = RecordingTransport()
    return CustomerDisplay(transport, protocol, **kwargs), transport  # type: ignore[arg-type]


@pytest.mark.parametrize(("protocol", "table"), [("epson", 6), ("cd5220", 7)])
def test_init_sends_the_configured_code_table_after_the_reset(protocol: str, table: int) -> None:
    display, transport = _display(protocol, code_table=table)
    display.init()

    assert transport.frames[0].startswith(b"\x1b@\x1bt" + bytes([table]))


def test_lines_are_cut_and_padded_to_the_width() -> None:
    display, transport = _display("cd5220")
    display.show("Молоко ультрапастеризованное", "")

    frame = transport.frames[0]
    assert frame == (
        b"\x1bQA" + "Молоко ультрапастери".encode("cp866") + b"\r\x1bQB" + b" " * 20 + b"\r"
    )


def test_control_characters_are_not_sent_as_commands() -> None:
    display, transport = _display("epson")
    display.show_line(2, "a\x0cb\x1b@")

    assert transport.frames[0] == b"\x1f\x01\x1f$\x01\x02" + b"a b @" + b" " * 15


def test_cp1251_displays() -> None:
    display, transport = _display("epson", code_page="CP1251", code_table=46)
    display.show_line(1, "Итого")

    assert "Итого".encode("cp1251") in transport.frames[0]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda d: d.brightness(5), "brightness"),
        (lambda d: d.show_line(3, "x"), "row"),
    ],
)
def test_out_of_range_settings_are_refused(call: object, match: str) -> None:
    display, _ = _display("epson")
    with pytest.raises(DisplayError, match=match):
        call(display)  # type: ignore[operator]


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(DisplayError, match="ncr"):
        _display("ncr")


def test_file_display_appends(tmp_path: Path) -> None:
    path = tmp_path / "display.bin"
    display = open_display(f"file://{path}", "cd5220")
    display.init()
    display.clear()

    assert path.read_bytes() == b"\x1b@\x1bt\x11\x0c"
