"""Pure layout: widths 32/42/48, two columns, wrapping, and no control characters leak."""

from __future__ import annotations

import pytest

from printers import COLUMNS, Barcode, Line, Row, Rule, Slip, Text, layout
from tests.printers.slips import coupon_slip, receipt_slip


def _lines(slip: Slip, columns: int) -> list[Line]:
    return [item for item in layout(slip, columns) if isinstance(item, Line)]


@pytest.mark.parametrize("columns", COLUMNS)
def test_no_line_is_wider_than_the_paper(columns: int) -> None:
    for slip in (receipt_slip(), coupon_slip()):
        for line in _lines(slip, columns):
            width = columns // 2 if line.double else columns
            assert len(line.text) <= width, (columns, line)


@pytest.mark.parametrize("columns", COLUMNS)
def test_two_columns_end_at_the_right_edge(columns: int) -> None:
    lines = _lines(Slip((Row("Хлеб", "45.00"),)), columns)

    assert [line.text for line in lines] == ["Хлеб" + " " * (columns - 9) + "45.00"]


def test_long_names_wrap_and_the_amount_goes_on_the_last_line() -> None:
    row = Row("Молоко ультрапастеризованное 3,2% 1 л Простоквашино", "89.90")

    lines = [line.text for line in _lines(Slip((row,)), 32)]

    assert lines == ["Молоко", "ультрапастеризованное 3,2%", "1 л Простоквашино          89.90"]
    assert " ".join(line.split("  ")[0].strip() for line in lines).startswith("Молоко ультра")


def test_a_right_column_wider_than_the_paper_goes_under_the_left() -> None:
    lines = [line.text for line in _lines(Slip((Row("Card", "9" * 40),)), 32)]

    assert lines[0] == "Card"
    assert all(len(line) == 32 for line in lines[1:])
    assert "".join(lines[1:]).replace(" ", "") == "9" * 40


def test_alignment_and_double_width() -> None:
    lines = _lines(
        Slip(
            (
                Text("ab", align="center"),
                Text("ab", align="right"),
                Text("ИТОГО", double=True, align="right"),
            )
        ),
        32,
    )

    assert lines[0].text == " " * 15 + "ab"
    assert lines[1].text == " " * 30 + "ab"
    assert lines[2].text == " " * 11 + "ИТОГО" and lines[2].double


def test_control_characters_never_reach_the_printer() -> None:
    lines = _lines(Slip((Text("evil\x1b@\x1dV\x00name"), Row("x\x1bt\x05", "1\n2"))), 32)

    assert all(ord(ch) >= 0x20 for line in lines for ch in line.text)


def test_rules_fill_the_width_and_codes_pass_through() -> None:
    code = Barcode("4607001771005", "EAN13")
    out = layout(Slip((Rule("="), code)), 42)

    assert out == (Line("=" * 42), code)


def test_too_narrow_is_refused() -> None:
    with pytest.raises(ValueError, match="columns"):
        layout(Slip(()), 10)


def test_an_indented_row_keeps_its_indent_when_it_wraps() -> None:
    row = Row("  5 % off from 50.00, 10 % off from 100.00", "-3.00")
    lines = [item.text for item in layout(Slip((row,)), 32) if isinstance(item, Line)]

    assert lines == ["  5 % off from 50.00, 10 %", "  off from 100.00          -3.00"]
