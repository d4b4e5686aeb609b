"""Device URIs: tcp://host:9100, serial:///dev/ttyS0?baudrate=9600, file:///path, dummy://."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from escpos.escpos import Escpos
from escpos.printer import Dummy, Network, Serial

from printers.errors import DeviceError, DeviceUriError

__all__ = ["SCHEMES", "AppendFile", "DeviceUri", "open_printer", "parse_uri"]

SCHEMES = ("tcp", "serial", "file", "dummy")
_SERIAL_PARAMS = {"baudrate", "bytesize", "parity", "stopbits", "timeout"}
_BAUDRATES = {1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200}


@dataclass(frozen=True, slots=True)
class DeviceUri:
    """A parsed device URI; serial settings default to 9600 8N1."""

    uri: str
    scheme: str
    host: str = ""
    port: int = 9100
    path: str = ""
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1
    timeout: float = 3.0
    extra: dict[str, str] = field(default_factory=dict)


def parse_uri(uri: str) -> DeviceUri:
    """Parse and validate a device URI (DeviceUriError naming the problem)."""
    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise DeviceUriError(uri, f"scheme must be one of {', '.join(SCHEMES)}")
    params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    timeout = 3.0
    if "timeout" in params:
        try:
            timeout = float(params["timeout"])
        except ValueError:
            raise DeviceUriError(uri, f"timeout={params['timeout']!r} is not a number") from None
        if not 0 < timeout <= 120:
            raise DeviceUriError(uri, f"timeout={timeout:g} must be > 0 and <= 120 seconds")
    if scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            raise DeviceUriError(uri, "invalid port") from None
        if not parts.hostname:
            raise DeviceUriError(uri, "tcp:// needs a host, e.g. tcp://192.168.1.50:9100")
        unknown = set(params) - {"timeout"}
        if unknown:
            raise DeviceUriError(uri, f"unknown parameter(s) {', '.join(sorted(unknown))}")
        return DeviceUri(uri, scheme, host=parts.hostname, port=port or 9100, timeout=timeout)
    if scheme == "dummy":
        return DeviceUri(uri, scheme)
    path = parts.path
    if parts.netloc or not path.startswith("/"):
        raise DeviceUriError(uri, f"{scheme}:// needs an absolute path, e.g. {scheme}:///dev/x")
    if scheme == "file":
        return DeviceUri(uri, scheme, path=path)
    unknown = set(params) - _SERIAL_PARAMS
    if unknown:
        raise DeviceUriError(uri, f"unknown parameter(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, allowed in (
        ("baudrate", _BAUDRATES),
        ("bytesize", {5, 6, 7, 8}),
        ("stopbits", {1, 2}),
    ):
        if key in params:
            try:
                values[key] = int(params[key])
            except ValueError:
                raise DeviceUriError(uri, f"{key}={params[key]!r} is not an integer") from None
            if values[key] not in allowed:
                raise DeviceUriError(uri, f"{key}={values[key]} is not one of {sorted(allowed)}")
    parity = params.get("parity", "N").upper()
    if parity not in ("N", "E", "O"):
        raise DeviceUriError(uri, f"parity={parity!r} must be N, E or O")
    return DeviceUri(uri, scheme, path=path, parity=parity, timeout=timeout, **values)


class AppendFile(Escpos):
    """A printer that appends its bytes to a file (python-escpos's File truncates on open)."""

    def __init__(self, path: str | Path, *args: Any, **kwargs: Any) -> None:
        Escpos.__init__(self, *args, **kwargs)
        self.path = Path(path)

    def _raw(self, msg: bytes) -> None:
        with self.path.open("ab") as out:
            out.write(msg)

    def close(self) -> None:
        """Nothing stays open between writes."""


def open_printer(uri: str | DeviceUri, *, profile: str | None = None) -> Escpos:
    """An opened python-escpos device for the URI (DeviceError if it cannot be opened)."""
    dev = uri if isinstance(uri, DeviceUri) else parse_uri(uri)
    device: Escpos
    try:
        if dev.scheme == "tcp":
            device = Network(dev.host, port=dev.port, timeout=dev.timeout, profile=profile)
            # Network.open() leaks its socket when the connection is refused; connect here.
            device.device = socket.create_connection((dev.host, dev.port), timeout=dev.timeout)
        elif dev.scheme == "serial":
            device = Serial(
                devfile=dev.path,
                baudrate=dev.baudrate,
                bytesize=dev.bytesize,
                parity=dev.parity,
                stopbits=dev.stopbits,
                timeout=dev.timeout,
                dsrdtr=False,
                profile=profile,
            )
            device.open()
        elif dev.scheme == "file":
            device = AppendFile(dev.path, profile=profile)
        else:
            device = Dummy(profile=profile)
    except Exception as exc:  # python-escpos raises its own and OS errors alike
        raise DeviceError(f"cannot open printer {dev.uri}: {exc}") from exc
    return device
