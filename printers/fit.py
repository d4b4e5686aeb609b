"""Pure sizing of barcodes and QR codes to the paper: module widths from the data and the dots.

A code is printed centred, so it keeps its quiet zones (white margins a scanner needs) when the
symbol plus both quiet zones fits the printable width. The widest module that fits is chosen, up
to the usual size; below the narrowest a scanner reads, the code is printed as text instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from printers.model import Barcode, QRCode

__all__ = [
    "BARCODE_MODULE_DOTS",
    "CODE128_QUIET",
    "DOTS_PER_COLUMN",
    "EAN13_QUIET",
    "QR_MIN_MODULE_DOTS",
    "QR_QUIET",
    "Fit",
    "barcode_modules",
    "code128_payload",
    "fit_barcode",
    "fit_qr",
    "paper_dots",
    "qr_version",
]

BARCODE_MODULE_DOTS = (3, 2)
"""GS w module widths tried, widest first (3 is the ESC/POS default; 2 the narrowest most
printers accept and scanners read at 203 dpi)."""
QR_MIN_MODULE_DOTS = 2
EAN13_QUIET = 11
"""Modules of white each side (EN 797 asks 11 left, 7 right; centring makes both 11)."""
CODE128_QUIET = 10
QR_QUIET = 4
DOTS_PER_COLUMN = 12
"""Font A is 12 dots wide: a 48-column printer has 576 dots, a 32-column one 384."""

# Byte-mode capacity of QR versions 1..40 at error correction M (ISO/IEC 18004 table 7).
_QR_M_BYTES = (
    14, 26, 42, 62, 84, 106, 122, 152, 180, 213, 251, 287, 331, 362, 412, 450, 504, 560, 624,
    666, 711, 779, 857, 911, 997, 1059, 1125, 1190, 1264, 1370, 1452, 1538, 1628, 1722, 1809,
    1911, 1989, 2099, 2213, 2331,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fit:
    """How a code is printed: its module width in dots, and its width with quiet zones."""

    module_dots: int
    width_dots: int


def paper_dots(profile_pixels: object, columns: int) -> int:
    """The printable width in dots: the profile's, else the columns times Font A's width."""
    if isinstance(profile_pixels, int) and not isinstance(profile_pixels, bool):
        return profile_pixels if profile_pixels > 0 else columns * DOTS_PER_COLUMN
    return columns * DOTS_PER_COLUMN


def _code128_chunks(data: str) -> list[tuple[str, str]]:
    """(code set, text) runs: set C for digit runs long enough to save space, B otherwise."""
    chunks: list[tuple[str, str]] = []

    def add(code_set: str, text: str) -> None:
        if not text:
            return
        if chunks and chunks[-1][0] == code_set:
            chunks[-1] = (code_set, chunks[-1][1] + text)
        else:
            chunks.append((code_set, text))

    i = 0
    while i < len(data):
        digits = data[i].isascii() and data[i].isdigit()
        j = i
        while j < len(data) and (data[j].isascii() and data[j].isdigit()) == digits:
            j += 1
        run = j - i
        # Set C packs two digits per symbol; each switch of set costs one symbol.
        at_edge = i == 0 or j == len(data)
        worth = run >= 2 if (i == 0 and j == len(data)) else run >= (4 if at_edge else 6)
        if digits and worth:
            even = run - run % 2
            start = i if i == 0 else j - even  # an odd digit stays in B next to its text
            add("B", data[i:start])
            add("C", data[start : start + even])
            add("B", data[start + even : j])
        else:
            add("B", data[i:j])
        i = j
    return chunks


def code128_payload(data: str) -> bytes:
    """The GS k 73 data for `data`: code set selectors ({B, {C), a literal { as {{, and
    digit pairs as single bytes 0..99 in set C (Epson ESC/POS, GS k function B)."""
    out = bytearray()
    for code_set, text in _code128_chunks(data):
        out += b"{" + code_set.encode()
        if code_set == "C":
            out += bytes(int(text[n : n + 2]) for n in range(0, len(text), 2))
        else:
            out += text.replace("{", "{{").encode("ascii")
    return bytes(out)


def barcode_modules(code: Barcode) -> int:
    """Modules of the symbol without quiet zones (CODE128: start, data, switches, check, stop)."""
    if code.symbology == "EAN13":
        return 95
    symbols = sum(
        1 + (len(text) // 2 if code_set == "C" else len(text))
        for code_set, text in _code128_chunks(code.full_data)
    )
    return 11 * (symbols + 1) + 13  # the first selector is the start symbol; + check, stop


def fit_barcode(code: Barcode, dots: int) -> Fit | None:
    """The widest module (of BARCODE_MODULE_DOTS) at which the code and its quiet zones fit
    into `dots`; None when not even the narrowest does (print the text instead)."""
    quiet = EAN13_QUIET if code.symbology == "EAN13" else CODE128_QUIET
    modules = barcode_modules(code) + 2 * quiet
    for module_dots in BARCODE_MODULE_DOTS:
        if modules * module_dots <= dots:
            return Fit(module_dots, modules * module_dots)
    return None


def qr_version(data: str) -> int:
    """The smallest QR version holding `data` as bytes at error correction M."""
    size = len(data.encode("utf-8"))
    for version, capacity in enumerate(_QR_M_BYTES, start=1):
        if size <= capacity:
            return version
    raise ValueError(f"QR data of {size} bytes exceeds version 40 at level M")


def fit_qr(code: QRCode, dots: int) -> Fit | None:
    """The code's module size, reduced until the symbol and its quiet zones fit into `dots`;
    None below QR_MIN_MODULE_DOTS (print the text instead)."""
    modules = 17 + 4 * qr_version(code.data) + 2 * QR_QUIET
    module_dots = min(code.size, dots // modules)
    if module_dots < QR_MIN_MODULE_DOTS:
        return None
    return Fit(module_dots, modules * module_dots)
