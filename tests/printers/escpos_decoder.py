"""An independent ESC/POS decoder for the tests, written from the Epson command reference.

It shares no code with `printers`: its own code-page table, its own command lengths. Unknown
commands are errors, so a stray byte in a golden file fails the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ESC t n -> Python codec, from the Epson ESC/POS "character code table" page.
PAGES = {0: "cp437", 2: "cp850", 16: "cp1252", 17: "cp866", 34: "cp855", 46: "cp1251", 59: "cp866"}

EAN13_A = 2
CODE128_B = 73


@dataclass
class Event:
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decoded:
    events: list[Event]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def text_lines(self) -> list[str]:
        """Printed text split into lines (what a person reads off the paper)."""
        text = "".join(e.args["text"] for e in self.events if e.kind == "text")
        return text.split("\n")

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


class DecodeError(AssertionError):
    pass


def decode(data: bytes) -> Decoded:
    """Walk the bytes; text is decoded with the page selected at that point (0 after ESC @)."""
    events: list[Event] = []
    page = 0
    i = 0
    text = bytearray()

    def flush() -> None:
        if text:
            raw = bytes(text)
            if page not in PAGES and not raw.isascii():
                raise DecodeError(f"non-ASCII text under unknown code page slot {page}: {raw!r}")
            events.append(
                Event("text", {"text": raw.decode(PAGES.get(page, "ascii")), "page": page})
            )
            text.clear()

    def need(n: int) -> bytes:
        if i + n > len(data):
            raise DecodeError(f"truncated command at offset {i}")
        return data[i : i + n]

    while i < len(data):
        b = data[i]
        if b == 0x0A or b >= 0x20:
            text.append(b)
            i += 1
            continue
        flush()
        if b == 0x1B:  # ESC
            cmd = need(2)[1:2]
            if cmd == b"@":
                events.append(Event("init"))
                page = 0
                i += 2
            elif cmd == b"t":
                page = need(3)[2]
                events.append(Event("codepage", {"slot": page}))
                i += 3
            elif cmd in (b"E", b"a", b"d", b"3", b"!", b"-", b"M"):
                events.append(Event(f"ESC {cmd.decode()}", {"n": need(3)[2]}))
                i += 3
            elif cmd == b"2":
                events.append(Event("ESC 2"))
                i += 2
            elif cmd == b"*":
                m, nl, nh = need(5)[2:5]
                width = nl + 256 * nh
                size = width * (3 if m in (32, 33) else 1)
                events.append(Event("column_image", {"m": m, "width": width}))
                i += 5 + size
            else:
                raise DecodeError(f"unknown ESC {cmd!r} at offset {i}")
        elif b == 0x1D:  # GS
            cmd = need(2)[1:2]
            if cmd in (b"h", b"w", b"f", b"H", b"!"):
                events.append(Event(f"GS {cmd.decode()}", {"n": need(3)[2]}))
                i += 3
            elif cmd == b"V":
                m = need(3)[2]
                events.append(Event("cut", {"m": m}))
                i += 4 if m in (65, 66) else 3
            elif cmd == b"k":
                m = need(3)[2]
                if m <= 6:  # function A: data up to NUL
                    end = data.index(b"\x00", i + 3)
                    payload = data[i + 3 : end]
                    i = end + 1
                else:  # function B: length byte
                    n = need(4)[3]
                    payload = need(4 + n)[4:]
                    i += 4 + n
                events.append(Event("barcode", {"m": m, "data": payload.decode("ascii")}))
            elif cmd == b"(":
                fn = need(3)[2:3]
                pl, ph = need(5)[3:5]
                body = need(5 + pl + 256 * ph)[5:]
                i += 5 + pl + 256 * ph
                if fn != b"k":
                    raise DecodeError(f"unknown GS ( {fn!r}")
                cn, fnc = body[0], body[1]
                if cn != 49:
                    raise DecodeError(f"GS ( k: only QR (cn=49) expected, got {cn}")
                if fnc == 80:  # store data: m=48 then the payload
                    events.append(Event("qr_store", {"data": body[3:].decode("utf-8")}))
                elif fnc == 81:
                    events.append(Event("qr_print"))
                elif fnc == 65:
                    events.append(Event("qr_model", {"n": body[2]}))
                elif fnc == 67:
                    events.append(Event("qr_size", {"n": body[2]}))
                elif fnc == 69:
                    events.append(Event("qr_ec", {"n": body[2]}))
                else:
                    raise DecodeError(f"GS ( k: unknown fn {fnc}")
            elif cmd == b"v":
                if need(3)[2:3] != b"0":
                    raise DecodeError(f"GS v must be followed by '0' at offset {i}")
                m, xl, xh, yl, yh = need(8)[3:8]
                width_bytes = xl + 256 * xh
                height = yl + 256 * yh
                bits = need(8 + width_bytes * height)[8:]
                events.append(
                    Event(
                        "raster",
                        {"m": m, "width_bytes": width_bytes, "height": height, "bits": bits},
                    )
                )
                i += 8 + width_bytes * height
            else:
                raise DecodeError(f"unknown GS {cmd!r} at offset {i}")
        elif b == 0x10:  # DLE EOT n: real-time status request
            n = need(3)[2]
            events.append(Event("status_request", {"n": n}))
            i += 3
        else:
            raise DecodeError(f"unexpected control byte {b:#04x} at offset {i}")
    flush()
    return Decoded(events)


def raster_images(decoded: Decoded) -> list[Any]:
    """Each GS v 0 raster image as a PIL image (black = printed dot)."""
    from PIL import Image

    images = []
    for event in decoded.of("raster"):
        w, h = event.args["width_bytes"] * 8, event.args["height"]
        img = Image.frombytes("1", (w, h), event.args["bits"])
        # In ESC/POS raster a 1 bit is a black dot; in PIL mode "1" a 1 is white: invert.
        images.append(Image.eval(img.convert("L"), lambda v: 255 - v))
    return images


def code128_text(payload: bytes) -> str:
    """The text a GS k 73 (CODE128, function B) payload encodes: {A/{B/{C select a code set,
    {{ is a literal {, in set C each byte is a pair of digits (Epson GS k reference)."""
    out: list[str] = []
    code_set = ""
    i = 0
    while i < len(payload):
        if payload[i : i + 1] == b"{" and payload[i + 1 : i + 2] in (b"A", b"B", b"C"):
            code_set = payload[i + 1 : i + 2].decode()
            i += 2
            continue
        if payload[i : i + 2] == b"{{":
            out.append("{")
            i += 2
            continue
        if code_set == "C":
            if payload[i] > 99:
                raise DecodeError(f"code set C byte {payload[i]} is not a digit pair")
            out.append(f"{payload[i]:02d}")
        else:
            out.append(chr(payload[i]))
        i += 1
    return "".join(out)
