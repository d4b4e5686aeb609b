"""Pure layout: a Slip and a paper width in characters -> the exact lines to print."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from printers.model import Align, Barcode, Feed, QRCode, Row, Rule, Slip, Text

__all__ = ["COLUMNS", "Line", "Printable", "clean", "layout"]

COLUMNS = (32, 42, 48)


@dataclass(frozen=True, slots=True)
class Line:
    """One printed text line, already padded for its alignment (no trailing spaces)."""

    text: str
    bold: bool = False
    double: bool = False


Printable = Line | Barcode | QRCode


def clean(text: str) -> str:
    """The text with control characters (which a printer would obey) turned into spaces."""
    return "".join(" " if (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0) else ch for ch in text)


def _wrap(text: str, width: int) -> list[str]:
    text = clean(text)
    # A leading indent (a discount under its line) carries on to the wrapped lines.
    indent = " " * min(len(text) - len(text.lstrip(" ")), width // 4)
    wrapped = textwrap.wrap(
        text,
        width=width,
        break_long_words=True,
        break_on_hyphens=False,
        subsequent_indent=indent,
    )
    return wrapped or [""]


def _align(text: str, width: int, align: Align) -> str:
    if align == "center":
        text = " " * ((width - len(text)) // 2) + text
    elif align == "right":
        text = " " * (width - len(text)) + text
    return text.rstrip()


def _row(row: Row, width: int) -> list[str]:
    right = clean(row.right).strip()
    if len(right) > width - 2:
        # The right column alone fills the line: left text above, right text under it.
        lefts = _wrap(row.left, width) if row.left.strip() else []
        return [*lefts, *(_align(r, width, "right") for r in _wrap(right, width))]
    left_width = width - len(right) - 1
    lefts = _wrap(row.left, left_width) if row.left.strip() else [""]
    last = lefts[-1]
    lines = [line.rstrip() for line in lefts[:-1]]
    lines.append(last + " " * (width - len(last) - len(right)) + right)
    return lines


def layout(slip: Slip, columns: int) -> tuple[Printable, ...]:
    """Lay the slip out for `columns` characters per line (double-width text gets half)."""
    if columns < 16:
        raise ValueError(f"columns must be at least 16, got {columns}")
    out: list[Printable] = []
    for block in slip.blocks:
        if isinstance(block, Text):
            width = columns // 2 if block.double else columns
            for line in _wrap(block.text, width):
                out.append(Line(_align(line, width, block.align), block.bold, block.double))
        elif isinstance(block, Row):
            out.extend(Line(text, block.bold) for text in _row(block, columns))
        elif isinstance(block, Rule):
            char = clean(block.char)[:1] or "-"
            out.append(Line(char * columns))
        elif isinstance(block, Feed):
            out.extend(Line("") for _ in range(max(0, block.lines)))
        else:
            out.append(block)
    return tuple(out)
