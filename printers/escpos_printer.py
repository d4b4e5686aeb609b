"""Slips as ESC/POS bytes over any python-escpos device, with an explicit code page."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Literal

from escpos.constants import QR_ECLEVEL_M
from escpos.escpos import Escpos
from escpos.printer import Dummy, Network, Serial

from printers.codepages import codec_for, encode_text, resolve_slot
from printers.fit import code128_payload, fit_barcode, fit_qr, paper_dots
from printers.layout import Line, layout
from printers.model import Barcode, QRCode, Slip

__all__ = [
    "ESC_INIT",
    "EscposPrinter",
    "PrinterStatus",
    "parse_status",
    "profile_names",
    "read_status",
    "render_slip",
]

ESC = b"\x1b"
GS = b"\x1d"
DLE = b"\x10"
ESC_INIT = ESC + b"@"
_LEFT = ESC + b"a\x00"


class EscposPrinter:
    """Prints Slips on a python-escpos device; the code page is re-selected after every ESC @.

    Text never goes through python-escpos's magic encoder: 3.1 forgets the selected page after
    `hw("INIT")` (it still believes the old page is active, so it sends no ESC t) and guesses
    pages from the profile; we encode with the configured codec and send ESC t ourselves.
    """

    def __init__(
        self,
        device: Escpos,
        *,
        code_page: str = "CP866",
        code_page_slot: int | None = None,
        columns: int = 48,
        dots: int | None = None,
    ) -> None:
        codec_for(code_page)
        self.device = device
        self.code_page = code_page.strip().upper()
        self.slot = (
            code_page_slot
            if code_page_slot is not None
            else resolve_slot(self.code_page, device.profile.profile_data.get("codePages"))
        )
        if not 0 <= self.slot <= 255:
            raise ValueError(f"code_page_slot must be 0..255, got {self.slot}")
        self.columns = columns
        media = device.profile.profile_data.get("media") or {}
        self.dots = dots or paper_dots((media.get("width") or {}).get("pixels"), columns)
        """Printable width in dots: barcodes and QR codes are sized to fit it."""

    def reset(self) -> None:
        """ESC @ then ESC t: a reset alone would leave the printer on its default page."""
        self.device._raw(ESC_INIT + self._select())

    def _select(self) -> bytes:
        return ESC + b"t" + bytes([self.slot])

    def _line(self, line: Line) -> None:
        raw = bytearray()
        if line.bold:
            raw += ESC + b"E\x01"
        if line.double:
            raw += GS + b"!\x11"
        raw += encode_text(line.text, self.code_page) + b"\n"
        if line.double:
            raw += GS + b"!\x00"
        if line.bold:
            raw += ESC + b"E\x00"
        self.device._raw(bytes(raw))

    def _quiet(self) -> contextlib.AbstractContextManager[Any]:
        # python-escpos prints "Using hardware barcode renderer" on stdout; keep CLIs clean.
        return contextlib.redirect_stdout(io.StringIO())

    def _as_text(self, text: str) -> None:
        self.device._raw(_LEFT + self._select())
        self._line(Line(text.center(self.columns).rstrip()))

    def _barcode(self, code: Barcode) -> None:
        data = code.full_data
        profile = self.device.profile
        if code.symbology == "CODE128":
            hardware = profile.supports("barcodeB")
        else:
            hardware = profile.supports("barcodeB") or profile.supports("barcodeA")
        fit = fit_barcode(code, self.dots)
        if fit is None:  # narrower than any scanner reads: the digits beat a cut-off code
            self._as_text(data)
            return
        try:
            with self._quiet():
                if code.symbology == "CODE128" and hardware:
                    # Function B (GS k 73) with code set selectors: set C packs digit pairs.
                    payload = code128_payload(data).decode("ascii")
                    self.device.barcode(
                        payload, "CODE128", width=fit.module_dots, function_type="B", check=False
                    )
                else:  # EAN-13 (function A), or an image the library renders
                    self.device.barcode(data, code.symbology, width=fit.module_dots)
        except Exception:  # a profile that cannot render it still gets the digits
            self._as_text(data)
            return
        self.device._raw(_LEFT + self._select())

    def _qr(self, code: QRCode) -> None:
        native = self.device.profile.supports("qrCode")
        fit = fit_qr(code, self.dots)
        if fit is None:
            self.device._raw(_LEFT + self._select())
            self._line(Line(code.data[: self.columns]))
            return
        try:
            with self._quiet():
                if native:
                    # python-escpos refuses center=True for native codes; ESC a 1 does it.
                    self.device._raw(ESC + b"a\x01")
                    self.device.qr(code.data, ec=QR_ECLEVEL_M, size=fit.module_dots, native=True)
                else:
                    self.device.qr(
                        code.data, ec=QR_ECLEVEL_M, size=fit.module_dots, native=False, center=True
                    )
        except Exception:  # the code's text is better than no slip
            self.device._raw(_LEFT + self._select())
            self._line(Line(code.data[: self.columns]))
        # python-escpos writes the newlines around an image QR through its magic encoder,
        # which switches to the profile's first code page (ESC t 1 on POS-5890): select ours again.
        self.device._raw(_LEFT + self._select())

    def print_slip(self, slip: Slip) -> None:
        """Reset, print every block, cut (when the slip says so)."""
        self.reset()
        for item in layout(slip, self.columns):
            if isinstance(item, Line):
                self._line(item)
            elif isinstance(item, Barcode):
                self._barcode(item)
            else:
                self._qr(item)
        if slip.cut:
            with self._quiet():
                self.device.cut()


def render_slip(
    slip: Slip,
    *,
    profile: str | None = None,
    code_page: str = "CP866",
    code_page_slot: int | None = None,
    columns: int = 48,
    dots: int | None = None,
) -> bytes:
    """The exact bytes a printer with this profile receives for the slip (no I/O)."""
    device = Dummy(profile=profile)
    EscposPrinter(
        device, code_page=code_page, code_page_slot=code_page_slot, columns=columns, dots=dots
    ).print_slip(slip)
    return bytes(device.output)


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the printer said to DLE EOT 1/2/4; None where it did not answer."""

    online: bool | None = None
    cover_open: bool | None = None
    paper: Literal["ok", "near_end", "out"] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"online": self.online, "cover_open": self.cover_open, "paper": self.paper}


