"""Errors of the printers library: one base class, narrow subclasses naming the bad value."""

from __future__ import annotations

__all__ = [
    "BarcodeError",
    "CodePageError",
    "DeviceError",
    "DeviceUriError",
    "DisplayError",
    "PrintersError",
]


class PrintersError(Exception):
    """Base class of every error this library raises on purpose."""


class DeviceUriError(PrintersError, ValueError):
    """A device URI that cannot be understood (scheme, host, port or parameter)."""

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(f"device URI {uri!r}: {problem}")
        self.uri = uri
        self.problem = problem


class CodePageError(PrintersError, ValueError):
    """A code page name or slot this library or the printer profile cannot use."""


class BarcodeError(PrintersError, ValueError):
    """Barcode data that does not fit its symbology (EAN-13 digits, CODE128 characters)."""


class DeviceError(PrintersError):
    """A printer or display could not be opened, written to or read from."""


class DisplayError(PrintersError, ValueError):
    """A customer display setting out of range (protocol, brightness, line number)."""
