"""Customer (pole) displays, 20x2: Epson ESC/POS display (DM-D) and CD5220 command sets."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Literal, Protocol

from printers.codepages import encode_text
from printers.errors import DeviceError, DisplayError
from printers.layout import clean
from printers.uri import DeviceUri, parse_uri

__all__ = [
    "CD5220",
    "PROTOCOLS",
    "CommandSet",
    "CustomerDisplay",
    "EpsonDisplay",
    "FileTransport",
    "RecordingTransport",
    "SerialTransport",
    "TcpTransport",
    "Transport",
    "open_display",
    "open_display_transport",
]

ESC, US, FF, CR = b"\x1b", b"\x1f", b"\x0c", b"\r"


class CommandSet(Protocol):
    """The bytes of one display command set; text arrives already encoded and padded."""

    name: str

    def init(self, code_table: int) -> bytes: ...
    def clear(self) -> bytes: ...
    def line(self, row: int, text: bytes) -> bytes: ...
    def brightness(self, level: int) -> bytes: ...
    def scroll(self, text: bytes) -> bytes: ...


class EpsonDisplay:
    """Epson DM-D ESC/POS display: ESC @, ESC t n, US MD1, FF, US $ x y, US X n, US MD3."""

    name = "epson"

    def init(self, code_table: int) -> bytes:
        # ESC @ resets the character table, so ESC t must follow it; US MD1 = overwrite mode.
        return ESC + b"@" + ESC + b"t" + bytes([code_table]) + US + b"\x01"

    def clear(self) -> bytes:
        return FF

    def line(self, row: int, text: bytes) -> bytes:
        # US MD1 first: a previous scroll left the display in horizontal scroll mode.
        return US + b"\x01" + US + b"$" + bytes([1, row]) + text

    def brightness(self, level: int) -> bytes:
        return US + b"X" + bytes([level])

    def scroll(self, text: bytes) -> bytes:
        # US MD3 = horizontal scroll mode: the upper line shifts left as characters arrive.
        return US + b"\x03" + US + b"$" + bytes([1, 1]) + text


class CD5220:
    """CD5220 command set: ESC @, ESC t n, FF, ESC Q A/B (lines), ESC * n, ESC Q D (marquee)."""

    name = "cd5220"

    def init(self, code_table: int) -> bytes:
        return ESC + b"@" + ESC + b"t" + bytes([code_table])

    def clear(self) -> bytes:
        return FF

    def line(self, row: int, text: bytes) -> bytes:
        return ESC + b"Q" + (b"A" if row == 1 else b"B") + text + CR

    def brightness(self, level: int) -> bytes:
        return ESC + b"*" + bytes([level])

    def scroll(self, text: bytes) -> bytes:
        return ESC + b"QD" + text + CR


PROTOCOLS: dict[str, type[EpsonDisplay] | type[CD5220]] = {"epson": EpsonDisplay, "cd5220": CD5220}


class Transport(Protocol):
    """Where display bytes go."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class RecordingTransport:
    """Keeps every frame in memory: the test double and the laptop-without-hardware device."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self.frames.append(bytes(data))

    def close(self) -> None:
        """Nothing to release."""

    @property
    def data(self) -> bytes:
        with self._lock:
            return b"".join(self.frames)


class FileTransport:
    """Appends frames to a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def write(self, data: bytes) -> None:
        try:
            with self.path.open("ab") as out:
                out.write(data)
        except OSError as exc:
            raise DeviceError(f"cannot write display file {self.path}: {exc}") from exc

    def close(self) -> None:
        """Nothing stays open between writes."""


class SerialTransport:
    """A serial port through pyserial (9600 8N1 unless the URI says otherwise)."""

    def __init__(self, dev: DeviceUri) -> None:
        import serial

        try:
            self.port = serial.Serial(
                dev.path,
                baudrate=dev.baudrate,
                bytesize=dev.bytesize,
                parity=dev.parity,
                stopbits=dev.stopbits,
                timeout=dev.timeout,
                write_timeout=dev.timeout,
            )
        except (serial.SerialException, ValueError, OSError) as exc:
            raise DeviceError(f"cannot open display {dev.uri}: {exc}") from exc

    def write(self, data: bytes) -> None:
        import serial

        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"cannot write to display {self.port.port}: {exc}") from exc

    def close(self) -> None:
        self.port.close()


class TcpTransport:
    """A display behind a serial-to-Ethernet adapter."""

    def __init__(self, dev: DeviceUri) -> None:
        try:
            self.sock = socket.create_connection((dev.host, dev.port), timeout=dev.timeout)
        except OSError as exc:
            raise DeviceError(f"cannot open display {dev.uri}: {exc}") from exc

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise DeviceError(f"cannot write to display: {exc}") from exc

    def close(self) -> None:
        self.sock.close()


def open_display_transport(uri: str) -> Transport:
    """The transport for a device URI (dummy:// records in memory)."""
    dev = parse_uri(uri)
    if dev.scheme == "serial":
        return SerialTransport(dev)
    if dev.scheme == "tcp":
        return TcpTransport(dev)
    if dev.scheme == "file":
        return FileTransport(dev.path)
    return RecordingTransport()


class CustomerDisplay:
    """A 2-line customer display; the code table is re-sent with every ESC @ (init)."""

    def __init__(
        self,
        transport: Transport,
        protocol: Literal["epson", "cd5220"] | str = "epson",
        *,
        code_page: str = "CP866",
        code_table: int = 17,
        width: int = 20,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise DisplayError(f"display protocol {protocol!r} must be one of {sorted(PROTOCOLS)}")
        if not 0 <= code_table <= 255:
            raise DisplayError(f"display code_table must be 0..255, got {code_table}")
        encode_text("", code_page)
        self.transport = transport
        self.commands: CommandSet = PROTOCOLS[protocol]()
        self.code_page = code_page
        self.code_table = code_table
        self.width = width

    def _text(self, text: str, width: int) -> bytes:
        fitted = clean(text)[:width].ljust(width)
        return encode_text(fitted, self.code_page)

    def init(self) -> None:
        """Reset the display and select its character table."""
        self.transport.write(self.commands.init(self.code_table))

    def clear(self) -> None:
        self.transport.write(self.commands.clear())

    def show(self, line1: str, line2: str = "") -> None:
        """Overwrite both lines (each cut or padded to the display width)."""
        self.transport.write(
            self.commands.line(1, self._text(line1, self.width))
            + self.commands.line(2, self._text(line2, self.width))
        )

    def show_line(self, row: int, text: str) -> None:
        if row not in (1, 2):
            raise DisplayError(f"display row must be 1 or 2, got {row}")
        self.transport.write(self.commands.line(row, self._text(text, self.width)))

    def brightness(self, level: int) -> None:
        """Brightness 1 (dim) .. 4 (bright)."""
        if not 1 <= level <= 4:
            raise DisplayError(f"display brightness must be 1..4, got {level}")
        self.transport.write(self.commands.brightness(level))

    def scroll(self, message: str) -> None:
        """A message scrolling on the upper line (at most 40 characters)."""
        self.transport.write(self.commands.scroll(self._text(message, min(40, len(message)))))

    def close(self) -> None:
        self.transport.close()


def open_display(
    uri: str,
    protocol: str = "epson",
    *,
    code_page: str = "CP866",
    code_table: int = 17,
) -> CustomerDisplay:
    """A CustomerDisplay on the device URI (not yet initialised)."""
    return CustomerDisplay(
        open_display_transport(uri), protocol, code_page=code_page, code_table=code_table
    )