def _valid(byte: int | None) -> bool:
    # Every DLE EOT answer has bits 1 and 4 set and bits 0 and 7 clear.
    return byte is not None and byte & 0x93 == 0x12


def parse_status(printer: int | None, offline: int | None, paper: int | None) -> PrinterStatus:
    """Decode the answers to DLE EOT 1 (printer), 2 (offline cause) and 4 (paper sensor)."""
    return PrinterStatus(
        online=None if printer is None or not _valid(printer) else not printer & 0x08,
        cover_open=None if offline is None or not _valid(offline) else bool(offline & 0x04),
        paper=None
        if paper is None or not _valid(paper)
        else "out"
        if paper & 0x60
        else "near_end"
        if paper & 0x0C
        else "ok",
    )


def read_status(device: Escpos) -> PrinterStatus:
    """Ask the printer in real time (DLE EOT n); devices that cannot answer give all None."""
    if not isinstance(device, Network | Serial):
        return PrinterStatus()
    answers: list[int | None] = []
    for n in (1, 2, 4):
        try:
            device._raw(DLE + b"\x04" + bytes([n]))
            data = device._read()
        except Exception:  # a silent printer times out
            data = b""
        answers.append(data[0] if data else None)
        if answers[0] is None:
            break  # no answer to DLE EOT 1: do not wait out two more timeouts
    if answers[0] is None:
        return PrinterStatus()
    return parse_status(*answers)


def profile_names() -> tuple[str, ...]:
    """The python-escpos capability profiles this library can print with."""
    from escpos.capabilities import CAPABILITIES

    return tuple(sorted(CAPABILITIES["profiles"]))
