"""A printer-agnostic slip: blocks of text, two-column rows, rules, barcodes and QR codes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from printers.errors import BarcodeError

__all__ = [
    "Align",
    "Barcode",
    "Block",
    "Feed",
    "QRCode",
    "Row",
    "Rule",
    "Slip",
    "Symbology",
    "Text",
    "ean13_check_digit",
]

Align = Literal["left", "center", "right"]
Symbology = Literal["EAN13", "CODE128"]

_CODE128_B = re.compile(r"[\x20-\x7e]{1,80}")


def ean13_check_digit(first12: str) -> str:
    """The EAN-13 check digit of twelve digits (weights 1,3,1,3... from the left)."""
    if len(first12) != 12 or not first12.isdigit() or not first12.isascii():
        raise BarcodeError(f"EAN-13 needs 12 digits to compute a check digit, got {first12!r}")
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


@dataclass(frozen=True, slots=True)
class Text:
    """A paragraph, wrapped to the paper width."""

    text: str
    align: Align = "left"
    bold: bool = False
    double: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    """Two columns: left text (wrapped) and right text aligned to the right edge."""

    left: str
    right: str
    bold: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """A full-width line of one character."""

    char: str = "-"


@dataclass(frozen=True, slots=True)
class Feed:
    """Empty lines."""

    lines: int = 1


@dataclass(frozen=True, slots=True)
class Barcode:
    """A 1-D barcode; EAN-13 takes 12 digits (check digit added) or 13 (check digit verified)."""

    data: str
    symbology: Symbology = "CODE128"

    def __post_init__(self) -> None:
        if self.symbology == "EAN13":
            digits = self.data
            if not (digits.isascii() and digits.isdigit() and len(digits) in (12, 13)):
                raise BarcodeError(f"EAN-13 data must be 12 or 13 digits, got {self.data!r}")
            if len(digits) == 13 and ean13_check_digit(digits[:12]) != digits[12]:
                raise BarcodeError(
                    f"EAN-13 {self.data!r}: check digit should be {ean13_check_digit(digits[:12])}"
                )
        elif self.symbology == "CODE128":
            if not _CODE128_B.fullmatch(self.data):
                raise BarcodeError(
                    f"CODE128 data must be 1..80 printable ASCII characters, got {self.data!r}"
                )
        else:
            raise BarcodeError(f"unknown symbology {self.symbology!r} (EAN13 or CODE128)")

    @property
    def full_data(self) -> str:
        """The data as printed: EAN-13 always with its check digit."""
        if self.symbology == "EAN13" and len(self.data) == 12:
            return self.data + ean13_check_digit(self.data)
        return self.data


@dataclass(frozen=True, slots=True)
class QRCode:
    """A QR code (model 2, error correction M); size is the module size in dots (1..16)."""

    data: str
    size: int = 4

    def __post_init__(self) -> None:
        if not self.data or len(self.data.encode("utf-8")) > 700:
            raise BarcodeError(f"QR data must be 1..700 bytes, got {len(self.data)} characters")
        if not 1 <= self.size <= 16:
            raise BarcodeError(f"QR size must be 1..16, got {self.size}")


Block = Text | Row | Rule | Feed | Barcode | QRCode


@dataclass(frozen=True, slots=True)
class Slip:
    """One printed piece of paper; `cut` ends it with a paper cut."""

    blocks: tuple[Block, ...]
    cut: bool = True
