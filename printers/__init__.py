"""Receipt printers (ESC/POS) and customer displays: the library the POS agent prints through.

Stdlib, python-escpos and pyserial only. A Slip is laid out purely (`layout`), rendered to
ESC/POS bytes with an explicit code page (`EscposPrinter`, `render_slip`) and sent to a device
opened from a URI (`open_printer`); `CustomerDisplay` drives Epson DM-D and CD5220 displays.
"""

from printers.codepages import EPSON_SLOTS, codec_for, encode_text, resolve_slot
from printers.display import (
    CD5220,
    PROTOCOLS,
    CustomerDisplay,
    EpsonDisplay,
    FileTransport,
    RecordingTransport,
    SerialTransport,
    TcpTransport,
    open_display,
    open_display_transport,
)
from printers.errors import (
    BarcodeError,
    CodePageError,
    DeviceError,
    DeviceUriError,
    DisplayError,
    PrintersError,
)
from printers.escpos_printer import (
    EscposPrinter,
    PrinterStatus,
    parse_status,
    profile_names,
    read_status,
    render_slip,
)
from printers.layout import COLUMNS, Line, layout
from printers.model import Barcode, Feed, QRCode, Row, Rule, Slip, Text, ean13_check_digit
from printers.testpage import self_test_slip
from printers.uri import SCHEMES, AppendFile, DeviceUri, open_printer, parse_uri

__all__ = [
    "CD5220",
    "COLUMNS",
    "EPSON_SLOTS",
    "PROTOCOLS",
    "SCHEMES",
    "AppendFile",
    "Barcode",
    "BarcodeError",
    "CodePageError",
    "CustomerDisplay",
    "DeviceError",
    "DeviceUri",
    "DeviceUriError",
    "DisplayError",
    "EpsonDisplay",
    "EscposPrinter",
    "Feed",
    "FileTransport",
    "Line",
    "PrinterStatus",
    "PrintersError",
    "QRCode",
    "RecordingTransport",
    "Row",
    "Rule",
    "SerialTransport",
    "Slip",
    "TcpTransport",
    "Text",
    "codec_for",
    "ean13_check_digit",
    "encode_text",
    "layout",
    "open_display",
    "open_display_transport",
    "open_printer",
    "parse_status",
    "parse_uri",
    "profile_names",
    "read_status",
    "render_slip",
    "resolve_slot",
    "self_test_slip",
]
