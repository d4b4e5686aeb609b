"""The electronic card drawn as SVG: the card number's barcode (EAN-13 when it is one, else
Code 128) and the rotating QR payload the member services make (sync_protocol/ecard.py).

Drawn as plain rectangles with `fill` attributes, no style: the portal's policy allows no
inline style, and a register's scanner reads what the phone shows.
"""

from __future__ import annotations

import barcode
import qrcode

__all__ = ["barcode_svg", "qr_svg"]


def _symbology(card_no: str) -> tuple[str, str]:
    if len(card_no) == 13 and card_no.isdigit():
        body = card_no[:12]
        weighted = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
        if str((10 - weighted % 10) % 10) == card_no[12]:
            return "ean13", body
    return "code128", card_no


def barcode_svg(card_no: str, *, height: int = 60) -> str:
    """The card number as a barcode a register scans, with the number under it."""
    kind, data = _symbology(card_no)
    modules = barcode.get_barcode_class(kind)(data).build()[0]
    quiet = 10
    width = len(modules) + 2 * quiet
    parts = [
        f'<svg class="barcode" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
        f'{height + 14}" data-symbology="{kind}" role="img" aria-label="{card_no}">',
        f'<rect x="0" y="0" width="{width}" height="{height + 14}" fill="#fff"/>',
    ]
    x = 0
    while x < len(modules):
        if modules[x] == "1":
            run = 1
            while x + run < len(modules) and modules[x + run] == "1":
                run += 1
            parts.append(
                f'<rect x="{quiet + x}" y="2" width="{run}" height="{height}" fill="#000"/>'
            )
            x += run
        else:
            x += 1
    parts.append(
        f'<text x="{width / 2}" y="{height + 12}" text-anchor="middle" font-size="10" '
        f'font-family="DejaVu Sans Mono, monospace" fill="#000">{card_no}</text></svg>'
    )
    return "".join(parts)


def qr_svg(payload: str) -> str:
    """The QR code of `payload` (error correction M, a quiet zone of 4 modules)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(payload)
    code.make(fit=True)
    matrix = code.get_matrix()
    size = len(matrix)
    path = "".join(
        f"M{x},{y}h1v1h-1z" for y, row in enumerate(matrix) for x, dark in enumerate(row) if dark
    )
    return (
        f'<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'shape-rendering="crispEdges" role="img" aria-label="QR">'
        f'<rect width="{size}" height="{size}" fill="#fff"/><path d="{path}" fill="#000"/></svg>'
    )
